//! The server-rendered console at `/app/`: thin adapters that read the session cookie, call
//! the domain services and hand plain views to `iocloud_web::app` to draw. Signing in and out
//! live in [`session`]; each page in a module of its own.

mod home;
mod session;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(home::page))
        .route("/app/login", get(session::login_page).post(session::log_in))
        .route("/app/logout", axum::routing::post(session::log_out))
}

/// An HTML answer with the console's Content-Security-Policy, never cached (it shows an
/// organisation's money).
fn html(status: axum::http::StatusCode, markup: iocloud_web::app::Markup) -> Response {
    let mut res = (status, markup).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(iocloud_web::app::APP_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
