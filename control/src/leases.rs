//! Leases: a background pass that only one replica at a time should run (asking Stripe for
//! payments it may have missed, say) takes the lease named after it first. A lease lasts a
//! while and is renewed by whoever holds it; one not renewed in time may be taken over, so a
//! replica that dies holding it delays the pass, never stops it.

use std::time::Duration;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run};

use crate::Result;

/// This process's claim on named leases.
#[derive(Clone)]
pub struct Leases {
    db: Db,
    /// Who this replica is, in the `leases` table.
    holder: String,
}

impl Leases {
    pub fn new(db: Db) -> Self {
        Leases {
            db,
            holder: new_id("rep"),
        }
    }

    /// Takes or renews the lease `name` for `ttl`: true when this replica holds it now. One
    /// statement, so two replicas asking at once cannot both get it.
    pub async fn acquire(&self, name: &str, ttl: Duration) -> Result<bool> {
        let now = now_micros();
        let until = now + ttl.as_micros() as i64;
        let taken = db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4"
        )
        .bind(name)
        .bind(&self.holder)
        .bind(until)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(taken == 1)
    }

    /// Gives up every lease this replica holds (when it stops).
    pub async fn release_all(&self) -> Result<()> {
        db_run!(&self.db, |p| sqlx::query(
            "DELETE FROM leases WHERE holder = $1"
        )
        .bind(&self.holder)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Gives the lease up (at shutdown, or when a pass ends early), so another replica need
    /// not wait for it to run out.
    pub async fn release(&self, name: &str) -> Result<()> {
        db_run!(&self.db, |p| sqlx::query(
            "DELETE FROM leases WHERE name = $1 AND holder = $2"
        )
        .bind(name)
        .bind(&self.holder)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(())
    }
}
