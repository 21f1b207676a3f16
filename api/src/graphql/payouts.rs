//! GraphQL for payouts on chain. Same service as `/v1/payouts` and `/v1/admin/payouts`; the
//! inputs and answers are the domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::payouts::{DecisionRequest, Payout, PayoutRequest};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct PayoutsQuery;

#[Object]
impl PayoutsQuery {
    /// The organisation's payouts, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn payouts(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Payout>> {
        control(ctx)
            .payouts
            .payouts(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One payout of the organisation.
    async fn payout(&self, ctx: &Context<'_>, id: String) -> GqlResult<Payout> {
        control(ctx)
            .payouts
            .payout(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Every organisation's payouts, optionally in one status (platform operators only).
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn all_payouts(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Payout>> {
        control(ctx)
            .payouts
            .all_payouts(actor(ctx)?, status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct PayoutsMutation;

#[Object]
impl PayoutsMutation {
    /// Asks for a payout of earnings to a wallet (as `POST /v1/payouts`).
    async fn request_payout(&self, ctx: &Context<'_>, input: PayoutRequest) -> GqlResult<Payout> {
        control(ctx)
            .payouts
            .request_payout(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Takes back a payout not signed yet; its earnings come back.
    async fn cancel_payout(&self, ctx: &Context<'_>, id: String) -> GqlResult<Payout> {
        control(ctx)
            .payouts
            .cancel_payout(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Approves a payout waiting for approval (platform operators only).
    async fn approve_payout(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: Option<String>,
    ) -> GqlResult<Payout> {
        control(ctx)
            .payouts
            .approve_payout(actor(ctx)?, &id, &DecisionRequest { reason })
            .await
            .map_err(gql_error)
    }

    /// Refuses a payout waiting for approval, saying why (platform operators only).
    async fn reject_payout(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
    ) -> GqlResult<Payout> {
        control(ctx)
            .payouts
            .reject_payout(
                actor(ctx)?,
                &id,
                &DecisionRequest {
                    reason: Some(reason),
                },
            )
            .await
            .map_err(gql_error)
    }
}
