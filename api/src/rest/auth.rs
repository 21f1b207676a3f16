use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::accounts::{AuthSession, SignUp};
use iocloud_control::orgs::Me;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, Auth};
use crate::middleware::audit::AuditSlot;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpBody {
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^@\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]{1,64}@(?:[A-Za-z0-9\u212A](?:[A-Za-z0-9\u212A-]{0,61}[A-Za-z0-9\u212A])?\.)+[A-Za-z0-9\u212A](?:[A-Za-z0-9\u212A-]{0,61}[A-Za-z0-9\u212A])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "ada@example.com"
    )]
    email: String,
    /// 10 to 256 characters, not all the same one.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Ada Lovelace"
    )]
    name: String,
    /// The organisation to create; you become its owner. 1 to 100 characters once trimmed, none of them invisible or direction-changing. Required unless `invitation` is given.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Analytical Engines"
    )]
    #[serde(default)]
    org_name: Option<String>,
    /// The token of an invitation for this email (`ioinv_…`): the account joins the
    /// organisation that sent it instead of creating one.
    #[serde(default)]
    invitation: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
    /// Act in this organisation (default: the first you joined).
    org_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
    /// Switch the session to this organisation.
    org_id: Option<String>,
}

/// Create an account and its organisation, or join the organisation an invitation is from.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", security(()), request_body = SignUpBody,
    responses((status = 201, body = AuthSession), (status = 409, body = Problem, description = "email_taken"), (status = 422, body = Problem)))]
async fn signup(
    State(s): State<AppState>,
    slot: Option<axum::Extension<AuditSlot>>,
    ApiJson(b): ApiJson<SignUpBody>,
) -> ApiResult<impl IntoResponse> {
    let session = s
        .control
        .accounts
        .sign_up(SignUp {
            email: &b.email,
            password: &b.password,
            name: &b.name,
            org_name: b.org_name.as_deref(),
            invitation: b.invitation.as_deref(),
        })
        .await?;
    if let Some(slot) = slot {
        slot.set_user(&session.organization.id, &session.user.id);
    }
    Ok((StatusCode::CREATED, Json(session)))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", security(()), request_body = LoginBody,
    responses((status = 200, body = AuthSession), (status = 401, body = Problem, description = "invalid_credentials"),
        (status = 404, body = Problem, description = "`org_id` is not an organisation of this user")))]
async fn login(
    State(s): State<AppState>,
    slot: Option<axum::Extension<AuditSlot>>,
    ApiJson(b): ApiJson<LoginBody>,
) -> ApiResult<Json<AuthSession>> {
    let session = s
        .control
        .accounts
        .log_in(&b.email, &b.password, b.org_id.as_deref())
        .await?;
    if let Some(slot) = slot {
        slot.set_user(&session.organization.id, &session.user.id);
    }
    Ok(Json(session))
}

/// Trade a refresh token for a new access and refresh token. Each refresh token works once;
/// presenting a used one revokes the whole session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", security(()), request_body = RefreshBody,
    responses((status = 200, body = AuthSession), (status = 401, body = Problem, description = "invalid_token, token_expired or refresh_token_reused"),
        (status = 404, body = Problem, description = "`org_id` is not an organisation of this user")))]
async fn refresh(
    State(s): State<AppState>,
    slot: Option<axum::Extension<AuditSlot>>,
    ApiJson(b): ApiJson<RefreshBody>,
) -> ApiResult<Json<AuthSession>> {
    let session = s
        .control
        .accounts
        .refresh(&b.refresh_token, b.org_id.as_deref())
        .await?;
    if let Some(slot) = slot {
        slot.set_user(&session.organization.id, &session.user.id);
    }
    Ok(Json(session))
}

/// End this session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = Problem),
    (status = 422, body = Problem, description = "An API key cannot log out: revoke it instead")))]
async fn logout(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<StatusCode> {
    s.control.accounts.log_out(&actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who is calling: the user and their organisations, or the API key.
#[utoipa::path(get, path = "/v1/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = Problem)))]
async fn me(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Me>> {
    Ok(Json(s.control.orgs.me(&actor).await?))
}
