//! Home: balances, this month's spend and the live clusters, from the same services REST uses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use iocloud_billing::{Currency, Money};
use iocloud_control::PageRequest;
use iocloud_web::app::{ClusterLine, HomeView, SpendLine};

use super::session::Visitor;
use super::show;
use crate::state::AppState;

/// Live clusters shown on Home; the clusters page lists them all.
const SHOWN: u32 = 50;

pub(super) async fn page(State(state): State<AppState>, v: Visitor) -> Response {
    show(
        &state,
        &v,
        StatusCode::OK,
        view(&state, &v.actor),
        iocloud_web::app::home,
    )
    .await
}

async fn view(
    state: &AppState,
    actor: &iocloud_control::Actor,
) -> iocloud_control::Result<HomeView> {
    let c = &state.control;
    let balances = super::billing::balances(state, actor).await?;
    let month = iocloud_db::time::month_of(iocloud_db::time::now_micros());
    // This month's spend per currency, summed from the per-cluster rows.
    let mut spend: BTreeMap<&'static str, (Money, Money)> = BTreeMap::new();
    for row in c.billing.usage(actor, Some("cluster"), None).await? {
        let amount = Money::parse(&row.amount, row.currency).unwrap_or(Money::zero(row.currency));
        let hours =
            Money::parse(&row.gpu_hours, Currency::Usd).unwrap_or(Money::zero(Currency::Usd));
        let entry = spend
            .entry(row.currency.code())
            .or_insert((Money::zero(row.currency), Money::zero(Currency::Usd)));
        entry.0 = entry.0.checked_add(amount).unwrap_or(entry.0);
        entry.1 = entry.1.checked_add(hours).unwrap_or(entry.1);
    }
    let spend = spend
        .into_iter()
        .map(|(code, (amount, hours))| SpendLine {
            currency: code.to_string(),
            amount: amount.to_decimal(),
            gpu_hours: hours.to_decimal(),
        })
        .collect();
    let page = PageRequest::parse(None, Some(SHOWN))?;
    let clusters: Vec<ClusterLine> = c
        .clusters
        .list(actor, None, &page)
        .await?
        .items
        .into_iter()
        .filter(|cl| cl.status.is_live())
        .map(|cl| ClusterLine {
            id: cl.id,
            name: cl.name,
            kind: cl.kind.as_str().to_string(),
            status: cl.status.as_str().to_string(),
            gpus: cl.gpus,
            price_per_hour: cl.price_per_hour,
            currency: cl.currency,
        })
        .collect();
    let gpus_in_use = clusters.iter().map(|cl| cl.gpus).sum();
    Ok(HomeView {
        balances,
        spend,
        month,
        clusters,
        gpus_in_use,
    })
}
