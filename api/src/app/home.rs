//! Home: balances, this month's spend and the live clusters, from the same services REST uses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use iocloud_billing::{Currency, Money};
use iocloud_web::app::{ClusterLine, HomeView, SpendLine};

use super::session::Visitor;
use super::show;
use crate::state::AppState;

/// Live clusters shown on Home; the clusters page lists them all.
const SHOWN: i64 = 50;

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
    let clusters: Vec<ClusterLine> = c
        .clusters
        .live(actor, SHOWN)
        .await?
        .into_iter()
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
    // The tiles count every live cluster, from the quota's running totals, not only those
    // listed.
    let quota = c.clusters.quota(actor).await?;
    Ok(HomeView {
        balances,
        spend,
        month,
        clusters,
        clusters_live: quota.clusters_in_use,
        gpus_in_use: quota.gpus_in_use,
    })
}
