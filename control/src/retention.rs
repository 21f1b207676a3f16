//! Rows the platform keeps only for a while, deleted by age in a background sweep: idempotency
//! records after their retention, price and placement quotes some time after they expired (so
//! a late look still hears "expired" rather than "not found"), and outbox emails once they are
//! old (they were logged, which is their sending, when they were written; an invitation's email
//! holds its token, so it should not stay).
//!
//! Every replica may sweep: each delete is by age alone, so two replicas sweeping at once
//! delete each row once between them and agree on the result.

use std::time::Duration;

use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run};

use crate::Result;
use crate::idempotency::Idempotency;

/// How long each kind of row is kept.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Idempotency records, answered or not, from their first request.
    pub idempotency_keys: Duration,
    /// Price and placement quotes, from their expiry.
    pub expired_quotes: Duration,
    /// Outbox emails, from when they were logged.
    pub sent_emails: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            idempotency_keys: Duration::from_secs(24 * 3600),
            expired_quotes: Duration::from_secs(3600),
            sent_emails: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub idempotency_keys: u64,
    pub price_quotes: u64,
    pub placement_quotes: u64,
    pub emails: u64,
}

impl Swept {
    fn total(&self) -> u64 {
        self.idempotency_keys + self.price_quotes + self.placement_quotes + self.emails
    }
}

/// Rows deleted per statement (the `LIMIT` in each one).
const BATCH: u64 = 1000;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Deletes what is past its [`Retention`].
#[derive(Clone)]
pub struct Sweeper {
    db: Db,
    keep: Retention,
    idempotency: Idempotency,
}

impl Sweeper {
    pub(crate) fn new(db: Db, keep: Retention, idempotency: Idempotency) -> Self {
        Sweeper {
            db,
            keep,
            idempotency,
        }
    }

    /// Deletes every row past its retention at `now`.
    pub async fn sweep(&self, now: i64) -> Result<Swept> {
        let keep = &self.keep;
        let quotes_before = now.saturating_sub(micros(keep.expired_quotes));
        let emails_before = now.saturating_sub(micros(keep.sent_emails));
        Ok(Swept {
            idempotency_keys: self.idempotency.delete_expired(now).await?,
            price_quotes: delete_older(&self.db, "price_quotes", "expires_at", quotes_before)
                .await?,
            placement_quotes: delete_older(
                &self.db,
                "placement_quotes",
                "expires_at",
                quotes_before,
            )
            .await?,
            emails: delete_older(&self.db, "email_outbox", "created_at", emails_before).await?,
        })
    }

    /// Sweeps every `interval` until the process ends.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.sweep(now_micros()).await {
                    Ok(swept) if swept.total() > 0 => {
                        tracing::info!(?swept, "deleted rows past their retention")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "retention sweep failed; the next one catches up")
                    }
                }
            }
        })
    }
}

/// Deletes the rows of `table` whose `column` is before `before`, in batches.
async fn delete_older(
    db: &Db,
    table: &'static str,
    column: &'static str,
    before: i64,
) -> Result<u64> {
    let sql = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < $1 LIMIT {BATCH})"
    );
    delete_in_batches(db, &sql, before).await
}

/// Runs `sql` (a delete of at most [`BATCH`] rows older than `$1`) until it deletes fewer than
/// a batch, so a large backlog never holds locks for long; returns the rows deleted.
pub(crate) async fn delete_in_batches(db: &Db, sql: &str, before: i64) -> Result<u64> {
    let mut total = 0;
    loop {
        let deleted = db_run!(db, |p| sqlx::query(sql)
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}
