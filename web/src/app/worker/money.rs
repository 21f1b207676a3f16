//! The money side of IO Worker: earnings and their payouts to proved wallets, and the $IO
//! stake that lists devices (staking, the 14-day cooldown, withdrawing after it).

use maud::{Markup, html};

use super::super::layout::{Shell, page};
use super::{csrf, said, subnav};

/// Earnings in one currency: what can be paid out, and what is on its way.
pub struct EarningsBalance {
    pub currency: String,
    pub earnings: String,
    pub payout_pending: String,
}

/// A payout, as listed.
pub struct PayoutLine {
    pub id: String,
    pub status: String,
    /// Why it waits, failed or was refused.
    pub reason: Option<String>,
    pub amount: String,
    pub currency: String,
    pub token: String,
    pub token_amount: String,
    pub address: String,
    /// The transfer's signature once signed.
    pub signature: Option<String>,
    pub created_at: String,
    /// Not signed yet: it can be taken back.
    pub cancellable: bool,
}

/// A proved payout wallet.
pub struct WalletLine {
    pub id: String,
    pub address: String,
    pub label: Option<String>,
    pub is_default: bool,
    pub created_at: String,
}

/// The payout form as typed.
#[derive(Clone, Default)]
pub struct PayoutForm {
    pub amount: String,
    pub currency: String,
    pub token: String,
    pub wallet_id: String,
}

pub struct PayoutsView {
    pub balances: Vec<EarningsBalance>,
    /// Whether this deployment pays out on chain at all.
    pub rail_on: bool,
    /// The smallest payout, in USD.
    pub minimum: String,
    /// Newest first.
    pub payouts: Vec<PayoutLine>,
    pub wallets: Vec<WalletLine>,
    /// Whether the visitor may ask for payouts and change wallets.
    pub can_manage: bool,
    pub form: PayoutForm,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) data-status=(status) { (status.replace('_', " ")) } }
}

/// A long address or signature, whole (to copy, or to look up in an explorer of one's choice).
fn long_text(text: &str) -> Markup {
    html! { span class="mono long" { (text) } }
}

