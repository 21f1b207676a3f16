//! Creating a cluster from the console: the form read as the spec's fields (`regions`
//! repeated), its quote as a fragment while it is typed in, and the create itself. The same
//! form answers both: a quote asks the placement what it would do, creating does it.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::clusters::spec::Env;
use iocloud_control::clusters::{ClusterKind, ClusterSpec};
use iocloud_control::placement::Preference;
use iocloud_control::quotes::QuoteRequest;
use iocloud_control::ssh_keys::SshKey;
use iocloud_control::{Actor, Error as DomainError, PageRequest};
use iocloud_web::app::{Choice, CreateForm, CreateView, PlanLine, QuoteAnswer};

use super::super::session::{Visitor, csrf_ok, csrf_refused, visitor};
use super::super::{html, show};
use crate::state::AppState;

/// Nodes "close to each other" are within this estimated round trip unless the form says.
const CLOSE_MS: i64 = 30;

/// The form from `key=value&…` pairs (a query or a posted body), and the CSRF token and the
/// button pressed when posted.
fn read(pairs: &[u8]) -> (CreateForm, String, String) {
    let mut f = CreateForm::default();
    let (mut csrf, mut intent) = (String::new(), String::new());
    for (k, v) in form_urlencoded::parse(pairs) {
        let v = v.trim().to_string();
        match k.as_ref() {
            "csrf" => csrf = v,
            "intent" => intent = v,
            "name" => f.name = v,
            "kind" => f.kind = v,
            "image" => f.image = v,
            "gpu" => f.gpu = v,
            // A link from an offer names the model as the spec does.
            "gpu_model" => f.gpu = v,
            "gpu_count" => f.gpu_count = v,
            "gpus_per_node" => f.gpus_per_node = v,
            "regions" if !v.is_empty() => f.regions.push(v),
            "together" => f.together = v,
            "max_rtt_between_nodes_ms" => f.max_rtt_between_nodes_ms = v,
            "max_price_per_gpu_hour" => f.max_price_per_gpu_hour = v,
            "min_reliability" => f.min_reliability = v,
            "min_bandwidth_mbps" => f.min_bandwidth_mbps = v,
            "duration_hours" => f.duration_hours = v,
            "billing_currency" => f.billing_currency = v,
            "preference" => f.preference = v,
            "command" => f.command = v,
            "ports" => f.ports = v,
            "env" => f.env = v,
            "ssh_key" if !v.is_empty() => f.ssh_keys.push(v),
            "ssh_keys_shown" => f.ssh_keys_shown = !v.is_empty(),
            _ => {}
        }
    }
    (f, csrf, intent)
}

/// A number the form holds, `None` when empty; in words when it is not one.
fn number<T: std::str::FromStr>(
    text: &str,
    field: &'static str,
    what: &str,
) -> Result<Option<T>, DomainError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| DomainError::validation(field, format!("write {what}")))
}

/// The placement request the form asks for.
fn quote_request(f: &CreateForm) -> Result<QuoteRequest, DomainError> {
    let (gpu_model, gpu_class) = match f.gpu.strip_prefix("class:") {
        Some(class) => (None, Some(class.to_string())),
        None if f.gpu.is_empty() => (None, None),
        None => (Some(f.gpu.clone()), None),
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (colocation, max_rtt_between_nodes_ms) = match f.together.as_str() {
        "same_region" => (Some("same_region".to_string()), None),
        "any" => (None, None),
        _ => (
            None,
            Some(
                number(
                    &f.max_rtt_between_nodes_ms,
                    "max_rtt_between_nodes_ms",
                    "a whole number of milliseconds, like 30",
                )?
                .unwrap_or(CLOSE_MS),
            ),
        ),
    };
    Ok(QuoteRequest {
        gpu_model,
        gpu_class,
        gpu_count: number(&f.gpu_count, "gpu_count", "a whole number of GPUs, like 8")?
            .ok_or_else(|| DomainError::validation("gpu_count", "say how many GPUs in all"))?,
        gpus_per_node: number(&f.gpus_per_node, "gpus_per_node", "a whole number, like 8")?,
        min_vram_gib: None,
        duration_hours: number(&f.duration_hours, "duration_hours", "whole hours, like 4")?,
        regions: (!f.regions.is_empty()).then(|| f.regions.clone()),
        location: None,
        max_rtt_ms: None,
        max_price_per_gpu_hour: text(&f.max_price_per_gpu_hour),
        min_bandwidth_mbps: number(
            &f.min_bandwidth_mbps,
            "min_bandwidth_mbps",
            "whole Mbit/s, like 1000",
        )?,
        min_reliability: number(
            &f.min_reliability,
            "min_reliability",
            "a number from 0 to 1, like 0.95",
        )?,
        colocation,
        max_rtt_between_nodes_ms,
        min_providers: None,
        preference: match f.preference.as_str() {
            "cost" => Some(Preference::Cost),
            "latency" => Some(Preference::Latency),
            _ => None,
        },
    })
}

/// The ports the form lists, separated by commas (or spaces); `None` when it lists none.
fn ports(text: &str) -> Result<Option<Vec<i64>>, DomainError> {
    let listed: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .collect();
    if listed.is_empty() {
        return Ok(None);
    }
    listed
        .into_iter()
        .map(|p| {
            p.parse().map_err(|_| {
                DomainError::validation(
                    "ports",
                    "port numbers separated by commas, like 8080, 6006",
                )
            })
        })
        .collect::<Result<Vec<i64>, _>>()
        .map(Some)
}

/// The environment the form holds, `NAME=value` a line (blank lines skipped).
fn environment(text: &str) -> Result<Env, DomainError> {
    let mut env = Env::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| {
            DomainError::validation("env", format!("line {}: write NAME=value", i + 1))
        })?;
        let name = name.trim();
        if env.insert(name.to_string(), value.to_string()).is_some() {
            return Err(DomainError::validation(
                "env",
                format!("{name} is set twice"),
            ));
        }
    }
    Ok(env)
}

