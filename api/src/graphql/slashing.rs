//! GraphQL for slashing cases: the same service as `/v1/slashing` and `/v1/admin/slashing`.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::slashing::{AppealRequest, DecideRequest, OpenCase, SlashingCase};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct SlashingQuery;

#[Object]
impl SlashingQuery {
    /// The slashing cases against the organisation's devices, oldest first (`status`: only
    /// those in it).
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn slashing_cases(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<SlashingCase>> {
        control(ctx)
            .slashing
            .cases(actor(ctx)?, status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One case against a device of the organisation.
    async fn slashing_case(&self, ctx: &Context<'_>, id: String) -> GqlResult<SlashingCase> {
        control(ctx)
            .slashing
            .case(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Every slashing case (platform operators only).
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn all_slashing_cases(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<SlashingCase>> {
        control(ctx)
            .slashing
            .all_cases(actor(ctx)?, status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct SlashingMutation;

#[Object]
impl SlashingMutation {
    /// Appeals an open case within its window, with a statement (as
    /// `POST /v1/slashing/cases/{id}/appeal`).
    async fn appeal_slashing_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        statement: String,
    ) -> GqlResult<SlashingCase> {
        control(ctx)
            .slashing
            .appeal(actor(ctx)?, &id, &AppealRequest { statement })
            .await
            .map_err(gql_error)
    }

    /// Opens a case against a device (platform operators only).
    async fn open_slashing_case(
        &self,
        ctx: &Context<'_>,
        input: OpenCase,
    ) -> GqlResult<SlashingCase> {
        control(ctx)
            .slashing
            .open(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Decides an open or appealed case: `uphold` or `overturn` (platform operators only).
    async fn decide_slashing_case(
        &self,
        ctx: &Context<'_>,
        id: String,
        decision: String,
        reason: String,
    ) -> GqlResult<SlashingCase> {
        control(ctx)
            .slashing
            .decide(actor(ctx)?, &id, &DecideRequest { decision, reason })
            .await
            .map_err(gql_error)
    }
}
