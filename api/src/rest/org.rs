use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::orgs::Organization;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, Auth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_org, update_org))
        .routes(routes!(create_org))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgBody {
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "Acme Research"
    )]
    name: String,
}

/// The organisation this request acts in.
#[utoipa::path(get, path = "/v1/org", tag = "org", responses((status = 200, body = Organization), (status = 401, body = Problem)))]
async fn get_org(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Organization>> {
    Ok(Json(s.control.orgs.get(&actor).await?))
}

/// Rename the organisation (owners and admins).
#[utoipa::path(patch, path = "/v1/org", tag = "org", request_body = OrgBody,
    responses((status = 200, body = Organization), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn update_org(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<OrgBody>,
) -> ApiResult<Json<Organization>> {
    Ok(Json(s.control.orgs.rename(&actor, &b.name).await?))
}

/// Create another organisation; you become its owner. Switch to it with `/v1/auth/refresh`.
#[utoipa::path(post, path = "/v1/orgs", tag = "org", request_body = OrgBody,
    responses((status = 201, body = Organization), (status = 422, body = Problem)))]
async fn create_org(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<OrgBody>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(s.control.orgs.create(&actor, &b.name).await?),
    ))
}
