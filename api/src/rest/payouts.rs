//! Payout wallets: proved by signing a challenge with the wallet's key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::payouts::{Wallet, WalletChallenge, WalletChallengeRequest, WalletRequest};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(wallet_challenge))
        .routes(routes!(list_wallets, add_wallet))
        .routes(routes!(remove_wallet))
        .routes(routes!(default_wallet))
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
