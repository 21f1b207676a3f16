//! Invoices and refunds pages: the organisation's months, each month's statement (a line per
//! cluster and price, totals per currency, its usage lines as CSV, a printable page), and
//! refunds of unused card credit (what is refundable now, the form that asks for one, the
//! refunds asked and each one's parts).

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

/// A month the organisation has a statement for.
pub struct StatementMonth {
    /// `2026-12`.
    pub month: String,
    /// This month, still running: its statement grows as clusters run.
    pub current: bool,
}

/// The months with a statement, newest first.
pub struct InvoicesView {
    pub months: Vec<StatementMonth>,
    /// More months went before the ones listed.
    pub older: bool,
}

/// A line of a statement: one cluster at one price.
pub struct StatementLine {
    pub cluster_id: String,
    /// `None` when the cluster is not found any more.
    pub name: Option<String>,
    pub currency: String,
    pub gpu_hours: String,
    /// Price per GPU-hour.
    pub rate: String,
    pub amount: String,
    /// Usage the cluster's hold could not cover.
    pub unpaid: String,
}

/// A statement's total in one currency.
pub struct StatementTotal {
    pub currency: String,
    pub amount: String,
    pub unpaid: String,
}

/// A month's statement.
pub struct StatementView {
    pub organization: String,
    pub org_id: String,
    /// `2026-12`.
    pub month: String,
    pub current: bool,
    pub lines: Vec<StatementLine>,
    pub totals: Vec<StatementTotal>,
}

/// A refund, as listed.
pub struct RefundLine {
    pub id: String,
    pub amount: String,
    pub currency: String,
    /// `requested`, `pending`, `succeeded` or `failed`.
    pub status: String,
    pub created_at: String,
}

/// The refunds page.
pub struct RefundsView {
    /// What could be refunded now.
    pub refundable: String,
    pub currency: String,
    /// The balance's available and being-refunded amounts in that currency, when it has one.
    pub available: Option<String>,
    pub refunding: Option<String>,
    /// Whether this deployment takes cards (refunds go back to them).
    pub cards_on: bool,
    /// Whether the visitor's role may ask for refunds.
    pub can_ask: bool,
    /// Newest first.
    pub refunds: Vec<RefundLine>,
    /// The amount as typed, kept when the form is refused.
    pub amount: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// One card payment's share of a refund.
pub struct RefundPartLine {
    pub top_up_id: String,
    pub amount: String,
    pub status: String,
    /// Stripe's refund (`re_…`), once Stripe took it.
    pub stripe_refund_id: Option<String>,
    pub failure: Option<String>,
}

/// A refund's page.
pub struct RefundView {
    pub refund: RefundLine,
    pub parts: Vec<RefundPartLine>,
}

/// `December 2026` for `2026-12` (the text itself when it is not a month).
pub fn month_name(month: &str) -> String {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    match month.split_once('-') {
        Some((y, m)) => match m.parse::<usize>() {
            Ok(n @ 1..=12) => format!("{} {y}", NAMES[n - 1]),
            _ => month.to_string(),
        },
        None => month.to_string(),
    }
}

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) data-status=(status) { (status) } }
}

/// Where the statements pages lead: the other one, and back to Billing.
fn subnav(current: &str) -> Markup {
    html! {
        nav aria-label="Statements" class="filters" {
            a href="/app/billing" { "← Billing" }
            @for (href, name) in [("/app/billing/invoices", "Invoices"), ("/app/billing/refunds", "Refunds")] {
                a href=(href) aria-current=[(current == name).then_some("page")] { (name) }
            }
        }
    }
}

