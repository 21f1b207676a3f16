//! Payouts, payout wallets and stake in the console, through the same calls as
//! `/v1/payouts`, `/v1/payouts/wallets`, `/v1/balances` and `/v1/stake`. Adding a wallet needs
//! the wallet to sign a challenge, which a page without a wallet extension cannot do: the
//! page says how to do it over the API.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::payouts::{Payout, PayoutRequest, PayoutStatus};
use iocloud_control::providers::stake::StakeRequest;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_db::Timestamp;
use iocloud_web::app::{
    EarningsBalance, PayoutForm, PayoutLine, PayoutsView, StakeLine, StakePage, WalletLine,
};
use serde::Deserialize;

use super::super::session::{NoFields, Posted, Visitor};
use super::super::{failed, show};
use super::{WorkerQuery, cooling_down, notice, refusal};
use crate::state::AppState;

/// Payouts the page lists, newest first.
const PAYOUTS: usize = 50;

/// Back to `page` saying `done` (a key of the overview's list), or `page` again saying why
/// not, with the status REST answers.
async fn after<F, Fut>(
    v: &Visitor,
    result: iocloud_control::Result<()>,
    page: &str,
    done: &str,
    again: F,
) -> Response
where
    F: FnOnce(Option<String>, StatusCode) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match result {
        Ok(()) => v.answer(Redirect::to(&format!("{page}?done={done}")).into_response()),
        Err(e) => match refusal(&e) {
            Some((status, words)) => again(Some(words), status).await,
            None => failed(v, e),
        },
    }
}

// Payouts.

pub(super) async fn payouts(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<WorkerQuery>,
) -> Response {
    let said = (notice(q.done.as_deref()), None);
    render_payouts(&state, &v, PayoutForm::default(), said, StatusCode::OK).await
}

async fn render_payouts(
    state: &AppState,
    v: &Visitor,
    form: PayoutForm,
    (notice, error): (Option<String>, Option<String>),
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        payouts_view(state, &v.actor, form, notice, error),
        iocloud_web::app::payouts_page,
    )
    .await
}

/// Every payout of the organisation (the list pages oldest first), newest first, at most
/// [`PAYOUTS`].
async fn recent_payouts(state: &AppState, actor: &Actor) -> iocloud_control::Result<Vec<Payout>> {
    let mut kept: Vec<Payout> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = state.control.payouts.payouts(actor, &page).await?;
        kept.extend(found.items);
        if kept.len() > PAYOUTS {
            kept.drain(..kept.len() - PAYOUTS);
        }
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    kept.reverse();
    Ok(kept)
}

async fn payouts_view(
    state: &AppState,
    actor: &Actor,
    form: PayoutForm,
    notice: Option<String>,
    error: Option<String>,
) -> iocloud_control::Result<PayoutsView> {
    let c = &state.control;
    let balances = super::super::billing::balances(state, actor).await?;
    let wallets = c.payouts.wallets(actor).await?;
    let payouts = recent_payouts(state, actor).await?;
    Ok(PayoutsView {
        balances: balances
            .into_iter()
            .map(|b| EarningsBalance {
                currency: b.currency,
                earnings: b.earnings,
                payout_pending: b.payout_pending,
            })
            .collect(),
        // Deposits and payouts ride the one Solana rail: configured for both, or neither.
        rail_on: c.deposits.is_on(),
        minimum: c.payouts.limits().minimum.to_decimal(),
        payouts: payouts
            .into_iter()
            .map(|p| PayoutLine {
                cancellable: matches!(
                    p.status,
                    PayoutStatus::AwaitingApproval | PayoutStatus::Ready | PayoutStatus::Queued
                ),
                status: p.status.as_str().to_string(),
                currency: p.currency.code().to_string(),
                token: p.token.code().to_string(),
                created_at: p.created_at.to_rfc3339(),
                id: p.id,
                reason: p.reason,
                amount: p.amount,
                token_amount: p.token_amount,
                address: p.address,
                signature: p.signature,
            })
            .collect(),
        wallets: wallets
            .into_iter()
            .map(|w| WalletLine {
                created_at: w.created_at.to_rfc3339(),
                id: w.id,
                address: w.address,
                label: w.label,
                is_default: w.is_default,
            })
            .collect(),
        can_manage: actor.authorize(Action::BillingManage).is_ok(),
        form,
        notice,
        error,
    })
}

#[derive(Deserialize)]
pub(in crate::app) struct PayoutAsk {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    wallet_id: String,
}

/// Asks for a payout as `POST /v1/payouts` does.
pub(super) async fn ask_payout(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<PayoutAsk>,
) -> Response {
    let filled = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
    let request = PayoutRequest {
        amount: f.amount.trim().to_string(),
        currency: f.currency.trim().to_string(),
        token: filled(&f.token),
        wallet_id: filled(&f.wallet_id),
    };
    let result = state
        .control
        .payouts
        .request_payout(&v.actor, &request)
        .await
        .map(drop);
    let typed = PayoutForm {
        amount: f.amount,
        currency: f.currency,
        token: f.token,
        wallet_id: f.wallet_id,
    };
    after(
        &v,
        result,
        "/app/worker/payouts",
        "payout",
        |error, status| render_payouts(&state, &v, typed, (None, error), status),
    )
    .await
}

