//! Usage records: what a node costs per hour, since when, and how far it has been charged;
//! starting and stopping them, their downtime, and what a stretch of billable time owes.

use std::collections::HashMap;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Tx, db_run, tx_run};
use serde::Serialize;

use crate::ledger::Ledger;
use crate::money::{Currency, Money, Rounding};
use crate::{BillingError, Result};

pub(super) const MICROS_PER_HOUR: i64 = 3_600_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct UsageRecord {
    pub id: String,
    pub org_id: String,
    pub cluster_id: String,
    pub node_id: String,
    pub device_id: String,
    pub provider_org_id: String,
    pub hold_id: String,
    pub currency: String,
    pub gpus: i64,
    pub rate_per_hour: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub accrued_until: i64,
}

pub(super) const COLUMNS: &str = "id, org_id, cluster_id, node_id, device_id, provider_org_id, hold_id, currency, gpus, rate_per_hour, started_at, ended_at, accrued_until";

/// A node starting to run, for a cluster whose hold pays for it.
pub struct NewUsage<'a> {
    pub org_id: &'a str,
    pub cluster_id: &'a str,
    pub node_id: &'a str,
    pub device_id: &'a str,
    pub provider_org_id: &'a str,
    pub hold_id: &'a str,
    /// GPUs on the node (0 for a CPU-only node).
    pub gpus: i64,
    /// For the whole node: price per GPU-hour × GPUs.
    pub rate_per_hour: Money,
    pub started_at: i64,
}

/// Billable microseconds of a record between its start and `t`: elapsed time less downtime.
pub(super) fn billable(record: &UsageRecord, downtime: &[(i64, i64)], t: i64) -> i64 {
    let end = t.max(record.started_at);
    let down: i64 = downtime
        .iter()
        .map(|(from, to)| ((*to).min(end) - (*from).max(record.started_at)).max(0))
        .sum();
    (end - record.started_at - down).max(0)
}

/// What a record owes for the billable stretch `(b_from, b_to]`, from cumulative totals so that
/// per-period rounding never drifts.
pub(super) fn owed(r: &UsageRecord, b_from: i64, b_to: i64) -> Result<Money> {
    let rate = Money::from_micros(r.rate_per_hour, currency_of(r)?);
    rate.mul_div(b_to, MICROS_PER_HOUR, Rounding::Down)?
        .checked_sub(rate.mul_div(b_from, MICROS_PER_HOUR, Rounding::Down)?)
}

/// Where a pass for the period ending at `period_end` charges `r` to: the period's end, or the
/// record's own if it ended before.
pub(super) fn charge_end(r: &UsageRecord, period_end: i64) -> i64 {
    r.ended_at.map_or(period_end, |e| e.min(period_end))
}

/// The record's currency. A code that does not parse is a corrupt row, never charged as USD.
pub(super) fn currency_of(r: &UsageRecord) -> Result<Currency> {
    Currency::parse(&r.currency)
        .ok_or_else(|| BillingError::corrupt("usage_records.currency", &r.currency))
}

pub(super) fn group_downtime(rows: Vec<(String, i64, i64)>) -> HashMap<String, Vec<(i64, i64)>> {
    let mut map: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (id, from, to) in rows {
        map.entry(id).or_default().push((from, to));
    }
    map
}

