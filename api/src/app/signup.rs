//! Creating an account from the console (as `POST /v1/auth/signup` does: with an organisation
//! of one's own, or joining the one an invitation names), and accepting an invitation by its
//! link: signed in, a button joins and switches the session there; signed out, the way to sign
//! up with it or to sign in first.

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use iocloud_control::Error as DomainError;
use iocloud_control::accounts::SignUp;
use iocloud_web::app::{AcceptView, SignupView};
use serde::Deserialize;

use super::session::{
    Posted, Visitor, csrf_ok, csrf_refused, is_tls, session_cookies, visitor, with_cookies,
};
use super::team::{refusal, switch_to};
use super::{html, show};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/signup", get(signup_form).post(sign_up))
        .route("/app/invitations/accept", get(accept_form).post(accept))
}

/// Whether `token` is shaped like an invitation's (`ioinv_` and letters and digits): only
/// such a token is put in a link.
fn token_shaped(token: &str) -> bool {
    token.starts_with("ioinv_")
        && token.len() <= 100
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[derive(Deserialize)]
pub(super) struct SignupQuery {
    invitation: Option<String>,
}

pub(super) async fn signup_form(headers: HeaderMap, Query(q): Query<SignupQuery>) -> Response {
    let (csrf, fresh) = super::session::csrf_token(&headers);
    let view = SignupView {
        csrf,
        name: String::new(),
        email: String::new(),
        org_name: String::new(),
        invitation: q.invitation.filter(|t| token_shaped(t)),
        error: None,
    };
    with_cookies(
        html(StatusCode::OK, iocloud_web::app::signup_page(&view)),
        fresh.as_slice(),
    )
}

#[derive(Deserialize)]
pub(super) struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    org_name: String,
    #[serde(default)]
    invitation: String,
}

/// Why sign-up or accepting was refused, in words, with its status; `None` for our failure.
fn words(e: &DomainError) -> Option<(StatusCode, String)> {
    match e {
        // Another email's invitation reads as missing (so tokens tell nothing about others).
        DomainError::NotFound("invitation") => Some((
            StatusCode::NOT_FOUND,
            "This invitation does not exist, or was sent to another email address.".into(),
        )),
        _ => refusal(e),
    }
}

pub(super) async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignupForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return (StatusCode::BAD_REQUEST, "The form could not be read.").into_response();
    };
    if !csrf_ok(&headers, &f.csrf) {
        return csrf_refused();
    }
    let invitation = Some(f.invitation.trim().to_string()).filter(|t| !t.is_empty());
    let input = SignUp {
        email: &f.email,
        password: &f.password,
        name: &f.name,
        // An invitation names the organisation; the form then has no field for one.
        org_name: invitation.is_none().then_some(f.org_name.as_str()),
        invitation: invitation.as_deref(),
    };
    let signed_up = state.control.accounts.sign_up(input).await;
    match signed_up {
        Ok(session) => with_cookies(
            Redirect::to("/app/").into_response(),
            &session_cookies(&session, is_tls(&headers)),
        ),
        Err(e) => match words(&e) {
            Some((status, why)) => {
                let view = SignupView {
                    csrf: f.csrf,
                    name: f.name,
                    email: f.email,
                    org_name: f.org_name,
                    invitation,
                    error: Some(why),
                };
                html(status, iocloud_web::app::signup_page(&view))
            }
            None => {
                tracing::error!(error = %e, "console sign-up failed");
                html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    iocloud_web::app::failure(),
                )
            }
        },
    }
}

#[derive(Deserialize)]
pub(super) struct AcceptQuery {
    #[serde(default)]
    token: String,
}

pub(super) async fn accept_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AcceptQuery>,
) -> Response {
    let token = q.token.trim();
    if !token_shaped(token) {
        return html(
            StatusCode::NOT_FOUND,
            iocloud_web::app::message(
                "Not an invitation",
                "This link holds no invitation; ask whoever invited you for a new one.",
            ),
        );
    }
    match visitor(&state, &headers).await {
        Ok(v) => accept_view(&state, &v, token.to_string(), None, StatusCode::OK).await,
        Err(_) => html(
            StatusCode::OK,
            iocloud_web::app::accept_signed_out_page(token),
        ),
    }
}

/// The signed-in page that accepts `token`, saying why the last try was refused.
async fn accept_view(
    state: &AppState,
    v: &Visitor,
    token: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let load = async {
        let email = match v.actor.user_id() {
            Some(id) => state.control.directory.user(id).await?.email,
            None => String::new(),
        };
        Ok(AcceptView {
            token,
            email,
            error,
        })
    };
    show(state, v, status, load, iocloud_web::app::accept_page).await
}

#[derive(Deserialize)]
pub(super) struct AcceptForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn accept(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { v, form: f }: Posted<AcceptForm>,
) -> Response {
    let token = f.token.trim();
    match state.control.orgs.accept_invitation(&v.actor, token).await {
        // A member now: the session moves there, as the old console did.
        Ok(joined) => {
            switch_to(
                &state,
                &v,
                &headers,
                &joined.organization.id,
                "/app/team?done=joined",
            )
            .await
        }
        Err(e) => match words(&e) {
            Some((status, why)) => {
                accept_view(&state, &v, token.to_string(), Some(why), status).await
            }
            None => super::failed(&v, e),
        },
    }
}
