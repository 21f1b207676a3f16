//! Refunds of unused card credit in the console, through the same calls as
//! `/v1/billing/refundable` and `/v1/billing/refunds`: what could be refunded now, the form
//! that asks for a refund (all that is refundable when no amount is typed), the refunds asked
//! and each one's parts. The domain decides who may ask; a refusal shows the page again saying
//! why, with the status REST answers.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::payments::{Refund, RefundRequest};
use iocloud_control::{Action, Actor, PageRequest};
use iocloud_web::app::{RefundLine, RefundPartLine, RefundView, RefundsView};
use serde::Deserialize;

use super::super::session::{Posted, Visitor};
use super::super::{failed, show};
use crate::state::AppState;

/// Refunds the page lists, newest first.
const REFUNDS: usize = 50;

/// What a form did, by the key its redirect carries: only these words are ever shown, so a
/// link cannot make the page say anything else.
const DONE: [(&str, &str); 1] = [(
    "refund",
    "The refund was asked for: it goes back to the cards it was paid with. Its status is below.",
)];

/// What the last form did.
#[derive(Deserialize, Default)]
pub(in crate::app) struct RefundsQuery {
    done: Option<String>,
}

/// The words of a `?done=` key, if it is one of [`DONE`].
fn notice(done: Option<&str>) -> Option<String> {
    crate::app::said_done(done, &DONE)
}

/// What the page says above everything else, and the amount as typed.
#[derive(Default)]
struct Said {
    notice: Option<String>,
    error: Option<String>,
    amount: String,
}

pub(in crate::app) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<RefundsQuery>,
) -> Response {
    let said = Said {
        notice: notice(q.done.as_deref()),
        ..Said::default()
    };
    render(&state, &v, said, StatusCode::OK).await
}

async fn render(state: &AppState, v: &Visitor, said: Said, status: StatusCode) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, said),
        iocloud_web::app::refunds_page,
    )
    .await
}

async fn view(state: &AppState, actor: &Actor, said: Said) -> iocloud_control::Result<RefundsView> {
    let payments = &state.control.payments;
    let refundable = payments.refundable(actor).await?;
    let currency = refundable.currency.code().to_string();
    let balance = super::super::billing::balances(state, actor)
        .await?
        .into_iter()
        .find(|b| b.currency == currency);
    let refunds = recent(state, actor).await?;
    Ok(RefundsView {
        refundable: refundable.amount,
        available: balance.as_ref().map(|b| b.available.clone()),
        refunding: balance.map(|b| b.refund_pending),
        currency,
        cards_on: payments.is_on(),
        can_ask: actor.authorize(Action::BillingManage).is_ok(),
        refunds: refunds.iter().map(line).collect(),
        amount: said.amount,
        notice: said.notice,
        error: said.error,
    })
}

/// The organisation's refunds (the list pages oldest first), newest first, at most
/// [`REFUNDS`].
async fn recent(state: &AppState, actor: &Actor) -> iocloud_control::Result<Vec<Refund>> {
    let mut kept: Vec<Refund> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = state.control.payments.refunds(actor, &page).await?;
        kept.extend(found.items);
        if kept.len() > REFUNDS {
            kept.drain(..kept.len() - REFUNDS);
        }
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    kept.reverse();
    Ok(kept)
}

fn line(r: &Refund) -> RefundLine {
    RefundLine {
        id: r.id.clone(),
        amount: r.amount.clone(),
        currency: r.currency.code().to_string(),
        status: r.status.as_str().to_string(),
        created_at: r.created_at.to_rfc3339(),
    }
}

#[derive(Deserialize)]
pub(in crate::app) struct RefundForm {
    #[serde(default)]
    amount: String,
}

/// Asks for a refund as `POST /v1/billing/refunds` does, then back to the page saying so.
pub(in crate::app) async fn ask(
    State(state): State<AppState>,
    Posted { v, form }: Posted<RefundForm>,
) -> Response {
    let amount = form.amount.trim();
    let request = RefundRequest {
        amount: (!amount.is_empty()).then(|| amount.to_string()),
    };
    match state.control.payments.refund(&v.actor, &request).await {
        Ok(_) => v.answer(Redirect::to("/app/billing/refunds?done=refund").into_response()),
        Err(e) => match super::super::team::refusal(&e) {
            Some((status, words)) => {
                let said = Said {
                    notice: None,
                    error: Some(words),
                    amount: form.amount,
                };
                render(&state, &v, said, status).await
            }
            None => failed(&v, e),
        },
    }
}

/// A refund's page: its parts, one per card payment it goes back to.
pub(in crate::app) async fn refund(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
) -> Response {
    let load = async {
        let r = state.control.payments.get_refund(&v.actor, &id).await?;
        Ok(RefundView {
            refund: line(&r),
            parts: r
                .parts
                .into_iter()
                .map(|p| RefundPartLine {
                    top_up_id: p.top_up_id,
                    amount: p.amount,
                    status: p.status.as_str().to_string(),
                    stripe_refund_id: p.stripe_refund_id,
                    failure: p.failure_reason,
                })
                .collect(),
        })
    };
    show(
        &state,
        &v,
        StatusCode::OK,
        load,
        iocloud_web::app::refund_page,
    )
    .await
}
