//! Who is who: users and organisations by id, and a user's role in an organisation. Every
//! service that names a user or an organisation in its answers reads them here; organisations
//! come from the replica's cache (dropped on every replica when one is renamed).

use std::sync::Arc;

use iocloud_db::{Db, DbError, db_run};

use crate::accounts::User;
use crate::cache::Cache;
use crate::orgs::Organization;
use crate::{Error, Result, Role};

#[derive(Clone)]
pub struct Directory {
    db: Db,
    cache: Arc<Cache>,
}

impl Directory {
    pub(crate) fn new(db: Db, cache: Arc<Cache>) -> Self {
        Directory { db, cache }
    }

    pub async fn organization(&self, org_id: &str) -> Result<Organization> {
        if let Some(org) = self.cache.org(org_id) {
            return Ok(org);
        }
        let org: Organization = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, name, created_at, updated_at FROM organizations WHERE id = $1",
            )
            .bind(org_id)
            .fetch_optional(p)
            .await
        })
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("organization"))?;
        self.cache.put_org(&org);
        Ok(org)
    }

    /// The user's role in the organisation; `None` when they are not a member.
    pub async fn role_of(&self, org_id: &str, user_id: &str) -> Result<Option<Role>> {
        let role: Option<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        role.map(|r| {
            Role::parse(&r).ok_or_else(|| Error::Internal(format!("unknown role {r:?} stored")))
        })
        .transpose()
    }

    pub async fn user(&self, user_id: &str) -> Result<User> {
        db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, email, name, is_operator, created_at FROM users WHERE id = $1",
            )
            .bind(user_id)
            .fetch_optional(p)
            .await
        })
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("user"))
    }
}
