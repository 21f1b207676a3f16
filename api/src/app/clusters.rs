//! Clusters in the console: the list (and its rows, refreshed in place), a cluster's page, its
//! live timeline as server-sent events of HTML, extending, terminating and the kubeconfig
//! download. Creating one, with its live quote, is in [`create`].

mod create;

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use iocloud_billing::{Currency, Money};
use iocloud_control::clusters::credentials::RequestOrigin;
use iocloud_control::clusters::{ClusterView, Extension};
use iocloud_control::{Actor, PageRequest};
use iocloud_db::Timestamp;
use iocloud_web::app::{ClusterItem, ClusterPage, ClustersView, EventItem, NodeItem};
use serde::Deserialize;

use super::session::{NoFields, Posted, Visitor};
use super::{html, show};
use crate::state::AppState;

/// Clusters a page of the list holds.
const PAGE: u32 = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/clusters", get(list).post(create::create))
        .route("/app/clusters/rows", get(rows))
        .route("/app/clusters/new", get(create::page))
        .route("/app/clusters/quote", get(create::quote))
        .route("/app/clusters/{id}", get(cluster))
        .route("/app/clusters/{id}/live", get(live))
        .route("/app/clusters/{id}/extend", post(extend))
        .route("/app/clusters/{id}/terminate", post(terminate))
        .route("/app/clusters/{id}/kubeconfig", get(kubeconfig))
}

async fn list_view(
    state: &AppState,
    actor: &Actor,
    q: &HashMap<String, String>,
) -> iocloud_control::Result<ClustersView> {
    let status = q.get("status").map(|s| s.trim()).unwrap_or("");
    let after = q.get("after").map(|s| s.trim()).unwrap_or("");
    let page = PageRequest::parse((!after.is_empty()).then_some(after), Some(PAGE))?;
    let found = state
        .control
        .clusters
        .list(actor, (!status.is_empty()).then_some(status), &page)
        .await?;
    Ok(ClustersView {
        items: found
            .items
            .into_iter()
            .map(|c| ClusterItem {
                id: c.id,
                name: c.name,
                kind: c.kind.as_str().to_string(),
                status: c.status.as_str().to_string(),
                gpus: c.gpus,
                price_per_hour: c.price_per_hour,
                currency: c.currency,
                created_at: c.created_at.to_rfc3339(),
                expires_at: c.expires_at.map(Timestamp::to_rfc3339),
            })
            .collect(),
        status: status.to_string(),
        next: found.next_cursor,
        after: after.to_string(),
    })
}

async fn list(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    show(
        &state,
        &v,
        StatusCode::OK,
        list_view(&state, &v.actor, &q),
        iocloud_web::app::clusters_page,
    )
    .await
}

/// The list's rows alone, for the page's refresh.
async fn rows(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match list_view(&state, &v.actor, &q).await {
        Ok(view) => v.answer(html(StatusCode::OK, iocloud_web::app::cluster_rows(&view))),
        Err(e) => super::failed(&v, e),
    }
}

fn usd_or(text: &str, currency: &str) -> Option<Money> {
    Money::parse(text, Currency::parse(currency)?).ok()
}

/// Whole hours and minutes, e.g. `3 h 05 min`.
fn hours_and_minutes(micros: i64) -> String {
    let minutes = micros.max(0) / 60_000_000;
    format!("{} h {:02} min", minutes / 60, minutes % 60)
}

pub(super) fn event_item(e: &iocloud_control::clusters::ClusterEvent) -> EventItem {
    EventItem {
        seq: e.seq,
        at: e.at.to_rfc3339(),
        kind: e.kind.clone(),
        status: e.status.as_str().to_string(),
        message: e.message.clone(),
    }
}

