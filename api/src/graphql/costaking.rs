//! GraphQL for co-staking: the same service as `/v1/costaking`.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::costaking::{CostakeOffer, CostakePosition, NewOffer, TakeOffer};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct CostakingQuery;

#[Object]
impl CostakingQuery {
    /// Open co-staking offers, oldest first: only a GPU model's (`model`), at least
    /// `minReliability` (0 to 1).
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn costake_offers(
        &self,
        ctx: &Context<'_>,
        model: Option<String>,
        min_reliability: Option<f64>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<CostakeOffer>> {
        control(ctx)
            .costaking
            .market(
                actor(ctx)?,
                model.as_deref(),
                min_reliability,
                &page(cursor, limit)?,
            )
            .await
            .map_err(gql_error)
    }

    /// The organisation's own offers, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn my_costake_offers(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<CostakeOffer>> {
        control(ctx)
            .costaking
            .my_offers(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The organisation's co-stakes, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn costake_positions(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<CostakePosition>> {
        control(ctx)
            .costaking
            .positions(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct CostakingMutation;

#[Object]
impl CostakingMutation {
    /// Offers the stake one of the organisation's devices needs (as `POST /v1/costaking/offers`).
    async fn offer_costake(&self, ctx: &Context<'_>, input: NewOffer) -> GqlResult<CostakeOffer> {
        control(ctx)
            .costaking
            .offer(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Withdraws an offer nobody has taken.
    async fn withdraw_costake_offer(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> GqlResult<CostakeOffer> {
        control(ctx)
            .costaking
            .withdraw_offer(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Takes an open offer with `amount` $IO (at most the offer's).
    async fn take_costake_offer(
        &self,
        ctx: &Context<'_>,
        id: String,
        amount: String,
    ) -> GqlResult<CostakePosition> {
        control(ctx)
            .costaking
            .take(actor(ctx)?, &id, &TakeOffer { amount })
            .await
            .map_err(gql_error)
    }

    /// Starts unstaking a co-stake whose term is over.
    async fn unstake_costake(&self, ctx: &Context<'_>, id: String) -> GqlResult<CostakePosition> {
        control(ctx)
            .costaking
            .unstake(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Withdraws an unstaked co-stake after its cooldown.
    async fn withdraw_costake(&self, ctx: &Context<'_>, id: String) -> GqlResult<CostakePosition> {
        control(ctx)
            .costaking
            .withdraw(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}
