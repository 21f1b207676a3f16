//! Governance's pages in IO Explorer (`/explorer/governance…`): public, from the same calls as
//! `/v1/governance`, laid out by `iocloud_web::explorer`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use iocloud_control::Error as DomainError;
use iocloud_control::governance::{
    ModelMultiplier, ParamChange, Proposal, ProtocolParams, VoteRequest, voter,
};
use iocloud_control::page::PageRequest;
use iocloud_web::explorer::{Ballot, GovernanceView, ProposalLine, ProposalView, VersionLine};

use super::explorer::{given, page, refused, tile, whole};
use super::session::{self, Posted, Visitor};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/explorer/governance", get(governance))
        .route("/explorer/governance/{id}", get(proposal))
        .route("/explorer/governance/{id}/vote", axum::routing::post(vote))
}

/// Each parameter by name, as a proposal or a version lists it.
fn params_lines(p: &ProtocolParams) -> Vec<(String, String)> {
    vec![
        ("Platform fee (bps)".into(), p.platform_fee_bps.to_string()),
        ("GPU pool share (bps)".into(), p.gpu_share_bps.to_string()),
        (
            "Appeal window (hours)".into(),
            p.appeal_window_hours.to_string(),
        ),
        ("Idle CPU limit (%)".into(), p.idle_cpu_pct.to_string()),
        (
            "Idle GPU limit, datacenter (%)".into(),
            p.idle_gpu_pct_high_end.to_string(),
        ),
        (
            "Idle GPU limit, consumer (%)".into(),
            p.idle_gpu_pct_consumer.to_string(),
        ),
        ("Stake per GPU ($IO)".into(), p.stake_per_gpu_io.to_string()),
        (
            "Model multipliers".into(),
            multipliers(&p.model_multipliers, "the catalog's"),
        ),
    ]
}

/// "h100-sxm ×6, rtx-4090 ×2", or `none` when the list is empty.
fn multipliers(list: &[ModelMultiplier], none: &str) -> String {
    if list.is_empty() {
        return none.to_string();
    }
    list.iter()
        .map(|m| format!("{} ×{}", m.gpu_model, m.multiplier))
        .collect::<Vec<_>>()
        .join(", ")
}

fn change_lines(c: &ParamChange) -> Vec<(String, String)> {
    [
        ("platform_fee_bps", c.platform_fee_bps),
        ("gpu_share_bps", c.gpu_share_bps),
        ("appeal_window_hours", c.appeal_window_hours),
        ("idle_cpu_pct", c.idle_cpu_pct),
        ("idle_gpu_pct_high_end", c.idle_gpu_pct_high_end),
        ("idle_gpu_pct_consumer", c.idle_gpu_pct_consumer),
        ("stake_per_gpu_io", c.stake_per_gpu_io),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name.replace('_', " "), v.to_string())))
    .chain(
        c.model_multipliers
            .as_deref()
            .map(|list| ("model multipliers".to_string(), multipliers(list, ""))),
    )
    .collect()
}

/// "62 % yes of 1,200,000 $IO staked".
fn tally(p: &Proposal) -> String {
    let yes: f64 = p.yes.parse().unwrap_or(0.0);
    let no: f64 = p.no.parse().unwrap_or(0.0);
    let share = if yes + no > 0.0 {
        format!("{:.0} % yes", yes * 100.0 / (yes + no))
    } else {
        "no votes".to_string()
    };
    format!("{share} of {} $IO staked", whole(&p.total_weight))
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    cursor: Option<String>,
}

