//! `/v1/slashing`: the slashing cases against the organisation's devices, with their evidence
//! and steps, and the provider's appeal; `/v1/admin/slashing`: operators open and decide cases.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::slashing::{AppealRequest, DecideRequest, OpenCase, SlashingCase};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cases))
        .routes(routes!(get_case))
        .routes(routes!(appeal_case))
        .routes(routes!(all_cases, open_case))
        .routes(routes!(get_any_case))
        .routes(routes!(decide_case))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CaseParams {
    /// Only cases in this status: `open`, `appealed`, `upheld`, `overturned` or `burned`.
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

impl CaseParams {
    fn page(&self) -> ApiResult<iocloud_control::PageRequest> {
        ListParams {
            cursor: self.cursor.clone(),
            limit: self.limit,
        }
        .page()
    }
}

/// The slashing cases against the organisation's devices, oldest first, each with its
/// evidence and every step.
#[utoipa::path(get, path = "/v1/slashing/cases", tag = "slashing", params(CaseParams),
    responses((status = 200, body = Page<SlashingCase>), (status = 422, body = Problem)))]
async fn list_cases(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<CaseParams>,
) -> ApiResult<Json<Page<SlashingCase>>> {
    let page = q.page()?;
    Ok(Json(
        s.control
            .slashing
            .cases(&actor, q.status.as_deref(), &page)
            .await?,
    ))
}

/// One case against a device of the organisation.
#[utoipa::path(get, path = "/v1/slashing/cases/{id}", tag = "slashing",
    responses((status = 200, body = SlashingCase), (status = 404, body = Problem)))]
async fn get_case(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SlashingCase>> {
    Ok(Json(s.control.slashing.case(&actor, &id).await?))
}

/// Appeal an open case within its window (30 days from its opening), with a statement; an
/// operator decides. After the window: 409 `appeal_window_closed`.
#[utoipa::path(post, path = "/v1/slashing/cases/{id}/appeal", tag = "slashing", request_body = AppealRequest,
    responses((status = 200, body = SlashingCase), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "appeal_window_closed or invalid_state"), (status = 422, body = Problem)))]
async fn appeal_case(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<AppealRequest>,
) -> ApiResult<Json<SlashingCase>> {
    Ok(Json(s.control.slashing.appeal(&actor, &id, &b).await?))
}

/// Every slashing case (platform operators only).
#[utoipa::path(get, path = "/v1/admin/slashing/cases", tag = "slashing", params(CaseParams),
    responses((status = 200, body = Page<SlashingCase>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn all_cases(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<CaseParams>,
) -> ApiResult<Json<Page<SlashingCase>>> {
    let page = q.page()?;
    Ok(Json(
        s.control
            .slashing
            .all_cases(&actor, q.status.as_deref(), &page)
            .await?,
    ))
}

/// Open a case against a device (platform operators only): its $IO moves into escrow at once
/// and the device stops earning. More than the provider holds: 409 `slash_exceeds_holdings`.
#[utoipa::path(post, path = "/v1/admin/slashing/cases", tag = "slashing", request_body = OpenCase,
    responses((status = 201, body = SlashingCase), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "slash_exceeds_holdings"), (status = 422, body = Problem)))]
async fn open_case(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<OpenCase>,
) -> ApiResult<impl IntoResponse> {
    let case = s.control.slashing.open(&actor, &b).await?;
    Ok((StatusCode::CREATED, Json(case)))
}

/// Any case (platform operators only).
#[utoipa::path(get, path = "/v1/admin/slashing/cases/{id}", tag = "slashing",
    responses((status = 200, body = SlashingCase), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_any_case(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SlashingCase>> {
    Ok(Json(
        s.control.slashing.case_for_operator(&actor, &id).await?,
    ))
}

/// Decide an open or appealed case (platform operators only): `uphold` (burned once the
/// appeal window has ended) or `overturn` (the $IO returns now).
#[utoipa::path(post, path = "/v1/admin/slashing/cases/{id}/decide", tag = "slashing", request_body = DecideRequest,
    responses((status = 200, body = SlashingCase), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "invalid_state: decided already"), (status = 422, body = Problem)))]
async fn decide_case(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<DecideRequest>,
) -> ApiResult<Json<SlashingCase>> {
    Ok(Json(s.control.slashing.decide(&actor, &id, &b).await?))
}
