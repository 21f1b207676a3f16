//! The console's session: the API's own access and refresh tokens, kept in cookies the page's
//! scripts cannot read (HttpOnly), sent only with this site's own navigations (SameSite=Lax),
//! only over TLS when served over TLS (Secure). Every form carries a CSRF token that must equal
//! the `csrf` cookie (a double submit): another site can make a browser post, but cannot read
//! the cookie to put it in the form.
//!
//! An expired access token is traded for a new pair with the refresh cookie on the next page,
//! as `POST /v1/auth/refresh` would.

use axum::extract::{Form, FromRequest, RawForm, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::{Actor, Error as DomainError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::html;
use crate::state::AppState;

const ACCESS: &str = "iocloud_access";
const REFRESH: &str = "iocloud_refresh";
const CSRF: &str = iocloud_web::app::CSRF_FIELD;
/// How long a signed-in browser stays signed in without a visit (the refresh token's life).
const SESSION_SECS: i64 = 30 * 24 * 3600;

/// A signed-in visitor: who they are, their CSRF token, and cookies to set on the answer (a
/// refreshed session).
pub(super) struct Visitor {
    pub actor: Actor,
    pub csrf: String,
    set_cookies: Vec<String>,
    /// The session's refresh token now: the one just issued when this visit renewed the
    /// session (the cookie's is spent then), else the cookie's.
    refresh: Option<String>,
}

impl Visitor {
    /// The refresh token to trade for a session elsewhere (another organisation): trading a
    /// spent one would end the session as stolen.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh.as_deref()
    }

    /// `res` with the cookies this visit renewed.
    pub fn answer(&self, res: Response) -> Response {
        with_cookies(res, &self.set_cookies)
    }
}

/// A page's visitor as a handler argument: signed in, or sent to sign in.
impl axum::extract::FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        visitor(state, &parts.headers).await
    }
}

/// A form posted by a signed-in visitor: read, its CSRF token checked against the cookie, the
/// visitor found. Any of those failing answers at once: 400 (unreadable), 403 (the token), or
/// the way to sign in. The token is checked before the fields are read or anyone is looked up,
/// so a forged form learns nothing; form structs hold no `csrf` field (serde skips keys a
/// struct does not name).
pub(super) struct Posted<T> {
    pub v: Visitor,
    pub form: T,
}

/// A form that carries nothing but its CSRF token. Braces, not a unit struct: a unit struct
/// would refuse the token as an unexpected field.
#[derive(Deserialize)]
pub(super) struct NoFields {}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        // The body as `Form` reads it: urlencoded (by its content type) or not read at all.
        let Ok(RawForm(bytes)) = RawForm::from_request(req, state).await else {
            return Err(unreadable());
        };
        let sent = form_urlencoded::parse(&bytes)
            .find(|(k, _)| *k == CSRF)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !csrf_ok(&headers, &sent) {
            return Err(csrf_refused());
        }
        let Ok(form) = serde_urlencoded::from_bytes::<T>(&bytes) else {
            return Err(unreadable());
        };
        let v = visitor(state, &headers).await?;
        Ok(Self { v, form })
    }
}

/// The answer to a form that could not be read: nothing was done.
fn unreadable() -> Response {
    (StatusCode::BAD_REQUEST, "The form could not be read.").into_response()
}

/// `res` with a `Set-Cookie` for each of `cookies`.
pub(super) fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(SET_COOKIE, v);
        }
    }
    res
}

