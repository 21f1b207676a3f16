//! Team's forms: each checks its CSRF token first, then asks the domain, then goes back to the
//! page saying what it did, or shows it again saying why not.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::api_keys::NewApiKey;
use iocloud_control::{Error as DomainError, Role};
use iocloud_web::app::{InviteLink, NewKey};
use serde::Deserialize;

use super::super::session::{NoFields, Posted};
use super::{Extras, TeamQuery, after, refused, render, switch_to};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    name: String,
}

pub(super) async fn rename(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<NameForm>,
) -> Response {
    let result = state.control.orgs.rename(&v.actor, &f.name).await.map(drop);
    after(&state, &v, result, "renamed").await
}

pub(super) async fn create_org(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { v, form: f }: Posted<NameForm>,
) -> Response {
    match state.control.orgs.create(&v.actor, &f.name).await {
        Ok(org) => switch_to(&state, &v, &headers, &org.id, "/app/team?done=created").await,
        Err(e) => refused(&state, &v, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct SwitchForm {
    #[serde(default)]
    org_id: String,
    /// `home` from the top bar's switcher: land on the organisation's home, not on Team.
    #[serde(default)]
    then: String,
}

pub(super) async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { v, form: f }: Posted<SwitchForm>,
) -> Response {
    let to = if f.then == "home" {
        "/app/"
    } else {
        "/app/team?done=switched"
    };
    switch_to(&state, &v, &headers, f.org_id.trim(), to).await
}

#[derive(Deserialize)]
pub(super) struct RoleForm {
    #[serde(default)]
    role: String,
}

/// The role a form names, or why not.
fn role_of(text: &str) -> iocloud_control::Result<Role> {
    Role::parse(text.trim()).ok_or_else(|| {
        DomainError::validation(
            "role",
            "is not one of owner, admin, member, billing, viewer",
        )
    })
}

pub(super) async fn change_role(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Posted { v, form: f }: Posted<RoleForm>,
) -> Response {
    let result = match role_of(&f.role) {
        Ok(role) => state
            .control
            .orgs
            .change_role(&v.actor, &user_id, role)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    after(&state, &v, result, "role").await
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let leaving = v.actor.user_id() == Some(user_id.as_str());
    match state.control.orgs.remove_member(&v.actor, &user_id).await {
        // Leaving ends this session (it was in that organisation): sign in again elsewhere.
        Ok(()) if leaving => Redirect::to("/app/login").into_response(),
        Ok(()) => after(&state, &v, Ok(()), "removed").await,
        Err(e) => refused(&state, &v, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn invite(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<InviteForm>,
) -> Response {
    let sent = match role_of(&f.role) {
        Ok(role) => state.control.orgs.invite(&v.actor, &f.email, role).await,
        Err(e) => Err(e),
    };
    let inv = match sent {
        Ok(inv) => inv,
        Err(e) => return refused(&state, &v, e).await,
    };
    match inv.accept_link {
        // No email carries it: the inviter passes the link on. It holds the token, so it is
        // shown on this answer only, never put in a redirect.
        Some(link) if inv.emailed != Some(true) => {
            let extras = Extras {
                notice: Some(format!("{} is invited.", inv.email)),
                invite_link: Some(InviteLink {
                    email: inv.email,
                    link,
                }),
                ..Extras::default()
            };
            render(&state, &v, &TeamQuery::default(), extras, StatusCode::OK).await
        }
        _ => after(&state, &v, Ok(()), "invited").await,
    }
}

pub(super) async fn revoke_invitation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = state
        .control
        .orgs
        .revoke_invitation(&v.actor, &id)
        .await
        .map(drop);
    after(&state, &v, result, "invitation_revoked").await
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    name: String,
    // One checkbox per scope: a form sends only those ticked.
    scope_read: Option<String>,
    scope_write: Option<String>,
    scope_admin: Option<String>,
    #[serde(default)]
    expires_in_days: String,
}

pub(super) async fn create_key(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<KeyForm>,
) -> Response {
    let scopes: Vec<String> = [
        ("read", &f.scope_read),
        ("write", &f.scope_write),
        ("admin", &f.scope_admin),
    ]
    .into_iter()
    .filter(|(_, ticked)| ticked.is_some())
    .map(|(scope, _)| scope.to_string())
    .collect();
    let days = f.expires_in_days.trim();
    let expires_in_days = match days {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                let e = DomainError::validation("expires_in_days", "must be between 1 and 3650");
                return refused(&state, &v, e).await;
            }
        },
    };
    let input = NewApiKey {
        name: &f.name,
        scopes: &scopes,
        expires_in_days,
    };
    match state.control.keys.create(&v.actor, input).await {
        // The secret goes on this answer only (never cached, never in a URL).
        Ok(created) => {
            let extras = Extras {
                notice: Some("The API key was created.".into()),
                new_key: Some(NewKey {
                    name: created.api_key.name,
                    secret: created.secret,
                }),
                ..Extras::default()
            };
            render(&state, &v, &TeamQuery::default(), extras, StatusCode::OK).await
        }
        Err(e) => refused(&state, &v, e).await,
    }
}

pub(super) async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = state.control.keys.revoke(&v.actor, &id).await.map(drop);
    after(&state, &v, result, "key_revoked").await
}