/// Starts metering a node inside the caller's transaction, under the caller's record `id`: the
/// same id twice is one record, so a step retried after a crash does not meter a node twice.
pub async fn start_usage_in(tx: &mut Tx, id: &str, u: &NewUsage<'_>) -> Result<()> {
    if !u.rate_per_hour.is_positive() {
        return Err(BillingError::InvalidAmount(
            "the rate must be positive".into(),
        ));
    }
    tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO usage_records (id, org_id, cluster_id, node_id, device_id, provider_org_id, hold_id, currency, gpus, rate_per_hour, started_at, accrued_until, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $12, $9, $10, $10, $11) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(u.org_id)
        .bind(u.cluster_id)
        .bind(u.node_id)
        .bind(u.device_id)
        .bind(u.provider_org_id)
        .bind(u.hold_id)
        .bind(u.rate_per_hour.currency().code())
        .bind(u.rate_per_hour.micros())
        .bind(u.started_at)
        .bind(now_micros())
        .bind(u.gpus.max(0))
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// [`Ledger::stop_usage`] inside the caller's transaction.
pub async fn stop_usage_in(tx: &mut Tx, id: &str, at: i64) -> Result<()> {
    tx_run!(tx, |c| {
        sqlx::query("UPDATE usage_records SET ended_at = $1, settled = (accrued_until >= $1) WHERE id = $2 AND ended_at IS NULL")
            .bind(at.max(0))
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

impl Ledger {
    pub async fn start_usage(&self, u: NewUsage<'_>) -> Result<UsageRecord> {
        let id = new_id("use");
        let mut tx = self.db().begin().await?;
        start_usage_in(&mut tx, &id, &u).await?;
        tx.commit().await?;
        self.usage_record(&id).await
    }

    pub async fn usage_record(&self, id: &str) -> Result<UsageRecord> {
        let sql = format!("SELECT {COLUMNS} FROM usage_records WHERE id = $1");
        Ok(db_run!(self.db(), |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_one(p)
            .await)?)
    }

    /// The node stopped at `at`; it is charged up to there and no further. Stopping twice keeps
    /// the first time.
    pub async fn stop_usage(&self, id: &str, at: i64) -> Result<()> {
        let mut tx = self.db().begin().await?;
        stop_usage_in(&mut tx, id, at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The node was down from `from` to `to`: that time is not charged.
    pub async fn record_downtime(&self, id: &str, from: i64, to: i64) -> Result<()> {
        if to <= from {
            return Err(BillingError::InvalidAmount(
                "downtime must end after it starts".into(),
            ));
        }
        db_run!(self.db(), |p| {
            sqlx::query("INSERT INTO node_downtime (id, record_id, started_at, ended_at) VALUES ($1, $2, $3, $4)")
                .bind(new_id("dwn"))
                .bind(id)
                .bind(from)
                .bind(to)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    pub(super) async fn downtime_of(
        &self,
        records: &[UsageRecord],
    ) -> Result<HashMap<String, Vec<(i64, i64)>>> {
        let sql = format!(
            "SELECT record_id, started_at, ended_at FROM node_downtime WHERE record_id IN ({})",
            iocloud_db::sql::params(records.len())
        );
        let rows: Vec<(String, i64, i64)> = db_run!(self.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for r in records {
                q = q.bind(&r.id);
            }
            q.fetch_all(p).await
        })?;
        Ok(group_downtime(rows))
    }

    /// Downtime of the records with ids in `(after, last]`.
    pub(super) async fn downtime_between(
        &self,
        after: &str,
        last: &str,
    ) -> Result<HashMap<String, Vec<(i64, i64)>>> {
        let rows: Vec<(String, i64, i64)> = db_run!(self.db(), |p| {
            sqlx::query_as(
                "SELECT record_id, started_at, ended_at FROM node_downtime WHERE record_id > $1 AND record_id <= $2",
            )
            .bind(after)
            .bind(last)
            .fetch_all(p)
            .await
        })?;
        Ok(group_downtime(rows))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use iocloud_db::scratch::ScratchDb;

    use super::*;
    use crate::ledger::{AccountKind, AccountRef, NewTransaction, Posting, TransactionKind};

    /// A whole hour, in µs: when [`metered`]'s node starts.
    pub(in crate::metering) const T0: i64 = 1_800_000_000_000_000;

    fn usd(m: i64) -> Money {
        Money::from_micros(m, Currency::Usd)
    }

    /// A funded organisation's hold of $10 with a node at $2.10/h on it since `T0`: the
    /// ledger and the node's usage record as first read.
    pub(in crate::metering) async fn metered(scratch: &ScratchDb) -> (Ledger, UsageRecord) {
        let ledger = crate::testing::ledger(scratch).await;
        ledger
            .post(&NewTransaction {
                external_ref: "fund".into(),
                kind: TransactionKind::CreditGrant,
                org_id: Some("org_c".into()),
                memo: "fund".into(),
                postings: Posting::transfer(
                    AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                    AccountRef::org("org_c", AccountKind::Available, Currency::Usd),
                    usd(100_000_000),
                )
                .unwrap()
                .to_vec(),
            })
            .await
            .unwrap();
        let hold = ledger
            .place_hold("org_c", usd(10_000_000), "clu_1", "hold-clu_1")
            .await
            .unwrap();
        let record = ledger
            .start_usage(NewUsage {
                org_id: "org_c",
                cluster_id: "clu_1",
                node_id: "nod_1",
                device_id: "dev_1",
                provider_org_id: "org_p",
                hold_id: &hold.id,
                gpus: 1,
                rate_per_hour: usd(2_100_000),
                started_at: T0,
            })
            .await
            .unwrap();
        (ledger, record)
    }

    /// A record of a node at $2.10/h running since `started`, charged to there.
    pub(in crate::metering) fn record(started: i64) -> UsageRecord {
        UsageRecord {
            id: "use_1".into(),
            org_id: "o".into(),
            cluster_id: "c".into(),
            node_id: "n".into(),
            device_id: "d".into(),
            provider_org_id: "p".into(),
            hold_id: "h".into(),
            currency: "USD".into(),
            gpus: 1,
            rate_per_hour: 2_100_000,
            started_at: started,
            ended_at: None,
            accrued_until: started,
        }
    }

    #[test]
    fn downtime_is_not_billable() {
        let r = record(1_000);
        assert_eq!(billable(&r, &[], 61_000), 60_000);
        assert_eq!(billable(&r, &[(11_000, 31_000)], 61_000), 40_000);
        // Downtime partly before the start or after `t` counts only where it overlaps.
        assert_eq!(
            billable(&r, &[(0, 11_000), (51_000, 99_000)], 61_000),
            40_000
        );
        assert_eq!(billable(&r, &[], 0), 0);
    }

    #[test]
    fn a_stored_currency_that_does_not_parse_is_an_error_not_usd() {
        let mut r = record(1_000);
        r.currency = "XYZ".into();
        let err = currency_of(&r).unwrap_err();
        assert!(
            matches!(&err, BillingError::CorruptRow { column, value }
                if column == "usage_records.currency" && value == "XYZ"),
            "{err:?}"
        );
        assert!(
            owed(&r, 0, 60_000).is_err(),
            "nothing is owed in a currency we do not know"
        );
    }
}