/// The SSH keys the form names: `None` (all of the organisation's) when every one of
/// `all_keys` is ticked or the form had no boxes to tick, else those ticked.
fn ssh_key_ids(f: &CreateForm, all_keys: &[String]) -> Option<Vec<String>> {
    let every = all_keys.iter().all(|k| f.ssh_keys.contains(k));
    if !f.ssh_keys_shown || every {
        None
    } else {
        Some(f.ssh_keys.clone())
    }
}

/// The spec the form makes; `all_keys` are the organisation's SSH keys the form offered.
fn spec(f: &CreateForm, all_keys: &[String]) -> Result<ClusterSpec, DomainError> {
    let q = quote_request(f)?;
    let kind = ClusterKind::parse(&f.kind)
        .ok_or_else(|| DomainError::validation("kind", "ray, kubernetes or container"))?;
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(ClusterSpec {
        name: f.name.clone(),
        kind: Some(kind),
        image: text(&f.image),
        gpu_model: q.gpu_model,
        gpu_class: q.gpu_class,
        gpu_count: q.gpu_count,
        gpus_per_node: q.gpus_per_node,
        regions: q.regions,
        max_price_per_gpu_hour: q.max_price_per_gpu_hour,
        min_bandwidth_mbps: q.min_bandwidth_mbps,
        min_reliability: q.min_reliability,
        colocation: q.colocation,
        max_rtt_between_nodes_ms: q.max_rtt_between_nodes_ms,
        preference: q.preference,
        duration_hours: q.duration_hours.unwrap_or(1),
        billing_currency: text(&f.billing_currency),
        // Split as the label says: at whitespace, with no quoting.
        command: (!f.command.is_empty())
            .then(|| f.command.split_whitespace().map(str::to_string).collect()),
        ports: ports(&f.ports)?,
        env: environment(&f.env)?,
        ssh_key_ids: ssh_key_ids(f, all_keys),
        ..ClusterSpec::default()
    })
}

/// The organisation's SSH keys, as the form offers them (an organisation keeps at most 100:
/// one page holds them all). None when they cannot be read: the form then names none.
async fn org_keys(state: &AppState, actor: &Actor) -> Vec<SshKey> {
    let page = PageRequest {
        after: None,
        limit: iocloud_control::page::MAX_LIMIT,
    };
    match state.control.ssh_keys.list(actor, &page).await {
        Ok(p) => p.items,
        Err(e) => {
            if e.is_internal() {
                tracing::error!(error = %e, "the create form could not read the SSH keys");
            }
            Vec::new()
        }
    }
}

/// A constraint's name as a person reads it.
fn constraint_words(field: &str) -> &'static str {
    match field {
        "gpu_model" | "gpu_class" => "the GPU model",
        "min_vram_gib" => "the GPU memory",
        "gpu_count" => "the number of GPUs",
        "regions" => "the regions",
        "max_rtt_ms" => "the distance from you",
        "max_price_per_gpu_hour" => "the price limit",
        "min_bandwidth_mbps" => "the bandwidth",
        "min_reliability" => "the reliability",
        "gpus_per_node" => "the GPUs per node",
        "min_providers" => "the number of providers",
        "colocation" | "max_rtt_between_nodes_ms" => "keeping the nodes close",
        _ => "the request",
    }
}

