//! The provider side over REST: the catalogs, devices, and stake.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::providers::heartbeats::Uptime;
use iocloud_control::providers::stake::{StakeRequest, StakeSummary, StakeView};
use iocloud_control::providers::{
    CreatedDevice, DeviceEvent, DeviceSpec, DeviceUpdate, DeviceView, GpuModelView, Region,
};
use iocloud_control::types::device_id;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(gpu_models))
        .routes(routes!(regions))
        .routes(routes!(list_devices, register_device))
        .routes(routes!(get_device, update_device, retire_device))
        .routes(routes!(device_events))
        .routes(routes!(rotate_token))
        .routes(routes!(suspend, unsuspend))
        .routes(routes!(start_maintenance, end_maintenance))
        .routes(routes!(stake_summary, stake))
        .routes(routes!(unstake))
        .routes(routes!(withdraw))
}

#[derive(Serialize, ToSchema)]
pub struct Catalog<T> {
    items: Vec<T>,
}

/// The GPU catalog: VRAM, TFLOPS, class, staking multiplier and price bounds per GPU-hour.
/// Public.
#[utoipa::path(get, path = "/v1/gpu-models", tag = "providers", security(()),
    responses((status = 200, body = Catalog<GpuModelView>)))]
async fn gpu_models(State(s): State<AppState>) -> Json<Catalog<GpuModelView>> {
    Json(Catalog {
        items: s
            .control
            .catalog
            .gpu_models
            .iter()
            .map(Into::into)
            .collect(),
    })
}

/// The regions devices and clusters live in, with the coordinates the latency model uses.
/// Public.
#[utoipa::path(get, path = "/v1/regions", tag = "providers", security(()),
    responses((status = 200, body = Catalog<Region>)))]
async fn regions(State(s): State<AppState>) -> Json<Catalog<Region>> {
    Json(Catalog {
        items: s.control.catalog.regions.clone(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListParams {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    /// Only devices in this status.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/devices", tag = "providers", params(DeviceListParams),
    responses((status = 200, body = Page<DeviceView>), (status = 422, body = Problem)))]
async fn list_devices(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<DeviceListParams>,
) -> ApiResult<Json<Page<DeviceView>>> {
    let page = ListParams {
        cursor: q.cursor,
        limit: q.limit,
    }
    .page()?;
    Ok(Json(
        s.control
            .devices
            .list(&actor, &page, q.status.as_deref())
            .await?,
    ))
}

/// Register a machine. The answer holds the agent's device token, shown only here.
#[utoipa::path(post, path = "/v1/devices", tag = "providers", request_body = DeviceSpec,
    responses((status = 201, body = CreatedDevice), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn register_device(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(spec): ApiJson<DeviceSpec>,
) -> ApiResult<impl IntoResponse> {
    let created = s.control.devices.register(&actor, spec).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Serialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    device: DeviceView,
    uptime: Uptime,
}

/// A device with its uptime over 24 hours, 7 and 30 days and its reliability score.
#[utoipa::path(get, path = "/v1/devices/{id}", tag = "providers",
    responses((status = 200, body = DeviceDetail), (status = 404, body = Problem)))]
async fn get_device(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceDetail>> {
    let id = device_id(&id)?;
    let device = s.control.devices.get(&actor, &id).await?;
    let uptime = s.control.devices.uptime(&actor, &id).await?;
    Ok(Json(DeviceDetail { device, uptime }))
}

/// Rename a device or change its price (within the model's bounds).
#[utoipa::path(patch, path = "/v1/devices/{id}", tag = "providers", request_body = DeviceUpdate,
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update_device(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(update): ApiJson<DeviceUpdate>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(
        s.control
            .devices
            .update(&actor, &device_id(&id)?, update)
            .await?,
    ))
}

/// Retire a device for good; its token stops working. Retiring twice changes nothing.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "providers",
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn retire_device(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(
        s.control.devices.retire(&actor, &device_id(&id)?).await?,
    ))
}

/// Every status change of a device, oldest first.
#[utoipa::path(get, path = "/v1/devices/{id}/events", tag = "providers", params(ListParams),
    responses((status = 200, body = Page<DeviceEvent>), (status = 404, body = Problem)))]
