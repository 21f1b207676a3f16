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
    name: String,
}

/// The organisation this request acts in.
#[utoipa::path(get, path = "/v1/org", tag = "org", responses((status = 200, body = Organization), (status = 401, body = Problem)))]
async fn get_org(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Organization>> {
    Ok(Json(s.control.organization(&actor).await?))
}

/// Rename the organisation (owners and admins).
#[utoipa::path(patch, path = "/v1/org", tag = "org", request_body = OrgBody,
    responses((status = 200, body = Organization), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn update_org(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<OrgBody>,
) -> ApiResult<Json<Organization>> {
    Ok(Json(s.control.rename_organization(&actor, &b.name).await?))
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
        Json(s.control.create_organization(&actor, &b.name).await?),
    ))
}
