//! Statements in the console: the organisation's monthly invoices (a page per month, every
//! usage line of it as CSV, a printable page), from the same service as `/v1/invoices/{month}`
//! and `/v1/usage/export`; refunds of unused card credit are in [`refunds`]. A month is
//! `YYYY-MM`; anything else is a page that says there is no such month, never a failure.

mod refunds;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use iocloud_control::usage::Invoice;
use iocloud_control::{Action, Actor};
use iocloud_db::time::{month_bounds, month_of, now_micros};
use iocloud_web::app::{
    InvoicesView, StatementLine, StatementMonth, StatementTotal, StatementView,
};

use super::session::Visitor;
use super::{failed, html, show};
use crate::state::AppState;

/// Months the invoices page lists, the current one included.
const MONTHS: usize = 24;

/// Cluster ids looked up by name in one query.
const NAMES_AT_ONCE: usize = 100;

/// The printable invoice is a plain page: its own inline style, nothing else at all.
const PRINT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/billing/invoices", get(invoices))
        .route("/app/billing/invoices/{month}", get(invoice))
        .route("/app/billing/invoices/{month}/csv", get(csv))
        .route("/app/billing/invoices/{month}/print", get(printable))
        .route(
            "/app/billing/refunds",
            get(refunds::page).post(refunds::ask),
        )
        .route("/app/billing/refunds/{id}", get(refunds::refund))
}

/// The months from `first` to `now` (both `YYYY-MM`), newest first, at most `most`; `now`
/// alone when `first` is later (a clock set wrong) or unreadable.
fn months_back(now: &str, first: &str, most: usize) -> Vec<String> {
    let read = |m: &str| -> Option<(i64, u32)> {
        month_bounds(m)?;
        let (y, n) = m.split_once('-')?;
        Some((y.parse().ok()?, n.parse().ok()?))
    };
    let Some(mut at) = read(now) else {
        return Vec::new();
    };
    let first = read(first).map_or(at, |f| f.min(at));
    let mut out = Vec::new();
    while out.len() < most && at >= first {
        out.push(format!("{:04}-{:02}", at.0, at.1));
        at = if at.1 == 1 {
            (at.0 - 1, 12)
        } else {
            (at.0, at.1 - 1)
        };
    }
    out
}

/// The page for a month that is not one (`2026-13`, `october`): said in words, 404.
fn no_such_month(v: &Visitor) -> Response {
    v.answer(html(
        StatusCode::NOT_FOUND,
        iocloud_web::app::message(
            "No such month",
            "There is no such month here: a month is written as its year and number, like 2026-11.",
        ),
    ))
}

/// Every month since the organisation began, up to this one, newest first.
async fn invoices(State(state): State<AppState>, v: Visitor) -> Response {
    let load = async {
        v.actor.authorize(Action::BillingRead)?;
        let org = state
            .control
            .directory
            .organization(&v.actor.org_id)
            .await?;
        let now = month_of(now_micros());
        let first = month_of(org.created_at.micros());
        let mut months = months_back(&now, &first, MONTHS + 1);
        let older = months.len() > MONTHS;
        months.truncate(MONTHS);
        Ok(InvoicesView {
            months: months
                .into_iter()
                .map(|m| StatementMonth {
                    current: m == now,
                    month: m,
                })
                .collect(),
            older,
        })
    };
    show(
        &state,
        &v,
        StatusCode::OK,
        load,
        iocloud_web::app::invoices_page,
    )
    .await
}

/// A month's invoice, with the names of its clusters (those still found).
async fn invoice_of(
    state: &AppState,
    actor: &Actor,
    month: &str,
) -> iocloud_control::Result<(Invoice, HashMap<String, String>)> {
    let invoice = state.control.billing.invoice(actor, month).await?;
    let mut ids: Vec<String> = invoice.lines.iter().map(|l| l.cluster_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut names = HashMap::new();
    for chunk in ids.chunks(NAMES_AT_ONCE) {
        names.extend(state.control.clusters.names(actor, chunk).await?);
    }
    Ok((invoice, names))
}

async fn invoice(State(state): State<AppState>, v: Visitor, Path(month): Path<String>) -> Response {
    if month_bounds(&month).is_none() {
        return no_such_month(&v);
    }
    let load = async {
        let (invoice, names) = invoice_of(&state, &v.actor, &month).await?;
        Ok(StatementView {
            current: invoice.month == month_of(now_micros()),
            lines: invoice
                .lines
                .into_iter()
                .map(|l| StatementLine {
                    name: names.get(&l.cluster_id).cloned(),
                    cluster_id: l.cluster_id,
                    currency: l.currency.code().to_string(),
                    gpu_hours: l.gpu_hours,
                    rate: l.rate,
                    amount: l.amount,
                    unpaid: l.unpaid,
                })
                .collect(),
            totals: invoice
                .totals
                .into_iter()
                .map(|t| StatementTotal {
                    currency: t.currency.code().to_string(),
                    amount: t.amount,
                    unpaid: t.unpaid,
                })
                .collect(),
            organization: invoice.organization,
            org_id: invoice.org_id,
            month: invoice.month,
        })
    };
    show(
        &state,
        &v,
        StatusCode::OK,
        load,
        iocloud_web::app::invoice_page,
    )
    .await
}

/// Every usage line of the month as a CSV file, as `/v1/usage/export` answers it.
async fn csv(State(state): State<AppState>, v: Visitor, Path(month): Path<String>) -> Response {
    if month_bounds(&month).is_none() {
        return no_such_month(&v);
    }
    match state
        .control
        .billing
        .usage_csv(&v.actor, Some(month.as_str()))
        .await
    {
        Ok(text) => {
            let mut res = text.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            // The month was read as four digits, a dash and two digits: safe in a header.
            if let Ok(name) =
                HeaderValue::from_str(&format!("attachment; filename=\"usage-{month}.csv\""))
            {
                h.insert(header::CONTENT_DISPOSITION, name);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            v.answer(res)
        }
        Err(e) => failed(&v, e),
    }
}

/// The month's invoice as the plain page `/v1/invoices/{month}?format=html` draws, with each
/// cluster's name beside its id.
async fn printable(
    State(state): State<AppState>,
    v: Visitor,
    Path(month): Path<String>,
) -> Response {
    if month_bounds(&month).is_none() {
        return no_such_month(&v);
    }
    let (invoice, names) = match invoice_of(&state, &v.actor, &month).await {
        Ok(found) => found,
        Err(e) => return failed(&v, e),
    };
    let page = crate::rest::usage::printable(&invoice, |id| match names.get(id) {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    });
    let mut res = Html(page).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PRINT_CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    v.answer(res)
}

#[cfg(test)]
mod tests {
    use super::months_back;

    #[test]
    fn months_run_back_from_now_to_the_first() {
        assert_eq!(
            months_back("2027-02", "2026-11", 24),
            ["2027-02", "2027-01", "2026-12", "2026-11"]
        );
        assert_eq!(months_back("2026-12", "2026-12", 24), ["2026-12"]);
        assert_eq!(months_back("2026-12", "2020-01", 3).len(), 3);
        // A first month after now (a clock set wrong) still lists now.
        assert_eq!(months_back("2026-12", "2027-03", 24), ["2026-12"]);
        assert!(months_back("soon", "2026-01", 24).is_empty());
    }
}
