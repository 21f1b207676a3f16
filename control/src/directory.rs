//! Who is who: users and organisations by id, and a user's role in an organisation. Every
//! service that names a user or an organisation in its answers reads them here; organisations
//! come from the replica's cache (dropped on every replica when one is renamed).

use iocloud_db::ids::OrgId;
use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::Currency;
use iocloud_db::{Db, DbError, db_run};

use crate::accounts::User;
use crate::billing::stored_currency;
use crate::cache::{Cache, Cached, Drops, Forget, IdCache};
use crate::orgs::Organization;
use crate::{Error, Result, Role};

/// Organisations cached at once, before starting over.
const MAX_CACHED: usize = 100_000;

#[derive(Clone)]
pub struct Directory {
    db: Db,
    orgs: Arc<IdCache<Organization>>,
    /// Organisation id → its billing currency.
    currencies: Arc<IdCache<Currency>>,
}

impl Cached for Organization {
    fn drops<'a>(what: &Forget<'a>) -> Drops<'a> {
        org_drops(what)
    }
}

impl Cached for Currency {
    fn drops<'a>(what: &Forget<'a>) -> Drops<'a> {
        org_drops(what)
    }
}

/// What is cached of an organisation goes when it changes.
fn org_drops<'a>(what: &Forget<'a>) -> Drops<'a> {
    match what {
        Forget::Org(id) => Drops::Id(id),
        Forget::All => Drops::Everything,
        _ => Drops::Nothing,
    }
}

impl Directory {
    /// Its caches are registered with `cache`, so a change to an organisation announced there
    /// drops them on every replica.
    pub(crate) fn new(db: Db, cache: &mut Cache, ttl: Duration) -> Self {
        let orgs = Arc::new(IdCache::new(ttl, MAX_CACHED));
        let currencies = Arc::new(IdCache::new(ttl, MAX_CACHED));
        cache.also_forget(orgs.clone());
        cache.also_forget(currencies.clone());
        Directory {
            db,
            orgs,
            currencies,
        }
    }

    pub async fn organization(&self, org_id: &OrgId) -> Result<Organization> {
        if let Some(org) = self.orgs.get(org_id) {
            return Ok(org.as_ref().clone());
        }
        let generation = self.orgs.generation();
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
        self.orgs.put(org_id, org.clone(), generation);
        Ok(org)
    }

    /// The organisation's billing currency (USD unless it chose another), cached: every
    /// cluster create prices in it.
    pub(crate) async fn currency_of(&self, org_id: &OrgId) -> Result<Currency> {
        if let Some(currency) = self.currencies.get(org_id) {
            return Ok(*currency);
        }
        let generation = self.currencies.generation();
        let code: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT billing_currency FROM organizations WHERE id = $1"
        )
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        // An organisation without a row has chosen nothing: USD, as for one that never chose.
        let currency = match code.as_deref() {
            Some(code) => stored_currency("organizations.billing_currency", code)?,
            None => Currency::Usd,
        };
        self.currencies.put(org_id, currency, generation);
        Ok(currency)
    }

    /// The user's role in the organisation; `None` when they are not a member.
    pub async fn role_of(&self, org_id: &OrgId, user_id: &str) -> Result<Option<Role>> {
        let role: Option<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        role.map(|r| Role::parse(&r).ok_or_else(|| Error::corrupt("memberships.role", &r)))
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
