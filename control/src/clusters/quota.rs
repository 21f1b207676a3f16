//! Quota per organisation: GPUs in use, live clusters, spend per hour.
//!
//! What is in use is a row per organisation moved by conditional updates inside the same
//! transaction as the reservation it counts, so no two replicas can together exceed a limit.
//! A limit left unset follows the configured default.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Clusters;
use crate::{Actor, Error, Result};

/// The limits an organisation gets unless an operator sets its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLimits {
    pub max_gpus: i64,
    pub max_clusters: i64,
    /// USD micro-units per hour.
    pub max_spend_per_hour: i64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            max_gpus: 64,
            max_clusters: 20,
            max_spend_per_hour: 500_000_000,
        }
    }
}

/// Which limit a request would pass, and by how much (403 `quota_exceeded`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct QuotaExceeded {
    /// `max_gpus`, `max_clusters` or `max_spend_per_hour`.
    pub limit: &'static str,
    /// The limit (USD per hour for spend).
    pub allowed: String,
    pub in_use: String,
    pub requested: String,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this would exceed the organisation's {} of {}: {} in use, {} requested",
            self.limit, self.allowed, self.in_use, self.requested
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Quota")
)]
pub struct QuotaView {
    pub max_gpus: i64,
    pub max_clusters: i64,
    /// USD.
    pub max_spend_per_hour: String,
    pub gpus_in_use: i64,
    pub clusters_in_use: i64,
    /// USD.
    pub spend_per_hour: String,
}

/// What an operator changes; a field left out keeps its value.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaUpdate {
    /// 0 to 1000000.
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_gpus: Option<i64>,
    /// 0 to 1000000.
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_clusters: Option<i64>,
    /// USD, e.g. `"250.00"`: zero or more, at most six decimals.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[0-9]+(?:\.[0-9]{1,6})?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "250.00"
    )]
    pub max_spend_per_hour: Option<String>,
}

fn usd(micros: i64) -> String {
    Money::from_micros(micros, Currency::Usd).to_decimal()
}

#[derive(sqlx::FromRow)]
struct QuotaRow {
    max_gpus: Option<i64>,
    max_clusters: Option<i64>,
    max_spend_per_hour: Option<i64>,
    gpus_in_use: i64,
    clusters_in_use: i64,
    spend_per_hour: i64,
}

const COLUMNS: &str =
    "max_gpus, max_clusters, max_spend_per_hour, gpus_in_use, clusters_in_use, spend_per_hour";

impl QuotaRow {
    fn view(&self, d: QuotaLimits) -> QuotaView {
        QuotaView {
            max_gpus: self.max_gpus.unwrap_or(d.max_gpus),
            max_clusters: self.max_clusters.unwrap_or(d.max_clusters),
            max_spend_per_hour: usd(self.max_spend_per_hour.unwrap_or(d.max_spend_per_hour)),
            gpus_in_use: self.gpus_in_use,
            clusters_in_use: self.clusters_in_use,
            spend_per_hour: usd(self.spend_per_hour),
        }
    }

    /// The first limit `(gpus, clusters, spend)` more would pass.
    fn exceeded(&self, d: QuotaLimits, gpus: i64, clusters: i64, spend: i64) -> QuotaExceeded {
        let max_gpus = self.max_gpus.unwrap_or(d.max_gpus);
        let max_clusters = self.max_clusters.unwrap_or(d.max_clusters);
        let max_spend = self.max_spend_per_hour.unwrap_or(d.max_spend_per_hour);
        if self.gpus_in_use + gpus > max_gpus {
            QuotaExceeded {
                limit: "max_gpus",
                allowed: max_gpus.to_string(),
                in_use: self.gpus_in_use.to_string(),
                requested: gpus.to_string(),
            }
        } else if self.clusters_in_use + clusters > max_clusters {
            QuotaExceeded {
                limit: "max_clusters",
                allowed: max_clusters.to_string(),
                in_use: self.clusters_in_use.to_string(),
                requested: clusters.to_string(),
            }
        } else {
            QuotaExceeded {
                limit: "max_spend_per_hour",
                allowed: usd(max_spend),
                in_use: usd(self.spend_per_hour),
                requested: usd(spend),
            }
        }
    }
}

