//! `/v1/explorer`: IO Explorer over REST, public (no login) and read-only. Every answer carries
//! an `ETag` and a `Cache-Control` that lets a shared cache (a CDN in front) keep it for a
//! little while; a request whose `If-None-Match` names the current answer gets 304 and no body.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iocloud_control::Page;
use iocloud_control::costaking::CostakeOffer;
use iocloud_control::explorer::{
    CaseFilter, DeviceFilter, EmissionSchedule, ExplorerBlock, ExplorerBlockDetail, ExplorerCase,
    ExplorerDevice, ExplorerDeviceDetail, HourOutcome, NetworkHour, NetworkNow, NetworkPeriod,
    Payment, Period, Rental, StakingNow,
};
use iocloud_control::page::PageRequest;
use iocloud_control::rewards::Supply;
use iocloud_db::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(network))
        .routes(routes!(network_hours))
        .routes(routes!(network_history))
        .routes(routes!(devices))
        .routes(routes!(device))
        .routes(routes!(device_proofs))
        .routes(routes!(blocks))
        .routes(routes!(block))
        .routes(routes!(emission))
        .routes(routes!(staking))
        .routes(routes!(slashing))
        .routes(routes!(offers))
        .routes(routes!(rentals))
        .routes(routes!(payments))
        .routes(routes!(supply))
}

/// How long a shared cache may keep an answer: the network moves by the heartbeat, blocks by
/// the hour.
pub(super) const LIVE_SECS: u32 = 15;
const BLOCK_SECS: u32 = 60;

/// `value` as JSON with its `ETag` and `Cache-Control`, or 304 when the client has it.
pub(super) fn cached<T: Serialize>(
    headers: &HeaderMap,
    value: &T,
    max_age: u32,
) -> ApiResult<Response> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::from(iocloud_control::Error::Internal(e.to_string())))?;
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let control = format!("public, max-age={max_age}");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from(body));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    };
    let h = res.headers_mut();
    if let (Ok(etag), Ok(control)) = (
        HeaderValue::from_str(&etag),
        HeaderValue::from_str(&control),
    ) {
        h.insert(header::ETAG, etag);
        h.insert(header::CACHE_CONTROL, control);
    }
    Ok(res)
}

/// The network now: devices and GPUs on the market, hired and idle, by model and by region
/// (with each region's coordinates), countries, utilisation.
#[utoipa::path(get, path = "/v1/explorer/network", tag = "explorer", security(()),
    responses((status = 200, body = NetworkNow), (status = 304)))]
async fn network(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    cached(&headers, &s.control.explorer.network().await?, LIVE_SECS)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HoursParams {
    /// Hours back from now, 1 to 2160 (90 days; 168 by default).
    hours: Option<i64>,
}

/// The network hour by hour, oldest first, as each hour's block saw it: devices and GPUs
/// listed, and those serving a rental.
#[utoipa::path(get, path = "/v1/explorer/network/hours", tag = "explorer", security(()), params(HoursParams),
    responses((status = 200, body = Vec<NetworkHour>), (status = 304), (status = 422, body = Problem)))]
async fn network_hours(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<HoursParams>,
) -> ApiResult<Response> {
    let rows = s
        .control
        .explorer
        .network_hours(q.hours.unwrap_or(168))
        .await?;
    cached(&headers, &rows, BLOCK_SECS)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HistoryParams {
    /// `day` (the default) or `month`.
    period: Option<String>,
    /// How many, back from now: 1 to 366 days (30 by default) or 1 to 60 months (12).
    count: Option<i64>,
}

/// The network by UTC day or calendar month, oldest first, summed from the hourly blocks:
/// devices and GPUs listed on average, GPU-hours rented, utilisation, $IO minted, paid and
/// staked.
#[utoipa::path(get, path = "/v1/explorer/network/history", tag = "explorer", security(()), params(HistoryParams),
    responses((status = 200, body = Vec<NetworkPeriod>), (status = 304), (status = 422, body = Problem)))]
