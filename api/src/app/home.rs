//! Home: balances, this month's spend and the live clusters, from the same services REST uses.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use iocloud_billing::{Currency, Money};
use iocloud_control::PageRequest;
use iocloud_web::app::{BalanceLine, ClusterLine, HomeView, Shell, SpendLine};

use super::html;
use super::session::visitor;
use crate::state::AppState;

/// Live clusters shown on Home; the clusters page lists them all.
const SHOWN: u32 = 50;

pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let v = match visitor(&state, &headers).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    match view(&state, &v.actor).await {
        Ok((shell_parts, home)) => {
            let shell = Shell {
                organization: &shell_parts.0,
                email: &shell_parts.1,
                role: &shell_parts.2,
                csrf: &v.csrf,
            };
            v.answer(html(StatusCode::OK, iocloud_web::app::home(&shell, &home)))
        }
        Err(e) => {
            tracing::error!(error = %e, "the console's home page failed");
            v.answer(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                iocloud_web::app::failure(),
            ))
        }
    }
}

type ShellParts = (String, String, String);

async fn view(
    state: &AppState,
    actor: &iocloud_control::Actor,
) -> iocloud_control::Result<(ShellParts, HomeView)> {
    let c = &state.control;
    let org = c.directory.organization(&actor.org_id).await?;
    let email = match actor.user_id() {
        Some(id) => c.directory.user(id).await?.email,
        None => String::new(),
    };
    let role = actor.role().map_or("", |r| r.as_str()).to_string();
    let balances = c
        .billing
        .balances(actor)
        .await?
        .into_iter()
        .map(|b| BalanceLine {
            currency: b.currency.code().to_string(),
            available: b.available,
            held: b.held,
            earnings: b.earnings,
        })
        .collect();
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
    Ok((
        (org.name, email, role),
        HomeView {
            balances,
            spend,
            month,
            clusters,
            gpus_in_use,
        },
    ))
}
