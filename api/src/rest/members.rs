use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::invitations::Invitation;
use iocloud_control::orgs::{Member, Membership};
use iocloud_control::{Page, Role};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(get_member, change_role, remove_member))
        .routes(routes!(list_invitations, create_invitation))
        .routes(routes!(get_invitation, revoke_invitation))
        .routes(routes!(accept_invitation))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^@\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]{1,64}@(?:[A-Za-z0-9\u212A](?:[A-Za-z0-9\u212A-]{0,61}[A-Za-z0-9\u212A])?\.)+[A-Za-z0-9\u212A](?:[A-Za-z0-9\u212A-]{0,61}[A-Za-z0-9\u212A])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "grace@example.com"
    )]
    email: String,
    role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The token from the invitation email.
    token: String,
}

/// Members of the organisation.
#[utoipa::path(get, path = "/v1/members", tag = "org", params(ListParams), responses((status = 200, body = Page<Member>)))]
async fn list_members(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Member>>> {
    Ok(Json(s.control.orgs.members(&actor, &q.page()?).await?))
}

#[utoipa::path(get, path = "/v1/members/{user_id}", tag = "org", responses((status = 200, body = Member), (status = 404, body = Problem)))]
async fn get_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<Json<Member>> {
    Ok(Json(s.control.orgs.member(&actor, &user_id).await?))
}

/// Change a member's role. Only owners grant or remove `owner`; the last owner keeps it.
#[utoipa::path(patch, path = "/v1/members/{user_id}", tag = "org", request_body = RoleBody,
    responses((status = 200, body = Member), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "last_owner")))]
async fn change_role(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(b): ApiJson<RoleBody>,
) -> ApiResult<Json<Member>> {
    Ok(Json(
        s.control.orgs.change_role(&actor, &user_id, b.role).await?,
    ))
}

/// Remove a member, or leave (your own user id).
#[utoipa::path(delete, path = "/v1/members/{user_id}", tag = "org",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "last_owner")))]
async fn remove_member(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.control.orgs.remove_member(&actor, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/invitations", tag = "org", params(ListParams), responses((status = 200, body = Page<Invitation>)))]
async fn list_invitations(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Invitation>>> {
    Ok(Json(s.control.orgs.invitations(&actor, &q.page()?).await?))
}

/// Invite an email address. The email (with its token) is written to the server log, not sent.
#[utoipa::path(post, path = "/v1/invitations", tag = "org", request_body = InviteBody,
    responses((status = 201, body = Invitation), (status = 409, body = Problem, description = "already_member or invitation_pending")))]
async fn create_invitation(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<InviteBody>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.control.orgs.invite(&actor, &b.email, b.role).await?),
    ))
}

#[utoipa::path(get, path = "/v1/invitations/{id}", tag = "org", responses((status = 200, body = Invitation), (status = 404, body = Problem)))]
async fn get_invitation(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.control.orgs.invitation(&actor, &id).await?))
}

/// Revoke a pending invitation.
#[utoipa::path(delete, path = "/v1/invitations/{id}", tag = "org", responses((status = 200, body = Invitation), (status = 404, body = Problem)))]
async fn revoke_invitation(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.control.orgs.revoke_invitation(&actor, &id).await?))
}

/// Accept an invitation addressed to your email; you join its organisation.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "org", request_body = AcceptBody,
    responses((status = 200, body = Membership), (status = 404, body = Problem), (status = 409, body = Problem, description = "invitation_used, invitation_revoked, invitation_expired or already_member")))]
async fn accept_invitation(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<AcceptBody>,
) -> ApiResult<Json<Membership>> {
    Ok(Json(
        s.control.orgs.accept_invitation(&actor, &b.token).await?,
    ))
}
