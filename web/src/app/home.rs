//! Home: what an organisation runs and what it has, at a glance: balances with what is held,
//! spend this month, and the clusters running now.

use maud::{Markup, html};

use super::billing::LedgerBalance;
use super::layout::{Shell, page};

/// Spend this month in one currency.
pub struct SpendLine {
    pub currency: String,
    pub amount: String,
    pub gpu_hours: String,
}

/// A live cluster.
pub struct ClusterLine {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub gpus: i64,
    pub price_per_hour: String,
    pub currency: String,
}

/// What the live clusters cost per hour in one currency, and how long the balance lasts.
pub struct BurnLine {
    pub currency: String,
    pub per_hour: String,
    /// How long what is available and held lasts at this rate, e.g. `about 3 d 4 h`.
    pub runway: Option<String>,
}

/// Something that needs the organisation's attention, and where to act on it.
pub struct Alert {
    pub text: String,
    pub href: String,
}

pub struct HomeView {
    pub alerts: Vec<Alert>,
    pub burn: Vec<BurnLine>,
    /// Home shows what is available, held and earned of each.
    pub balances: Vec<LedgerBalance>,
    pub spend: Vec<SpendLine>,
    pub month: String,
    /// The first live clusters.
    pub clusters: Vec<ClusterLine>,
    /// Every live cluster, and the GPUs they hold.
    pub clusters_live: i64,
    pub gpus_in_use: i64,
    /// Whether the visitor's role may see money (balances, spend, burn); the rest of Home is
    /// for every member.
    pub money_shown: bool,
}

pub fn home(shell: &Shell<'_>, v: &HomeView) -> Markup {
    let body = html! {
        @if !v.alerts.is_empty() {
            ul class="alerts" aria-label="Needs attention" data-testid="alerts" {
                @for a in &v.alerts { li { a href=(a.href) { (a.text) } } }
            }
        }
        section class="tiles" aria-label="At a glance" {
            div class="tile" {
                p class="tile-label" { "Clusters running" }
                p class="tile-value" data-testid="clusters-running" { (v.clusters_live) }
            }
            div class="tile" {
                p class="tile-label" { "GPUs in use" }
                p class="tile-value" data-testid="gpus-in-use" { (v.gpus_in_use) }
            }
            @for b in &v.burn {
                div class="tile" data-testid=(format!("burn-{}", b.currency)) {
                    p class="tile-label" { "Burn rate" }
                    p class="tile-value" { (b.per_hour) " " (b.currency) "/h" }
                    @if let Some(r) = &b.runway { p class="muted" { "balance lasts " (r) } }
                }
            }
            @for s in &v.spend {
                div class="tile" {
                    p class="tile-label" { "Spent in " (v.month) }
                    p class="tile-value" { (s.amount) " " (s.currency) }
                    p class="muted" { (s.gpu_hours) " GPU-hours" }
                }
            }
        }
        section aria-labelledby="balances-h" {
            h2 id="balances-h" { "Balances" }
            @if !v.money_shown {
                p class="muted" data-testid="money-hidden" {
                    "Balances and spend are shown to owners, admins and billing members."
                }
            } @else {
            table tabindex="0" {
                thead { tr { th scope="col" { "Currency" } th scope="col" class="n" { "Available" } th scope="col" class="n" { "Held by clusters" } th scope="col" class="n" { "Earnings" } } }
                tbody {
                    @for b in &v.balances {
                        tr {
                            th scope="row" { (b.currency) }
                            td class="n" { (b.available) }
                            td class="n" { (b.held) }
                            td class="n" { (b.earnings) }
                        }
                    }
                }
            }
            }
        }
        section aria-labelledby="clusters-h" {
            h2 id="clusters-h" { "Live clusters" }
            @if v.clusters.is_empty() {
                p class="muted" { "Nothing is running." }
            } @else {
                table tabindex="0" {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Status" } th scope="col" class="n" { "GPUs" } th scope="col" class="n" { "Per hour" } } }
                    tbody {
                        @for c in &v.clusters {
                            tr {
                                th scope="row" { a href=(format!("/app/clusters/{}", c.id)) { (c.name) } br; span class="muted mono" { (c.id) } }
                                td { (c.kind) }
                                td { span class=(format!("badge badge-{}", c.status)) { (c.status) } }
                                td class="n" { (c.gpus) }
                                td class="n" { (c.price_per_hour) " " (c.currency) }
                            }
                        }
                    }
                }
                @if v.clusters_live > v.clusters.len() as i64 {
                    p { a href="/app/clusters" { "All " (v.clusters_live) " live clusters" } }
                }
            }
        }
    };
    page("Home", "Home", shell, body)
}
