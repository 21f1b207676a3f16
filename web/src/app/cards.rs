//! Paying by card on the Billing page: an amount charged to a saved card at once, or paid with
//! a new card in Stripe.js's card form (a page of its own, the only one that loads a script
//! from another origin); saved cards; recent top-ups with their receipts; a top-up's page that
//! follows it until the payment is credited.

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

/// A saved card.
pub struct CardLine {
    /// Stripe's payment method (`pm_…`).
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub expires: String,
    pub is_default: bool,
}

/// A card top-up, as listed and on its page.
pub struct TopUpLine {
    pub id: String,
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub created_at: String,
    /// Why it failed, in the issuer's words.
    pub failure: Option<String>,
}

/// Auto-reload as it is set, and how it went.
pub struct AutoReloadLine {
    pub enabled: bool,
    pub threshold: String,
    pub amount: String,
    pub monthly_cap: String,
    pub charged_this_month: String,
    pub last_failure: Option<String>,
}

/// The card part of the Billing page.
pub struct CardsView {
    pub cards: Vec<CardLine>,
    pub top_ups: Vec<TopUpLine>,
    pub auto_reload: AutoReloadLine,
}

/// The card form's page: what Stripe.js needs to set the card up, and the payment to make
/// with it once it is.
pub struct CardPayment {
    pub amount: String,
    pub save_card: bool,
    pub publishable_key: String,
    /// The SetupIntent's secret: on this page only, never stored or shown again.
    pub client_secret: String,
    pub stripe_js_url: String,
}

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) { (status) } }
}

