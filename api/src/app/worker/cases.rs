//! Slashing cases in the console, through the same calls as `GET /v1/slashing/cases`,
//! `/v1/slashing/cases/{id}` and `POST /v1/slashing/cases/{id}/appeal`: the cases against the
//! organisation's devices and the devices it co-stakes, a case's evidence and every step, and
//! the provider's appeal. Another organisation's case reads as missing (404), as it does over
//! REST.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::slashing::{AppealRequest, CaseEvent, CaseStatus, Rule, SlashingCase};
use iocloud_control::types::device_id;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_db::Timestamp;
use iocloud_web::app::{
    CaseEvidence, CaseStepLine, SlashingCaseLine, SlashingCasePage, SlashingCasesView,
};
use serde::Deserialize;

use super::super::session::{Posted, Visitor};
use super::super::{failed, show};
use super::{WorkerQuery, all_devices, refusal};
use crate::state::AppState;

/// Cases the list shows, newest first.
const CASES: usize = 200;

/// What the appeal form did, by the key its redirect carries.
const DONE: [(&str, &str); 1] = [(
    "appealed",
    "Your appeal was sent: an operator decides, and nothing is burned before then.",
)];

/// The rule a device broke, in words.
fn rule_words(rule: Rule) -> &'static str {
    match rule {
        Rule::FailedProofs => "Hourly proofs failed, again and again",
        Rule::HardwareMismatch => "Hardware not as claimed: less VRAM than its model has",
        Rule::AbandonedRental => "Went silent while serving a rental",
        Rule::IdleRule => "Used its GPUs or CPU while listed and idle",
        Rule::Operator => "Another breach, named in the statement",
    }
}

/// Where a case stands, in words.
fn status_words(status: CaseStatus) -> &'static str {
    match status {
        CaseStatus::Open => "In escrow; its provider may appeal until the deadline",
        CaseStatus::Appealed => "Appealed; an operator decides",
        CaseStatus::Upheld => "Upheld; burned once the appeal window ends",
        CaseStatus::Overturned => "Overturned; the $IO went back",
        CaseStatus::Burned => "The escrow was burned",
    }
}

/// A kind of evidence, in words.
fn evidence_words(kind: &str) -> String {
    match kind {
        "proof" => "Hourly proof".to_string(),
        "block" => "Block".to_string(),
        "node" => "Node of a rental".to_string(),
        "node_test" => "Node test".to_string(),
        "device_event" => "Status change".to_string(),
        "note" => "Operator's note".to_string(),
        other => other.replace('_', " "),
    }
}

/// Who took a step, in words: an operator's step names the operator's user, which is the
/// platform's to know.
fn by_words(actor: &str) -> &'static str {
    match actor {
        "detector" => "A detector",
        "provider" => "The provider",
        "settlement" => "Settlement, at the window's end or the decision",
        _ => "An operator",
    }
}

fn line(c: &SlashingCase, names: &HashMap<String, String>, actor: &Actor) -> SlashingCaseLine {
    let own = c.org_id == actor.org_id.as_str();
    SlashingCaseLine {
        id: c.id.clone(),
        device_id: c.device_id.clone(),
        device_name: own.then(|| {
            names
                .get(&c.device_id)
                .cloned()
                .unwrap_or_else(|| c.device_id.clone())
        }),
        rule: c.rule.as_str().to_string(),
        rule_words: rule_words(c.rule).to_string(),
        amount: c.amount.clone(),
        from_stake: c.from_stake.clone(),
        from_costake: c.from_costake.clone(),
        from_rewards: c.from_rewards.clone(),
        status: c.status.as_str().to_string(),
        status_words: status_words(c.status).to_string(),
        appeal_deadline: c.appeal_deadline.to_rfc3339(),
        opened_at: c.created_at.to_rfc3339(),
    }
}

fn step(e: CaseEvent) -> CaseStepLine {
    CaseStepLine {
        by: by_words(&e.actor).to_string(),
        at: e.created_at.to_rfc3339(),
        kind: e.kind,
        text: e.text,
    }
}

// The list.

pub(super) async fn list(State(state): State<AppState>, v: Visitor) -> Response {
    show(
        &state,
        &v,
        StatusCode::OK,
        list_view(&state, &v.actor),
        iocloud_web::app::slashing_cases_page,
    )
    .await
}

