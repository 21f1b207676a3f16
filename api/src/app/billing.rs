//! Billing: balances, deposits on Solana (ask, pay by link or QR code, watch them arrive) and
//! the ledger, from the same services as `/v1/balances`, `/v1/billing/deposits` and
//! `/v1/postings`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::deposits::DepositRequest;
use iocloud_control::{Actor, PageRequest};
use std::collections::HashMap;

use iocloud_billing::Money;
use iocloud_web::app::{
    BillingView, ClusterSpend, Counted, DepositLine, DepositView, LedgerBalance, PostingLine,
};
use serde::Deserialize;

use super::session::{Posted, Visitor};
use super::show;
use crate::state::AppState;

/// Ledger lines per page, deposits listed, clusters in the month's spend.
const LINES: u32 = 50;
const DEPOSITS: u32 = 20;
const SPEND_ROWS: usize = 20;

#[derive(Deserialize)]
pub(super) struct LedgerQuery {
    after: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<LedgerQuery>,
) -> Response {
    render(&state, &v, q.after.as_deref(), None, StatusCode::OK).await
}

pub(super) async fn render(
    state: &AppState,
    v: &Visitor,
    after: Option<&str>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, after, error),
        iocloud_web::app::billing,
    )
    .await
}

async fn view(
    state: &AppState,
    actor: &Actor,
    after: Option<&str>,
    error: Option<String>,
) -> iocloud_control::Result<BillingView> {
    let c = &state.control;
    let balances = balances(state, actor).await?;
    let deposits = if c.deposits.is_on() {
        let page = PageRequest::parse(None, Some(DEPOSITS))?;
        Some(
            c.deposits
                .deposits(actor, &page)
                .await?
                .items
                .into_iter()
                .map(|d| DepositLine {
                    id: d.id,
                    currency: d.currency.code().to_string(),
                    status: d.status.as_str().to_string(),
                    amount: d.amount,
                    received: d.received,
                    created_at: d.created_at.to_string(),
                })
                .collect(),
        )
    } else {
        None
    };
    let page = PageRequest::parse(after, Some(LINES))?;
    let postings = c.billing.postings(actor, &page, None).await?;
    let month = iocloud_db::time::month_of(iocloud_db::time::now_micros());
    let mut by_cluster = c.billing.usage(actor, Some("cluster"), None).await?;
    by_cluster.sort_by_key(|r| {
        std::cmp::Reverse(Money::parse(&r.amount, r.currency).map_or(0, Money::micros))
    });
    by_cluster.truncate(SPEND_ROWS);
    // Clusters by name where the ledger and usage keep their ids.
    let mut ids: Vec<String> = by_cluster.iter().map(|r| r.key.clone()).collect();
    for p in &postings.items {
        ids.extend(cluster_ids(&p.memo).map(str::to_string));
    }
    ids.sort();
    ids.dedup();
    let names = c.clusters.names(actor, &ids).await?;
    Ok(BillingView {
        balances,
        deposits,
        spend: super::chart::by_day(state, actor, Counted::Spend).await?,
        by_cluster: by_cluster
            .into_iter()
            .map(|r| ClusterSpend {
                name: names.get(&r.key).cloned(),
                id: r.key,
                gpu_hours: r.gpu_hours,
                amount: r.amount,
                currency: r.currency.code().to_string(),
            })
            .collect(),
        month,
        postings: postings
            .items
            .into_iter()
            .map(|p| PostingLine {
                at: p.created_at.to_string(),
                kind: p.kind,
                account: p.account.replace('_', " "),
                amount: p.amount,
                currency: p.currency,
                memo: with_names(&p.memo, &names),
            })
            .collect(),
        next_postings: postings.next_cursor,
        cards: super::cards::view(state, actor).await?,
        error,
    })
}

/// The cluster ids (`clu_…`) a ledger memo names.
fn cluster_ids(memo: &str) -> impl Iterator<Item = &str> {
    memo.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("clu_"))
}

/// `memo` with each cluster id followed by its name: `hold for train (clu_…)`.
fn with_names(memo: &str, names: &HashMap<String, String>) -> String {
    let mut out = memo.to_string();
    for id in cluster_ids(memo) {
        if let Some(name) = names.get(id) {
            out = out.replace(id, &format!("{name} ({id})"));
        }
    }
    out
}

/// Every balance of the organisation, as the pages show them.
pub(super) async fn balances(
    state: &AppState,
    actor: &Actor,
) -> iocloud_control::Result<Vec<LedgerBalance>> {
    Ok(state
        .control
        .billing
        .balances(actor)
        .await?
        .into_iter()
        .map(|b| LedgerBalance {
            currency: b.currency.code().to_string(),
            available: b.available,
            held: b.held,
            owed: b.owed,
            refund_pending: b.refund_pending,
            earnings: b.earnings,
            payout_pending: b.payout_pending,
        })
        .collect())
}

#[derive(Deserialize)]
pub(super) struct DepositForm {
    #[serde(default)]
    currency: String,
    #[serde(default)]
    amount: String,
}

pub(super) async fn ask(
    State(state): State<AppState>,
    Posted { v, form }: Posted<DepositForm>,
) -> Response {
    let amount = form.amount.trim();
    let request = DepositRequest {
        currency: form.currency,
        amount: (!amount.is_empty()).then(|| amount.to_string()),
    };
    match state
        .control
        .deposits
        .create_deposit(&v.actor, &request)
        .await
    {
        Ok(d) => v.answer(Redirect::to(&format!("/app/billing/deposits/{}", d.id)).into_response()),
        Err(e) if !e.is_internal() => {
            let status = crate::error::domain_status(&e);
            render(&state, &v, None, Some(e.to_string()), status).await
        }
        Err(e) => super::failed(&v, e),
    }
}

pub(super) async fn deposit(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
) -> Response {
    let load = async {
        let d = state.control.deposits.deposit(&v.actor, &id).await?;
        Ok(DepositView {
            id: d.id,
            currency: d.currency.code().to_string(),
            status: d.status.as_str().to_string(),
            amount: d.amount,
            received: d.received,
            recipient: d.recipient,
            reference: d.reference,
            url: d.url,
            expires_at: d.expires_at.to_string(),
        })
    };
    show(&state, &v, StatusCode::OK, load, iocloud_web::app::deposit).await
}

pub(super) async fn qr(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
) -> Response {
    match state.control.deposits.deposit_qr(&v.actor, &id).await {
        Ok(svg) => {
            let mut res = svg.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            v.answer(res)
        }
        Err(e) => super::failed(&v, e),
    }
}
