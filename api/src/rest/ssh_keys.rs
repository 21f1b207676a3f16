//! `/v1/ssh-keys`: the organisation's SSH public keys, which its clusters' nodes let in as
//! `root` (all of them, or those a spec's `ssh_key_ids` names).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::Page;
use iocloud_control::ssh_keys::SshKey;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_ssh_keys, add_ssh_key))
        .routes(routes!(get_ssh_key, remove_ssh_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSshKeyBody {
    /// 1 to 64 characters once trimmed, none of them invisible or direction-changing; unique
    /// in the organisation. A name like `laptop` also names the identity file (`~/.ssh/laptop`)
    /// in the commands that log in to a cluster's nodes.
    #[schema(min_length = 1, max_length = 64, example = "laptop")]
    name: String,
    /// The public key as `~/.ssh/*.pub` holds it: `ssh-ed25519`, `ssh-rsa` (2048 bits or
    /// more), `ecdsa-sha2-nistp256`, `-nistp384`, `-nistp521` or `sk-ssh-ed25519@openssh.com`,
    /// then its base64, then an optional comment (not kept).
    #[schema(
        min_length = 1,
        max_length = 8192,
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZ18vQjB/JOrHVQGYEtqRNr8WT0xxxBKBU4GvwpXVtO ada@laptop"
    )]
    public_key: String,
}

/// The organisation's SSH keys, oldest first.
#[utoipa::path(get, path = "/v1/ssh-keys", tag = "ssh-keys", params(ListParams),
    responses((status = 200, body = Page<SshKey>)))]
async fn list_ssh_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<SshKey>>> {
    Ok(Json(s.control.ssh_keys.list(&actor, &q.page()?).await?))
}

/// Add an SSH public key: nodes started from now on let its holder in as root. The same key
/// twice answers 409 `ssh_key_exists`; a name in use, 409 `name_taken`.
#[utoipa::path(post, path = "/v1/ssh-keys", tag = "ssh-keys", request_body = AddSshKeyBody,
    responses((status = 201, body = SshKey), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "ssh_key_exists or name_taken"),
        (status = 422, body = Problem)))]
async fn add_ssh_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<AddSshKeyBody>,
) -> ApiResult<impl IntoResponse> {
    let key = s
        .control
        .ssh_keys
        .add(&actor, &b.name, &b.public_key)
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(get, path = "/v1/ssh-keys/{id}", tag = "ssh-keys",
    responses((status = 200, body = SshKey), (status = 404, body = Problem)))]
async fn get_ssh_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SshKey>> {
    Ok(Json(s.control.ssh_keys.get(&actor, &id).await?))
}

/// Remove an SSH key: nodes started from now on do not let it in (running nodes keep it
/// until they end).
#[utoipa::path(delete, path = "/v1/ssh-keys/{id}", tag = "ssh-keys",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_ssh_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.control.ssh_keys.remove(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
