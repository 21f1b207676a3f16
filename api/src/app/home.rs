//! Home: what needs attention (degraded clusters, a balance running low, a failed card
//! payment), the burn rate and how long the balance lasts, balances, this month's spend and the
//! live clusters, from the same services REST uses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_billing::{Currency, Money};
use iocloud_control::Action;
use iocloud_control::clusters::{ClusterStatus, ClusterView};
use iocloud_control::payments::TopUpStatus;
use iocloud_web::app::{Alert, BurnLine, ClusterLine, HomeView, LedgerBalance, SpendLine};

use super::session::Visitor;
use super::show;
use crate::state::AppState;

/// Live clusters shown on Home; the clusters page lists them all.
const SHOWN: usize = 50;
/// Live clusters summed for the burn rate.
const BURNING: i64 = 1_000;
/// A balance that lasts less than this at the current rate is an alert.
const LOW_RUNWAY_HOURS: f64 = 24.0;

pub(super) async fn page(State(state): State<AppState>, v: Visitor) -> Response {
    // An organisation that only provides GPUs starts in IO Worker.
    if let Ok(a) = state.control.orgs.activity(&v.actor).await
        && a.provides
        && !a.rents
    {
        return v.answer(Redirect::to("/app/worker").into_response());
    }
    show(
        &state,
        &v,
        StatusCode::OK,
        view(&state, &v.actor),
        iocloud_web::app::home,
    )
    .await
}

/// What the running clusters cost per hour in each currency, and how long what is available
/// and held lasts at that rate (in hours too, for the alert).
fn burn(live: &[ClusterView], balances: &[LedgerBalance]) -> Vec<(BurnLine, Option<f64>)> {
    let mut per_hour: BTreeMap<&str, Money> = BTreeMap::new();
    for cl in live {
        if !matches!(cl.status, ClusterStatus::Running | ClusterStatus::Degraded) {
            continue;
        }
        let Some(currency) = Currency::parse(&cl.currency) else {
            continue;
        };
        let Ok(rate) = Money::parse(&cl.price_per_hour, currency) else {
            continue;
        };
        let entry = per_hour
            .entry(currency.code())
            .or_insert(Money::zero(currency));
        *entry = entry.checked_add(rate).unwrap_or(*entry);
    }
    per_hour
        .into_iter()
        .map(|(code, rate)| {
            let left = balances.iter().find(|b| b.currency == code).map(|b| {
                let money = |t: &str| t.parse::<f64>().unwrap_or(0.0);
                money(&b.available) + money(&b.held)
            });
            let hours = left
                .filter(|_| rate.is_positive())
                .map(|left| left / (rate.micros() as f64 / 1_000_000.0));
            (
                BurnLine {
                    currency: code.to_string(),
                    per_hour: rate.to_decimal(),
                    runway: hours.map(for_people),
                },
                hours,
            )
        })
        .collect()
}

/// Hours as people read them: `about 40 min`, `about 5 h`, `about 3 d 4 h`.
fn for_people(hours: f64) -> String {
    let minutes = (hours * 60.0).max(0.0) as i64;
    match minutes {
        m if m < 60 => format!("about {m} min"),
        m if m < 48 * 60 => format!("about {} h", m / 60),
        m => format!("about {} d {} h", m / (24 * 60), (m / 60) % 24),
    }
}

async fn view(
    state: &AppState,
    actor: &iocloud_control::Actor,
) -> iocloud_control::Result<HomeView> {
    let c = &state.control;
    // Money is for the roles that may read billing; clusters and GPUs for every member.
    let money_shown = actor.authorize(Action::BillingRead).is_ok();
    let balances = if money_shown {
        super::billing::balances(state, actor).await?
    } else {
        Vec::new()
    };
    let month = iocloud_db::time::month_of(iocloud_db::time::now_micros());
    let usage = if money_shown {
        c.billing.usage(actor, Some("cluster"), None).await?
    } else {
        Vec::new()
    };
    // This month's spend per currency, summed from the per-cluster rows.
    let mut spend: BTreeMap<&'static str, (Money, Money)> = BTreeMap::new();
    for row in usage {
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
    let live = c.clusters.live(actor, BURNING).await?;
    let burn = if money_shown {
        burn(&live, &balances)
    } else {
        Vec::new()
    };
    let mut alerts = Vec::new();
    let degraded = live
        .iter()
        .filter(|cl| cl.status == ClusterStatus::Degraded)
        .count();
    if degraded > 0 {
        alerts.push(Alert {
            text: format!(
                "{degraded} cluster{} degraded: a node was lost and nothing could replace it yet (not charged for).",
                if degraded == 1 { "" } else { "s" }
            ),
            href: "/app/clusters?status=degraded".into(),
        });
    }
    for b in &burn {
        if b.1.is_some_and(|hours| hours < LOW_RUNWAY_HOURS) {
            alerts.push(Alert {
                text: format!(
                    "At the current rate the {} balance lasts {}: add funds before clusters stop.",
                    b.0.currency,
                    b.0.runway.as_deref().unwrap_or("less than a day")
                ),
                href: "/app/billing".into(),
            });
        }
    }
    if money_shown
        && c.payments.is_on()
        && let Some(t) = c
            .payments
            .recent_top_ups(actor, 1)
            .await?
            .into_iter()
            .next()
        && t.status == TopUpStatus::Failed
    {
        alerts.push(Alert {
            text: format!(
                "The last card payment failed: {}",
                t.failure_message
                    .as_deref()
                    .unwrap_or("the card was not charged")
            ),
            href: format!("/app/billing/top-ups/{}", t.id),
        });
    }
    let clusters: Vec<ClusterLine> = live
        .into_iter()
        .take(SHOWN)
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
        alerts,
        burn: burn.into_iter().map(|(line, _)| line).collect(),
        balances,
        spend,
        month,
        clusters,
        clusters_live: quota.clusters_in_use,
        gpus_in_use: quota.gpus_in_use,
        money_shown,
    })
}
