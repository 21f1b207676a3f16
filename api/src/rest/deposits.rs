//! Deposits on Solana: intents (Solana Pay transfer requests) and their QR codes, and the
//! transfers nobody's reference matched, which platform operators assign.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::deposits::{AssignRequest, ChainDeposit, DepositIntent, DepositRequest};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deposit, list_deposits))
        .routes(routes!(get_deposit))
        .routes(routes!(deposit_qr))
        .routes(routes!(unmatched_deposits))
        .routes(routes!(assign_deposit))
}

/// Ask for a deposit in IOSD, USDC (credited as IOSD less a fee) or IO: a Solana Pay transfer
/// request to the treasury with a fresh reference key, credited once the payment is
/// finalized (role `billing` or owner).
#[utoipa::path(post, path = "/v1/billing/deposits", tag = "billing", request_body = DepositRequest,
    responses((status = 201, body = DepositIntent), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
async fn create_deposit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<DepositRequest>,
) -> ApiResult<impl IntoResponse> {
    let intent = s.control.deposits.create_deposit(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(intent)))
}

/// The organisation's deposit intents, oldest first.
#[utoipa::path(get, path = "/v1/billing/deposits", tag = "billing", params(ListParams),
    responses((status = 200, body = Page<DepositIntent>), (status = 403, body = Problem), (status = 503, body = Problem)))]
async fn list_deposits(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<DepositIntent>>> {
    Ok(Json(s.control.deposits.deposits(&actor, &q.page()?).await?))
}

/// One deposit intent and what arrived for it.
#[utoipa::path(get, path = "/v1/billing/deposits/{id}", tag = "billing",
    responses((status = 200, body = DepositIntent), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn get_deposit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DepositIntent>> {
    Ok(Json(s.control.deposits.deposit(&actor, &id).await?))
}

/// The deposit's transfer request as a QR code a wallet's camera reads.
#[utoipa::path(get, path = "/v1/billing/deposits/{id}/qr.svg", tag = "billing",
    responses((status = 200, description = "An SVG image", content_type = "image/svg+xml", body = String),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn deposit_qr(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let svg = s.control.deposits.deposit_qr(&actor, &id).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg))
}

/// Transfers into the treasury credited to nobody, and those that failed on chain (platform
/// operators only).
#[utoipa::path(get, path = "/v1/admin/chain-deposits", tag = "billing", params(ListParams),
    responses((status = 200, body = Page<ChainDeposit>), (status = 403, body = Problem), (status = 503, body = Problem)))]
async fn unmatched_deposits(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<ChainDeposit>>> {
    Ok(Json(
        s.control
            .deposits
            .unmatched_deposits(&actor, &q.page()?)
            .await?,
    ))
}

/// Credit an unmatched deposit (`cdp_…`) to an organisation, once
/// (platform operators only). Assigned already, failed on chain or not a token taken here:
/// 409 `invalid_state`.
#[utoipa::path(post, path = "/v1/admin/chain-deposits/{id}/assign", tag = "billing", request_body = AssignRequest,
    responses((status = 200, body = ChainDeposit), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 503, body = Problem)))]
async fn assign_deposit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<AssignRequest>,
) -> ApiResult<Json<ChainDeposit>> {
    Ok(Json(
        s.control
            .deposits
            .assign_deposit(&actor, &id, &request)
            .await?,
    ))
}
