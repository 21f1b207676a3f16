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

/// What a key may do (the document's; the server reads strings).
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ApiKeyScope {
    Read,
    Write,
    Admin,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "ci-deploy"
    )]
    name: String,
    /// One or more of `read`, `write`, `admin`.
    #[schema(value_type = Vec<ApiKeyScope>, min_items = 1)]
    scopes: Vec<String>,
    /// Days until the key stops working (1 to 3650); absent, it does not expire.
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(ListParams), responses((status = 200, body = Page<ApiKey>)))]
async fn list_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<ApiKey>>> {
    Ok(Json(s.control.keys.list(&actor, &q.page()?).await?))
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
        .keys
        .create(
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
    Ok(Json(s.control.keys.get(&actor, &id).await?))
}

/// Revoke a key: it stops working at once. Revoking twice changes nothing.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn revoke_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(s.control.keys.revoke(&actor, &id).await?))
}
