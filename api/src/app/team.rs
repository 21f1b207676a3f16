//! Team: the organisation and the visitor's others (switch, create), members and roles,
//! invitations, API keys and the audit log, through the same services as `/v1/org`,
//! `/v1/orgs`, `/v1/members`, `/v1/invitations`, `/v1/api-keys`, `/v1/audit-events` and
//! `/v1/auth/refresh`. Every form checks its CSRF token before anything else; a refusal shows
//! the page again saying why, with the status REST would answer.

mod forms;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use iocloud_control::orgs::Me;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest, Role};
use iocloud_web::app::{
    AuditLine, InvitationLine, InviteLink, KeyLine, MemberLine, MembershipLine, NewKey, QuotaLine,
    TeamView,
};
use serde::Deserialize;

use super::session::{Visitor, is_tls, session_cookies, with_cookies};
use super::show;
use crate::state::AppState;

/// Lines per list, per page.
const LINES: u32 = 50;

/// What a form did, by the key its redirect carries: only these words are ever shown, so a
/// link cannot make the page say anything else.
const DONE: [(&str, &str); 9] = [
    ("renamed", "The organisation was renamed."),
    (
        "created",
        "The organisation was created; you now work in it.",
    ),
    ("switched", "You now work in this organisation."),
    ("joined", "You joined the organisation; you now work in it."),
    ("role", "The role was changed."),
    ("removed", "The member was removed."),
    ("invited", "The invitation was sent by email."),
    ("invitation_revoked", "The invitation was revoked."),
    (
        "key_revoked",
        "The API key was revoked; it no longer works.",
    ),
];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/team", get(page))
        .route("/app/team/org", post(forms::rename))
        .route("/app/team/orgs", post(forms::create_org))
        .route("/app/team/switch", post(forms::switch))
        .route("/app/team/members/{user_id}/role", post(forms::change_role))
        .route(
            "/app/team/members/{user_id}/remove",
            post(forms::remove_member),
        )
        .route("/app/team/invitations", post(forms::invite))
        .route(
            "/app/team/invitations/{id}/revoke",
            post(forms::revoke_invitation),
        )
        .route("/app/team/keys", post(forms::create_key))
        .route("/app/team/keys/{id}/revoke", post(forms::revoke_key))
}

/// Which page of each list, and what the last form did.
#[derive(Deserialize, Default)]
struct TeamQuery {
    done: Option<String>,
    members_after: Option<String>,
    invitations_after: Option<String>,
    keys_after: Option<String>,
    audit_after: Option<String>,
}

/// What a form's answer adds to the page.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    error: Option<String>,
    new_key: Option<NewKey>,
    invite_link: Option<InviteLink>,
}

async fn page(State(state): State<AppState>, v: Visitor, Query(q): Query<TeamQuery>) -> Response {
    let notice = super::said_done(q.done.as_deref(), &DONE);
    let extras = Extras {
        notice,
        ..Extras::default()
    };
    render(&state, &v, &q, extras, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    v: &Visitor,
    q: &TeamQuery,
    extras: Extras,
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, q, extras),
        iocloud_web::app::team_page,
    )
    .await
}

/// A page of [`LINES`] after `after`; a cursor this console did not make starts at the first.
fn lines_after(after: Option<&str>) -> PageRequest {
    PageRequest::parse(after, Some(LINES)).unwrap_or(PageRequest {
        after: None,
        limit: LINES,
    })
}

