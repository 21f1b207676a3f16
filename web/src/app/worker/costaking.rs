//! Co-staking: a provider offers the stake one of its devices needs, for a share of the
//! device's block rewards and a term; any organisation holding $IO takes an offer from the
//! market (which shows the device's model, GPUs, region and reliability, never its provider)
//! and its $IO backs the device. The page holds the organisation's offers with the form that
//! makes one, the market with its filters and a take form per offer, and its co-stakes with
//! unstaking and withdrawing.

use maud::{Markup, html};

use super::super::layout::{Shell, page};
use super::super::offers::Choice;
use super::{csrf, said};

/// One of the organisation's offers.
pub struct CostakeOfferLine {
    pub id: String,
    pub device_id: String,
    pub device_name: String,
    /// $IO offered.
    pub amount: String,
    /// The co-staker's share of the device's block rewards, e.g. `50 %`.
    pub share: String,
    pub term_days: i64,
    /// `open`, `taken`, `withdrawn` or `ended`.
    pub status: String,
    pub created_at: String,
    /// Open: nobody has taken it, so it can be withdrawn.
    pub withdrawable: bool,
}

/// An open offer of another provider, as the market shows it: never whose it is.
pub struct CostakeMarketLine {
    pub id: String,
    /// The GPU model's name, or `CPU only`.
    pub model: String,
    pub gpu_count: i64,
    pub region: String,
    /// Learned reliability, e.g. `97.5 %`.
    pub reliability: String,
    pub amount: String,
    pub share: String,
    pub term_days: i64,
    /// The take form's amount: the whole offer, or what was typed when it was refused.
    pub take_amount: String,
}

/// One of the organisation's co-stakes.
pub struct CostakePositionLine {
    pub id: String,
    pub device_id: String,
    /// $IO staked now (a slash of the device takes its part).
    pub amount: String,
    pub share: String,
    /// `active`, `notice`, `cooldown`, `withdrawable` or `withdrawn`, and what that means.
    pub state: String,
    pub state_words: String,
    /// When the notice ends, or the cooldown (RFC 3339), while either runs.
    pub until: Option<String>,
    /// $IO earned from the device's blocks.
    pub earned: String,
    pub created_at: String,
    pub term_ends_at: String,
    /// Active: it may be unstaked (refused while the term runs).
    pub can_unstake: bool,
    /// Its cooldown is over: the $IO can come back.
    pub can_withdraw: bool,
}

/// The offer form as typed.
#[derive(Clone, Default)]
pub struct CostakeOfferForm {
    pub device_id: String,
    pub amount: String,
    /// Percent of the device's block rewards, e.g. `20` or `12.5`.
    pub share: String,
    pub term_days: String,
}

/// The market's filters as typed.
#[derive(Clone, Default)]
pub struct CostakeMarketFilter {
    pub model: String,
    pub min_reliability: String,
}

pub struct CostakingView {
    /// The organisation's offers and co-stakes, newest first; `None` when the visitor's role
    /// may not read billing.
    pub offers: Option<Vec<CostakeOfferLine>>,
    pub positions: Option<Vec<CostakePositionLine>>,
    /// $IO in the organisation's balance, ready to co-stake (`None` as for `offers`).
    pub available: Option<String>,
    /// The organisation's devices that may be offered, for the offer form.
    pub devices: Vec<Choice>,
    pub form: CostakeOfferForm,
    /// Open offers of other providers, oldest first.
    pub market: Vec<CostakeMarketLine>,
    /// The address of the market's next page, filters kept.
    pub next_market: Option<String>,
    pub models: Vec<Choice>,
    pub filter: CostakeMarketFilter,
    /// Whether the visitor may offer, take, unstake and withdraw.
    pub can_manage: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) data-status=(status) { (status) } }
}

pub fn costaking_page(shell: &Shell<'_>, v: &CostakingView) -> Markup {
    let body = html! {
        (said(v.notice.as_deref(), v.error.as_deref()))
        p class="muted" {
            "Offer the stake one of your devices needs to others, for a share of its block rewards and "
            "a term; or back another provider's device with your $IO and earn its share. A co-stake "
            "stays for its term, then gives 7 days' notice (still backing the device and earning), "
            "then the 14-day cooldown before its $IO comes back. A slash of the device takes from both "
            "stakes in proportion."
        }
        @match &v.offers {
            Some(offers) => (your_offers(shell, v, offers)),
            None => p class="muted" data-testid="money-hidden" {
                "Your offers and co-stakes are shown to owners, admins and billing members."
            },
        }
        (market(shell, v))
        @if let Some(positions) = &v.positions { (your_positions(shell, v, positions)) }
    };
    page("Co-staking", "Co-staking", shell, body)
}