/// Makes the organisation's quota row if it has none.
async fn ensure_row_in(tx: &mut Tx, org_id: &OrgId) -> Result<()> {
    tx_run!(tx, |c| sqlx::query(
        "INSERT INTO org_quotas (org_id, updated_at) VALUES ($1, $2) ON CONFLICT (org_id) DO NOTHING"
    )
    .bind(org_id)
    .bind(now_micros())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

/// Counts `gpus`, `clusters` and `spend` (USD micro-units per hour) against the organisation's
/// quota inside `tx`, or refuses without counting anything.
pub(crate) async fn reserve_in(
    tx: &mut Tx,
    defaults: QuotaLimits,
    org_id: &OrgId,
    gpus: i64,
    clusters: i64,
    spend: i64,
) -> Result<()> {
    let take = async |tx: &mut Tx| -> Result<u64> {
        Ok(tx_run!(tx, |c| sqlx::query(
        "UPDATE org_quotas SET gpus_in_use = gpus_in_use + $2, clusters_in_use = clusters_in_use + $3, \
         spend_per_hour = spend_per_hour + $4, updated_at = $8 \
         WHERE org_id = $1 AND gpus_in_use + $2 <= COALESCE(max_gpus, $5) \
         AND clusters_in_use + $3 <= COALESCE(max_clusters, $6) AND spend_per_hour + $4 <= COALESCE(max_spend_per_hour, $7)"
    )
    .bind(org_id)
    .bind(gpus)
    .bind(clusters)
    .bind(spend)
    .bind(defaults.max_gpus)
    .bind(defaults.max_clusters)
    .bind(defaults.max_spend_per_hour)
    .bind(now_micros())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?)
    };
    // Most organisations have their row already: one statement. Otherwise make it (or find
    // that a concurrent first create just did) and count again.
    let mut moved = take(tx).await?;
    if moved == 0 {
        ensure_row_in(tx, org_id).await?;
        moved = take(tx).await?;
    }
    if moved == 1 {
        return Ok(());
    }
    let sql = format!("SELECT {COLUMNS} FROM org_quotas WHERE org_id = $1");
    let row: QuotaRow = tx_run!(tx, |c| sqlx::query_as(&sql).bind(org_id).fetch_one(c).await)
        .map_err(DbError::from)?;
    Err(Error::QuotaExceeded(Box::new(
        row.exceeded(defaults, gpus, clusters, spend),
    )))
}

/// Gives back what [`reserve_in`] counted (a cluster ended).
pub(crate) async fn release_in(
    tx: &mut Tx,
    org_id: &OrgId,
    gpus: i64,
    clusters: i64,
    spend: i64,
) -> Result<()> {
    tx_run!(tx, |c| sqlx::query(
        "UPDATE org_quotas SET gpus_in_use = gpus_in_use - $2, clusters_in_use = clusters_in_use - $3, \
         spend_per_hour = spend_per_hour - $4, updated_at = $5 WHERE org_id = $1"
    )
    .bind(org_id)
    .bind(gpus)
    .bind(clusters)
    .bind(spend)
    .bind(now_micros())
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

impl Clusters {
    async fn quota_of(&self, org_id: &OrgId) -> Result<QuotaView> {
        let sql = format!("SELECT {COLUMNS} FROM org_quotas WHERE org_id = $1");
        let row: Option<QuotaRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        let row = row.unwrap_or(QuotaRow {
            max_gpus: None,
            max_clusters: None,
            max_spend_per_hour: None,
            gpus_in_use: 0,
            clusters_in_use: 0,
            spend_per_hour: 0,
        });
        Ok(row.view(self.settings.quota))
    }

    /// The organisation's limits and what it uses of them.
    pub async fn quota(&self, actor: &Actor) -> Result<QuotaView> {
        actor.authorize(crate::Action::ResourcesRead)?;
        self.quota_of(&actor.org_id).await
    }

    /// A platform operator sets an organisation's limits. Lowering one below what is in use
    /// stops new clusters; it ends none.
    pub async fn set_quota(
        &self,
        actor: &Actor,
        org_id: &str,
        update: &QuotaUpdate,
    ) -> Result<QuotaView> {
        if !actor.is_operator {
            return Err(Error::Forbidden(
                "changing quotas (platform operators only)",
            ));
        }
        // Parsed once the caller may ask at all: text not shaped like an id names nothing.
        let org_id = &crate::types::org_id(org_id)?;
        let count = |field: &'static str, v: Option<i64>| match v {
            Some(n) if !(0..=1_000_000).contains(&n) => {
                Err(Error::validation(field, "from 0 to 1000000"))
            }
            other => Ok(other),
        };
        let max_gpus = count("max_gpus", update.max_gpus)?;
        let max_clusters = count("max_clusters", update.max_clusters)?;
        let max_spend = match &update.max_spend_per_hour {
            Some(text) => Some(
                Money::parse(text, Currency::Usd)
                    .map_err(|_| {
                        Error::validation("max_spend_per_hour", "a USD amount, like \"250.00\"")
                    })?
                    .micros(),
            ),
            None => None,
        };
        let exists: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM organizations WHERE id = $1"
        )
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        if exists.is_none() {
            return Err(Error::NotFound("organization"));
        }
        let mut tx = self.db.begin().await?;
        ensure_row_in(&mut tx, org_id).await?;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE org_quotas SET max_gpus = COALESCE($2, max_gpus), max_clusters = COALESCE($3, max_clusters), \
             max_spend_per_hour = COALESCE($4, max_spend_per_hour), updated_at = $5 WHERE org_id = $1"
        )
        .bind(org_id)
        .bind(max_gpus)
        .bind(max_clusters)
        .bind(max_spend)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        self.quota_of(org_id).await
    }
}