/// The organisation's cases (the list pages oldest first), newest first, at most [`CASES`].
async fn recent_cases(
    state: &AppState,
    actor: &Actor,
) -> iocloud_control::Result<Vec<SlashingCase>> {
    let mut kept: Vec<SlashingCase> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = state.control.slashing.cases(actor, None, &page).await?;
        kept.extend(found.items);
        if kept.len() > CASES {
            kept.drain(..kept.len() - CASES);
        }
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    kept.reverse();
    Ok(kept)
}

async fn list_view(state: &AppState, actor: &Actor) -> iocloud_control::Result<SlashingCasesView> {
    let cases = recent_cases(state, actor).await?;
    // The organisation's own devices by id, retired ones too: a case outlives its device.
    let names: HashMap<String, String> = if cases.is_empty() {
        HashMap::new()
    } else {
        all_devices(state, actor)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect()
    };
    Ok(SlashingCasesView {
        cases: cases.iter().map(|c| line(c, &names, actor)).collect(),
    })
}

// A case's page.

/// What a form's answer adds to the page.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    error: Option<String>,
    /// The appeal as typed, when it was refused.
    statement: String,
}

pub(super) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
    Query(q): Query<WorkerQuery>,
) -> Response {
    let extras = Extras {
        notice: crate::app::said_done(q.done.as_deref(), &DONE),
        ..Extras::default()
    };
    render(&state, &v, &id, extras, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    v: &Visitor,
    id: &str,
    x: Extras,
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        case_view(state, &v.actor, id, x),
        iocloud_web::app::slashing_case_page,
    )
    .await
}

async fn case_view(
    state: &AppState,
    actor: &Actor,
    id: &str,
    x: Extras,
) -> iocloud_control::Result<SlashingCasePage> {
    let c = state.control.slashing.case(actor, id).await?;
    let own = c.org_id == actor.org_id.as_str();
    let mut names = HashMap::new();
    if own {
        let device = state
            .control
            .devices
            .get(actor, &device_id(&c.device_id)?)
            .await?;
        names.insert(device.id, device.name);
    }
    let head = line(&c, &names, actor);
    let appealable = own && c.status == CaseStatus::Open && Timestamp::now() <= c.appeal_deadline;
    Ok(SlashingCasePage {
        case: head,
        opened_by: c.opened_by,
        statement: c.statement,
        evidence: c
            .evidence
            .into_iter()
            .map(|e| CaseEvidence {
                kind_words: evidence_words(&e.kind),
                kind: e.kind,
                reference: e.reference,
                summary: e.summary,
            })
            .collect(),
        steps: c.events.into_iter().map(step).collect(),
        appeal: c.appeal,
        decision_reason: c.decision_reason,
        decided_at: c.decided_at.map(Timestamp::to_rfc3339),
        closed_at: c.closed_at.map(Timestamp::to_rfc3339),
        own,
        appealable,
        can_manage: actor.authorize(Action::BillingManage).is_ok(),
        statement_form: x.statement,
        notice: x.notice,
        error: x.error,
    })
}

#[derive(Deserialize)]
pub(in crate::app) struct AppealForm {
    #[serde(default)]
    statement: String,
}

/// Appeals a case as `POST /v1/slashing/cases/{id}/appeal` does: back to the case saying so,
/// or the case again saying why not (the window closed, appealed already, the statement).
pub(super) async fn appeal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form: f }: Posted<AppealForm>,
) -> Response {
    let request = AppealRequest {
        statement: f.statement.clone(),
    };
    match state.control.slashing.appeal(&v.actor, &id, &request).await {
        // The id the domain answered with, so the redirect holds nothing the form sent.
        Ok(c) => v.answer(
            Redirect::to(&format!("/app/worker/cases/{}?done=appealed", c.id)).into_response(),
        ),
        Err(e @ DomainError::NotFound(_)) => failed(&v, e),
        Err(e) => match refusal(&e) {
            Some((status, words)) => {
                let extras = Extras {
                    error: Some(words),
                    statement: f.statement,
                    ..Extras::default()
                };
                render(&state, &v, &id, extras, status).await
            }
            None => failed(&v, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_and_status_has_words() {
        for r in Rule::ALL {
            assert!(!rule_words(r).is_empty(), "{}", r.as_str());
        }
        for s in CaseStatus::ALL {
            assert!(!status_words(s).is_empty(), "{}", s.as_str());
        }
        for k in iocloud_control::slashing::EVIDENCE_KINDS {
            assert!(!evidence_words(k).contains('_'), "{k}");
        }
        assert_eq!(by_words("usr_0123"), "An operator");
    }
}