/// How to reach the cluster, line by line, from the connection the domain keeps.
fn connection_lines(c: &ClusterView) -> Vec<(String, String)> {
    let Some(conn) = &c.connection else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut put = |label: &str, key: &str| {
        if let Some(v) = conn
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
        {
            out.push((label.to_string(), v.to_string()));
        }
    };
    put("Ray address (ray.init)", "ray_address");
    put("Ray dashboard", "dashboard_url");
    put("Ray GCS", "gcs_address");
    put("Kubernetes API server", "api_server");
    if let Some(nodes) = conn.get("nodes").and_then(|n| n.as_array()) {
        for n in nodes {
            let id = n.get("node_id").and_then(|v| v.as_str()).unwrap_or("node");
            // The domain's command (with the identity file when one key is let in); a cluster
            // that ran before it was written gets one made here.
            let ssh_command = n.get("ssh_command").and_then(|v| v.as_str());
            if let Some(eps) = n.get("endpoints").and_then(|e| e.as_object()) {
                for (name, ep) in eps {
                    let ep = ep.as_str().map_or_else(|| ep.to_string(), str::to_string);
                    let line = match (name.as_str(), ssh_command) {
                        ("ssh", Some(command)) => command.to_string(),
                        ("ssh", None) => match ep.rsplit_once(':') {
                            Some((host, port)) => format!("ssh -p {port} root@{host}"),
                            None => format!("ssh root@{ep}"),
                        },
                        _ => ep,
                    };
                    out.push((format!("{id} {name}"), line));
                }
            }
        }
    }
    out
}

async fn page_view(
    state: &AppState,
    actor: &Actor,
    id: &str,
    error: Option<String>,
) -> iocloud_control::Result<ClusterPage> {
    let c = state.control.clusters.get(actor, id).await?;
    let now = Timestamp::now().micros();
    let live = c.status.is_live();
    let hold = match (&c.hold_id, live) {
        (Some(h), true) => state.control.billing.hold(actor, h).await.ok(),
        _ => None,
    };
    // Charged by the second from when it ran; settled exactly when it ends.
    let spent = match (c.running_at, usd_or(&c.price_per_hour, &c.currency)) {
        (Some(from), Some(rate)) if live => rate
            .mul_div(
                now - from.micros(),
                3_600_000_000,
                iocloud_billing::Rounding::Up,
            )
            .ok(),
        _ => None,
    };
    let held = hold
        .as_ref()
        .and_then(|h| Money::parse(&h.remaining, h.currency).ok());
    let refund_now = match (held, spent) {
        (Some(h), Some(s)) => h.checked_sub(s).ok().filter(|m| m.is_positive()),
        (Some(h), None) => Some(h),
        _ => None,
    };
    let kubeconfig = live
        && c.kind == iocloud_control::clusters::ClusterKind::Kubernetes
        && c.connection
            .as_ref()
            .and_then(|conn| conn.get("api_server"))
            .and_then(|s| s.as_str())
            .is_some_and(|s| !s.is_empty())
        && actor
            .authorize(iocloud_control::Action::ResourcesWrite)
            .is_ok();
    let mut events: Vec<EventItem> = c.events.iter().flatten().map(event_item).collect();
    events.reverse();
    Ok(ClusterPage {
        connection: connection_lines(&c),
        spec_yaml: serde_yaml::to_string(&c.spec).unwrap_or_default(),
        nodes: c
            .nodes
            .iter()
            .flatten()
            // While it lives, the nodes it has; once ended, every node it had.
            .filter(|n| n.current || !live)
            .map(|n| NodeItem {
                id: n.id.clone(),
                role: n.role.clone(),
                status: n.status.clone(),
                region: n.region.clone(),
                gpu_model: n.gpu_model.clone().unwrap_or_else(|| "CPU".into()),
                gpus: n.gpus,
                price_per_gpu_hour: n.price_per_gpu_hour.clone(),
                reason: n.reason.clone(),
            })
            .collect(),
        time_left: c
            .expires_at
            .filter(|_| live)
            .map(|e| hours_and_minutes(e.micros() - now)),
        held: held.map(Money::for_people),
        spent: spent.map(Money::for_people),
        refund_now: refund_now.map(Money::for_people),
        kubeconfig,
        events,
        live,
        followed: !c.status.is_final(),
        id: c.id,
        name: c.name,
        kind: c.kind.as_str().to_string(),
        status: c.status.as_str().to_string(),
        status_reason: c.status_reason,
        gpus: c.gpus,
        price_per_hour: c.price_per_hour,
        currency: c.currency,
        created_at: c.created_at.to_rfc3339(),
        running_at: c.running_at.map(Timestamp::to_rfc3339),
        expires_at: c.expires_at.map(Timestamp::to_rfc3339),
        terminated_at: c.terminated_at.map(Timestamp::to_rfc3339),
        error,
    })
}

async fn cluster(State(state): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    show(
        &state,
        &v,
        StatusCode::OK,
        page_view(&state, &v.actor, &id, None),
        iocloud_web::app::cluster_page,
    )
    .await
}

