//! Checks of the books that no route shows at once: every device's GPU bookings, every
//! organisation's quota against what it runs, the ledger as a whole. Each must find nothing
//! wrong at any moment, whatever failed meanwhile; the suites that stress placement and
//! settlement and the soak end with them.

use iocloud_db::{DbError, db_run};

use crate::{Control, Result};

/// Devices whose free GPUs plus those their unreleased nodes hold are not their GPU count: a
/// GPU booked twice, or lost. Must count 0.
pub const GPU_BOOKS_WRONG: &str = "SELECT COUNT(*) FROM devices d WHERE d.gpus_free < 0 OR d.gpus_free + \
    (SELECT COALESCE(SUM(n.gpus), 0) FROM node_assignments n WHERE n.device_id = d.id AND n.status <> 'released') <> d.gpu_count";

/// Organisations whose quota row does not count exactly their live clusters (every status but
/// terminating, terminated and failed): GPUs, clusters and spend per hour. Must count 0.
pub const QUOTAS_WRONG: &str = "SELECT COUNT(*) FROM org_quotas q WHERE \
    q.gpus_in_use <> (SELECT COALESCE(SUM(c.gpus), 0) FROM clusters c WHERE c.org_id = q.org_id AND c.status NOT IN ('terminating', 'terminated', 'failed')) \
    OR q.clusters_in_use <> (SELECT COUNT(*) FROM clusters c WHERE c.org_id = q.org_id AND c.status NOT IN ('terminating', 'terminated', 'failed')) \
    OR q.spend_per_hour <> (SELECT COALESCE(SUM(c.spend_per_hour), 0) FROM clusters c WHERE c.org_id = q.org_id AND c.status NOT IN ('terminating', 'terminated', 'failed'))";

/// What [`Control::check_books`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Books {
    /// Devices failing [`GPU_BOOKS_WRONG`].
    pub devices_wrong: i64,
    /// Organisations failing [`QUOTAS_WRONG`].
    pub quotas_wrong: i64,
    /// Every currency's postings sum to zero, and every balance equals its postings.
    pub ledger_balanced: bool,
}

impl Books {
    pub fn are_right(&self) -> bool {
        self.devices_wrong == 0 && self.quotas_wrong == 0 && self.ledger_balanced
    }
}

impl Control {
    /// Looks at the whole of the books now.
    pub async fn check_books(&self) -> Result<Books> {
        Ok(Books {
            devices_wrong: self.count(GPU_BOOKS_WRONG).await?,
            quotas_wrong: self.count(QUOTAS_WRONG).await?,
            ledger_balanced: self.ledger.verify().await?.is_balanced(),
        })
    }

    async fn count(&self, sql: &str) -> Result<i64> {
        let n: i64 = db_run!(&self.db, |p| sqlx::query_scalar(sql).fetch_one(p).await)
            .map_err(DbError::from)?;
        Ok(n)
    }
}