/// The quote pane for the form.
async fn answer(state: &AppState, actor: &Actor, f: &CreateForm) -> QuoteAnswer {
    if f.gpu_count.is_empty() {
        return QuoteAnswer::Waiting("Say how many GPUs to see prices and where they land.".into());
    }
    let request = match quote_request(f) {
        Ok(r) => r,
        Err(e) => return QuoteAnswer::Refused(e.to_string()),
    };
    match state.control.quotes.create(actor, &request).await {
        Ok(q) => QuoteAnswer::Plans {
            duration_hours: q.duration_hours,
            plans: q
                .plans
                .into_iter()
                .map(|p| PlanLine {
                    label: p.label,
                    price_per_hour: p.price_per_hour,
                    total: p.total,
                    estimated_rtt_ms: p.estimated_rtt_ms,
                    nodes: p
                        .nodes
                        .iter()
                        .map(|n| {
                            format!(
                                "{} × {} in {} at {} USD/GPU-h",
                                n.gpus, n.gpu_model, n.region, n.price_per_gpu_hour
                            )
                        })
                        .collect(),
                })
                .collect(),
        },
        Err(DomainError::InsufficientCapacity(why)) => {
            let words = format!(
                "{} GPUs asked for; {} fit {}",
                why.requested_gpus,
                why.available_gpus,
                constraint_words(why.constraint)
            );
            let nearest = why.nearest.as_ref().map(|n| {
                let value = iocloud_control::error::capacity::eased_value(n);
                let mut eased = f.clone();
                match n.field {
                    "max_price_per_gpu_hour" => eased.max_price_per_gpu_hour = value.clone(),
                    "min_reliability" => eased.min_reliability = value.clone(),
                    "min_bandwidth_mbps" => eased.min_bandwidth_mbps = value.clone(),
                    _ => {}
                }
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(eased.pairs())
                    .finish();
                (
                    format!(
                        "{} {} ({} GPUs free)",
                        constraint_words(n.field),
                        value,
                        n.available_gpus
                    ),
                    format!("/app/clusters/new?{query}"),
                )
            });
            QuoteAnswer::Nothing {
                why: words,
                nearest,
            }
        }
        Err(e) if !e.is_internal() => QuoteAnswer::Refused(e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "a console quote failed");
            QuoteAnswer::Refused("The quote could not be made; try again.".into())
        }
    }
}

async fn render(
    state: &AppState,
    v: &Visitor,
    status: StatusCode,
    form: CreateForm,
    error: Option<String>,
) -> Response {
    let quote = answer(state, &v.actor, &form).await;
    let (models, regions) = super::super::catalog_choices(state);
    let ssh_keys = org_keys(state, &v.actor)
        .await
        .into_iter()
        .map(|k| Choice {
            label: format!("{} ({})", k.name, k.fingerprint),
            value: k.id,
        })
        .collect();
    let view = CreateView {
        form,
        models,
        regions,
        ssh_keys,
        quote,
        error,
    };
    show(state, v, status, async { Ok(view) }, |shell, view| {
        iocloud_web::app::create_page(shell, view)
    })
    .await
}

/// The form, filled from the query (an offer's link, the nearest request, a quote asked for
/// without scripts), with its quote.
pub(super) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    RawQuery(q): RawQuery,
) -> Response {
    let (mut form, _, _) = read(q.unwrap_or_default().as_bytes());
    if form.kind.is_empty() {
        form.kind = "ray".into();
    }
    if form.duration_hours.is_empty() {
        form.duration_hours = "1".into();
    }
    render(&state, &v, StatusCode::OK, form, None).await
}

/// The quote pane alone, for the form's updates as it is typed in.
pub(super) async fn quote(
    State(state): State<AppState>,
    v: Visitor,
    RawQuery(q): RawQuery,
) -> Response {
    let (form, _, _) = read(q.unwrap_or_default().as_bytes());
    let answer = answer(&state, &v.actor, &form).await;
    v.answer(html(
        StatusCode::OK,
        iocloud_web::app::quote_fragment(&answer),
    ))
}

/// Creates the cluster (or, for the "Get a quote" button, shows the form with its quote).
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (form, csrf, intent) = read(&body);
    if !csrf_ok(&headers, &csrf) {
        return csrf_refused();
    }
    let v = match visitor(&state, &headers).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    if intent == "quote" {
        return render(&state, &v, StatusCode::OK, form, None).await;
    }
    let all_keys: Vec<String> = org_keys(&state, &v.actor)
        .await
        .into_iter()
        .map(|k| k.id)
        .collect();
    let made = match spec(&form, &all_keys) {
        Ok(spec) => state.control.clusters.create(&v.actor, &spec).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(c) => v.answer(Redirect::to(&format!("/app/clusters/{}", c.id)).into_response()),
        Err(e) if !e.is_internal() => {
            let status = crate::error::domain_status(&e);
            let words = match &e {
                DomainError::InsufficientCapacity(_) => {
                    "Nothing fits this request now; the quote says why and what would.".to_string()
                }
                _ => e.to_string(),
            };
            render(&state, &v, status, form, Some(words)).await
        }
        Err(e) => super::super::failed(&v, e),
    }
}