pub(super) async fn cancel_payout(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = state
        .control
        .payouts
        .cancel_payout(&v.actor, &id)
        .await
        .map(drop);
    payouts_after(&state, &v, result, "payout_canceled").await
}

pub(super) async fn default_wallet(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = state
        .control
        .payouts
        .set_default_wallet(&v.actor, &id)
        .await
        .map(drop);
    payouts_after(&state, &v, result, "wallet_default").await
}

pub(super) async fn remove_wallet(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = state.control.payouts.remove_wallet(&v.actor, &id).await;
    payouts_after(&state, &v, result, "wallet_removed").await
}

/// After a payout or wallet form; another organisation's payout or wallet answers 404.
async fn payouts_after(
    state: &AppState,
    v: &Visitor,
    result: iocloud_control::Result<()>,
    done: &str,
) -> Response {
    let result = match result {
        Err(e @ DomainError::NotFound(_)) => return failed(v, e),
        other => other,
    };
    after(v, result, "/app/worker/payouts", done, |error, status| {
        render_payouts(state, v, PayoutForm::default(), (None, error), status)
    })
    .await
}

// Stake.

pub(super) async fn stake_page(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<WorkerQuery>,
) -> Response {
    let said = (notice(q.done.as_deref()), None);
    render_stake(&state, &v, String::new(), said, StatusCode::OK).await
}

async fn render_stake(
    state: &AppState,
    v: &Visitor,
    amount: String,
    (notice, error): (Option<String>, Option<String>),
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        stake_view(state, &v.actor, amount, notice, error),
        iocloud_web::app::stake_page,
    )
    .await
}

async fn stake_view(
    state: &AppState,
    actor: &Actor,
    amount: String,
    notice: Option<String>,
    error: Option<String>,
) -> iocloud_control::Result<StakePage> {
    let summary = state.control.stake.summary(actor).await?;
    let available = super::super::billing::balances(state, actor)
        .await?
        .into_iter()
        .find(|b| b.currency == "IO")
        .map_or_else(|| "0.00".to_string(), |b| b.available);
    let now = Timestamp::now();
    Ok(StakePage {
        cooling_down: cooling_down(&summary.stakes),
        stakes: summary
            .stakes
            .into_iter()
            .map(|s| StakeLine {
                withdrawable: s.status == "unbonding" && s.available_at.is_some_and(|t| t <= now),
                created_at: s.created_at.to_rfc3339(),
                available_at: s.available_at.map(Timestamp::to_rfc3339),
                id: s.id,
                amount: s.amount,
                status: s.status,
            })
            .collect(),
        active: summary.active,
        required: summary.required,
        free: summary.free,
        available,
        can_manage: actor.authorize(Action::BillingManage).is_ok(),
        // A fresh reference each time the form is drawn: sent twice, it stakes once.
        reference: iocloud_db::ids::new_id("ref"),
        amount,
        notice,
        error,
    })
}

#[derive(Deserialize)]
pub(in crate::app) struct StakeForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reference: String,
}

/// Stakes $IO as `POST /v1/stake` does.
pub(super) async fn stake(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<StakeForm>,
) -> Response {
    let reference = Some(f.reference.trim().to_string()).filter(|r| !r.is_empty());
    let request = StakeRequest {
        amount: f.amount.trim().to_string(),
        reference,
    };
    let result = state.control.stake.stake(&v.actor, request).await.map(drop);
    let typed = f.amount;
    after(
        &v,
        result,
        "/app/worker/stake",
        "staked",
        |error, status| render_stake(&state, &v, typed, (None, error), status),
    )
    .await
}

#[derive(Deserialize)]
pub(in crate::app) struct StakeIdForm {
    #[serde(default)]
    stake_id: String,
}

/// Starts a stake's cooldown, as `POST /v1/stake/{id}/unstake` does.
pub(super) async fn unstake(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<StakeIdForm>,
) -> Response {
    let result = state
        .control
        .stake
        .unstake(&v.actor, f.stake_id.trim())
        .await
        .map(drop);
    stake_after(&state, &v, result, "unstaked").await
}

/// Returns a stake whose cooldown is over, as `POST /v1/stake/{id}/withdraw` does.
pub(super) async fn withdraw(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<StakeIdForm>,
) -> Response {
    let result = state
        .control
        .stake
        .withdraw(&v.actor, f.stake_id.trim())
        .await
        .map(drop);
    stake_after(&state, &v, result, "withdrawn").await
}

/// After an unstake or withdraw form; another organisation's stake answers 404.
async fn stake_after(
    state: &AppState,
    v: &Visitor,
    result: iocloud_control::Result<()>,
    done: &str,
) -> Response {
    let result = match result {
        Err(e @ DomainError::NotFound(_)) => return failed(v, e),
        other => other,
    };
    after(v, result, "/app/worker/stake", done, |error, status| {
        render_stake(state, v, String::new(), (None, error), status)
    })
    .await
}
