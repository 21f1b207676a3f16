//! Clusters over REST: create, read, list, extend, terminate, their events (as a page or a
//! server-sent stream), and quota.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use iocloud_control::Page;
use iocloud_control::clusters::credentials::RequestOrigin;
use iocloud_control::clusters::{
    ApplyPlan, ApplyResult, ClusterCredentials, ClusterEvent, ClusterSpec, ClusterView, Extension,
    QuotaUpdate, QuotaView,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, PlacementProblem, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::middleware::client::{client_ip, request_id};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, delete_cluster, apply_cluster))
        .routes(routes!(extend_cluster))
        .routes(routes!(cluster_credentials))
        .routes(routes!(cluster_events))
        .routes(routes!(quota))
        .routes(routes!(set_quota))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClusterListParams {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    /// Only clusters in this status.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/v1/clusters", tag = "clusters", params(ClusterListParams),
    responses((status = 200, body = Page<ClusterView>), (status = 422, body = Problem)))]
async fn list_clusters(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ClusterListParams>,
) -> ApiResult<Json<Page<ClusterView>>> {
    let page = ListParams {
        cursor: q.cursor,
        limit: q.limit,
    }
    .page()?;
    Ok(Json(
        s.control
            .clusters
            .list(&actor, q.status.as_deref(), &page)
            .await?,
    ))
}

/// Create a cluster: placed, reserved (GPUs, quota and a hold for its whole duration) and
/// provisioning when this answers. Send an `Idempotency-Key` to retry safely. Refused with
/// nothing written: 422 (invalid, or `insufficient_capacity`), 403 `quota_exceeded`, 402
/// `insufficient_funds`, 409 `name_taken`.
#[utoipa::path(post, path = "/v1/clusters", tag = "clusters", request_body = ClusterSpec,
    responses((status = 201, body = ClusterView), (status = 402, body = Problem), (status = 403, body = PlacementProblem),
        (status = 404, body = Problem, description = "The `quote_id` names no quote of this organisation"),
        (status = 409, body = Problem), (status = 422, body = PlacementProblem)))]
async fn create_cluster(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(spec): ApiJson<ClusterSpec>,
) -> ApiResult<impl IntoResponse> {
    let cluster = s.control.clusters.create(&actor, &spec).await?;
    Ok((StatusCode::CREATED, Json(cluster)))
}

/// A cluster with its nodes, latest events and connection details (addresses, never
/// credentials: see `/v1/clusters/{id}/credentials`). `{id}` is a cluster id or a name (the
/// live cluster of that name, else the latest).
#[utoipa::path(get, path = "/v1/clusters/{id}", tag = "clusters",
    responses((status = 200, body = ClusterView), (status = 404, body = Problem)))]