async fn device_events(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<DeviceEvent>>> {
    Ok(Json(
        s.control
            .devices
            .events(&actor, &device_id(&id)?, &q.page()?)
            .await?,
    ))
}

/// Issue a new agent token; the old one stops working at once. Shown only in this answer.
#[utoipa::path(post, path = "/v1/devices/{id}/token", tag = "providers",
    responses((status = 200, body = CreatedDevice), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn rotate_token(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CreatedDevice>> {
    Ok(Json(
        s.control
            .devices
            .rotate_token(&actor, &device_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    /// Shown in the device's status and events.
    reason: Option<String>,
}

/// Take a device out of placement; nodes on it keep running.
#[utoipa::path(post, path = "/v1/devices/{id}/maintenance", tag = "providers", request_body = MaintenanceBody,
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn start_maintenance(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<DeviceView>> {
    // The body is optional: an empty one means no reason.
    let reason = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<MaintenanceBody>(&body)
            .map_err(|e| crate::error::ApiError::MalformedJson(e.to_string()))?
            .reason
    };
    Ok(Json(
        s.control
            .devices
            .set_maintenance(&actor, &device_id(&id)?, true, reason.as_deref())
            .await?,
    ))
}

/// Bring a device back from maintenance.
#[utoipa::path(delete, path = "/v1/devices/{id}/maintenance", tag = "providers",
    responses((status = 200, body = DeviceView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn end_maintenance(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(
        s.control
            .devices
            .set_maintenance(&actor, &device_id(&id)?, false, None)
            .await?,
    ))
}

/// Platform operators only: suspend a device of any organisation.
#[utoipa::path(post, path = "/v1/admin/devices/{id}/suspension", tag = "providers", request_body = MaintenanceBody,
    responses((status = 200, body = DeviceView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The device is retired")))]
async fn suspend(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<MaintenanceBody>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(
        s.control
            .devices
            .suspend(&actor, &device_id(&id)?, true, body.reason.as_deref())
            .await?,
    ))
}

/// Platform operators only: lift a suspension.
#[utoipa::path(delete, path = "/v1/admin/devices/{id}/suspension", tag = "providers",
    responses((status = 200, body = DeviceView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The device is retired")))]
async fn unsuspend(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(
        s.control
            .devices
            .suspend(&actor, &device_id(&id)?, false, None)
            .await?,
    ))
}

/// The organisation's stake: active, required by its devices, free, and every stake.
#[utoipa::path(get, path = "/v1/stake", tag = "providers",
    responses((status = 200, body = StakeSummary)))]
async fn stake_summary(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<StakeSummary>> {
    Ok(Json(s.control.stake.summary(&actor).await?))
}

/// Stake $IO from the organisation's balance; verified devices it covers are listed at once.
#[utoipa::path(post, path = "/v1/stake", tag = "providers", request_body = StakeRequest,
    responses((status = 201, body = StakeView), (status = 402, body = Problem), (status = 422, body = Problem)))]
async fn stake(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<StakeRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.control.stake.stake(&actor, req).await?),
    ))
}

/// Start a stake's 14-day cooldown, if the rest still covers the listed devices.
#[utoipa::path(post, path = "/v1/stake/{id}/unstake", tag = "providers",
    responses((status = 200, body = StakeView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn unstake(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StakeView>> {
    Ok(Json(s.control.stake.unstake(&actor, &id).await?))
}

/// Return a stake to the available balance once its cooldown is over.
#[utoipa::path(post, path = "/v1/stake/{id}/withdraw", tag = "providers",
    responses((status = 200, body = StakeView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn withdraw(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StakeView>> {
    Ok(Json(s.control.stake.withdraw(&actor, &id).await?))
}