async fn network_history(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> ApiResult<Response> {
    let period = match q.period.as_deref() {
        None => Period::Day,
        Some(p) => Period::parse(p)
            .ok_or_else(|| iocloud_control::Error::validation("period", "`day` or `month`"))?,
    };
    let count = q
        .count
        .unwrap_or(if period == Period::Day { 30 } else { 12 });
    let rows = s.control.explorer.network_history(period, count).await?;
    cached(&headers, &rows, BLOCK_SECS)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeviceParams {
    /// A model of the catalog, or `cpu` for CPU-only devices.
    gpu_model: Option<String>,
    region: Option<String>,
    /// `available`, `busy`, `offline`, `maintenance` or `suspended`.
    status: Option<String>,
    /// Serving a rental now (or not).
    hired: Option<bool>,
    /// 0 to 1.
    min_reliability: Option<f64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The device directory, by id: verified devices not retired, their public fields only.
#[utoipa::path(get, path = "/v1/explorer/devices", tag = "explorer", security(()), params(DeviceParams),
    responses((status = 200, body = Page<ExplorerDevice>), (status = 304), (status = 422, body = Problem)))]
async fn devices(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<DeviceParams>,
) -> ApiResult<Response> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = DeviceFilter {
        gpu_model: q.gpu_model,
        region: q.region,
        status: q.status,
        hired: q.hired,
        min_reliability: q.min_reliability,
    };
    let found = s.control.explorer.devices(&filter, &page).await?;
    cached(&headers, &found, LIVE_SECS)
}

/// A device's public page: its public fields, the stake it needs and the co-stake it has,
/// uptime by day over 30 days, its hourly proofs and its blocks over 48 hours.
#[utoipa::path(get, path = "/v1/explorer/devices/{id}", tag = "explorer", security(()),
    responses((status = 200, body = ExplorerDeviceDetail), (status = 304), (status = 404, body = Problem)))]
async fn device(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    cached(&headers, &s.control.explorer.device(&id).await?, LIVE_SECS)
}

/// A device's verification history: its hourly proofs, newest first (`passed`,
/// `wrong_answer`, `late`, `vram_short` or `unanswered`).
#[utoipa::path(get, path = "/v1/explorer/devices/{id}/proofs", tag = "explorer", security(()), params(crate::extract::ListParams),
    responses((status = 200, body = Page<HourOutcome>), (status = 304), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn device_proofs(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<crate::extract::ListParams>,
) -> ApiResult<Response> {
    let found = s.control.explorer.device_proofs(&id, &q.page()?).await?;
    cached(&headers, &found, LIVE_SECS)
}

/// The hourly reward blocks, newest first.
#[utoipa::path(get, path = "/v1/explorer/blocks", tag = "explorer", security(()), params(crate::extract::ListParams),
    responses((status = 200, body = Page<ExplorerBlock>), (status = 304), (status = 422, body = Problem)))]
async fn blocks(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<crate::extract::ListParams>,
) -> ApiResult<Response> {
    let found = s.control.explorer.blocks(&q.page()?).await?;
    cached(&headers, &found, BLOCK_SECS)
}

/// One block (`hour`: its start, e.g. `2026-12-06T14:00:00Z`): its figures, its ineligible
/// devices by reason and its top earners.
#[utoipa::path(get, path = "/v1/explorer/blocks/{hour}", tag = "explorer", security(()),
    responses((status = 200, body = ExplorerBlockDetail), (status = 304), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn block(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(hour): ApiPath<String>,
) -> ApiResult<Response> {
    let hour = Timestamp::parse_rfc3339(hour.trim()).ok_or_else(|| {
        iocloud_control::Error::validation("hour", "an RFC 3339 time, e.g. 2026-12-06T14:00:00Z")
    })?;
    cached(&headers, &s.control.explorer.block(hour).await?, BLOCK_SECS)
}

/// The emission schedule to the cap, year by year from launch.
#[utoipa::path(get, path = "/v1/explorer/emission", tag = "explorer", security(()),
    responses((status = 200, body = EmissionSchedule), (status = 304)))]
