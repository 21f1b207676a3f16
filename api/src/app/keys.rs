//! SSH keys in the console: the organisation's keys, adding one and removing one, through the
//! same service as `/v1/ssh-keys`. Every form checks its CSRF token before anything else; a
//! refusal shows the page again saying why, with the status REST would answer.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_web::app::{KeysView, SshKeyLine};
use serde::Deserialize;

use super::session::{NoFields, Posted, Visitor};
use super::show;
use crate::state::AppState;

/// What a form did, by the key its redirect carries: only these words are ever shown.
const DONE: [(&str, &str); 2] = [
    (
        "added",
        "The SSH key was added: nodes started from now on let it in.",
    ),
    (
        "removed",
        "The SSH key was removed: nodes started from now on do not let it in.",
    ),
];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/keys", get(page).post(add))
        .route("/app/keys/{id}/remove", post(remove))
}

#[derive(Deserialize, Default)]
struct KeysQuery {
    done: Option<String>,
}

/// What a form's answer adds to the page.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    error: Option<String>,
    name: String,
    public_key: String,
}

async fn view(state: &AppState, actor: &Actor, x: Extras) -> iocloud_control::Result<KeysView> {
    // An organisation keeps at most 100 keys: one page holds them all.
    let page = PageRequest::parse(None, Some(iocloud_control::page::MAX_LIMIT))?;
    let keys = state.control.ssh_keys.list(actor, &page).await?;
    Ok(KeysView {
        keys: keys
            .items
            .into_iter()
            .map(|k| SshKeyLine {
                id: k.id,
                name: k.name,
                key_type: k.key_type,
                fingerprint: k.fingerprint,
                created_at: k.created_at.to_rfc3339(),
            })
            .collect(),
        can_manage: actor.authorize(Action::SshKeysManage).is_ok(),
        notice: x.notice,
        error: x.error,
        name: x.name,
        public_key: x.public_key,
    })
}

async fn render(state: &AppState, v: &Visitor, x: Extras, status: StatusCode) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, x),
        iocloud_web::app::keys_page,
    )
    .await
}

async fn page(State(state): State<AppState>, v: Visitor, Query(q): Query<KeysQuery>) -> Response {
    let notice = super::said_done(q.done.as_deref(), &DONE);
    let extras = Extras {
        notice,
        ..Extras::default()
    };
    render(&state, &v, extras, StatusCode::OK).await
}

/// The words for a refusal, and the status REST would answer; `None` for our own failure.
fn refusal(e: &DomainError) -> Option<(StatusCode, String)> {
    if e.is_internal() {
        return None;
    }
    let words = match e {
        DomainError::Forbidden(what) => {
            format!("Your role does not allow {what}; an owner can change it.")
        }
        DomainError::NotFound(_) => "There is no such SSH key here.".to_string(),
        DomainError::Validation { field, message, .. } => {
            let label = match *field {
                "name" => "Name",
                "public_key" => "Public key",
                other => other,
            };
            format!("{label}: {message}.")
        }
        other => format!("{other}."),
    };
    Some((crate::error::domain_status(e), words))
}

/// The page again saying why the domain refused, keeping what was typed; our own failure as
/// the failure page.
async fn refused(state: &AppState, v: &Visitor, e: DomainError, typed: Extras) -> Response {
    match refusal(&e) {
        Some((status, words)) => {
            let extras = Extras {
                error: Some(words),
                ..typed
            };
            render(state, v, extras, status).await
        }
        None => super::failed(v, e),
    }
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    public_key: String,
}

async fn add(State(state): State<AppState>, Posted { v, form }: Posted<AddForm>) -> Response {
    match state
        .control
        .ssh_keys
        .add(&v.actor, &form.name, &form.public_key)
        .await
    {
        Ok(_) => v.answer(Redirect::to("/app/keys?done=added").into_response()),
        Err(e) => {
            let typed = Extras {
                name: form.name,
                public_key: form.public_key,
                ..Extras::default()
            };
            refused(&state, &v, e, typed).await
        }
    }
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    match state.control.ssh_keys.remove(&v.actor, &id).await {
        Ok(_) => v.answer(Redirect::to("/app/keys?done=removed").into_response()),
        Err(e) => refused(&state, &v, e, Extras::default()).await,
    }
}
