//! `/v1/rewards`: the hourly block rewards as a provider sees them: the summary, the network's
//! blocks with what the organisation earned in each, one block's rows for its devices, and a
//! device's hours with the reason it earned nothing in any of them.

use axum::Json;
use axum::extract::State;
use iocloud_control::Page;
use iocloud_control::rewards::{BlockDetail, BlockView, DeviceBlockView, RewardsSummary, Supply};
use iocloud_db::Timestamp;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;
use iocloud_control::types::device_id;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rewards_summary))
        .routes(routes!(list_blocks))
        .routes(routes!(get_block))
        .routes(routes!(device_blocks))
        .routes(routes!(supply))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SupplyParams {
    /// The instant, RFC 3339 (now by default).
    at: Option<String>,
}

/// The $IO supply at an instant (now by default), from the ledger: launch supply, emitted,
/// burned, staked, in slash escrow, undistributed, circulating and the cap. Public.
#[utoipa::path(get, path = "/v1/supply", tag = "rewards", security(()), params(SupplyParams),
    responses((status = 200, body = Supply), (status = 422, body = Problem)))]
async fn supply(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<SupplyParams>,
) -> ApiResult<Json<Supply>> {
    let at = match q.at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
            iocloud_control::Error::validation("at", "an RFC 3339 time, e.g. 2026-12-06T14:00:00Z")
        })?),
    };
    Ok(Json(s.control.rewards.supply(at).await?))
}

/// What the organisation's devices earned in block rewards: in total, over the last 24 hours
/// and 7 days; the last block and what the next one mints.
#[utoipa::path(get, path = "/v1/rewards", tag = "rewards",
    responses((status = 200, body = RewardsSummary), (status = 403, body = Problem)))]
async fn rewards_summary(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<RewardsSummary>> {
    Ok(Json(s.control.rewards.summary(&actor).await?))
}

/// The network's hourly blocks, newest first, each with what the organisation earned in it.
#[utoipa::path(get, path = "/v1/rewards/blocks", tag = "rewards", params(ListParams),
    responses((status = 200, body = Page<BlockView>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_blocks(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<BlockView>>> {
    Ok(Json(s.control.rewards.blocks(&actor, &q.page()?).await?))
}

/// One block (`hour`: its start, e.g. `2026-12-06T14:00:00Z`) and the organisation's devices
/// in it: each one's score and $IO, or the rule it failed with the evidence.
#[utoipa::path(get, path = "/v1/rewards/blocks/{hour}", tag = "rewards",
    responses((status = 200, body = BlockDetail), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn get_block(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(hour): ApiPath<String>,
) -> ApiResult<Json<BlockDetail>> {
    let hour = Timestamp::parse_rfc3339(hour.trim()).ok_or_else(|| {
        iocloud_control::Error::validation(
            "hour",
            "an RFC 3339 time on the hour, e.g. 2026-12-06T14:00:00Z",
        )
    })?;
    Ok(Json(s.control.rewards.block(&actor, hour).await?))
}

/// A device's hourly blocks, newest first: what it earned each hour, or why it earned nothing
/// (the rule and its evidence: the silence, the failed proof, the utilisation).
#[utoipa::path(get, path = "/v1/devices/{id}/blocks", tag = "rewards", params(ListParams),
    responses((status = 200, body = Page<DeviceBlockView>), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn device_blocks(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<DeviceBlockView>>> {
    Ok(Json(
        s.control
            .rewards
            .device_blocks(&actor, &device_id(&id)?, &q.page()?)
            .await?,
    ))
}