async fn governance(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let g = &s.control.governance;
    let loaded = async {
        let found = g
            .proposals(
                None,
                &PageRequest::parse(given(&q.cursor).as_deref(), None)?,
            )
            .await?;
        let params = g.params().await?;
        Ok::<_, DomainError>((found, params))
    }
    .await;
    let (found, params) = match loaded {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let view = GovernanceView {
        proposals: found
            .items
            .iter()
            .map(|p| ProposalLine {
                id: p.id.clone(),
                title: p.title.clone(),
                status: p.status.clone(),
                change: p.change.as_ref().map_or_else(
                    || "words only".to_string(),
                    |c| {
                        change_lines(c)
                            .into_iter()
                            .map(|(n, v)| format!("{n} → {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ),
                tally: tally(p),
                ends: p.ends_at.to_rfc3339(),
            })
            .collect(),
        next: found.next_cursor,
        versions: params
            .history
            .iter()
            .map(|v| VersionLine {
                version: v.version,
                since: match v.effective_at {
                    None => "at launch".to_string(),
                    Some(t) if v.version > params.in_force.version => {
                        format!("from {} (not yet in force)", t.to_rfc3339())
                    }
                    Some(t) => format!("from {}", t.to_rfc3339()),
                },
                params: params_lines(&v.params),
            })
            .collect(),
        ranges: params
            .ranges
            .iter()
            .map(|r| (r.name.replace('_', " "), r.min, r.max))
            .collect(),
    };
    page(
        StatusCode::OK,
        iocloud_web::explorer::governance_page(&view),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct ProposalQuery {
    /// Set by the redirect after a vote.
    voted: Option<String>,
}

/// What a vote posted to the page did.
#[derive(Default)]
struct Outcome {
    notice: Option<String>,
    error: Option<String>,
}

async fn proposal(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ProposalQuery>,
    headers: HeaderMap,
) -> Response {
    // A signed-in visitor sees the vote form; anyone else the public page.
    let visitor = session::visitor(&s, &headers).await.ok();
    let outcome = Outcome {
        notice: q.voted.map(|_| "Your vote is counted.".to_string()),
        error: None,
    };
    render(&s, &id, visitor.as_ref(), outcome, StatusCode::OK).await
}

/// The proposal's page, with the vote form for `visitor` while the vote is open.
async fn render(
    s: &AppState,
    id: &str,
    visitor: Option<&Visitor>,
    outcome: Outcome,
    status: StatusCode,
) -> Response {
    let g = &s.control.governance;
    let loaded = async {
        let p = g.proposal(id).await?;
        let votes = g.votes(id, &PageRequest::parse(None, Some(200))?).await?;
        Ok::<_, DomainError>((p, votes))
    }
    .await;
    let (p, votes) = match loaded {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let mut facts = vec![
        tile("State", &p.status),
        tile("Tally", tally(&p)),
        tile("Yes $IO", whole(&p.yes)),
        tile("No $IO", whole(&p.no)),
        tile("Abstain $IO", whole(&p.abstain)),
        tile(
            "Needs",
            format!(
                "{} % of stake voting, over {} % yes",
                p.quorum_bps / 100,
                p.threshold_bps / 100
            ),
        ),
        tile("Vote ends", p.ends_at.to_rfc3339()),
    ];
    if let Some(at) = p.executes_at {
        facts.push(tile("Applies", at.to_rfc3339()));
    }
    if let Some(v) = p.params_version {
        facts.push(tile("Made version", v));
    }
    let ballot = (p.status == "voting").then(|| match visitor {
        None => Ballot::SignIn,
        Some(v) => {
            let voter = voter(v.actor.org_id.as_str());
            Ballot::Open {
                action: format!("/explorer/governance/{id}/vote"),
                csrf: v.csrf.clone(),
                current: votes
                    .items
                    .iter()
                    .find(|x| x.voter == voter)
                    .map(|x| x.choice.clone()),
                voter,
                notice: outcome.notice,
                error: outcome.error,
            }
        }
    });
    let view = ProposalView {
        ballot,
        title: p.title.clone(),
        body: p.body.clone(),
        facts,
        change: p.change.as_ref().map(change_lines).unwrap_or_default(),
        veto_reason: p.veto_reason.clone(),
        votes: votes
            .items
            .into_iter()
            .map(|v| (v.voter, v.choice, whole(&v.weight), v.voted_at.to_rfc3339()))
            .collect(),
    };
    let res = page(status, iocloud_web::explorer::proposal_page(&view));
    match visitor {
        // A page for one visitor is never kept by a shared cache.
        Some(v) => {
            let mut res = v.answer(res);
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            res
        }
        None => {
            let mut res = res;
            res.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Cookie"));
            res
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct VoteAsk {
    choice: String,
}

/// Votes as `PUT /v1/governance/proposals/{id}/vote` does, then back to the proposal; a
/// refusal (closed, no stake, a role that may not) shows on the page with the status REST
/// answers.
async fn vote(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form }: Posted<VoteAsk>,
) -> Response {
    let request = VoteRequest {
        choice: form.choice,
    };
    match s.control.governance.vote(&v.actor, &id, &request).await {
        // The vote found the proposal, so `id` is one of ours (letters, digits and `_`).
        Ok(_) => v.answer(
            Redirect::to(&format!("/explorer/governance/{id}?voted=1#vote-h")).into_response(),
        ),
        Err(e @ DomainError::NotFound(_)) => refused(e),
        Err(e) => match super::team::refusal(&e) {
            Some((status, words)) => {
                let outcome = Outcome {
                    notice: None,
                    error: Some(words),
                };
                render(&s, &id, Some(&v), outcome, status).await
            }
            None => refused(e),
        },
    }
}