pub fn payouts_page(shell: &Shell<'_>, v: &PayoutsView) -> Markup {
    let body = html! {
        (subnav("Payouts"))
        (said(v.notice.as_deref(), v.error.as_deref()))
        section aria-labelledby="earnings-h" {
            h2 id="earnings-h" { "Earnings" }
            table tabindex="0" data-testid="earnings" {
                thead { tr {
                    th scope="col" { "Currency" } th scope="col" class="n" { "To pay out" }
                    th scope="col" class="n" { "Paying out now" }
                } }
                tbody {
                    @for b in &v.balances {
                        tr {
                            th scope="row" { (b.currency) }
                            td class="n" { (b.earnings) }
                            td class="n" { (b.payout_pending) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="ask-h" {
            h2 id="ask-h" { "Ask for a payout" }
            @if !v.rail_on {
                p class="muted" data-testid="payouts-off" { "Payouts on Solana are not configured on this deployment." }
            } @else if !v.can_manage {
                p class="muted" { "An owner, or a member with the billing role, asks for payouts." }
            } @else if v.wallets.is_empty() {
                p class="muted" { "Add a payout wallet first (below)." }
            } @else {
                (payout_form(shell, v))
            }
        }
        section aria-labelledby="payouts-h" {
            h2 id="payouts-h" { "Payouts" }
            @if v.payouts.is_empty() {
                p class="muted" { "No payouts yet." }
            } @else {
                (payout_table(shell, v))
            }
        }
        (wallets(shell, v))
    };
    page("Worker", "Payouts", shell, body)
}

fn payout_form(shell: &Shell<'_>, v: &PayoutsView) -> Markup {
    let f = &v.form;
    html! {
        form method="post" action="/app/worker/payouts" class="inline-form" data-testid="payout-form" {
            (csrf(shell))
            div {
                label for="po-amount" { "Amount" }
                input id="po-amount" name="amount" inputmode="decimal" size="10" required value=(f.amount)
                    aria-describedby="po-hint";
            }
            div {
                label for="po-currency" { "Of earnings in" }
                select id="po-currency" name="currency" {
                    @for c in ["USD", "IOSD", "IO"] { option value=(c) selected[f.currency == c] { (c) } }
                }
            }
            div {
                label for="po-token" { "Paid as" }
                select id="po-token" name="token" {
                    option value="" selected[f.token.is_empty()] { "IO for IO earnings, else IOSD" }
                    @for t in ["IOSD", "USDC", "IO"] { option value=(t) selected[f.token == t] { (t) } }
                }
            }
            div {
                label for="po-wallet" { "To wallet" }
                select id="po-wallet" name="wallet_id" {
                    @for w in &v.wallets {
                        option value=(w.id) selected[f.wallet_id == w.id || (f.wallet_id.is_empty() && w.is_default)] {
                            (w.label.as_deref().unwrap_or("Wallet")) " · " (w.address)
                            @if w.is_default { " (default)" }
                        }
                    }
                }
            }
            button type="submit" class="btn" { "Ask for payout" }
            span class="hint" id="po-hint" {
                "At least " (v.minimum) " USD; earnings in other currencies are converted at the price feed's rate. Large payouts wait for an operator's approval."
            }
        }
    }
}

fn payout_table(shell: &Shell<'_>, v: &PayoutsView) -> Markup {
    html! {
        table tabindex="0" data-testid="payouts" {
            thead { tr {
                th scope="col" { "Payout" } th scope="col" { "Status" } th scope="col" class="n" { "Amount" }
                th scope="col" class="n" { "Paid as" } th scope="col" { "Wallet" } th scope="col" { "Transfer" }
                th scope="col" { span class="sr-only" { "Cancel" } }
            } }
            tbody {
                @for p in &v.payouts {
                    tr data-payout=(p.id) {
                        th scope="row" { span class="mono" { (p.id) } br; (super::super::when(&p.created_at)) }
                        td {
                            (badge(&p.status))
                            @if let Some(r) = &p.reason { br; span class="muted" { (r) } }
                        }
                        td class="n" { (p.amount) " " (p.currency) }
                        td class="n" { (p.token_amount) " " (p.token) }
                        td { (long_text(&p.address)) }
                        td {
                            @match &p.signature {
                                // The signature as text to look up in any explorer: no link
                                // to a third party from here.
                                Some(s) => (long_text(s)),
                                None => span class="muted" { "not signed yet" },
                            }
                        }
                        td {
                            @if p.cancellable && v.can_manage {
                                form method="post" action=(format!("/app/worker/payouts/{}/cancel", p.id)) class="row-form" {
                                    (csrf(shell))
                                    button type="submit" class="btn btn-secondary" { "Cancel payout " span class="mono" { (p.id) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn wallets(shell: &Shell<'_>, v: &PayoutsView) -> Markup {
    html! {
        section aria-labelledby="wallets-h" {
            h2 id="wallets-h" { "Payout wallets" }
            @if v.wallets.is_empty() {
                p class="muted" { "No payout wallet yet." }
            } @else {
                table tabindex="0" data-testid="wallets" {
                    thead { tr {
                        th scope="col" { "Wallet" } th scope="col" { "Address" } th scope="col" { "Added" }
                        th scope="col" { span class="sr-only" { "Change" } }
                    } }
                    tbody {
                        @for w in &v.wallets {
                            tr {
                                th scope="row" {
                                    (w.label.as_deref().unwrap_or("Wallet"))
                                    @if w.is_default { " " span class="badge badge-active" { "default" } }
                                    br; span class="muted mono" { (w.id) }
                                }
                                td { (long_text(&w.address)) }
                                td { (super::super::when(&w.created_at)) }
                                td {
                                    @if v.can_manage {
                                        @if !w.is_default {
                                            form method="post" action=(format!("/app/worker/wallets/{}/default", w.id)) class="row-form" {
                                                (csrf(shell))
                                                button type="submit" class="btn btn-secondary" { "Make " span class="mono" { (w.address) } " the default" }
                                            }
                                        }
                                        form method="post" action=(format!("/app/worker/wallets/{}/remove", w.id)) class="row-form" {
                                            (csrf(shell))
                                            button type="submit" class="btn btn-danger" { "Remove wallet " span class="mono" { (w.address) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Adding a wallet" }
            p {
                "A wallet is added by proving you hold it: ask for a challenge, sign its message with the wallet's key, "
                "and send the signature back. Signing needs the wallet itself, so it is done outside this page: over the API, "
                code { "POST /v1/payouts/wallets/challenges" } " with the address, then "
                code { "POST /v1/payouts/wallets" } " with the challenge's id and the signature. "
                code { "iocloud payouts wallets" } " lists them from a terminal. The first wallet becomes the default."
            }
        }
    }
}

/// A stake, as listed.
pub struct StakeLine {
    pub id: String,
    pub amount: String,
    /// `active`, `unbonding` or `withdrawn`.
    pub status: String,
    pub created_at: String,
    /// When an unbonding stake may be withdrawn.
    pub available_at: Option<String>,
    /// Its cooldown is over.
    pub withdrawable: bool,
}

pub struct StakePage {
    /// $IO staked and active, needed by the listed devices, free to unstake, and cooling down.
    pub active: String,
    pub required: String,
    pub free: String,
    pub cooling_down: String,
    /// $IO in the organisation's balance, ready to stake.
    pub available: String,
    pub stakes: Vec<StakeLine>,
    /// Whether the visitor may stake, unstake and withdraw.
    pub can_manage: bool,
    /// The stake form's amount as typed.
    pub amount: String,
    /// Sent with the stake form: the same form sent twice stakes once.
    pub reference: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub fn stake_page(shell: &Shell<'_>, v: &StakePage) -> Markup {
    let body = html! {
        (subnav("Stake"))
        (said(v.notice.as_deref(), v.error.as_deref()))
        div class="tiles" data-testid="stake-tiles" {
            div class="tile" { p class="tile-label" { "Staked" } p class="tile-value" data-testid="stake-active" { (v.active) } p class="muted" { "$IO, active" } }
            div class="tile" { p class="tile-label" { "Required" } p class="tile-value" { (v.required) } p class="muted" { "$IO, by your listed devices" } }
            div class="tile" { p class="tile-label" { "Free" } p class="tile-value" { (v.free) } p class="muted" { "$IO you could unstake now" } }
            div class="tile" { p class="tile-label" { "In cooldown" } p class="tile-value" data-testid="stake-cooling" { (v.cooling_down) } p class="muted" { "$IO, withdrawable after 14 days" } }
        }
        p class="muted" {
            "A device is listed for rent only while your active stake covers every listed device: "
            "200 $IO per GPU, times the model's multiplier (10 for H100 and H200), 200 $IO for a CPU-only machine."
        }
        @if v.can_manage {
            section aria-labelledby="stake-h" {
                h2 id="stake-h" { "Stake $IO" }
                form method="post" action="/app/worker/stake" class="inline-form" data-testid="stake-form" {
                    (csrf(shell))
                    input type="hidden" name="reference" value=(v.reference);
                    div {
                        label for="stake-amount" { "Amount, $IO" }
                        input id="stake-amount" name="amount" inputmode="decimal" size="12" required value=(v.amount)
                            aria-describedby="stake-hint";
                    }
                    button type="submit" class="btn" { "Stake" }
                    span class="hint" id="stake-hint" { (v.available) " $IO in your balance can be staked." }
                }
            }
        } @else {
            p class="muted" { "An owner, or a member with the billing role, stakes and unstakes." }
        }
        section aria-labelledby="stakes-h" {
            h2 id="stakes-h" { "Stakes" }
            @if v.stakes.is_empty() {
                p class="muted" { "Nothing staked yet." }
            } @else {
                table tabindex="0" data-testid="stakes" {
                    thead { tr {
                        th scope="col" { "Stake" } th scope="col" class="n" { "$IO" } th scope="col" { "Status" }
                        th scope="col" { "Released" } th scope="col" { span class="sr-only" { "Unstake or withdraw" } }
                    } }
                    tbody {
                        @for s in &v.stakes {
                            tr data-stake=(s.id) {
                                th scope="row" { span class="mono" { (s.id) } br; (super::super::when(&s.created_at)) }
                                td class="n" { (s.amount) }
                                td { (badge(&s.status)) }
                                td {
                                    @match &s.available_at {
                                        Some(t) => (super::super::when(t)),
                                        None => span class="muted" { "—" },
                                    }
                                }
                                td { (stake_action(shell, v, s)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Worker", "Stake", shell, body)
}

/// Unstake for an active stake, withdraw for one whose cooldown is over.
fn stake_action(shell: &Shell<'_>, v: &StakePage, s: &StakeLine) -> Markup {
    html! {
        @if v.can_manage && s.status == "active" {
            form method="post" action="/app/worker/unstake" class="row-form" {
                (csrf(shell))
                input type="hidden" name="stake_id" value=(s.id);
                button type="submit" class="btn btn-secondary" { "Unstake " (s.amount) " $IO" span class="sr-only" { " (" (s.id) ")" } }
            }
        } @else if v.can_manage && s.status == "unbonding" {
            @if s.withdrawable {
                form method="post" action="/app/worker/withdraw" class="row-form" {
                    (csrf(shell))
                    input type="hidden" name="stake_id" value=(s.id);
                    button type="submit" class="btn btn-secondary" { "Withdraw " (s.amount) " $IO" span class="sr-only" { " (" (s.id) ")" } }
                }
            } @else {
                span class="muted" { "in cooldown" }
            }
        }
    }
}
