//! GraphQL for the organisation's SSH keys: the same service as `/v1/ssh-keys`.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::ssh_keys::SshKey;

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct SshKeysQuery;

#[Object]
impl SshKeysQuery {
    /// The organisation's SSH keys, oldest first: those its clusters' nodes let in as root.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn ssh_keys(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<SshKey>> {
        control(ctx)
            .ssh_keys
            .list(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One SSH key of the organisation.
    async fn ssh_key(&self, ctx: &Context<'_>, id: String) -> GqlResult<SshKey> {
        control(ctx)
            .ssh_keys
            .get(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct SshKeysMutation;

#[Object]
impl SshKeysMutation {
    /// Adds an SSH public key (as `POST /v1/ssh-keys`): `publicKey` as `~/.ssh/*.pub` holds it.
    /// The same key twice is refused with `ssh_key_exists`, a name in use with `name_taken`.
    async fn add_ssh_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        public_key: String,
    ) -> GqlResult<SshKey> {
        control(ctx)
            .ssh_keys
            .add(actor(ctx)?, &name, &public_key)
            .await
            .map_err(gql_error)
    }

    /// Removes an SSH key: nodes started from now on do not let it in. Answers the key removed.
    async fn remove_ssh_key(&self, ctx: &Context<'_>, id: String) -> GqlResult<SshKey> {
        control(ctx)
            .ssh_keys
            .remove(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}