pub fn invoices_page(shell: &Shell<'_>, v: &InvoicesView) -> Markup {
    let body = html! {
        (subnav("Invoices"))
        p class="muted" {
            "A statement per month: what each cluster ran, at which price, and what it cost. "
            "The current month grows as clusters run."
        }
        ul data-testid="months" {
            @for m in &v.months {
                li {
                    a href=(format!("/app/billing/invoices/{}", m.month)) { (month_name(&m.month)) }
                    " " span class="muted mono" { (m.month) }
                    @if m.current { " " span class="muted" { "(so far)" } }
                }
            }
        }
        @if v.older {
            p class="hint" { "Older months are not listed; open /app/billing/invoices/YYYY-MM for one, like 2024-11." }
        }
    };
    page("Billing", "Invoices", shell, body)
}

pub fn invoice_page(shell: &Shell<'_>, v: &StatementView) -> Markup {
    let title = format!("Invoice {}", month_name(&v.month));
    let body = html! {
        (subnav("Invoices"))
        dl class="facts" {
            dt { "Organisation" } dd { (v.organization) " " span class="muted mono" { (v.org_id) } }
            dt { "Month" } dd { (month_name(&v.month)) " " span class="muted mono" { (v.month) } }
        }
        @if v.current {
            p class="muted" { "This month is not over: its statement grows as clusters run." }
        }
        @if v.lines.is_empty() {
            p class="muted" data-testid="no-usage" { "No usage in this month." }
        } @else {
            table tabindex="0" data-testid="invoice-lines" {
                thead { tr {
                    th scope="col" { "Cluster" } th scope="col" class="n" { "GPU-hours" }
                    th scope="col" class="n" { "Rate per GPU-hour" } th scope="col" class="n" { "Amount" }
                    th scope="col" class="n" { "Unpaid" }
                } }
                tbody {
                    @for l in &v.lines {
                        tr {
                            th scope="row" {
                                @match &l.name {
                                    Some(name) => {
                                        a href=(format!("/app/clusters/{}", l.cluster_id)) { (name) }
                                        br; span class="muted mono" { (l.cluster_id) }
                                    }
                                    None => span class="mono" { (l.cluster_id) },
                                }
                            }
                            td class="n" { (l.gpu_hours) }
                            td class="n" { (l.rate) " " (l.currency) }
                            td class="n" { (l.amount) " " (l.currency) }
                            td class="n" { (l.unpaid) " " (l.currency) }
                        }
                    }
                }
            }
        }
        @if !v.totals.is_empty() {
            table tabindex="0" data-testid="invoice-totals" {
                caption class="muted" { "Totals" }
                thead { tr { th scope="col" { "Currency" } th scope="col" class="n" { "Total" } th scope="col" class="n" { "Unpaid" } } }
                tbody {
                    @for t in &v.totals {
                        tr {
                            th scope="row" { (t.currency) }
                            td class="n" { (t.amount) " " (t.currency) }
                            td class="n" { (t.unpaid) " " (t.currency) }
                        }
                    }
                }
            }
        }
        p {
            a href=(format!("/app/billing/invoices/{}/csv", v.month)) { "Every usage line of the month (CSV)" }
            " · "
            a href=(format!("/app/billing/invoices/{}/print", v.month)) { "Printable page" }
        }
        p class="hint" {
            "Amounts are exact to the micro-unit; usage is charged per second of running, never for time a node was down."
        }
    };
    page("Billing", &title, shell, body)
}