fn your_offers(shell: &Shell<'_>, v: &CostakingView, offers: &[CostakeOfferLine]) -> Markup {
    html! {
        section aria-labelledby="my-offers-h" {
            h2 id="my-offers-h" { "Your offers" }
            @if offers.is_empty() {
                p class="muted" data-testid="no-offers" { "You have not offered a device's stake yet." }
            } @else {
                table tabindex="0" data-testid="my-offers" {
                    caption class="muted" { "Your devices' stake offered to others, newest first" }
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" class="n" { "$IO" }
                        th scope="col" class="n" { "Co-staker's share" } th scope="col" class="n" { "Term" }
                        th scope="col" { "Status" } th scope="col" { span class="sr-only" { "Withdraw" } }
                    } }
                    tbody {
                        @for o in offers {
                            tr data-offer=(o.id) {
                                th scope="row" {
                                    a href=(format!("/app/worker/devices/{}", o.device_id)) { (o.device_name) }
                                    br; span class="muted mono" { (o.id) } " · " (super::super::when(&o.created_at))
                                }
                                td class="n" { (o.amount) }
                                td class="n" { (o.share) }
                                td class="n" { (o.term_days) " days" }
                                td { (badge(&o.status)) }
                                td {
                                    @if o.withdrawable && v.can_manage {
                                        form method="post" action=(format!("/app/worker/costaking/offers/{}/withdraw", o.id)) class="row-form" {
                                            (csrf(shell))
                                            button type="submit" class="btn btn-secondary" { "Withdraw offer " span class="sr-only" { (o.id) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if v.can_manage {
                @if v.devices.is_empty() {
                    p class="muted" { "Add a device first: " a href="/app/worker" { "your devices" } "." }
                } @else {
                    (offer_form(shell, v))
                }
            } @else {
                p class="muted" { "An owner, or a member with the billing role, offers, takes and unstakes." }
            }
        }
    }
}

fn offer_form(shell: &Shell<'_>, v: &CostakingView) -> Markup {
    let f = &v.form;
    html! {
        h3 id="offer-h" { "Offer a device's stake" }
        form method="post" action="/app/worker/costaking/offers" class="inline-form" data-testid="offer-form" aria-labelledby="offer-h" {
            (csrf(shell))
            div {
                label for="o-device" { "Device" }
                select id="o-device" name="device_id" required {
                    @for d in &v.devices { option value=(d.value) selected[f.device_id == d.value] { (d.label) } }
                }
            }
            div {
                label for="o-amount" { "Amount, $IO" }
                input id="o-amount" name="amount" inputmode="decimal" size="12" required value=(f.amount)
                    aria-describedby="o-amount-hint";
                span class="hint" id="o-amount-hint" { "at most what the device needs staked" }
            }
            div {
                label for="o-share" { "Co-staker's share, % of the device's block rewards" }
                input id="o-share" name="share" inputmode="decimal" size="6" required value=(f.share)
                    aria-describedby="o-share-hint";
                span class="hint" id="o-share-hint" { "percent, 0.01 to 100, like 20" }
            }
            div {
                label for="o-term" { "Term, days" }
                input id="o-term" name="term_days" inputmode="numeric" size="4" required value=(f.term_days)
                    aria-describedby="o-term-hint";
                span class="hint" id="o-term-hint" { "1 to 365: it cannot be unstaked before" }
            }
            button type="submit" class="btn" { "Offer" }
        }
        p class="hint" { "One live offer per device. A smaller co-stake takes its part of the share." }
    }
}

fn market(shell: &Shell<'_>, v: &CostakingView) -> Markup {
    let f = &v.filter;
    html! {
        section aria-labelledby="market-h" {
            h2 id="market-h" { "Market" }
            form method="get" action="/app/worker/costaking" class="inline-form" data-testid="market-filter" role="search" aria-label="Filter the market" {
                div {
                    label for="m-model" { "GPU model" }
                    select id="m-model" name="model" {
                        option value="" selected[f.model.is_empty()] { "Any model" }
                        @for m in &v.models { option value=(m.value) selected[f.model == m.value] { (m.label) } }
                    }
                }
                div {
                    label for="m-reliability" { "Minimum reliability" }
                    input id="m-reliability" name="min_reliability" inputmode="decimal" size="6" value=(f.min_reliability)
                        aria-describedby="m-reliability-hint";
                    span class="hint" id="m-reliability-hint" { "0 to 1, like 0.95" }
                }
                button type="submit" class="btn btn-secondary" { "Filter" }
            }
            @if v.market.is_empty() {
                p class="muted" data-testid="market-empty" { "No open offer of another provider matches." }
            } @else {
                table tabindex="0" data-testid="market" {
                    caption class="muted" { "Open offers of other providers, oldest first; their providers are not named" }
                    thead { tr {
                        th scope="col" { "GPU model" } th scope="col" class="n" { "GPUs" } th scope="col" { "Region" }
                        th scope="col" class="n" { "Reliability" } th scope="col" class="n" { "$IO" }
                        th scope="col" class="n" { "Your share" } th scope="col" class="n" { "Term" }
                        th scope="col" { "Take" }
                    } }
                    tbody {
                        @for o in &v.market {
                            tr data-offer=(o.id) {
                                th scope="row" { (o.model) }
                                td class="n" { (o.gpu_count) }
                                td { (o.region) }
                                td class="n" { (o.reliability) }
                                td class="n" { (o.amount) }
                                td class="n" { (o.share) }
                                td class="n" { (o.term_days) " days" }
                                td { (take_form(shell, v, o)) }
                            }
                        }
                    }
                }
                @if let Some(next) = &v.next_market { p { a href=(next) { "More offers" } } }
            }
            @if let Some(a) = &v.available { p class="hint" { (a) " $IO in your balance can be co-staked." } }
        }
    }
}

fn take_form(shell: &Shell<'_>, v: &CostakingView, o: &CostakeMarketLine) -> Markup {
    let id = format!("take-{}", o.id);
    html! {
        @if v.can_manage {
            form method="post" action=(format!("/app/worker/costaking/offers/{}/take", o.id)) class="row-form" {
                (csrf(shell))
                label for=(id) class="sr-only" { "$IO to co-stake in offer " (o.id) }
                input id=(id) name="amount" inputmode="decimal" size="10" required value=(o.take_amount);
                button type="submit" class="btn btn-secondary" { "Take" span class="sr-only" { " offer " (o.id) } }
            }
        } @else {
            span class="muted" { "—" }
        }
    }
}

fn your_positions(
    shell: &Shell<'_>,
    v: &CostakingView,
    positions: &[CostakePositionLine],
) -> Markup {
    html! {
        section aria-labelledby="positions-h" {
            h2 id="positions-h" { "Your co-stakes" }
            @if positions.is_empty() {
                p class="muted" data-testid="no-positions" { "You co-stake no device yet: take an offer from the market." }
            } @else {
                table tabindex="0" data-testid="positions" {
                    caption class="muted" { "Devices of other providers your $IO backs, newest first" }
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" class="n" { "$IO" } th scope="col" class="n" { "Share" }
                        th scope="col" { "State" } th scope="col" class="n" { "Earned, $IO" }
                        th scope="col" { span class="sr-only" { "Unstake or withdraw" } }
                    } }
                    tbody {
                        @for p in positions {
                            tr data-position=(p.id) {
                                th scope="row" {
                                    span class="mono" { (p.device_id) }
                                    br; span class="muted" { "since " (super::super::when(&p.created_at)) }
                                    br; span class="muted" { "term until " (super::super::when(&p.term_ends_at)) }
                                }
                                td class="n" { (p.amount) }
                                td class="n" { (p.share) }
                                td {
                                    (badge(&p.state)) br;
                                    span class="muted" {
                                        (p.state_words)
                                        @if let Some(t) = &p.until { " until " (super::super::when(t)) }
                                    }
                                }
                                td class="n" { (p.earned) }
                                td { (position_action(shell, v, p)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Unstake for an active co-stake, withdraw for one whose cooldown is over.
fn position_action(shell: &Shell<'_>, v: &CostakingView, p: &CostakePositionLine) -> Markup {
    html! {
        @if v.can_manage && p.can_unstake {
            form method="post" action=(format!("/app/worker/costaking/positions/{}/unstake", p.id)) class="row-form" {
                (csrf(shell))
                button type="submit" class="btn btn-secondary" { "Unstake " (p.amount) " $IO" span class="sr-only" { " (" (p.id) ")" } }
            }
        } @else if v.can_manage && p.can_withdraw {
            form method="post" action=(format!("/app/worker/costaking/positions/{}/withdraw", p.id)) class="row-form" {
                (csrf(shell))
                button type="submit" class="btn btn-secondary" { "Withdraw " (p.amount) " $IO" span class="sr-only" { " (" (p.id) ")" } }
            }
        }
    }
}