/// The signed-in visitor, or the way to the sign-in page.
pub(super) async fn visitor(state: &AppState, headers: &HeaderMap) -> Result<Visitor, Response> {
    let secure = is_tls(headers);
    let (csrf, fresh) = csrf_token(headers);
    let mut set_cookies: Vec<String> = fresh.into_iter().collect();
    let accounts = &state.control.accounts;
    if let Some(token) = cookie(headers, ACCESS)
        && let Ok(actor) = accounts.authenticate(token).await
        && actor.user_id().is_some()
    {
        return Ok(Visitor {
            actor,
            csrf,
            set_cookies,
            refresh: cookie(headers, REFRESH).map(str::to_string),
        });
    }
    // The access token ran out (or is missing): the refresh cookie buys a new pair, once.
    if let Some(refresh) = cookie(headers, REFRESH)
        && let Ok(session) = accounts.refresh(refresh, None).await
        && let Ok(actor) = accounts.authenticate(&session.access_token).await
    {
        set_cookies.extend(session_cookies(&session, secure));
        return Ok(Visitor {
            actor,
            csrf,
            set_cookies,
            refresh: Some(session.refresh_token),
        });
    }
    Err(with_cookies(
        Redirect::to("/app/login").into_response(),
        &cleared(secure),
    ))
}

/// The session's access token, if the browser sent one.
pub(super) fn access_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, ACCESS)
}

/// Whether the form's token is the visitor's: the same bytes, compared in constant time.
pub(super) fn csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    match cookie(headers, CSRF) {
        Some(c) if c.len() >= 32 => bool::from(c.as_bytes().ct_eq(sent.as_bytes())),
        _ => false,
    }
}

/// The answer to a form whose CSRF token is missing or wrong: nothing was done.
pub(super) fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "This form expired or came from another site; nothing was done. Reload the page and try again.",
    )
        .into_response()
}

/// This browser's CSRF token, and the cookie to set when it has none yet.
pub(super) fn csrf_token(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF) {
        Some(c) if c.len() >= 32 => (c.to_string(), None),
        _ => {
            let fresh = new_csrf();
            let line = set_cookie(CSRF, &fresh, SESSION_SECS, is_tls(headers));
            (fresh, Some(line))
        }
    }
}

pub(super) async fn login_page(headers: HeaderMap) -> Response {
    let (csrf, fresh) = csrf_token(&headers);
    let res = html(StatusCode::OK, iocloud_web::app::login(&csrf, "", None));
    with_cookies(res, fresh.as_slice())
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn log_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return unreadable();
    };
    if !csrf_ok(&headers, &form.csrf) {
        return csrf_refused();
    }
    let secure = is_tls(&headers);
    match state
        .control
        .accounts
        .log_in(&form.email, &form.password, None)
        .await
    {
        Ok(session) => with_cookies(
            Redirect::to("/app/").into_response(),
            &session_cookies(&session, secure),
        ),
        Err(e) => {
            let (status, why) = match &e {
                DomainError::TooManyLoginAttempts { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts for this account: wait a few minutes and try again.",
                ),
                DomainError::InvalidCredentials | DomainError::Validation { .. } => (
                    StatusCode::UNAUTHORIZED,
                    "That email and password do not match an account.",
                ),
                _ => {
                    tracing::error!(error = %e, "console sign-in failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong on our side; try again.",
                    )
                }
            };
            html(
                status,
                iocloud_web::app::login(&form.csrf, &form.email, Some(why)),
            )
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn log_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let sent = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf_ok(&headers, &sent) {
        return csrf_refused();
    }
    if let Ok(v) = visitor(&state, &headers).await
        && let Err(e) = state.control.accounts.log_out(&v.actor).await
    {
        tracing::warn!(error = %e, "could not end a console session");
    }
    with_cookies(
        Redirect::to("/app/login").into_response(),
        &cleared(is_tls(&headers)),
    )
}

pub(super) fn session_cookies(
    session: &iocloud_control::accounts::AuthSession,
    secure: bool,
) -> [String; 2] {
    [
        set_cookie(ACCESS, &session.access_token, session.expires_in, secure),
        set_cookie(REFRESH, &session.refresh_token, SESSION_SECS, secure),
    ]
}

fn cleared(secure: bool) -> [String; 2] {
    [
        set_cookie(ACCESS, "", 0, secure),
        set_cookie(REFRESH, "", 0, secure),
    ]
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/app; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Served over TLS: by a proxy in front of this server, which says so.
pub(super) fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// 32 random bytes, hex.
fn new_csrf() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
