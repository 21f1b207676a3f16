//! API keys: bound to one organisation, with scopes and an optional expiry. The secret is shown
//! once at creation; the database keeps its SHA-256.

use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use std::sync::Arc;

use iocloud_db::{Db, DbError, Timestamp, db_run, ids::new_id};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::{Cache, Cached, Drops, Forget, Secret, SecretCache};
use crate::permissions::{Role, Scope};
use crate::types::parse_name;
use crate::{Action, Actor, Error, Page, PageRequest, Result, secrets};

pub const KEY_PREFIX: &str = "ioc_";
/// `last_used_at` is written at most this often per key, so an authenticated request does not
/// cost a write.
const LAST_USED_RESOLUTION_MICROS: i64 = 60 * MICROS_PER_SEC;

#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ApiKey")
)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    // GraphQL lists scopes as the strings REST answers and `createApiKey` takes.
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(name = "scopes", into = "Vec<String>", with = "scope_names", owned)
        )
    )]
    pub scopes: Vec<Scope>,
    /// The user who created it.
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

#[cfg(feature = "graphql")]
fn scope_names(scopes: Vec<Scope>) -> Vec<String> {
    scopes.into_iter().map(|s| s.as_str().to_string()).collect()
}

/// A key just created: the only time its secret is shown. Its `Debug` hides the secret.
#[derive(Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CreatedApiKey")
)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// Shown once. Send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("api_key", &self.api_key)
            .field("secret", &"***")
            .finish()
    }
}

pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_in_days: Option<u32>,
}

#[derive(Clone, sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    pub(crate) org_id: String,
    name: String,
    prefix: String,
    key_hash: String,
    pub(crate) scopes: String,
    created_by: String,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
    /// The user whose current role bounds what the key may do (see [`Actor::authorize`]).
    /// `None` only for a key whose chain of makers reaches no user: it no longer authenticates.
    pub(crate) maker_user_id: Option<String>,
    /// The maker's role in the key's organisation when the row was read, or `None` when the
    /// maker is no longer a member. Read only by authentication, which joins it in.
    #[sqlx(default)]
    maker_role: Option<String>,
}

const COLUMNS: &str = "id, org_id, name, prefix, key_hash, scopes, created_by, created_at, expires_at, revoked_at, last_used_at, maker_user_id";

impl KeyRow {
    fn into_key(self, now: i64) -> ApiKey {
        let status = if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        ApiKey {
            id: self.id,
            name: self.name,
            prefix: self.prefix,
            scopes: self.scopes.split(',').filter_map(Scope::parse).collect(),
            created_by: self.created_by,
            created_at: self.created_at.into(),
            expires_at: self.expires_at.map(Timestamp::from),
            revoked_at: self.revoked_at.map(Timestamp::from),
            last_used_at: self.last_used_at.map(Timestamp::from),
            status,
        }
    }
}

pub(crate) struct AuthenticatedKey {
    pub(crate) id: String,
    pub(crate) org_id: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) maker_user_id: String,
    /// The maker's current role: the key may do only what both its scopes and this allow.
    pub(crate) maker_role: Role,
}

/// Keys by the hash of their secret, on this replica.
pub(crate) type KeyCache = SecretCache<KeyRow>;

/// Keys cached at once, before starting over.
const MAX_CACHED: usize = 100_000;

pub(crate) fn key_cache(ttl: std::time::Duration) -> KeyCache {
    SecretCache::new(ttl, MAX_CACHED)
}

impl Cached for KeyRow {
    fn drops<'a>(what: &Forget<'a>) -> Drops<'a> {
        match what {
            Forget::Key(id) => Drops::Id(id),
            // A key acts within its maker's role, which it was cached with.
            Forget::KeysOf(_) => Drops::Matching,
            Forget::All => Drops::Everything,
            _ => Drops::Nothing,
        }
    }

    fn dropped_by(&self, what: &Forget<'_>) -> bool {
        matches!(what, Forget::KeysOf(user_id) if self.maker_user_id.as_deref() == Some(*user_id))
    }
}

