//! The staking page (`/explorer/staking`): $IO staked and co-staked, the stake each model's
//! listed devices are bonded with, stake over the last 30 days, the open co-staking offers, and
//! the slashing cases with their outcomes (redacted: the rule, the $IO and the kinds of
//! evidence, never the words).

use maud::{Markup, html};

use super::{Bar, Tile, bar_chart, frame, tiles, when};

/// A co-staking offer's line.
pub struct OfferLine {
    pub device_id: String,
    pub model: String,
    pub region: String,
    pub amount: String,
    pub share: String,
    pub term_days: i64,
}

/// A slashing case's line.
pub struct CaseLine {
    pub opened: String,
    pub device_id: String,
    pub model: String,
    pub rule: String,
    pub status: String,
    pub amount: String,
    /// "3 proofs, 1 block".
    pub evidence: String,
    pub appealed: bool,
}

/// The staking page.
pub struct StakingView {
    pub tiles: Vec<Tile>,
    /// (model, devices, GPUs, $IO bonded).
    pub bonded: Vec<(String, i64, i64, String)>,
    /// (status, cases, $IO).
    pub by_status: Vec<(String, i64, String)>,
    /// $IO backing the network by day (day, $IO in whole units, $IO as printed).
    pub staked_days: Vec<(String, f64, String)>,
    pub offers: Vec<OfferLine>,
    pub cases: Vec<CaseLine>,
    /// Only this device's cases, when asked.
    pub device_id: Option<String>,
    /// The query string of the next page of cases.
    pub next: Option<String>,
}

/// The staking page.
pub fn staking_page(v: &StakingView) -> Markup {
    frame(
        "Staking",
        "Staking and slashing",
        html! {
            p { "Providers stake $IO on their devices to list them; co-stakers may put up the stake for a share of a device's rewards. A device that breaks the network's rules is slashed: the $IO goes into escrow, the provider may appeal, and what is upheld is burned." }
            (tiles(&v.tiles))
            h2 { "Bonded by model" }
            table tabindex="0" {
                caption { "The stake the listed devices of each model need" }
                thead { tr { th { "Model" } th class="n" { "Devices" } th class="n" { "GPUs" } th class="n" { "Bonded $IO" } } }
                tbody {
                    @for (model, devices, gpus, bonded) in &v.bonded {
                        tr { td { (model) } td class="n" { (devices) } td class="n" { (gpus) } td class="n" { (bonded) } }
                    }
                }
            }
            @if !v.staked_days.is_empty() {
                h2 { "Staked over the last 30 days" }
                @let bars: Vec<Bar> = v.staked_days.iter().map(|(day, units, printed)| Bar {
                    whole: *units,
                    part: *units,
                    tip: format!("{day}: {printed} $IO staked on average"),
                }).collect();
                (bar_chart("staked-title", "$IO staked by day", "$IO backing the network each day (providers' stake and co-stake), on average over its blocks.", &bars))
            }
            h2 { "Open co-staking offers" }
            @if v.offers.is_empty() {
                p class="muted" { "No offer is open." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Device" } th { "Model" } th { "Region" } th class="n" { "$IO asked" } th class="n" { "Reward share" } th class="n" { "Term (days)" } } }
                    tbody {
                        @for o in &v.offers {
                            tr {
                                td class="mono" { a href=(format!("/explorer/devices/{}", o.device_id)) { (o.device_id) } }
                                td { (o.model) } td { (o.region) }
                                td class="n" { (o.amount) } td class="n" { (o.share) } td class="n" { (o.term_days) }
                            }
                        }
                    }
                }
            }
            h2 { "Slashing cases" }
            @if !v.by_status.is_empty() {
                table tabindex="0" {
                    caption { "Cases by state" }
                    thead { tr { th { "State" } th class="n" { "Cases" } th class="n" { "$IO" } } }
                    tbody {
                        @for (status, cases, amount) in &v.by_status {
                            tr { td { (status) } td class="n" { (cases) } td class="n" { (amount) } }
                        }
                    }
                }
            }
            @if let Some(device) = &v.device_id {
                p { "Only the cases of device " span class="mono" { (device) } ". " a href="/explorer/staking" { "Every case" } }
            }
            @if v.cases.is_empty() {
                p class="muted" { "No slashing case." }
            } @else {
                table tabindex="0" {
                    caption { "Newest first" }
                    thead { tr { th { "Opened" } th { "Device" } th { "Model" } th { "Rule" } th { "State" } th class="n" { "$IO" } th { "Evidence" } } }
                    tbody {
                        @for c in &v.cases {
                            tr {
                                td { time datetime=(c.opened) { (when(&c.opened)) } }
                                td class="mono" { a href=(format!("/explorer/devices/{}", c.device_id)) { (c.device_id) } }
                                td { (c.model) }
                                td { (c.rule) }
                                td { (c.status) @if c.appealed { " (appealed)" } }
                                td class="n" { (c.amount) }
                                td { (c.evidence) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next {
                p { a href=(format!("/explorer/staking?{next}")) { "Older cases" } }
            }
        },
    )
}
