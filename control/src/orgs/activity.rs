//! What an organisation does on the network: rents GPUs, provides them, or both. The console
//! leads with IO Cloud, IO Worker or a switch between the two by it.

use iocloud_db::{DbError, db_run};

use crate::{Actor, Result};

/// Whether the organisation has ever rented (a cluster) or provided (a device).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub rents: bool,
    pub provides: bool,
}

impl super::Orgs {
    /// What the actor's organisation does, in one query. Any member may know it.
    pub async fn activity(&self, actor: &Actor) -> Result<Activity> {
        let (rents, provides): (i64, i64) = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM clusters WHERE org_id = $1) THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM devices WHERE org_id = $1) THEN 1 ELSE 0 END AS BIGINT)"
        )
        .bind(&actor.org_id)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        Ok(Activity {
            rents: rents > 0,
            provides: provides > 0,
        })
    }
}
