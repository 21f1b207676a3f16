//! The watcher: follows the treasury's token accounts and each open intent's reference from
//! a stored cursor, reads every new transaction (many in flight while catching up), and
//! applies each token transfer once. One replica at a time runs it (a lease); a second one,
//! a restart or a replay finds each transfer's row and changes nothing.

use std::time::Duration;

use futures::StreamExt;
use iocloud_billing::rails::solana::{ChainTransaction, SignatureInfo, SolanaRail};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run};

use super::Deposits;
use crate::{Error, Result};

/// The lease one replica holds while it watches.
const LEASE: &str = "solana-deposit-watcher";
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Signatures asked for per page (the node's most).
const PAGE: usize = 1_000;
/// Transactions read at once while catching up.
const IN_FLIGHT: usize = 16;
/// Transactions applied per database transaction (with the cursor and one ledger batch): a
/// crash loses at most that much work, and none of it twice, since applying is idempotent.
const CHUNK: usize = 256;
/// Chunks read ahead of the one being applied.
const READ_AHEAD: usize = 4;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchPass {
    /// Addresses read (treasury accounts and open references).
    pub followed: usize,
    /// Transactions applied.
    pub transactions: usize,
    pub credited: usize,
    pub unmatched: usize,
    /// False when another replica holds the lease.
    pub ran: bool,
}

impl Deposits {
    /// One pass of the watcher, if this replica holds (or takes) the lease.
    pub async fn watch(&self) -> Result<WatchPass> {
        let rail = self.rail()?;
        if !self.leases.acquire(LEASE, LEASE_TTL).await? {
            return Ok(WatchPass::default());
        }
        let mut pass = WatchPass {
            ran: true,
            ..WatchPass::default()
        };
        let now = now_micros();
        db_run!(&self.db, |p| sqlx::query(
            "UPDATE deposit_intents SET status = 'expired' WHERE status = 'open' AND expires_at < $1"
        )
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        // The treasury's accounts first: most payments land there, and an intent they pay in
        // full is no longer open, so its reference need not be read on its own.
        let treasury: Vec<String> = rail
            .mints()
            .iter()
            .map(|m| m.treasury_account.to_string())
            .collect();
        for address in &treasury {
            self.follow(rail, address, &mut pass).await?;
            pass.followed += 1;
        }
        let references: Vec<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT reference FROM deposit_intents WHERE status = 'open' ORDER BY id"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        for address in &references {
            self.follow(rail, address, &mut pass).await?;
            pass.followed += 1;
        }
        Ok(pass)
    }

    /// Reads `address`'s history since its cursor and applies it, oldest first, a chunk of
    /// transactions per database transaction, which also moves the cursor past them.
    async fn follow(&self, rail: &SolanaRail, address: &str, pass: &mut WatchPass) -> Result<()> {
        let key = address
            .parse()
            .map_err(|_| Error::corrupt("chain address", address))?;
        let cursor: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT last_signature FROM chain_cursors WHERE address = $1"
        )
        .bind(address)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let until = match &cursor {
            Some(c) => Some(
                c.parse()
                    .map_err(|_| Error::corrupt("chain_cursors.last_signature", c))?,
            ),
            None => None,
        };
        // Newest first, page after page back to the cursor.
        let mut found = Vec::new();
        let mut before = None;
        loop {
            let page = rail.signatures(&key, until, before, PAGE).await?;
            let full = page.len() == PAGE;
            before = page.last().map(|s| s.signature);
            found.extend(page);
            if !full {
                break;
            }
        }
        found.reverse();
        let Some(newest) = found.last().map(|s| s.signature.to_string()) else {
            return Ok(());
        };
        // A transaction applied before (met again under another address it touched) is not
        // read again.
        let applied = self.applied(&found).await?;
        found.retain(|s| !applied.contains(&s.signature.to_string()));
        // The reads run in a task of their own, a few chunks ahead of the applying: each read
        // owns what it needs, and the task stops when nobody takes its chunks any more.
        let (chunks, mut ready) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = rail.clone();
        tokio::spawn(async move {
            let reads = futures::stream::iter(found.into_iter().map(|s| {
                let rail = reader.clone();
                async move {
                    match rail.transaction(&s.signature).await {
                        Ok(Some(tx)) => Ok(tx),
                        // Listed at this commitment, yet not readable there: the node is
                        // catching up.
                        Ok(None) => Err(Error::Billing(iocloud_billing::BillingError::Solana {
                            retryable: true,
                            message: format!("{} is listed but cannot be read yet", s.signature),
                        })),
                        Err(e) => Err(Error::from(e)),
                    }
                }
            }))
            .buffered(IN_FLIGHT)
            .chunks(CHUNK);
            futures::pin_mut!(reads);
            while let Some(chunk) = reads.next().await {
                if chunks.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        while let Some(chunk) = ready.recv().await {
            // What was read before a failure is applied; the failure ends the pass.
            let failed = chunk.iter().position(Result::is_err);
            let mut chunk = chunk.into_iter();
            let txs: Vec<ChainTransaction> = chunk
                .by_ref()
                .take(failed.unwrap_or(usize::MAX))
                .map(|r| r.expect("before the first failure"))
                .collect();
            if !txs.is_empty() {
                self.apply_chunk(rail, address, &txs, pass).await?;
            }
            if let Some(Err(e)) = chunk.next() {
                return Err(e);
            }
        }
        // Everything up to the newest is applied now, the skipped ones included.
        self.store_cursor(address, &newest).await
    }

    async fn store_cursor(&self, address: &str, signature: &str) -> Result<()> {
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO chain_cursors (address, last_signature, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO UPDATE SET last_signature = excluded.last_signature, updated_at = excluded.updated_at"
        )
        .bind(address)
        .bind(signature)
        .bind(now_micros())
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Which of `found` have rows already: applied whole, in an earlier chunk or pass.
    async fn applied(&self, found: &[SignatureInfo]) -> Result<std::collections::HashSet<String>> {
        let mut applied = std::collections::HashSet::new();
        for part in found.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT signature FROM chain_deposits WHERE signature IN ({})",
                iocloud_db::sql::params(part.len())
            );
            let rows: Vec<String> = db_run!(&self.db, |p| {
                let mut q = sqlx::query_scalar(&sql);
                for s in part {
                    q = q.bind(s.signature.to_string());
                }
                q.fetch_all(p).await
            })
            .map_err(DbError::from)?;
            applied.extend(rows);
        }
        Ok(applied)
    }
}

impl Deposits {
    /// Runs a watcher pass every `interval` until the process ends; after a pass that fails
    /// (the node away, timing out or answering 429) the next waits longer, up to a minute,
    /// and resumes from the cursors.
    pub fn spawn_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::backing_off(interval, Duration::from_secs(60), move || {
            let this = this.clone();
            async move { this.watch().await.map(|_| ()) }
        })
    }
}
