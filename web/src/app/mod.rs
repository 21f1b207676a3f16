//! The server-rendered console: pages drawn here with `maud` (escaped by construction, checked
//! when compiled) from plain view structs the API's adapters fill from the domain services, so
//! this crate needs no domain types. Forms carry the session's CSRF token; every page goes out
//! with [`APP_CSP`].

mod billing;
mod cards;
mod chart;
mod clusters;
mod home;
mod keys;
mod layout;
mod login;
mod offers;
mod signup;
mod statements;
mod team;
mod worker;

pub use billing::{
    BillingView, ClusterSpend, DepositLine, DepositView, LedgerBalance, PostingLine, billing,
    deposit,
};
pub use cards::*;
pub use chart::{Counted, DailySeries, DayAmount, daily_chart};
pub use clusters::*;
pub use home::{Alert, BurnLine, ClusterLine, HomeView, SpendLine, home};
pub use keys::*;
pub use layout::{OrgChoice, Shell, head as layout_head};
pub use login::login;
pub use maud::Markup;
pub use offers::*;
pub use signup::*;
pub use statements::*;
pub use team::*;
pub use worker::*;

/// A moment for people, to the minute in UTC (`2026-12-06 07:53 UTC`), in a `<time>` that
/// keeps the exact instant for machines.
pub fn when(rfc3339: &str) -> Markup {
    let shown = match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(minute)) if rfc3339.len() > 16 => format!("{day} {minute} UTC"),
        _ => rfc3339.to_string(),
    };
    maud::html! { time datetime=(rfc3339) { (shown) } }
}

/// A page saying something went wrong on our side (the cause is in the server's log).
pub fn failure() -> Markup {
    message(
        "Something went wrong",
        "Something went wrong on our side; reload the page.",
    )
}

/// A page with a heading and one sentence (what is missing, what went wrong), and the way home.
pub fn message(title: &str, text: &str) -> Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            (layout::head(title))
            body { main id="main" { h1 { (title) } p { (text) } p { a href="/app/" { "Home" } } } }
        }
    }
}

/// Pages load this server's own styles and scripts only, submit forms only to it, run no inline
/// script and may not be framed.
pub const APP_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// [`APP_CSP`] for the card page: Stripe.js may load from `stripe_origin` (its script, its
/// card frames, its calls) and talk to Stripe's API; every other page keeps the strict one.
pub fn card_csp(stripe_origin: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' {stripe_origin}; style-src 'self'; \
         img-src 'self' data:; font-src 'self'; frame-src {stripe_origin}; \
         connect-src 'self' {stripe_origin} https://api.stripe.com; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The name of the hidden field (and cookie) holding the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
