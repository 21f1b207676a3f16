//! `/v1/costaking`: providers offer the stake their devices need; organisations holding $IO
//! take offers, earn a share of the device's block rewards, and unstake after the term.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::costaking::{CostakeOffer, CostakePosition, NewOffer, TakeOffer};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(market, make_offer))
        .routes(routes!(my_offers))
        .routes(routes!(withdraw_offer))
        .routes(routes!(take_offer))
        .routes(routes!(list_positions))
        .routes(routes!(get_position))
        .routes(routes!(unstake_position))
        .routes(routes!(withdraw_position))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MarketParams {
    /// Only offers for devices of this GPU model, e.g. `h100-sxm`.
    model: Option<String>,
    /// Only devices at least this reliable, 0 to 1.
    min_reliability: Option<f64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// Open co-staking offers any organisation may take, oldest first, filtered by GPU model and
/// device reliability. Never the provider's name.
#[utoipa::path(get, path = "/v1/costaking/offers", tag = "costaking", params(MarketParams),
    responses((status = 200, body = Page<CostakeOffer>), (status = 422, body = Problem)))]
async fn market(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<MarketParams>,
) -> ApiResult<Json<Page<CostakeOffer>>> {
    let page = ListParams {
        cursor: q.cursor.clone(),
        limit: q.limit,
    }
    .page()?;
    Ok(Json(
        s.control
            .costaking
            .market(&actor, q.model.as_deref(), q.min_reliability, &page)
            .await?,
    ))
}

/// Offer the stake one of your devices needs (at most that), for a share of its block rewards
/// and a term. One live offer per device.
#[utoipa::path(post, path = "/v1/costaking/offers", tag = "costaking", request_body = NewOffer,
    responses((status = 201, body = CostakeOffer), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "invalid_state: the device has a live offer"), (status = 422, body = Problem)))]
async fn make_offer(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<NewOffer>,
) -> ApiResult<impl IntoResponse> {
    let offer = s.control.costaking.offer(&actor, &b).await?;
    Ok((StatusCode::CREATED, Json(offer)))
}

/// The organisation's own offers, oldest first.
#[utoipa::path(get, path = "/v1/costaking/my-offers", tag = "costaking", params(ListParams),
    responses((status = 200, body = Page<CostakeOffer>), (status = 403, body = Problem)))]
async fn my_offers(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<CostakeOffer>>> {
    Ok(Json(
        s.control.costaking.my_offers(&actor, &q.page()?).await?,
    ))
}

/// Withdraw an offer nobody has taken.
#[utoipa::path(post, path = "/v1/costaking/offers/{id}/withdraw", tag = "costaking",
    responses((status = 200, body = CostakeOffer), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn withdraw_offer(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CostakeOffer>> {
    Ok(Json(s.control.costaking.withdraw_offer(&actor, &id).await?))
}

/// Take an open offer (one co-staker per offer): the $IO moves from your balance into your
/// stake and backs the device. Taken already: 409 `offer_taken`; not enough $IO: 402.
#[utoipa::path(post, path = "/v1/costaking/offers/{id}/take", tag = "costaking", request_body = TakeOffer,
    responses((status = 201, body = CostakePosition), (status = 402, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "offer_taken or invalid_state"), (status = 422, body = Problem)))]
async fn take_offer(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<TakeOffer>,
) -> ApiResult<impl IntoResponse> {
    let position = s.control.costaking.take(&actor, &id, &b).await?;
    Ok((StatusCode::CREATED, Json(position)))
}

/// The organisation's co-stakes, oldest first, with what each earned.
#[utoipa::path(get, path = "/v1/costaking/positions", tag = "costaking", params(ListParams),
    responses((status = 200, body = Page<CostakePosition>), (status = 403, body = Problem)))]
async fn list_positions(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<CostakePosition>>> {
    Ok(Json(
        s.control.costaking.positions(&actor, &q.page()?).await?,
    ))
}

/// One of the organisation's co-stakes.
#[utoipa::path(get, path = "/v1/costaking/positions/{id}", tag = "costaking",
    responses((status = 200, body = CostakePosition), (status = 404, body = Problem)))]
async fn get_position(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CostakePosition>> {
    Ok(Json(s.control.costaking.position(&actor, &id).await?))
}

/// Start unstaking a co-stake whose term is over: 7 days' notice (it still backs the device
/// and earns), then the 14-day cooldown. In its term: 409 `costake_in_term`.
#[utoipa::path(post, path = "/v1/costaking/positions/{id}/unstake", tag = "costaking",
    responses((status = 200, body = CostakePosition), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn unstake_position(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CostakePosition>> {
    Ok(Json(s.control.costaking.unstake(&actor, &id).await?))
}

/// Move an unstaked co-stake's $IO back to your balance once its cooldown is over. Before:
/// 409 `stake_locked`.
#[utoipa::path(post, path = "/v1/costaking/positions/{id}/withdraw", tag = "costaking",
    responses((status = 200, body = CostakePosition), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn withdraw_position(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CostakePosition>> {
    Ok(Json(s.control.costaking.withdraw(&actor, &id).await?))
}
