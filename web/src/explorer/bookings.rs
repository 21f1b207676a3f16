//! The bookings ledger (`/explorer/bookings`): rentals and payments as the network sees them,
//! without who made them.

use maud::{Markup, html};

use super::{frame, when};

/// A rental's line.
pub struct RentalLine {
    pub started: String,
    /// RFC 3339, or "running" while it runs.
    pub ended: String,
    pub device_id: String,
    pub model: String,
    pub region: String,
    pub gpu_hours: String,
    /// With its currency.
    pub amount: String,
}

/// A payment's line.
pub struct PaymentLine {
    pub at: String,
    /// "Card top-up", "Deposit on Solana", "Payout on Solana".
    pub what: String,
    /// With its currency (and the token that moved, when it differs).
    pub amount: String,
    pub signature: Option<String>,
}

/// The bookings page.
pub struct BookingsView {
    pub rentals: Vec<RentalLine>,
    pub payments: Vec<PaymentLine>,
    /// The query strings of the next pages.
    pub next_rentals: Option<String>,
    pub next_payments: Option<String>,
}

/// The bookings page.
pub fn bookings_page(v: &BookingsView) -> Markup {
    frame(
        "Bookings",
        "Bookings ledger",
        html! {
            p { "Every rental of a device and every payment in and out of the network, newest first, without who made them. A payment on Solana shows its transaction's signature." }
            h2 { "Rentals" }
            @if v.rentals.is_empty() {
                p class="muted" { "No rental yet." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Started" } th { "Ended" } th { "Device" } th { "Model" } th { "Region" } th class="n" { "GPU-hours" } th class="n" { "Amount" } } }
                    tbody {
                        @for r in &v.rentals {
                            tr {
                                td { time datetime=(r.started) { (when(&r.started)) } }
                                td { (when(&r.ended)) }
                                td class="mono" { a href=(format!("/explorer/devices/{}", r.device_id)) { (r.device_id) } }
                                td { (r.model) } td { (r.region) }
                                td class="n" { (r.gpu_hours) } td class="n" { (r.amount) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next_rentals {
                p { a href=(format!("/explorer/bookings?{next}")) { "Older rentals" } }
            }
            h2 { "Payments" }
            @if v.payments.is_empty() {
                p class="muted" { "No payment yet." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "When" } th { "What" } th class="n" { "Amount" } th { "Signature" } } }
                    tbody {
                        @for p in &v.payments {
                            tr {
                                td { time datetime=(p.at) { (when(&p.at)) } }
                                td { (p.what) }
                                td class="n" { (p.amount) }
                                td class="mono" { (p.signature.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next_payments {
                p { a href=(format!("/explorer/bookings?{next}")) { "Older payments" } }
            }
        },
    )
}