pub fn refunds_page(shell: &Shell<'_>, v: &RefundsView) -> Markup {
    let body = html! {
        (subnav("Refunds"))
        @if let Some(error) = &v.error {
            p class="error" role="alert" data-testid="refund-error" { (error) }
        }
        @if let Some(notice) = &v.notice {
            p class="notice" role="status" { (notice) }
        }
        section aria-labelledby="refundable-h" {
            h2 id="refundable-h" { "Refundable now" }
            p data-testid="refundable" { strong { (v.refundable) " " (v.currency) } }
            p class="muted" {
                "What was paid by card and is neither spent, held by clusters, refunded nor disputed. "
                "A refund goes back to the cards it was paid with, the newest payment first."
            }
            @if let (Some(available), Some(refunding)) = (&v.available, &v.refunding) {
                p data-testid="usd-balance" {
                    "Available: " (available) " " (v.currency) "; being refunded: " (refunding) " " (v.currency) "."
                }
            }
        }
        section aria-labelledby="ask-refund-h" {
            h2 id="ask-refund-h" { "Ask for a refund" }
            @if !v.cards_on {
                p class="muted" { "Card payments are not configured on this deployment, so there is no card to refund to." }
            } @else if !v.can_ask {
                p class="muted" { "An owner, or a member with the billing role, asks for refunds." }
            } @else {
                form method="post" action="/app/billing/refunds" class="inline-form" data-testid="refund-form" {
                    input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                    div {
                        label for="refund-amount" { "Amount, " (v.currency) }
                        input id="refund-amount" name="amount" inputmode="decimal" size="10" value=(v.amount)
                            placeholder=(v.refundable) aria-describedby="refund-hint";
                        p id="refund-hint" class="hint" { "Leave it empty to refund everything refundable." }
                    }
                    button type="submit" class="btn" { "Refund to card" }
                }
            }
        }
        section aria-labelledby="refunds-h" {
            h2 id="refunds-h" { "Refunds" }
            @if v.refunds.is_empty() {
                p class="muted" { "No refunds yet." }
            } @else {
                table tabindex="0" data-testid="refunds" {
                    thead { tr {
                        th scope="col" { "Refund" } th scope="col" { "Status" }
                        th scope="col" class="n" { "Amount" } th scope="col" { "Asked" }
                    } }
                    tbody {
                        @for r in &v.refunds {
                            tr {
                                th scope="row" { a class="mono" href=(format!("/app/billing/refunds/{}", r.id)) { (r.id) } }
                                td { (badge(&r.status)) }
                                td class="n" { (r.amount) " " (r.currency) }
                                td { (super::when(&r.created_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Billing", "Refunds", shell, body)
}

pub fn refund_page(shell: &Shell<'_>, v: &RefundView) -> Markup {
    let r = &v.refund;
    let body = html! {
        (subnav("Refunds"))
        dl class="facts" {
            dt { "Status" } dd { (badge(&r.status)) }
            dt { "Amount" } dd { (r.amount) " " (r.currency) }
            dt { "Asked" } dd { (super::when(&r.created_at)) }
        }
        @match r.status.as_str() {
            "requested" => p class="muted" { "Stripe has not taken it yet; it is asked again shortly." },
            "pending" => p class="muted" { "Stripe took it; the money is on its way to the card, which can take a few days." },
            "failed" => p class="error" { "Stripe refused it; the money is back on your balance." },
            _ => p class="muted" { "Refunded to the card. A part that failed is back on your balance." },
        }
        @if !v.parts.is_empty() {
            table tabindex="0" data-testid="refund-parts" {
                caption class="muted" { "By card payment" }
                thead { tr {
                    th scope="col" { "Card payment" } th scope="col" class="n" { "Amount" }
                    th scope="col" { "Status" } th scope="col" { "Stripe refund" }
                } }
                tbody {
                    @for p in &v.parts {
                        tr {
                            th scope="row" { a class="mono" href=(format!("/app/billing/top-ups/{}", p.top_up_id)) { (p.top_up_id) } }
                            td class="n" { (p.amount) " " (r.currency) }
                            td { (badge(&p.status)) @if let Some(why) = &p.failure { br; span class="muted" { (why) } } }
                            td class="mono" { (p.stripe_refund_id.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    page("Billing", &format!("Refund {}", r.id), shell, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_read_as_words() {
        assert_eq!(month_name("2026-12"), "December 2026");
        assert_eq!(month_name("2027-01"), "January 2027");
        assert_eq!(month_name("2026-13"), "2026-13");
        assert_eq!(month_name("soon"), "soon");
    }
}
