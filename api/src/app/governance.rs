//! Governance's pages in IO Explorer (`/explorer/governance…`): public, from the same calls as
//! `/v1/governance`, laid out by `iocloud_web::explorer`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use iocloud_control::Error as DomainError;
use iocloud_control::governance::{ParamChange, Proposal, ProtocolParams};
use iocloud_control::page::PageRequest;
use iocloud_web::explorer::{GovernanceView, ProposalLine, ProposalView, VersionLine};

use super::explorer::{given, page, refused, tile, whole};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/explorer/governance", get(governance))
        .route("/explorer/governance/{id}", get(proposal))
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
    ]
}

fn change_lines(c: &ParamChange) -> Vec<(String, String)> {
    [
        ("platform_fee_bps", c.platform_fee_bps),
        ("gpu_share_bps", c.gpu_share_bps),
        ("appeal_window_hours", c.appeal_window_hours),
        ("idle_cpu_pct", c.idle_cpu_pct),
        ("idle_gpu_pct_high_end", c.idle_gpu_pct_high_end),
        ("idle_gpu_pct_consumer", c.idle_gpu_pct_consumer),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.map(|v| (name.replace('_', " "), v.to_string())))
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
                since: v.effective_at.map_or_else(
                    || "at launch".to_string(),
                    |t| format!("from {}", t.to_rfc3339()),
                ),
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

async fn proposal(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let g = &s.control.governance;
    let loaded = async {
        let p = g.proposal(&id).await?;
        let votes = g.votes(&id, &PageRequest::parse(None, Some(200))?).await?;
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
    let view = ProposalView {
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
    page(StatusCode::OK, iocloud_web::explorer::proposal_page(&view))
}
