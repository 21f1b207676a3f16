//! `/v1/governance`: proposals, their votes and the protocol parameters, readable by anyone
//! (like IO Explorer, with its caching); proposing and voting need an account, and
//! `/v1/admin/governance` lets operators veto a passed change during its timelock.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use iocloud_control::Page;
use iocloud_control::governance::{
    NewProposal, ParamsView, Proposal, VetoRequest, Vote, VoteRequest,
};
use iocloud_control::page::PageRequest;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::explorer::{LIVE_SECS, cached};
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, propose))
        .routes(routes!(one))
        .routes(routes!(votes))
        .routes(routes!(vote))
        .routes(routes!(veto))
        .routes(routes!(params))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProposalParams {
    /// `voting`, `passed`, `rejected`, `queued`, `vetoed` or `executed`.
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    limit: Option<u32>,
}

/// The proposals, newest first, each with its tally (live while voting).
#[utoipa::path(get, path = "/v1/governance/proposals", tag = "governance", security(()), params(ProposalParams),
    responses((status = 200, body = Page<Proposal>), (status = 304), (status = 422, body = Problem)))]
async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ProposalParams>,
) -> ApiResult<Response> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let found = s
        .control
        .governance
        .proposals(q.status.as_deref(), &page)
        .await?;
    cached(&headers, &found, LIVE_SECS)
}

/// Put a proposal to a seven-day vote: in words, and optionally a change of protocol
/// parameters within their ranges. The organisation needs the proposal stake (operators may
/// propose without): short of it, 409 `proposal_stake_short`. Voting weights are the stake
/// each organisation holds now.
#[utoipa::path(post, path = "/v1/governance/proposals", tag = "governance", request_body = NewProposal,
    responses((status = 201, body = Proposal), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "proposal_stake_short"), (status = 422, body = Problem)))]
async fn propose(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<NewProposal>,
) -> ApiResult<impl IntoResponse> {
    let p = s.control.governance.propose(&actor, &b).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// One proposal.
#[utoipa::path(get, path = "/v1/governance/proposals/{id}", tag = "governance", security(()),
    responses((status = 200, body = Proposal), (status = 304), (status = 404, body = Problem)))]
async fn one(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    cached(
        &headers,
        &s.control.governance.proposal(&id).await?,
        LIVE_SECS,
    )
}

/// A proposal's votes, each with its weight and its voter's pseudonym.
#[utoipa::path(get, path = "/v1/governance/proposals/{id}/votes", tag = "governance", security(()), params(ListParams),
    responses((status = 200, body = Page<Vote>), (status = 304), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn votes(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Response> {
    let found = s.control.governance.votes(&id, &q.page()?).await?;
    cached(&headers, &found, LIVE_SECS)
}

/// Cast the organisation's vote, or change it, until the close. Weighed by the stake the
/// organisation held when the vote opened: none, 409 `no_voting_weight`; after the close, 409
/// `voting_closed`.
#[utoipa::path(put, path = "/v1/governance/proposals/{id}/vote", tag = "governance", request_body = VoteRequest,
    responses((status = 200, body = Vote), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "voting_closed or no_voting_weight"), (status = 422, body = Problem)))]
async fn vote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<VoteRequest>,
) -> ApiResult<Json<Vote>> {
    Ok(Json(s.control.governance.vote(&actor, &id, &b).await?))
}

/// Veto a passed change during its timelock, saying why (platform operators only).
#[utoipa::path(post, path = "/v1/admin/governance/proposals/{id}/veto", tag = "governance", request_body = VetoRequest,
    responses((status = 200, body = Proposal), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "invalid_state: not waiting out a timelock"), (status = 422, body = Problem)))]
async fn veto(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<VetoRequest>,
) -> ApiResult<Json<Proposal>> {
    Ok(Json(s.control.governance.veto(&actor, &id, &b).await?))
}

/// The protocol parameters in force, their allowed ranges, and every version.
#[utoipa::path(get, path = "/v1/governance/params", tag = "governance", security(()),
    responses((status = 200, body = ParamsView), (status = 304)))]
async fn params(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    cached(&headers, &s.control.governance.params().await?, LIVE_SECS)
}
