//! GraphQL for hourly block rewards: the same service as `/v1/rewards`.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::rewards::{BlockDetail, BlockView, DeviceBlockView, RewardsSummary, Supply};
use iocloud_control::types::device_id;
use iocloud_db::Timestamp;

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct RewardsQuery;

#[Object]
impl RewardsQuery {
    /// What the organisation's devices earned in block rewards: in total, over the last 24
    /// hours and 7 days.
    async fn rewards(&self, ctx: &Context<'_>) -> GqlResult<RewardsSummary> {
        control(ctx)
            .rewards
            .summary(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// The network's hourly blocks, newest first, each with what the organisation earned.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn reward_blocks(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<BlockView>> {
        control(ctx)
            .rewards
            .blocks(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One block (`hour`: its start in RFC 3339, on the hour) and the organisation's devices
    /// in it.
    async fn reward_block(&self, ctx: &Context<'_>, hour: String) -> GqlResult<BlockDetail> {
        let hour = Timestamp::parse_rfc3339(hour.trim()).ok_or_else(|| {
            gql_error(iocloud_control::Error::validation(
                "hour",
                "an RFC 3339 time on the hour, e.g. 2026-12-06T14:00:00Z",
            ))
        })?;
        control(ctx)
            .rewards
            .block(actor(ctx)?, hour)
            .await
            .map_err(gql_error)
    }

    /// The $IO supply at an instant (`at`, RFC 3339; now by default): emitted, burned, staked,
    /// in escrow, circulating. Public.
    async fn supply(&self, ctx: &Context<'_>, at: Option<String>) -> GqlResult<Supply> {
        let at = match at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
                gql_error(iocloud_control::Error::validation(
                    "at",
                    "an RFC 3339 time, e.g. 2026-12-06T14:00:00Z",
                ))
            })?),
        };
        control(ctx).rewards.supply(at).await.map_err(gql_error)
    }

    /// A device's hourly blocks, newest first: what it earned, or the rule it failed and why.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn device_blocks(
        &self,
        ctx: &Context<'_>,
        device_id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<DeviceBlockView>> {
        let id = self::device_id(&device_id).map_err(gql_error)?;
        control(ctx)
            .rewards
            .device_blocks(actor(ctx)?, &id, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}