impl Secret for KeyRow {
    fn id(&self) -> &str {
        &self.id
    }
}

/// API keys: made, listed, revoked, and found by their secret.
#[derive(Clone)]
pub struct ApiKeys {
    db: Db,
    /// Where a revocation is announced.
    cache: Arc<Cache>,
    cached: Arc<KeyCache>,
}

impl ApiKeys {
    pub(crate) fn new(db: Db, cache: Arc<Cache>, cached: Arc<KeyCache>) -> Self {
        ApiKeys { db, cache, cached }
    }

    pub async fn create(&self, actor: &Actor, input: NewApiKey<'_>) -> Result<CreatedApiKey> {
        actor.authorize(Action::ApiKeysManage)?;
        let name = parse_name("name", input.name)?;
        if input.scopes.is_empty() {
            return Err(Error::validation(
                "scopes",
                "name at least one of read, write, admin",
            ));
        }
        let mut scopes = Vec::new();
        for s in input.scopes {
            let scope = Scope::parse(s).ok_or_else(|| {
                Error::validation(
                    "scopes",
                    format!("unknown scope {s:?}; use read, write or admin"),
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        // A key may not do more than whoever makes it (a user's role, or a key's own rights,
        // themselves bounded by its maker's role).
        if let Some(action) = Action::ALL
            .into_iter()
            .find(|a| crate::permissions::scopes_allow(&scopes, *a) && actor.authorize(*a).is_err())
        {
            return Err(Error::Forbidden(action.describe()));
        }
        // A key made by a key answers to the same user as its maker.
        let maker_user_id = match &actor.principal {
            crate::Principal::User { user_id, .. } => user_id.clone(),
            crate::Principal::ApiKey { maker_user_id, .. } => maker_user_id.clone(),
        };
        let now = now_micros();
        let expires_at = match input.expires_in_days {
            Some(0) | Some(3651..) => {
                return Err(Error::validation(
                    "expires_in_days",
                    "must be between 1 and 3650",
                ));
            }
            Some(d) => Some(now + i64::from(d) * 86_400 * MICROS_PER_SEC),
            None => None,
        };
        let secret = secrets::generate(KEY_PREFIX);
        let id = new_id("key");
        let prefix: String = secret.chars().take(12).collect();
        let scope_text = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        db_run!(&self.db, |p| {
            sqlx::query(
                "INSERT INTO api_keys (id, org_id, name, prefix, key_hash, scopes, created_by, created_at, expires_at, maker_user_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id).bind(&actor.org_id).bind(&name).bind(&prefix).bind(secrets::hash(&secret))
            .bind(&scope_text).bind(actor.id()).bind(now).bind(expires_at).bind(&maker_user_id)
            .execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        let api_key = self.get(actor, &id).await?;
        Ok(CreatedApiKey { api_key, secret })
    }

    pub async fn list(&self, actor: &Actor, page: &PageRequest) -> Result<Page<ApiKey>> {
        actor.authorize(Action::ApiKeysRead)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<KeyRow> = db_run!(&self.db, |p| {
            sqlx::query_as(&sql)
                .bind(&actor.org_id)
                .bind(page.after_id())
                .bind(page.fetch_limit())
                .fetch_all(p)
                .await
        })
        .map_err(DbError::from)?;
        let now = now_micros();
        Ok(Page::from_rows(rows, page, |r| &r.id).map(|r| r.into_key(now)))
    }

    /// One key of the actor's organisation. A key's own holder may always read it.
    pub async fn get(&self, actor: &Actor, key_id: &str) -> Result<ApiKey> {
        let own =
            matches!(&actor.principal, crate::Principal::ApiKey { key_id: k, .. } if k == key_id);
        if !own {
            actor.authorize(Action::ApiKeysRead)?;
        } else if let Some(row) = self.cached.get_by_id(key_id) {
            // The key is reading itself: what authenticated this request is current enough.
            return Ok(row.as_ref().clone().into_key(now_micros()));
        }
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
        let row: Option<KeyRow> = db_run!(&self.db, |p| {
            sqlx::query_as(&sql)
                .bind(&actor.org_id)
                .bind(key_id)
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        Ok(row
            .ok_or(Error::NotFound("api key"))?
            .into_key(now_micros()))
    }

    /// Revokes a key; revoking a revoked key changes nothing.
    pub async fn revoke(&self, actor: &Actor, key_id: &str) -> Result<ApiKey> {
        actor.authorize(Action::ApiKeysManage)?;
        let key = self.get(actor, key_id).await?;
        if key.revoked_at.is_none() {
            db_run!(&self.db, |p| {
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL")
                    .bind(now_micros()).bind(&actor.org_id).bind(key_id).execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
            self.cache.invalidate(Forget::Key(key_id)).await;
        }
        self.get(actor, key_id).await
    }

    /// Finds a live key by its secret (from the cache when it is there), with its maker's
    /// current role, noting when it was last used. A key whose maker has left the
    /// organisation is refused.
    pub(crate) async fn by_secret(&self, secret: &str) -> Result<AuthenticatedKey> {
        let hash = secrets::hash(secret);
        let row = match self.cached.get(&hash) {
            Some(row) => row,
            None => {
                let generation = self.cached.generation();
                // The maker's role is read with the key (and cached with it): a role change or
                // a removal forgets the cached key on every replica (`Forget::KeysOf`).
                let sql = "SELECT k.id, k.org_id, k.name, k.prefix, k.key_hash, k.scopes, k.created_by, k.created_at, \
                     k.expires_at, k.revoked_at, k.last_used_at, k.maker_user_id, m.role AS maker_role \
                     FROM api_keys k LEFT JOIN memberships m ON m.org_id = k.org_id AND m.user_id = k.maker_user_id \
                     WHERE k.key_hash = $1";
                let row: Option<KeyRow> = db_run!(&self.db, |p| sqlx::query_as(sql)
                    .bind(&hash)
                    .fetch_optional(p)
                    .await)
                .map_err(DbError::from)?;
                let row = row
                    .filter(|r| secrets::hashes_equal(&r.key_hash, &hash))
                    .ok_or(Error::InvalidToken)?;
                self.cached.put(&hash, row, generation)
            }
        };
        let now = now_micros();
        if row.revoked_at.is_some() {
            return Err(Error::InvalidToken);
        }
        if row.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::TokenExpired);
        }
        let (Some(maker_user_id), Some(maker_role)) = (
            row.maker_user_id.clone(),
            row.maker_role.as_deref().and_then(Role::parse),
        ) else {
            return Err(Error::InvalidToken);
        };
        if row
            .last_used_at
            .is_none_or(|t| now - t > LAST_USED_RESOLUTION_MICROS)
        {
            self.note_key_use(&hash, &row, now).await;
        }
        Ok(AuthenticatedKey {
            id: row.id.clone(),
            org_id: row.org_id.clone(),
            scopes: row.scopes.split(',').map(String::from).collect(),
            maker_user_id,
            maker_role,
        })
    }

    async fn note_key_use(&self, hash: &str, row: &KeyRow, now: i64) {
        let stale = now - LAST_USED_RESOLUTION_MICROS;
        let result = db_run!(&self.db, |p| {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(now).bind(&row.id).bind(stale).execute(p).await.map(|r| r.rows_affected())
        });
        match result {
            // Noted in the cached row, keeping its age: a busy key is still re-read from the
            // database once its TTL runs out.
            Ok(_) => self.cached.update(hash, |cached| KeyRow {
                last_used_at: Some(now),
                ..cached.clone()
            }),
            // Losing this write costs only precision in `last_used_at`; the request goes on.
            Err(e) => tracing::warn!(error = %e, key_id = row.id, "could not record api key use"),
        }
    }
}