/// The cluster's events after `after`, each as a timeline line (`event`) followed by the
/// status it left (`status`); `ended` when the cluster has, so the page stops listening.
async fn live(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let resumed = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<i64>().ok());
    let after = resumed
        .or_else(|| q.get("after").and_then(|a| a.parse().ok()))
        .unwrap_or(0)
        .max(0);
    let stream = match state
        .control
        .clusters
        .follow_events(&v.actor, &id, after)
        .await
    {
        Ok(s) => s,
        Err(e) => return super::failed(&v, e),
    };
    let (actor, csrf) = (v.actor.clone(), v.csrf.clone());
    let drain = state.drain.clone();
    let frames = stream
        .then(move |e| {
            let (state, actor, csrf) = (state.clone(), actor.clone(), csrf.clone());
            async move {
                let mut frames = vec![
                    Event::default()
                        .id(e.seq.to_string())
                        .event("event")
                        .data(iocloud_web::app::event_item(&event_item(&e)).into_string()),
                ];
                // The page's overview as the event left the cluster.
                match page_view(&state, &actor, &e.cluster_id, None).await {
                    Ok(page) => frames.push(
                        Event::default()
                            .event("overview")
                            .data(iocloud_web::app::cluster_overview(&csrf, &page).into_string()),
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "a cluster's overview could not be drawn")
                    }
                }
                if e.status.is_final() {
                    frames.push(Event::default().event("ended").data("ended"));
                }
                futures::stream::iter(frames.into_iter().map(Ok::<_, Infallible>))
            }
        })
        .flatten()
        .chain(futures::stream::once(async {
            Ok(Event::default().event("ended").data("ended"))
        }));
    // A stopping replica ends the stream without `ended`: the page's EventSource reconnects,
    // to another replica, from its last event id.
    let mut res = Sse::new(drain.cut(frames))
        .keep_alive(KeepAlive::default())
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    v.answer(res)
}

/// A change from the cluster's page. No version: the page is kept current by its live
/// stream, and extending or ending a cluster is right whatever changed since.
#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    hours: String,
}

/// A change made from the cluster's page (its form already read and its CSRF token checked):
/// back to its page, or the page again with the refusal in words.
async fn change(
    state: &AppState,
    v: &Visitor,
    id: &str,
    made: iocloud_control::Result<ClusterView>,
) -> Response {
    match made {
        Ok(c) => v.answer(Redirect::to(&format!("/app/clusters/{}", c.id)).into_response()),
        Err(e) if !e.is_internal() && !matches!(e, iocloud_control::Error::NotFound(_)) => {
            let status = crate::error::domain_status(&e);
            show(
                state,
                v,
                status,
                page_view(state, &v.actor, id, Some(e.to_string())),
                iocloud_web::app::cluster_page,
            )
            .await
        }
        Err(e) => super::failed(v, e),
    }
}

async fn extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form }: Posted<ChangeForm>,
) -> Response {
    let made = match form.hours.trim().parse() {
        Ok(hours) => {
            let ext = Extension {
                hours,
                resource_version: None,
            };
            state.control.clusters.extend(&v.actor, &id, &ext).await
        }
        Err(_) => Err(iocloud_control::Error::validation(
            "hours",
            "a whole number of hours, like 4",
        )),
    };
    change(&state, &v, &id, made).await
}

async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let made = state.control.clusters.terminate(&v.actor, &id, None).await;
    change(&state, &v, &id, made).await
}

/// The kubeconfig as a file to save; every read is audited by the domain.
async fn kubeconfig(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let origin = RequestOrigin {
        request_id: crate::middleware::client::request_id(&req),
        ip: crate::middleware::client::client_ip(&req, state.config.trust_forwarded_for)
            .map(|ip| ip.to_string()),
    };
    match state
        .control
        .clusters
        .credentials(&v.actor, &id, &origin)
        .await
    {
        Ok(c) => {
            let mut res = c.kubeconfig.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/yaml"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(d) = HeaderValue::from_str(&format!(
                "attachment; filename=\"{}-kubeconfig.yaml\"",
                c.cluster_id
            )) {
                h.insert(header::CONTENT_DISPOSITION, d);
            }
            v.answer(res)
        }
        Err(e) if !e.is_internal() && !matches!(e, iocloud_control::Error::NotFound(_)) => {
            let status = crate::error::domain_status(&e);
            show(
                &state,
                &v,
                status,
                page_view(&state, &v.actor, &id, Some(e.to_string())),
                iocloud_web::app::cluster_page,
            )
            .await
        }
        Err(e) => super::failed(&v, e),
    }
}