async fn get_cluster(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ClusterView>> {
    Ok(Json(s.control.clusters.get(&actor, &id).await?))
}

/// A Kubernetes cluster's admin credentials: its kubeconfig and bearer token. Needs the right
/// to change clusters (owner, admin or member; a `write` key), unlike the cluster itself, and
/// every read is written to the audit log. 409 `no_credentials` for Ray and container clusters
/// and before the API server is up.
#[utoipa::path(get, path = "/v1/clusters/{id}/credentials", tag = "clusters",
    params(("id" = String, Path, description = "A cluster id, or the name of one")),
    responses((status = 200, body = ClusterCredentials), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cluster_credentials(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let origin = RequestOrigin {
        request_id: request_id(&req),
        ip: client_ip(&req, s.config.trust_forwarded_for).map(|ip| ip.to_string()),
    };
    let credentials = s.control.clusters.credentials(&actor, &id, &origin).await?;
    // A secret: no cache along the way may keep it.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(credentials)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionParams {
    /// Refuse with 409 unless the cluster is still at this version.
    pub resource_version: Option<i64>,
}

/// Terminate a cluster: nodes released, billing settled to the second, the rest of the hold
/// returned. Deleting an ended cluster answers it unchanged.
#[utoipa::path(delete, path = "/v1/clusters/{id}", tag = "clusters", params(VersionParams),
    responses((status = 200, body = ClusterView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_cluster(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionParams>,
) -> ApiResult<Json<ClusterView>> {
    Ok(Json(
        s.control
            .clusters
            .terminate(&actor, &id, q.resource_version)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyParams {
    /// Only say what would happen (the plan); change nothing.
    pub dry_run: Option<bool>,
    /// Refuse with 409 unless the live cluster is still at this version.
    pub resource_version: Option<i64>,
}

/// Declarative apply: make the cluster of this name (the path's `{id}` is the name) match the
/// spec. Creates it (201), updates it in place (200), replaces it (201: terminated, then
/// created) or changes nothing (200) when it already matches. With `dry_run=true` the answer
/// is the plan alone: the changes field by field, whether a replace is needed, the price.
#[utoipa::path(put, path = "/v1/clusters/{id}", tag = "clusters", params(ApplyParams), request_body = ClusterSpec,
    responses((status = 200, body = ApplyResult), (status = 201, body = ApplyResult), (status = 402, body = Problem),
        (status = 403, body = PlacementProblem),
        (status = 404, body = Problem, description = "The `quote_id` names no quote of this organisation"),
        (status = 409, body = Problem), (status = 422, body = PlacementProblem)))]
async fn apply_cluster(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ApplyParams>,
    ApiJson(spec): ApiJson<ClusterSpec>,
) -> ApiResult<Response> {
    if q.dry_run.unwrap_or(false) {
        let plan: ApplyPlan = s
            .control
            .clusters
            .plan_apply(&actor, &name, &spec, q.resource_version)
            .await?;
        return Ok(Json(plan).into_response());
    }
    let (made, result) = s
        .control
        .clusters
        .apply(&actor, &name, &spec, q.resource_version)
        .await?;
    let status = if made {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)).into_response())
}

/// Add hours to a cluster; its hold grows by the price of them (402 when the balance does not
/// cover it).
#[utoipa::path(post, path = "/v1/clusters/{id}/extend", tag = "clusters", request_body = Extension,
    responses((status = 200, body = ClusterView), (status = 402, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn extend_cluster(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(ext): ApiJson<Extension>,
) -> ApiResult<Json<ClusterView>> {
    Ok(Json(s.control.clusters.extend(&actor, &id, &ext).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events after this `seq` (0: from the first).
    pub after: Option<i64>,
    /// At most this many (1 to 1000, default 100); not with `follow`.
    pub limit: Option<i64>,
    /// Stream events as server-sent events until the cluster ends.
    pub follow: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    items: Vec<ClusterEvent>,
}

/// One server-sent event of a followed cluster (the stream's `id:`, `event:` and `data:` lines).
#[derive(Serialize, ToSchema)]
pub struct StreamedEvent {
    /// The event's `seq`: send it back as `Last-Event-ID` to resume after it.
    id: String,
    /// The event's `kind`.
    event: String,
    /// The event as JSON (a `ClusterEvent`).
    data: String,
}

/// A cluster's events, oldest first. With `follow=true`, a `text/event-stream` of every event
/// after `after` (or `Last-Event-ID`) and each new one as it happens, from any replica; the
/// stream ends after the cluster's final event.
#[utoipa::path(get, path = "/v1/clusters/{id}/events", tag = "clusters", params(EventParams),
    responses((status = 200, description = "The events; with `follow=true`, a stream of them",
        content((EventList = "application/json"), (StreamedEvent = "text/event-stream"))),
        (status = 404, body = Problem)))]
async fn cluster_events(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventParams>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = q.after.or(resumed).unwrap_or(0).max(0);
    if q.follow.unwrap_or(false) {
        let stream = s
            .control
            .clusters
            .follow_events(&actor, &id, after)
            .await?
            .map(|e| {
                let data = serde_json::to_string(&e).unwrap_or_default();
                Ok::<_, Infallible>(
                    Event::default()
                        .id(e.seq.to_string())
                        .event(e.kind.clone())
                        .data(data),
                )
            });
        // A stopping replica ends the stream; the follower resumes elsewhere from its
        // `Last-Event-ID`.
        return Ok(Sse::new(s.drain.cut(stream))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let items = s
        .control
        .clusters
        .list_events(&actor, &id, after, q.limit.unwrap_or(100))
        .await?;
    Ok(Json(EventList { items }).into_response())
}

/// The organisation's limits (GPUs in use, live clusters, spend per hour) and its use of them.
#[utoipa::path(get, path = "/v1/quota", tag = "clusters",
    responses((status = 200, body = QuotaView)))]
async fn quota(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<QuotaView>> {
    Ok(Json(s.control.clusters.quota(&actor).await?))
}

/// Set an organisation's limits (platform operators only).
#[utoipa::path(put, path = "/v1/admin/orgs/{id}/quota", tag = "clusters", request_body = QuotaUpdate,
    responses((status = 200, body = QuotaView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_quota(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(update): ApiJson<QuotaUpdate>,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(
        s.control.clusters.set_quota(&actor, &id, &update).await?,
    ))
}