/// The card section of the Billing page.
pub fn cards_section(shell: &Shell<'_>, v: &CardsView) -> Markup {
    html! {
        section aria-labelledby="card-h" {
            h2 id="card-h" { "Add funds by card" }
            form method="post" action="/app/billing/top-ups" class="inline-form" {
                input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                div { label for="top-up-amount" { "Amount, USD" } input id="top-up-amount" name="amount" inputmode="decimal" placeholder="25.00" required; }
                div {
                    label for="top-up-card" { "Card" }
                    select id="top-up-card" name="card" {
                        @for c in &v.cards {
                            option value=(c.id) selected[c.is_default] { (c.brand) " •••• " (c.last4) }
                        }
                        option value="new" { "A new card" }
                    }
                }
                div { label class="check" { input type="checkbox" name="save_card" value="on"; " Keep a new card for later" } }
                button type="submit" class="btn" { "Pay" }
            }
            @if !v.cards.is_empty() {
                table tabindex="0" data-testid="cards" {
                    caption class="muted" { "Saved cards" }
                    thead { tr { th scope="col" { "Card" } th scope="col" { "Expires" } th scope="col" { span class="sr-only" { "Actions" } } } }
                    tbody {
                        @for c in &v.cards {
                            tr {
                                th scope="row" { (c.brand) " •••• " (c.last4) @if c.is_default { " " span class="badge" { "default" } } }
                                td { (c.expires) }
                                td {
                                    div class="row-form" {
                                        @if !c.is_default {
                                            form method="post" action=(format!("/app/billing/cards/{}/default", c.id)) {
                                                input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                                                button type="submit" class="btn btn-secondary" { "Make default " span class="sr-only" { "card ending " (c.last4) } }
                                            }
                                        }
                                        form method="post" action=(format!("/app/billing/cards/{}/remove", c.id)) {
                                            input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                                            button type="submit" class="btn btn-secondary" { "Remove card ending " (c.last4) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (auto_reload(shell, v))
            @if !v.top_ups.is_empty() {
                table tabindex="0" data-testid="top-ups" {
                    caption class="muted" { "Recent card payments" }
                    thead { tr { th scope="col" { "Payment" } th scope="col" { "Status" } th scope="col" class="n" { "Amount" } th scope="col" { "Made" } th scope="col" { "Receipt" } } }
                    tbody {
                        @for t in &v.top_ups {
                            tr {
                                th scope="row" { a class="mono" href=(format!("/app/billing/top-ups/{}", t.id)) { (t.id) } }
                                td { (badge(&t.status)) @if let Some(f) = &t.failure { br; span class="muted" { (f) } } }
                                td class="n" { (t.amount) " " (t.currency) }
                                td { (super::when(&t.created_at)) }
                                td { @if t.status == "succeeded" { a href=(format!("/app/billing/top-ups/{}/receipt", t.id)) { "Receipt " span class="sr-only" { "for " (t.id) } } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn auto_reload(shell: &Shell<'_>, v: &CardsView) -> Markup {
    let a = &v.auto_reload;
    html! {
        h3 { "Auto-reload" }
        @if v.cards.is_empty() {
            p class="muted" { "Save a card to reload the balance by itself when it runs low." }
        } @else {
            p class="muted" data-testid="auto-reload" {
                @if a.enabled {
                    "On: when the USD balance falls under " (a.threshold) ", " (a.amount) " is charged to the default card; at most " (a.monthly_cap) " a month (" (a.charged_this_month) " so far)."
                } @else { "Off." }
            }
            @if let Some(why) = &a.last_failure { p class="error" { "The last reload failed: " (why) } }
            form method="post" action="/app/billing/auto-reload" class="inline-form" {
                input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                div { label class="check" { input type="checkbox" name="enabled" value="on" checked[a.enabled]; " Reload by itself" } }
                div { label for="ar-threshold" { "Under, USD" } input id="ar-threshold" name="threshold" inputmode="decimal" size="8" value=(a.threshold); }
                div { label for="ar-amount" { "Charge, USD" } input id="ar-amount" name="amount" inputmode="decimal" size="8" value=(a.amount); }
                div { label for="ar-cap" { "At most a month, USD" } input id="ar-cap" name="monthly_cap" inputmode="decimal" size="8" value=(a.monthly_cap); }
                button type="submit" class="btn btn-secondary" { "Save auto-reload" }
            }
        }
    }
}

/// The card form: Stripe.js draws the card fields in `#card-element` and sets the card up with
/// Stripe (3-D Secure included); `card.js` then posts the form with the SetupIntent's id, and
/// the server keeps the card and charges it.
pub fn card_payment_page(shell: &Shell<'_>, p: &CardPayment) -> Markup {
    let body = html! {
        p { "Paying " strong { (p.amount) " USD" } " to your balance. The card's details go to Stripe, never to us." }
        form id="card-form" class="card" method="post" action="/app/billing/cards"
            data-stripe-key=(p.publishable_key)
            data-client-secret=(p.client_secret) {
            input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
            input type="hidden" name="amount" value=(p.amount);
            @if p.save_card { input type="hidden" name="save_card" value="on"; }
            input type="hidden" name="setup_intent" id="setup-intent" value="";
            label for="card-element" { "Card" }
            div id="card-element" class="card-element" {}
            p id="card-error" class="error" role="alert" hidden {}
            button type="submit" class="btn" id="card-pay" { "Pay " (p.amount) " USD" }
        }
        p { a href="/app/billing" { "Back to billing" } }
        script src=(p.stripe_js_url) {}
        script src="/assets/app/card.js" defer {}
    };
    page("Billing", "Pay by card", shell, body)
}

/// A top-up's page: its status, refreshed every two seconds until the payment is settled.
pub fn top_up_page(shell: &Shell<'_>, t: &TopUpLine) -> Markup {
    let settled = matches!(t.status.as_str(), "succeeded" | "failed" | "canceled");
    let body = html! {
        div id="top-up" hx-get=[(!settled).then(|| format!("/app/billing/top-ups/{}", t.id))]
            hx-trigger=[(!settled).then_some("every 2s")] hx-select="#top-up" hx-swap="outerHTML" {
            (top_up_status(t))
        }
        p { a href="/app/billing" { "Back to billing" } }
    };
    page("Billing", &format!("Card payment {}", t.id), shell, body)
}

fn top_up_status(t: &TopUpLine) -> Markup {
    html! {
        p data-testid="top-up-status" { (badge(&t.status)) " " (t.amount) " " (t.currency) }
        @match t.status.as_str() {
            "succeeded" => p { "Credited to your balance. " a href=(format!("/app/billing/top-ups/{}/receipt", t.id)) { "Receipt" } },
            "failed" | "canceled" => p class="error" role="alert" { (t.failure.as_deref().unwrap_or("The payment did not go through; nothing was charged.")) },
            _ => p class="muted" { "Waiting for the card payment to be confirmed; this page follows it." },
        }
    }
}
