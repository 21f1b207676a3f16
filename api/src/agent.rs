//! The agent API under `/agent/v1`, authenticated by a device token (`iodt_…`). Kept apart
//! from `/v1`: agents are machines, not members, so these routes are neither audited nor
//! idempotent by key, and they are rate-limited per device rather than per address.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use iocloud_control::Error as DomainError;
use iocloud_control::providers::agent::{
    Assignment, ChallengeAnswer, DeviceAuth, Heartbeat, HeartbeatAnswer, Hello, HelloAnswer,
    NodeReport, NodeTestAnswer, NodeTestResult, ProofAnswer, ProofChallenge, ProofResult,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::middleware::client::bearer;
use crate::middleware::rate_limit;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(hello))
        .routes(routes!(answer))
        .routes(routes!(heartbeat))
        .routes(routes!(proof))
        .routes(routes!(answer_proof))
        .routes(routes!(assignments))
        .routes(routes!(node_status))
        .routes(routes!(node_test))
}

async fn device(s: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<Arc<DeviceAuth>> {
    let token = match bearer(headers) {
        Some(Ok(t)) => t,
        Some(Err(())) => return Err(ApiError::Domain(DomainError::InvalidToken)),
        None => return Err(ApiError::Domain(DomainError::Unauthenticated)),
    };
    let device = s.control.agents.authenticate(token, id).await?;
    let bucket = format!("rl:dev:{}", device.id);
    rate_limit::take(s, &bucket, s.config.rate_limit_per_device)
        .await
        .map_err(rate_limit::refusal)?;
    Ok(device)
}

/// The agent starts: records its version; a device still to be verified gets its challenge.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/hello", tag = "agent", request_body = Hello,
    responses((status = 200, body = HelloAnswer), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn hello(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Hello>,
) -> ApiResult<Json<HelloAnswer>> {
    let d = device(&s, &headers, &id).await?;
    Ok(Json(s.control.agents.hello(&d, body).await?))
}

/// Answer the verification challenge.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/challenge", tag = "agent", request_body = ChallengeAnswer,
    responses((status = 200, body = HelloAnswer), (status = 409, body = Problem)))]
async fn answer(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ChallengeAnswer>,
) -> ApiResult<Json<HelloAnswer>> {
    let d = device(&s, &headers, &id).await?;
    Ok(Json(s.control.agents.answer(&d, body).await?))
}

/// Free GPUs, utilisation (and, from newer agents, the CPU's and the nodes running),
/// temperature and agent version; accepted (202) into a buffer that is written in batches.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/heartbeat", tag = "agent", request_body = Heartbeat,
    responses((status = 202, body = HeartbeatAnswer), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn heartbeat(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Heartbeat>,
) -> ApiResult<impl IntoResponse> {
    let d = device(&s, &headers, &id).await?;
    let answer = s.control.agents.heartbeat(&d, body).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// This hour's proof, for a listed device that serves no rental: ask once an hour and answer
/// before its deadline. Asking again in the hour gives the same proof; a device that is not
/// listed, or serves a rental, answers 409 `proof_not_needed`, and one whose proof is answered
/// 409 `proof_answered`.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/proof", tag = "agent",
    responses((status = 200, body = ProofChallenge), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn proof(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ProofChallenge>> {
    let d = device(&s, &headers, &id).await?;
    Ok(Json(s.control.agents.proof(&d).await?))
}

/// Answer this hour's proof, with the VRAM each GPU measured: `passed`, `wrong_answer`,
/// `late` or `vram_short` (with what was wrong). Answered once: again is 409 `proof_answered`.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/proof/answer", tag = "agent", request_body = ProofAnswer,
    responses((status = 200, body = ProofResult), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn answer_proof(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ProofAnswer>,
) -> ApiResult<Json<ProofResult>> {
    let d = device(&s, &headers, &id).await?;
    Ok(Json(s.control.agents.answer_proof(&d, body).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Seconds to wait for an assignment, 0 to 25 (default 25).
    #[param(minimum = 0, maximum = 25)]
    wait_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Assignments {
    items: Vec<Assignment>,
}

/// Nodes to bring up or tear down; waits (long-polls) until there is one or the wait ends.
#[utoipa::path(get, path = "/agent/v1/devices/{id}/assignments", tag = "agent", params(WaitParams),
    responses((status = 200, body = Assignments)))]
async fn assignments(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitParams>,
) -> ApiResult<Json<Assignments>> {
    let wait = q.wait_secs.unwrap_or(25);
    if wait > 25 {
        return Err(DomainError::validation("wait_secs", "must be between 0 and 25").into());
    }
    let d = device(&s, &headers, &id).await?;
    // A stopping replica answers a waiting poll at once, empty (assignments are only read
    // here): the agent polls again, at another replica.
    let items = tokio::select! {
        found = s.control.agents.assignments(&d, Duration::from_secs(wait)) => found?,
        _ = s.drain.started() => Vec::new(),
    };
    Ok(Json(Assignments { items }))
}

/// How a node is doing: `starting`, `ready` (with its endpoints), `failed` (with the
/// reason) or `released`.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/nodes/{node}/status", tag = "agent", request_body = NodeReport,
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn node_status(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, node)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<NodeReport>,
) -> ApiResult<StatusCode> {
    let d = device(&s, &headers, &id).await?;
    s.control
        .agents
        .node_report(&d, &node, body, &s.control.clusters)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to a node's test (its bootstrap's `test`): the digest of the lanes' squarings,
/// the time it took and, for a node whose test names a `peer`, the link measured to it. The
/// outcome is `passed` (the node may report `ready`), or `wrong_answer`, `too_slow` or
/// `bandwidth_short`, which have failed the node. Answered once: the same answer again gets
/// the same result, another is 409 `node_test_answered`.
#[utoipa::path(post, path = "/agent/v1/devices/{id}/nodes/{node}/test", tag = "agent", request_body = NodeTestAnswer,
    responses((status = 200, body = NodeTestResult), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn node_test(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, node)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<NodeTestAnswer>,
) -> ApiResult<Json<NodeTestResult>> {
    let d = device(&s, &headers, &id).await?;
    let result = s
        .control
        .agents
        .answer_node_test(&d, &node, body, &s.control.clusters)
        .await?;
    Ok(Json(result))
}