async fn emission(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    cached(
        &headers,
        &s.control.explorer.emission_schedule(),
        BLOCK_SECS,
    )
}

/// Staking and slashing now: $IO staked, unbonding and co-staked, the stake listed devices
/// are bonded with by model, open co-staking offers, slashing cases by state, escrow and burns.
#[utoipa::path(get, path = "/v1/explorer/staking", tag = "explorer", security(()),
    responses((status = 200, body = StakingNow), (status = 304)))]
async fn staking(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    cached(&headers, &s.control.explorer.staking().await?, LIVE_SECS)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CaseParams {
    /// `open`, `appealed`, `upheld`, `overturned` or `burned`.
    status: Option<String>,
    /// `failed_proofs`, `hardware_mismatch`, `abandoned_rental`, `idle_rule` or `operator`.
    rule: Option<String>,
    /// One device's cases.
    device_id: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The slashing cases, newest first, redacted: the device's public fields, the rule, the $IO,
/// the kinds of evidence, the dates and the outcome; never the words of the case.
#[utoipa::path(get, path = "/v1/explorer/slashing", tag = "explorer", security(()), params(CaseParams),
    responses((status = 200, body = Page<ExplorerCase>), (status = 304), (status = 422, body = Problem)))]
async fn slashing(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CaseParams>,
) -> ApiResult<Response> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = CaseFilter {
        status: q.status,
        rule: q.rule,
        device_id: q.device_id,
    };
    let found = s.control.explorer.cases(&filter, &page).await?;
    cached(&headers, &found, LIVE_SECS)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OfferParams {
    /// Only offers for devices of this GPU model, e.g. `h100-sxm`.
    model: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The co-staking offers open now, oldest first: the device's public fields and the terms.
#[utoipa::path(get, path = "/v1/explorer/costaking/offers", tag = "explorer", security(()), params(OfferParams),
    responses((status = 200, body = Page<CostakeOffer>), (status = 304), (status = 422, body = Problem)))]
async fn offers(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<OfferParams>,
) -> ApiResult<Response> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let found = s
        .control
        .explorer
        .open_offers(q.model.as_deref(), &page)
        .await?;
    cached(&headers, &found, LIVE_SECS)
}

/// The bookings ledger's rentals, newest first: one device for one node of a cluster, its
/// time, GPU-hours, model, region and amount. Never who rented it.
#[utoipa::path(get, path = "/v1/explorer/rentals", tag = "explorer", security(()), params(crate::extract::ListParams),
    responses((status = 200, body = Page<Rental>), (status = 304), (status = 422, body = Problem)))]
async fn rentals(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<crate::extract::ListParams>,
) -> ApiResult<Response> {
    let found = s.control.explorer.rentals(&q.page()?).await?;
    cached(&headers, &found, LIVE_SECS)
}

/// The bookings ledger's payments, newest first: card top-ups and Solana deposits in, payouts
/// out, with the amount and, on chain, the signature. Never who paid or was paid.
#[utoipa::path(get, path = "/v1/explorer/payments", tag = "explorer", security(()), params(crate::extract::ListParams),
    responses((status = 200, body = Page<Payment>), (status = 304), (status = 422, body = Problem)))]
async fn payments(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<crate::extract::ListParams>,
) -> ApiResult<Response> {
    let found = s.control.explorer.payments(&q.page()?).await?;
    cached(&headers, &found, LIVE_SECS)
}

/// The $IO supply now, as `/v1/supply` answers it, with the explorer's caching.
#[utoipa::path(get, path = "/v1/explorer/supply", tag = "explorer", security(()),
    responses((status = 200, body = Supply), (status = 304)))]
async fn supply(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    cached(&headers, &s.control.rewards.supply(None).await?, LIVE_SECS)
}
