//! Checking the books: postings sum to zero per currency, no account that must stay at or above
//! zero is below it, every hold's captures and releases fit in it, and the stored balances
//! equal the ones rebuilt from postings.

use std::collections::BTreeMap;

use iocloud_db::db_run;

use super::Ledger;
use crate::Result;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Currency → sum of all postings (must be zero).
    pub sums: BTreeMap<String, i64>,
    /// Accounts below zero that may not be.
    pub overdrawn: Vec<(String, i64)>,
    /// Accounts whose stored balance differs from their postings: (id, stored, rebuilt).
    pub drifted: Vec<(String, i64, i64)>,
    /// Holds whose captures and releases exceed them, or whose `held` account disagrees.
    pub bad_holds: Vec<String>,
}

impl Verification {
    pub fn is_balanced(&self) -> bool {
        self.sums.values().all(|s| *s == 0)
            && self.overdrawn.is_empty()
            && self.drifted.is_empty()
            && self.bad_holds.is_empty()
    }
}

impl Ledger {
    pub async fn verify(&self) -> Result<Verification> {
        let sums: Vec<(String, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as("SELECT currency, CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_postings GROUP BY currency")
                .fetch_all(p)
                .await
        })?;
        let overdrawn: Vec<(String, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as("SELECT id, balance FROM ledger_accounts WHERE balance < 0 AND NOT allow_negative ORDER BY id")
                .fetch_all(p)
                .await
        })?;
        let drifted: Vec<(String, i64, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT a.id, a.balance, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM ledger_accounts a \
                 LEFT JOIN ledger_postings p ON p.account_id = a.id GROUP BY a.id, a.balance \
                 HAVING a.balance <> CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) ORDER BY a.id",
            )
            .fetch_all(p)
            .await
        })?;
        // Open holds of an organisation and currency must add up to its `held` balance.
        let bad_holds: Vec<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT id FROM holds WHERE captured < 0 OR released < 0 OR captured + released > amount \
                 OR (status = 'settled' AND captured + released <> amount) \
                 UNION ALL \
                 SELECT a.id FROM ledger_accounts a WHERE a.kind = 'held' AND a.balance <> \
                   (SELECT CAST(COALESCE(SUM(h.amount - h.captured - h.released), 0) AS BIGINT) FROM holds h \
                    WHERE h.org_id = a.owner AND h.currency = UPPER(a.currency) AND h.status = 'open')",
            )
            .fetch_all(p)
            .await
        })?;
        Ok(Verification {
            sums: sums.into_iter().collect(),
            overdrawn,
            drifted,
            bad_holds,
        })
    }

    /// Sets every stored balance to the sum of its postings; returns how many changed.
    pub async fn rebuild_balances(&self) -> Result<u64> {
        let changed = db_run!(&self.db, |p| {
            sqlx::query(
                "UPDATE ledger_accounts SET balance = (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_postings WHERE account_id = ledger_accounts.id) \
                 WHERE balance <> (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_postings WHERE account_id = ledger_accounts.id)",
            )
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(changed)
    }
}
