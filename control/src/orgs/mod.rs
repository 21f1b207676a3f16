//! Organisations (tenants), their members and roles, invitations to join them, and `me`.

mod activity;
pub mod invitations;

pub use activity::Activity;

use iocloud_db::ids::OrgId;
use std::sync::Arc;

use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Timestamp, db_run, tx_run};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::User;
use crate::api_keys::{ApiKey, ApiKeys};
use crate::cache::{Cache, Forget};
use crate::directory::Directory;
use crate::mail::Outbox;
use crate::permissions::Role;
use crate::types::parse_name;
use crate::{Action, Actor, Error, Page, PageRequest, Principal, Result};

#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Organization")
)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Member")
)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: String,
    email: String,
    name: String,
    role: String,
    joined_at: Timestamp,
}

impl MemberRow {
    fn into_member(self) -> Result<Member> {
        let role = Role::parse(&self.role)
            .ok_or_else(|| Error::Internal(format!("unknown role {}", self.role)))?;
        Ok(Member {
            user_id: self.user_id,
            email: self.email,
            name: self.name,
            role,
            joined_at: self.joined_at,
        })
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Membership")
)]
pub struct Membership {
    pub organization: Organization,
    pub role: Role,
}

/// Who the caller is: a user with their organisations, or an API key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Me {
    User {
        user: User,
        organization: Organization,
        role: Role,
        memberships: Vec<Membership>,
    },
    ApiKey {
        api_key: ApiKey,
        organization: Organization,
    },
}

// GraphQL has no tagged enums: one object whose `kind` says which fields are set, with the
// same `kind` REST answers.
#[cfg(feature = "graphql")]
/// The caller: a user (with `user` and `memberships`) or an API key (with `apiKey`).
#[async_graphql::Object(name = "Me")]
impl Me {
    async fn kind(&self) -> &str {
        match self {
            Me::User { .. } => "user",
            Me::ApiKey { .. } => "api_key",
        }
    }

    async fn organization(&self) -> &Organization {
        match self {
            Me::User { organization, .. } | Me::ApiKey { organization, .. } => organization,
        }
    }

    async fn user(&self) -> Option<&User> {
        match self {
            Me::User { user, .. } => Some(user),
            Me::ApiKey { .. } => None,
        }
    }

    async fn role(&self) -> Option<Role> {
        match self {
            Me::User { role, .. } => Some(*role),
            Me::ApiKey { .. } => None,
        }
    }

    async fn memberships(&self) -> &[Membership] {
        match self {
            Me::User { memberships, .. } => memberships,
            Me::ApiKey { .. } => &[],
        }
    }

    async fn api_key(&self) -> Option<&ApiKey> {
        match self {
            Me::User { .. } => None,
            Me::ApiKey { api_key, .. } => Some(api_key),
        }
    }
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: String,
    name: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    role: String,
}

/// Organisations, members and invitations.
#[derive(Clone)]
pub struct Orgs {
    db: Db,
    cache: Arc<Cache>,
    directory: Directory,
    keys: ApiKeys,
    /// Where invitations are sent from.
    outbox: Outbox,
    /// What the accept links in invitations begin with.
    public_url: Arc<str>,
}

impl Orgs {
    pub(crate) fn new(
        db: Db,
        cache: Arc<Cache>,
        directory: Directory,
        keys: ApiKeys,
        outbox: Outbox,
        public_url: String,
    ) -> Self {
        Orgs {
            db,
            cache,
            directory,
            keys,
            outbox,
            public_url: public_url.into(),
        }
    }