async fn view(
    state: &AppState,
    actor: &Actor,
    q: &TeamQuery,
    x: Extras,
) -> iocloud_control::Result<TeamView> {
    let c = &state.control;
    let Me::User {
        user,
        organization,
        role,
        memberships,
    } = c.orgs.me(actor).await?
    else {
        return Err(DomainError::Internal(
            "a console visitor that is no user".into(),
        ));
    };
    let may = |a: Action| actor.authorize(a).is_ok();
    let is_owner = role == Role::Owner;
    // Owners alone touch the owner role; nobody grants rights they do not hold.
    let grantable = Role::ALL
        .into_iter()
        .filter(|r| (*r != Role::Owner || is_owner) && actor.authorize_grant(*r).is_ok())
        .map(|r| r.as_str().to_string())
        .collect();
    let manage = may(Action::MembersManage);
    let members = c
        .orgs
        .members(actor, &lines_after(q.members_after.as_deref()))
        .await?;
    let invitations = if may(Action::InvitationsRead) {
        Some(
            c.orgs
                .invitations(actor, &lines_after(q.invitations_after.as_deref()))
                .await?,
        )
    } else {
        None
    };
    let keys = if may(Action::ApiKeysRead) {
        Some(
            c.keys
                .list(actor, &lines_after(q.keys_after.as_deref()))
                .await?,
        )
    } else {
        None
    };
    let audit = if may(Action::AuditRead) {
        Some(
            c.audit
                .events(actor, &lines_after(q.audit_after.as_deref()))
                .await?,
        )
    } else {
        None
    };
    let limits = c.clusters.quota(actor).await?;
    let share = |used: f64, limit: f64| {
        if limit <= 0.0 {
            0
        } else {
            (used / limit * 100.0).clamp(0.0, 100.0).round() as u8
        }
    };
    let usd = |text: &str| text.parse::<f64>().unwrap_or(0.0);
    Ok(TeamView {
        quota: vec![
            QuotaLine {
                what: "GPUs".into(),
                used: limits.gpus_in_use.to_string(),
                limit: limits.max_gpus.to_string(),
                percent: share(limits.gpus_in_use as f64, limits.max_gpus as f64),
            },
            QuotaLine {
                what: "Live clusters".into(),
                used: limits.clusters_in_use.to_string(),
                limit: limits.max_clusters.to_string(),
                percent: share(limits.clusters_in_use as f64, limits.max_clusters as f64),
            },
            QuotaLine {
                what: "Spend per hour, USD".into(),
                percent: share(usd(&limits.spend_per_hour), usd(&limits.max_spend_per_hour)),
                used: limits.spend_per_hour,
                limit: limits.max_spend_per_hour,
            },
        ],
        org_id: organization.id.clone(),
        org_name: organization.name,
        user_id: user.id.clone(),
        role: role.as_str().to_string(),
        can_rename: may(Action::OrgUpdate),
        grantable,
        memberships: memberships
            .into_iter()
            .map(|m| MembershipLine {
                current: m.organization.id == organization.id,
                org_id: m.organization.id,
                name: m.organization.name,
                role: m.role.as_str().to_string(),
            })
            .collect(),
        members: members
            .items
            .into_iter()
            .map(|m| {
                let you = m.user_id == user.id;
                let may_touch = manage && (m.role != Role::Owner || is_owner);
                MemberLine {
                    you,
                    can_change: may_touch,
                    can_remove: you || may_touch,
                    role: m.role.as_str().to_string(),
                    joined_at: m.joined_at.to_string(),
                    user_id: m.user_id,
                    name: m.name,
                    email: m.email,
                }
            })
            .collect(),
        next_members: members.next_cursor,
        next_invitations: invitations.as_ref().and_then(|p| p.next_cursor.clone()),
        invitations: invitations.map(|p| {
            p.items
                .into_iter()
                .map(|i| InvitationLine {
                    id: i.id,
                    email: i.email,
                    role: i.role.as_str().to_string(),
                    status: i.status.to_string(),
                    created_at: i.created_at.to_string(),
                    expires_at: i.expires_at.to_string(),
                })
                .collect()
        }),
        can_invite: may(Action::InvitationsManage),
        next_keys: keys.as_ref().and_then(|p| p.next_cursor.clone()),
        keys: keys.map(|p| {
            p.items
                .into_iter()
                .map(|k| KeyLine {
                    id: k.id,
                    name: k.name,
                    prefix: k.prefix,
                    scopes: k
                        .scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    status: k.status.to_string(),
                    created_at: k.created_at.to_string(),
                    expires_at: k.expires_at.map(|t| t.to_string()),
                    last_used_at: k.last_used_at.map(|t| t.to_string()),
                })
                .collect()
        }),
        can_make_keys: may(Action::ApiKeysManage),
        next_audit: audit.as_ref().and_then(|p| p.next_cursor.clone()),
        audit: audit.map(|p| {
            p.items
                .into_iter()
                .map(|e| AuditLine {
                    at: e.created_at.to_string(),
                    actor_type: e.actor_type,
                    actor_id: e.actor_id,
                    action: e.action,
                    target: e.target,
                    status: e.status.to_string(),
                    outcome: e.outcome,
                    ip: e.ip,
                    request_id: e.request_id,
                })
                .collect()
        }),
        notice: x.notice,
        error: x.error,
        new_key: x.new_key,
        invite_link: x.invite_link,
    })
}

