//! Billing: balances, deposits on Solana (ask, pay by link or QR code, watch them arrive) and
//! the ledger, from the same services as `/v1/balances`, `/v1/billing/deposits` and
//! `/v1/postings`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::deposits::DepositRequest;
use iocloud_control::{Actor, PageRequest};
use std::collections::HashMap;

use iocloud_billing::{Currency, Money};
use iocloud_control::billing::usage::UsageRow;
use iocloud_web::app::{
    BillingView, ClusterSpend, Counted, DepositLine, DepositView, LedgerBalance, NamedAmount,
    NamedSeries, PostingLine,
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
    // Clusters by name where the ledger and usage keep their ids, or their holds' ids (a
    // hold's release is the refund of what a cluster did not use).
    let mut holds: Vec<String> = postings
        .items
        .iter()
        .flat_map(|p| ids_in(&p.memo, "hld_").map(str::to_string))
        .collect();
    holds.sort();
    holds.dedup();
    let hold_clusters = c.billing.hold_references(actor, &holds).await?;
    let mut ids: Vec<String> = by_cluster.iter().map(|r| r.key.clone()).collect();
    for p in &postings.items {
        ids.extend(ids_in(&p.memo, "clu_").map(str::to_string));
    }
    ids.extend(hold_clusters.values().cloned());
    ids.sort();
    ids.dedup();
    let mut names = c.clusters.names(actor, &ids).await?;
    for (hold, cluster) in &hold_clusters {
        if let Some(name) = names.get(cluster).cloned() {
            names.insert(hold.clone(), name);
        }
    }
    Ok(BillingView {
        balances,
        deposits,
        spend: super::chart::by_day(state, actor, Counted::Spend).await?,
        by_cluster_bars: cluster_bars(&by_cluster, &names),
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

/// Spend by cluster as bars: a series per currency, clusters by name, most first (the rows
/// come sorted so).
fn cluster_bars(rows: &[UsageRow], names: &HashMap<String, String>) -> Vec<NamedSeries> {
    let mut series: Vec<NamedSeries> = Vec::new();
    for currency in Currency::ALL {
        let bars: Vec<NamedAmount> = rows
            .iter()
            .filter(|r| r.currency == currency)
            .map(|r| NamedAmount {
                label: names.get(&r.key).cloned().unwrap_or_else(|| r.key.clone()),
                amount: r.amount.clone(),
                micros: Money::parse(&r.amount, currency).map_or(0, Money::micros),
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let total = bars.iter().map(|b| b.micros).fold(0, i64::saturating_add);
        series.push(NamedSeries {
            currency: currency.code().to_string(),
            total: Money::from_micros(total, currency).to_decimal(),
            rows: bars,
        });
    }
    series
}

/// The ids with this prefix (`clu_`, `hld_`) a ledger memo names.
fn ids_in<'a>(memo: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> {
    memo.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(move |w| w.starts_with(prefix))
}

/// `memo` with each cluster's id, or its hold's, after the cluster's name:
/// `hold for train (clu_…)`, `release hold train (hld_…)`.
fn with_names(memo: &str, names: &HashMap<String, String>) -> String {
    let mut out = memo.to_string();
    // Each id once: replacing one twice would name it twice.
    let ids: std::collections::BTreeSet<&str> =
        ids_in(memo, "clu_").chain(ids_in(memo, "hld_")).collect();
    for id in ids {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memos_name_clusters_and_their_holds_once_each() {
        let names = HashMap::from([
            ("clu_a".to_string(), "train".to_string()),
            ("hld_b".to_string(), "train".to_string()),
        ]);
        assert_eq!(
            with_names("release hold hld_b", &names),
            "release hold train (hld_b)"
        );
        assert_eq!(
            with_names("clu_a then clu_a, not clu_c", &names),
            "train (clu_a) then train (clu_a), not clu_c"
        );
    }
}
