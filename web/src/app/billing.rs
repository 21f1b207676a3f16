//! Billing: every balance, the way to the statements (invoices, refunds), deposits on Solana
//! (ask for one, pay it from a wallet by its link or QR code, watch it arrive), and the
//! organisation's ledger lines, a page at a time.

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

/// A balance in one currency, with everything the ledger keeps for it.
pub struct LedgerBalance {
    pub currency: String,
    pub available: String,
    pub held: String,
    pub owed: String,
    pub refund_pending: String,
    pub earnings: String,
    pub payout_pending: String,
}

/// A deposit intent, as listed.
pub struct DepositLine {
    pub id: String,
    pub currency: String,
    pub status: String,
    /// Asked for; `None` when the wallet asks the payer.
    pub amount: Option<String>,
    pub received: String,
    pub created_at: String,
}

/// One line of the ledger.
pub struct PostingLine {
    pub at: String,
    pub kind: String,
    pub account: String,
    pub amount: String,
    pub currency: String,
    pub memo: String,
}

/// What one cluster cost this month.
pub struct ClusterSpend {
    pub id: String,
    /// `None` when the cluster is not found any more.
    pub name: Option<String>,
    pub gpu_hours: String,
    pub amount: String,
    pub currency: String,
}

pub struct BillingView {
    pub balances: Vec<LedgerBalance>,
    /// Spend per day over the last days, a series per currency.
    pub spend: Vec<super::chart::DailySeries>,
    /// This month's spend by cluster as bars, a series per currency, most first.
    pub by_cluster_bars: Vec<super::chart::NamedSeries>,
    /// This month's spend by cluster, most first.
    pub by_cluster: Vec<ClusterSpend>,
    /// The month `by_cluster` sums, e.g. `2026-12`.
    pub month: String,
    /// `None` when this deployment takes no deposits on chain.
    pub deposits: Option<Vec<DepositLine>>,
    pub postings: Vec<PostingLine>,
    /// The cursor of the ledger's next page, if there is one.
    pub next_postings: Option<String>,
    /// `None` when this deployment takes no cards.
    pub cards: Option<super::cards::CardsView>,
    /// Why the last form was refused, shown at the top.
    pub error: Option<String>,
}

