//! The server-rendered console: pages drawn here with `maud` (escaped by construction, checked
//! when compiled) from plain view structs the API's adapters fill from the domain services, so
//! this crate needs no domain types. Forms carry the session's CSRF token; every page goes out
//! with [`APP_CSP`].

mod billing;
mod home;
mod layout;
mod login;

pub use billing::{
    BillingView, DepositLine, DepositView, LedgerBalance, PostingLine, billing, deposit,
};
pub use home::{ClusterLine, HomeView, SpendLine, home};
pub use layout::Shell;
pub use login::login;
pub use maud::Markup;

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

/// The name of the hidden field (and cookie) holding the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
