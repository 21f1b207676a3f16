//! Payouts on chain and the wallets they go to (proved by signing a challenge with the
//! wallet's key); operators approve the large ones.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::payouts::{
    DecisionRequest, Payout, PayoutRequest, Wallet, WalletChallenge, WalletChallengeRequest,
    WalletRequest,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(wallet_challenge))
        .routes(routes!(list_wallets, add_wallet))
        .routes(routes!(remove_wallet))
        .routes(routes!(default_wallet))
        .routes(routes!(list_payouts, request_payout))
        .routes(routes!(get_payout))
        .routes(routes!(cancel_payout))
        .routes(routes!(all_payouts))
        .routes(routes!(approve_payout))
        .routes(routes!(reject_payout))
}

/// Ask for a payout of earnings to a wallet (role `billing` or owner). The earnings move to
/// `payout_pending` at once and the transfer follows: `ready`, or `awaiting_approval` above the
/// approval threshold. More than the earnings: 402 `insufficient_funds`; under the minimum: 422
/// `payout_below_minimum`; over the day's limit: 409 `payout_limit_exceeded`; no wallet: 409
/// `invalid_state`.
#[utoipa::path(post, path = "/v1/payouts", tag = "payouts", request_body = PayoutRequest,
    responses((status = 201, body = Payout), (status = 402, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
async fn request_payout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<PayoutRequest>,
) -> ApiResult<impl IntoResponse> {
    let payout = s.control.payouts.request_payout(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(payout)))
}

/// The organisation's payouts, oldest first.
#[utoipa::path(get, path = "/v1/payouts", tag = "payouts", params(ListParams),
    responses((status = 200, body = Page<Payout>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_payouts(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Payout>>> {
    Ok(Json(s.control.payouts.payouts(&actor, &q.page()?).await?))
}

/// One payout and where it stands.
#[utoipa::path(get, path = "/v1/payouts/{id}", tag = "payouts",
    responses((status = 200, body = Payout), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_payout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Payout>> {
    Ok(Json(s.control.payouts.payout(&actor, &id).await?))
}

/// Take back a payout not signed yet (awaiting approval, ready or queued): its earnings come
/// back. Signed already: 409 `invalid_state`.
#[utoipa::path(post, path = "/v1/payouts/{id}/cancel", tag = "payouts",
    responses((status = 200, body = Payout), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn cancel_payout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Payout>> {
    Ok(Json(s.control.payouts.cancel_payout(&actor, &id).await?))
}

/// `?status=…` with the page's cursor and limit.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AdminPayoutParams {
    /// Only payouts in this status (`awaiting_approval`, `queued`, …).
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Every organisation's payouts (platform operators only).
#[utoipa::path(get, path = "/v1/admin/payouts", tag = "payouts", params(AdminPayoutParams),
    responses((status = 200, body = Page<Payout>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn all_payouts(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<AdminPayoutParams>,
) -> ApiResult<Json<Page<Payout>>> {
    let page = ListParams {
        cursor: q.cursor,
        limit: q.limit,
    }
    .page()?;
    Ok(Json(
        s.control
            .payouts
            .all_payouts(&actor, q.status.as_deref(), &page)
            .await?,
    ))
}

/// Approve a payout waiting for approval: the sender pays it (platform operators only).
#[utoipa::path(post, path = "/v1/admin/payouts/{id}/approve", tag = "payouts", request_body = DecisionRequest,
    responses((status = 200, body = Payout), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn approve_payout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(decision): ApiJson<DecisionRequest>,
) -> ApiResult<Json<Payout>> {
    Ok(Json(
        s.control
            .payouts
            .approve_payout(&actor, &id, &decision)
            .await?,
    ))
}

/// Refuse a payout waiting for approval, saying why: its earnings come back (platform
/// operators only).
#[utoipa::path(post, path = "/v1/admin/payouts/{id}/reject", tag = "payouts", request_body = DecisionRequest,
    responses((status = 200, body = Payout), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn reject_payout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(decision): ApiJson<DecisionRequest>,
) -> ApiResult<Json<Payout>> {
    Ok(Json(
        s.control
            .payouts
            .reject_payout(&actor, &id, &decision)
            .await?,
    ))
}

/// A challenge to sign with a wallet's key (ed25519, as wallets sign messages), good once for
/// five minutes (role `billing` or owner).
#[utoipa::path(post, path = "/v1/payouts/wallets/challenges", tag = "payouts", request_body = WalletChallengeRequest,
    responses((status = 201, body = WalletChallenge), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn wallet_challenge(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<WalletChallengeRequest>,
) -> ApiResult<impl IntoResponse> {
    let challenge = s.control.payouts.wallet_challenge(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(challenge)))
}

/// Add the wallet a signed challenge proves; the first is the default. A signature that does
/// not verify answers 422 and spends the challenge; a challenge expired, used or another
/// organisation's answers 409 `no_challenge`.
#[utoipa::path(post, path = "/v1/payouts/wallets", tag = "payouts", request_body = WalletRequest,
    responses((status = 201, body = Wallet), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
async fn add_wallet(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<WalletRequest>,
) -> ApiResult<impl IntoResponse> {
    let wallet = s.control.payouts.add_wallet(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(wallet)))
}

/// The organisation's payout wallets.
#[utoipa::path(get, path = "/v1/payouts/wallets", tag = "payouts",
    responses((status = 200, body = Vec<Wallet>), (status = 403, body = Problem)))]
async fn list_wallets(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<Wallet>>> {
    Ok(Json(s.control.payouts.wallets(&actor).await?))
}

/// Remove a payout wallet; if it was the default, the newest left becomes the default.
#[utoipa::path(delete, path = "/v1/payouts/wallets/{id}", tag = "payouts",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_wallet(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.control.payouts.remove_wallet(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a payout wallet the default.
#[utoipa::path(post, path = "/v1/payouts/wallets/{id}/default", tag = "payouts",
    responses((status = 200, body = Wallet), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn default_wallet(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Wallet>> {
    Ok(Json(
        s.control.payouts.set_default_wallet(&actor, &id).await?,
    ))
}