    pub async fn me(&self, actor: &Actor) -> Result<Me> {
        let organization = self.directory.organization(&actor.org_id).await?;
        match &actor.principal {
            Principal::ApiKey { key_id, .. } => {
                let api_key = self.keys.get(actor, key_id).await?;
                Ok(Me::ApiKey {
                    api_key,
                    organization,
                })
            }
            Principal::User { user_id, role, .. } => {
                let user = self.directory.user(user_id).await?;
                let rows: Vec<MembershipRow> = db_run!(&self.db, |p| {
                    sqlx::query_as(
                        "SELECT o.id, o.name, o.created_at, o.updated_at, m.role FROM memberships m \
                         JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at, o.id",
                    )
                    .bind(user_id).fetch_all(p).await
                })
                .map_err(DbError::from)?;
                let memberships = rows
                    .into_iter()
                    .map(|r| {
                        Ok(Membership {
                            role: Role::parse(&r.role).ok_or_else(|| {
                                Error::Internal(format!("unknown role {:?} stored", r.role))
                            })?,
                            organization: Organization {
                                id: r.id,
                                name: r.name,
                                created_at: r.created_at,
                                updated_at: r.updated_at,
                            },
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(Me::User {
                    user,
                    organization,
                    role: *role,
                    memberships,
                })
            }
        }
    }

    pub async fn get(&self, actor: &Actor) -> Result<Organization> {
        actor.authorize(Action::OrgRead)?;
        self.directory.organization(&actor.org_id).await
    }

    pub async fn rename(&self, actor: &Actor, name: &str) -> Result<Organization> {
        actor.authorize(Action::OrgUpdate)?;
        let name = parse_name("name", name)?;
        db_run!(&self.db, |p| {
            sqlx::query("UPDATE organizations SET name = $1, updated_at = $2 WHERE id = $3")
                .bind(&name)
                .bind(now_micros())
                .bind(&actor.org_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        self.cache.invalidate(Forget::Org(&actor.org_id)).await;
        self.directory.organization(&actor.org_id).await
    }

    /// A new organisation owned by the calling user (a user may belong to several).
    pub async fn create(&self, actor: &Actor, name: &str) -> Result<Organization> {
        let user_id = actor.user_id().ok_or_else(|| {
            Error::validation(
                "authorization",
                "organisations are created by users, not API keys",
            )
        })?;
        let name = parse_name("name", name)?;
        let org_id = OrgId::new();
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        tx_run!(&mut tx, |c| {
            sqlx::query("INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                .bind(&org_id).bind(&name).bind(now).execute(&mut *c).await?;
            sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
                .bind(&org_id).bind(user_id).bind(now).execute(&mut *c).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        tx.commit().await?;
        self.directory.organization(&org_id).await
    }

    pub async fn members(&self, actor: &Actor, page: &PageRequest) -> Result<Page<Member>> {
        actor.authorize(Action::MembersRead)?;
        let rows: Vec<MemberRow> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT u.id AS user_id, u.email, u.name, m.role, m.created_at AS joined_at FROM memberships m \
                 JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
            )
            .bind(&actor.org_id).bind(page.after_id()).bind(page.fetch_limit()).fetch_all(p).await
        })
        .map_err(DbError::from)?;
        let page = Page::from_rows(rows, page, |r| &r.user_id);
        let items = page
            .items
            .into_iter()
            .map(MemberRow::into_member)
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub async fn member(&self, actor: &Actor, user_id: &str) -> Result<Member> {
        actor.authorize(Action::MembersRead)?;
        let row: Option<MemberRow> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT u.id AS user_id, u.email, u.name, m.role, m.created_at AS joined_at FROM memberships m \
                 JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 AND m.user_id = $2",
            )
            .bind(&actor.org_id).bind(user_id).fetch_optional(p).await
        })
        .map_err(DbError::from)?;
        row.ok_or(Error::NotFound("member"))?.into_member()
    }

    /// Changes a member's role. Only owners grant or take away `owner`; the last owner stays.
    /// The target's role is read again under the organisation's lock, so two concurrent
    /// changes cannot both pass the checks on a role that no longer holds.
    pub async fn change_role(&self, actor: &Actor, user_id: &str, role: Role) -> Result<Member> {
        actor.authorize(Action::MembersManage)?;
        self.member(actor, user_id).await?;
        let mut tx = self.db.begin().await?;
        lock_org(&mut tx, &actor.org_id).await?;
        let current = locked_role(&mut tx, &actor.org_id, user_id).await?;
        let touches_owner = role == Role::Owner || current == Role::Owner;
        if touches_owner && actor.role() != Some(Role::Owner) {
            return Err(Error::Forbidden("granting or removing the owner role"));
        }
        actor.authorize_grant(role)?;
        if current == Role::Owner
            && role != Role::Owner
            && owners(&mut tx, &actor.org_id).await? <= 1
        {
            return Err(Error::LastOwner);
        }
        tx_run!(&mut tx, |c| {
            sqlx::query("UPDATE memberships SET role = $1 WHERE org_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(&actor.org_id)
                .bind(user_id)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        tx.commit().await?;
        // The member's keys act within their role: forget every cached copy, on every replica,
        // so the next request with one of them reads the new role.
        self.cache.invalidate(Forget::KeysOf(user_id)).await;
        self.member(actor, user_id).await
    }

    /// Removes a member; any member may remove themselves (leave). The last owner cannot go.
    /// Their sessions in this organisation end and the API keys they answer for (made by them,
    /// or by one of their keys) are revoked.
    pub async fn remove_member(&self, actor: &Actor, user_id: &str) -> Result<()> {
        let leaving = actor.user_id() == Some(user_id);
        if !leaving {
            actor.authorize(Action::MembersManage)?;
            self.member(actor, user_id).await?;
        }
        let mut tx = self.db.begin().await?;
        lock_org(&mut tx, &actor.org_id).await?;
        let current = locked_role(&mut tx, &actor.org_id, user_id).await?;
        if current == Role::Owner && !leaving && actor.role() != Some(Role::Owner) {
            return Err(Error::Forbidden("removing an owner"));
        }
        if current == Role::Owner && owners(&mut tx, &actor.org_id).await? <= 1 {
            return Err(Error::LastOwner);
        }
        let now = now_micros();
        tx_run!(&mut tx, |c| {
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(&actor.org_id)
                .bind(user_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(&actor.org_id)
                .bind(user_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE org_id = $2 AND (created_by = $3 OR maker_user_id = $3) AND revoked_at IS NULL")
                .bind(now)
                .bind(&actor.org_id)
                .bind(user_id)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        tx.commit().await?;
        // Their keys may be cached on any replica.
        self.cache.invalidate(Forget::KeysOf(user_id)).await;
        Ok(())
    }
}

/// The member's role, read inside the transaction that holds the organisation's lock.
async fn locked_role(tx: &mut iocloud_db::Tx, org_id: &OrgId, user_id: &str) -> Result<Role> {
    let role: Option<String> = tx_run!(tx, |c| {
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(c)
            .await
    })
    .map_err(DbError::from)?;
    role.as_deref()
        .and_then(Role::parse)
        .ok_or(Error::NotFound("member"))
}

/// Serialises membership changes of one organisation: a row lock on Postgres; SQLite's
/// `BEGIN IMMEDIATE` already holds the database's write lock.
async fn lock_org(tx: &mut iocloud_db::Tx, org_id: &OrgId) -> Result<()> {
    tx_run!(tx, |c| {
        sqlx::query("UPDATE organizations SET updated_at = updated_at WHERE id = $1")
            .bind(org_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}

async fn owners(tx: &mut iocloud_db::Tx, org_id: &OrgId) -> Result<i64> {
    Ok(tx_run!(tx, |c| {
        sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner'")
            .bind(org_id)
            .fetch_one(c)
            .await
    })
    .map_err(DbError::from)?)
}
