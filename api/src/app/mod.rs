//! The server-rendered console at `/app/`: thin adapters that read the session cookie, call
//! the domain services and hand plain views to `iocloud_web::app` to draw. Signing in and out
//! live in [`session`]; each page in a module of its own.

mod billing;
mod cards;
mod chart;
mod clusters;
mod explorer;
mod governance;
mod home;
mod keys;
mod offers;
mod session;
mod signup;
mod statements;
mod team;
mod worker;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::state::AppState;
use iocloud_control::orgs::{Activity, Me};
use iocloud_control::{Actor, Error as DomainError};
use iocloud_web::app::{Choice, OrgChoice};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(home::page))
        .route("/app/billing", get(billing::page))
        .route("/app/billing/deposits", axum::routing::post(billing::ask))
        .route("/app/billing/deposits/{id}", get(billing::deposit))
        .route("/app/billing/deposits/{id}/qr.svg", get(billing::qr))
        .route("/app/login", get(session::login_page).post(session::log_in))
        .route("/app/logout", axum::routing::post(session::log_out))
        .merge(cards::router())
        .merge(clusters::router())
        .merge(explorer::router())
        .merge(governance::router())
        .merge(keys::router())
        .merge(offers::router())
        .merge(signup::router())
        .merge(statements::router())
        .merge(team::router())
        .merge(worker::router())
}

/// Records every form the console posts in the audit log, as REST requests are: who (from the
/// session cookie), the route, its target and the outcome. A session whose access token ran
/// out is renewed by the handler, after this; its request is recorded without the user.
pub async fn audited(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
        return next.run(req).await;
    }
    let actor = match session::access_token(req.headers()) {
        Some(token) => state.control.accounts.authenticate(token).await.ok(),
        None => None,
    };
    crate::middleware::audit::record(&state, req, move |req| async move {
        if let (Some(slot), Some(actor)) = (
            req.extensions()
                .get::<crate::middleware::audit::AuditSlot>(),
            &actor,
        ) {
            slot.set_actor(actor);
        }
        next.run(req).await
    })
    .await
}

/// The words for a `?done=` key a form's redirect carries, when it is one of `known` (key,
/// words): only those are ever shown, so a link cannot make a page say anything else.
fn said_done(done: Option<&str>, known: &[(&str, &str)]) -> Option<String> {
    done.and_then(|d| known.iter().find(|(k, _)| *k == d))
        .map(|(_, words)| (*words).to_string())
}

/// The catalog's GPU models and regions as the console's selects offer them.
fn catalog_choices(state: &AppState) -> (Vec<Choice>, Vec<Choice>) {
    let c = &state.control.catalog;
    (
        c.gpu_models
            .iter()
            .map(|m| Choice {
                value: m.id.clone(),
                label: format!("{} ({} GiB)", m.name, m.vram_gib),
            })
            .collect(),
        c.regions
            .iter()
            .map(|r| Choice {
                value: r.code.clone(),
                label: format!("{} ({}, {})", r.name, r.code, r.continent),
            })
            .collect(),
    )
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

/// Who is looking, for the frame of a page: the organisation's name, the user's email, the
/// role, the user's organisations and what this one does.
struct ShellOwned {
    organization: String,
    email: String,
    role: String,
    orgs: Vec<OrgChoice>,
    activity: Activity,
}

impl ShellOwned {
    fn with_csrf<'a>(&'a self, csrf: &'a str) -> iocloud_web::app::Shell<'a> {
        iocloud_web::app::Shell {
            organization: &self.organization,
            email: &self.email,
            role: &self.role,
            csrf,
            orgs: &self.orgs,
            rents: self.activity.rents,
            provides: self.activity.provides,
        }
    }
}

/// Draws a page for the visitor: `load` reads what it shows, `draw` lays it out in the frame;
/// a refusal on the way becomes its own page ([`failed`]).
async fn show<T>(
    state: &AppState,
    v: &session::Visitor,
    status: axum::http::StatusCode,
    load: impl std::future::Future<Output = iocloud_control::Result<T>>,
    draw: impl FnOnce(&iocloud_web::app::Shell<'_>, &T) -> iocloud_web::app::Markup,
) -> Response {
    let answer =
        async { Ok::<_, DomainError>((shell_of(state, &v.actor).await?, load.await?)) }.await;
    match answer {
        Ok((shell, t)) => v.answer(html(status, draw(&shell.with_csrf(&v.csrf), &t))),
        Err(e) => failed(v, e),
    }
}

async fn shell_of(state: &AppState, actor: &Actor) -> iocloud_control::Result<ShellOwned> {
    let c = &state.control;
    let (organization, email, orgs) = match c.orgs.me(actor).await? {
        Me::User {
            user,
            organization,
            memberships,
            ..
        } => {
            let orgs = memberships
                .into_iter()
                .map(|m| OrgChoice {
                    current: m.organization.id == organization.id,
                    id: m.organization.id,
                    name: m.organization.name,
                })
                .collect();
            (organization.name, user.email, orgs)
        }
        Me::ApiKey { organization, .. } => (organization.name, String::new(), Vec::new()),
    };
    Ok(ShellOwned {
        organization,
        email,
        role: actor.role().map_or("", |r| r.as_str()).to_string(),
        orgs,
        activity: c.orgs.activity(actor).await?,
    })
}

/// A page for what a domain call refused: missing (another organisation's ids too) or not
/// allowed in words, anything else as our failure (logged).
fn failed(v: &session::Visitor, e: DomainError) -> Response {
    use axum::http::StatusCode;
    let (status, page) = match &e {
        DomainError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            iocloud_web::app::message("Not found", &format!("There is no such {what} here.")),
        ),
        DomainError::Forbidden(what) => (
            StatusCode::FORBIDDEN,
            iocloud_web::app::message(
                "Not allowed",
                &format!("Your role does not allow {what}; an owner can change it."),
            ),
        ),
        _ => {
            tracing::error!(error = %e, "a console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                iocloud_web::app::failure(),
            )
        }
    };
    v.answer(html(status, page))
}
