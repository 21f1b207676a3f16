use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::api_keys::{ApiKey, CreatedApiKey, NewApiKey};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    name: String,
    /// One or more of `read`, `write`, `admin`.
    scopes: Vec<String>,
    /// Days until the key stops working (1 to 3650); absent, it does not expire.
    expires_in_days: Option<u32>,
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(ListParams), responses((status = 200, body = Page<ApiKey>)))]
async fn list_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<ApiKey>>> {
    Ok(Json(s.control.api_keys(&actor, &q.page()?).await?))
}

/// Create an API key for this organisation. The secret is in this answer only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateKeyBody,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<CreateKeyBody>,
) -> ApiResult<impl IntoResponse> {
    let created = s
        .control
        .create_api_key(
            &actor,
            NewApiKey {
                name: &b.name,
                scopes: &b.scopes,
                expires_in_days: b.expires_in_days,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api-keys", responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn get_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.control.api_key(&actor, &id).await?))
}

/// Revoke a key: it stops working at once. Revoking twice changes nothing.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn revoke_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.control.revoke_api_key(&actor, &id).await?))
}