/// A refusal's status (the one REST answers) and its words; `None` for a failure of ours,
/// which [`super::failed`] logs and words without its cause.
pub(super) fn refusal(e: &DomainError) -> Option<(StatusCode, String)> {
    if e.is_internal() {
        return None;
    }
    let words = match e {
        DomainError::Forbidden(what) => {
            format!("Your role does not allow {what}; an owner can change it.")
        }
        DomainError::NotFound(what) => format!("There is no such {what} here."),
        DomainError::Validation { field, message, .. } => {
            sentence(&format!("{}: {message}", field_label(field)))
        }
        other => sentence(&other.to_string()),
    };
    Some((crate::error::domain_status(e), words))
}

/// The form field a validation error names, as its label says it.
fn field_label(field: &str) -> &str {
    match field {
        "name" => "Name",
        "org_name" => "Organisation name",
        "email" => "Email",
        "password" => "Password",
        "role" => "Role",
        "scopes" => "Scopes",
        "expires_in_days" => "Expires in days",
        "token" | "invitation" => "Invitation",
        other => other,
    }
}

/// `text` as a sentence: a capital first, a full stop last.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut s: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

/// The Team page again saying what the domain refused, with its status; our own failure as
/// the failure page.
async fn refused(state: &AppState, v: &Visitor, e: DomainError) -> Response {
    match refusal(&e) {
        Some((status, words)) => {
            let extras = Extras {
                error: Some(words),
                ..Extras::default()
            };
            render(state, v, &TeamQuery::default(), extras, status).await
        }
        None => super::failed(v, e),
    }
}

/// After a form: back to the page saying `done` (a key of [`DONE`]), or the page again
/// saying why not.
async fn after(
    state: &AppState,
    v: &Visitor,
    result: iocloud_control::Result<()>,
    done: &str,
) -> Response {
    match result {
        Ok(()) => v.answer(Redirect::to(&format!("/app/team?done={done}")).into_response()),
        Err(e) => refused(state, v, e).await,
    }
}

/// Moves the visitor's session to `org_id`, as `POST /v1/auth/refresh` with an organisation
/// does, and goes on `to` (one of the console's own addresses). Refused (not a member there),
/// the session stays where it was (the refresh token is not spent) and the page says why.
pub(super) async fn switch_to(
    state: &AppState,
    v: &Visitor,
    headers: &HeaderMap,
    org_id: &str,
    to: &'static str,
) -> Response {
    let Some(token) = v.refresh_token() else {
        return Redirect::to("/app/login").into_response();
    };
    match state.control.accounts.refresh(token, Some(org_id)).await {
        Ok(session) => with_cookies(
            Redirect::to(to).into_response(),
            &session_cookies(&session, is_tls(headers)),
        ),
        // The session itself is over (signed out elsewhere, or its token reused).
        Err(e) if crate::error::domain_status(&e) == StatusCode::UNAUTHORIZED => {
            Redirect::to("/app/login").into_response()
        }
        Err(e) => refused(state, v, e).await,
    }
}