pub fn billing(shell: &Shell<'_>, v: &BillingView) -> Markup {
    let body = html! {
        @if let Some(error) = &v.error {
            p class="error" role="alert" { (error) }
        }
        section aria-labelledby="balances-h" {
            h2 id="balances-h" { "Balances" }
            table tabindex="0" {
                thead { tr {
                    th scope="col" { "Currency" } th scope="col" class="n" { "Available" }
                    th scope="col" class="n" { "Held by clusters" } th scope="col" class="n" { "Owed" }
                    th scope="col" class="n" { "Refunding" } th scope="col" class="n" { "Earnings" }
                    th scope="col" class="n" { "Paying out" }
                } }
                tbody {
                    @for b in &v.balances {
                        tr {
                            th scope="row" { (b.currency) }
                            td class="n" { (b.available) } td class="n" { (b.held) } td class="n" { (b.owed) }
                            td class="n" { (b.refund_pending) } td class="n" { (b.earnings) } td class="n" { (b.payout_pending) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="statements-h" {
            h2 id="statements-h" { "Statements" }
            nav aria-label="Statements" class="filters" {
                a href="/app/billing/invoices" { "Invoices" }
                a href="/app/billing/refunds" { "Refunds" }
            }
        }
        section aria-labelledby="spend-h" {
            h2 id="spend-h" { "Spend" }
            @if v.spend.is_empty() {
                p class="muted" { "Nothing spent in the last 30 days." }
            }
            @for series in &v.spend { (super::chart::daily_chart(series, super::chart::Counted::Spend)) }
            @let span = format!("in {}", v.month);
            @for s in &v.by_cluster_bars {
                (super::chart::bar_chart(s, super::chart::ByName { counted: super::chart::Counted::Spend, by: "Cluster", span: &span }))
            }
            @if !v.by_cluster.is_empty() {
                table tabindex="0" data-testid="spend-by-cluster" {
                    caption class="muted" { "By cluster in " (v.month) }
                    thead { tr { th scope="col" { "Cluster" } th scope="col" class="n" { "GPU-hours" } th scope="col" class="n" { "Spent" } } }
                    tbody {
                        @for c in &v.by_cluster {
                            tr {
                                th scope="row" {
                                    a href=(format!("/app/clusters/{}", c.id)) { (c.name.as_deref().unwrap_or(&c.id)) }
                                    @if c.name.is_some() { br; span class="muted mono" { (c.id) } }
                                }
                                td class="n" { (c.gpu_hours) }
                                td class="n" { (c.amount) " " (c.currency) }
                            }
                        }
                    }
                }
            }
        }
        @match &v.cards {
            Some(cards) => (super::cards::cards_section(shell, cards)),
            None => section aria-labelledby="card-h" { h2 id="card-h" { "Add funds by card" } p class="muted" { "Card payments are not configured on this deployment." } },
        }
        section aria-labelledby="deposit-h" {
            h2 id="deposit-h" { "Add funds on Solana" }
            @match &v.deposits {
                None => p class="muted" { "Deposits on Solana are not configured on this deployment." },
                Some(deposits) => {
                    form method="post" action="/app/billing/deposits" class="inline-form" {
                        input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                        label for="deposit-currency" { "Pay in" }
                        select id="deposit-currency" name="currency" {
                            option value="IOSD" { "IOSD" }
                            option value="USDC" { "USDC (credited as IOSD, less a fee)" }
                            option value="IO" { "IO" }
                        }
                        label for="deposit-amount" { "Amount (optional)" }
                        input id="deposit-amount" name="amount" inputmode="decimal" placeholder="25.00";
                        button type="submit" class="btn" { "Get a payment request" }
                    }
                    @if deposits.is_empty() {
                        p class="muted" { "No deposits yet." }
                    } @else {
                        table tabindex="0" {
                            thead { tr { th scope="col" { "Deposit" } th scope="col" { "Currency" } th scope="col" { "Status" } th scope="col" class="n" { "Asked" } th scope="col" class="n" { "Received" } th scope="col" { "Made" } } }
                            tbody {
                                @for d in deposits {
                                    tr {
                                        th scope="row" { a href=(format!("/app/billing/deposits/{}", d.id)) class="mono" { (d.id) } }
                                        td { (d.currency) }
                                        td { span class=(format!("badge badge-{}", d.status)) { (d.status) } }
                                        td class="n" { (d.amount.as_deref().unwrap_or("any")) }
                                        td class="n" { (d.received) }
                                        td { (super::when(&d.created_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="ledger-h" {
            h2 id="ledger-h" { "Ledger" }
            @if v.postings.is_empty() {
                p class="muted" { "No money has moved yet." }
            } @else {
                table tabindex="0" {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Account" } th scope="col" class="n" { "Amount" } th scope="col" { "Memo" } } }
                    tbody {
                        @for p in &v.postings {
                            tr {
                                td { (super::when(&p.at)) }
                                td { (p.kind) }
                                td { (p.account) }
                                td class="n" { (p.amount) " " (p.currency) }
                                td { (p.memo) }
                            }
                        }
                    }
                }
                @if let Some(next) = &v.next_postings {
                    p { a href=(format!("/app/billing?after={next}")) { "Older lines" } }
                }
            }
        }
    };
    page("Billing", "Billing", shell, body)
}

/// A deposit's payment request: its `solana:` link to open in a wallet, its QR code, what has
/// arrived so far.
pub struct DepositView {
    pub id: String,
    pub currency: String,
    pub status: String,
    pub amount: Option<String>,
    pub received: String,
    pub recipient: String,
    pub reference: String,
    pub url: String,
    pub expires_at: String,
}

pub fn deposit(shell: &Shell<'_>, d: &DepositView) -> Markup {
    // An open deposit's state is asked again every three seconds (its page, this block of it)
    // until it is paid or expires; then the block stays as it is.
    let open = d.status == "open";
    let url = format!("/app/billing/deposits/{}", d.id);
    let body = html! {
        p { a href="/app/billing" { "← Billing" } }
        div class="deposit" {
            img src=(format!("/app/billing/deposits/{}/qr.svg", d.id)) width="240" height="240"
                alt="QR code of the payment request: scan it with a Solana wallet";
            dl id="deposit-state" aria-live="polite" data-testid="deposit-state"
                hx-get=[open.then_some(url.as_str())] hx-trigger=[open.then_some("every 3s")]
                hx-select="#deposit-state" hx-swap="outerHTML" {
                dt { "Status" } dd { span class=(format!("badge badge-{}", d.status)) { (d.status) } }
                dt { "Pay" } dd { (d.amount.as_deref().unwrap_or("any amount of")) " " (d.currency) }
                dt { "Received" } dd { (d.received) " " (d.currency) }
                dt { "To" } dd class="mono" { (d.recipient) }
                dt { "Reference" } dd class="mono" { (d.reference) }
                dt { "Open until" } dd { (super::when(&d.expires_at)) }
            }
        }
        p { a class="btn" href=(d.url) { "Open in a wallet" } }
        p class="muted" {
            "The payment is credited once it is final on Solana, usually within a minute; "
            "this page follows it there."
        }
    };
    page("Billing", &format!("Deposit {}", d.id), shell, body)
}
