//! Metering: per-second charging of running nodes from their cluster's hold.
//!
//! A usage record says what a node costs per hour, since when, and how far it has been charged
//! (`accrued_until`). An accrual pass (every minute by default) charges each due record up to
//! the end of the current period. Each record's charge is one database transaction that moves
//! `accrued_until` conditionally, captures from the hold under a reference naming the record and
//! period, and writes a usage line unique per record and period: with several replicas, or a
//! crash half-way, every period is charged exactly once.
//!
//! The charge for a stretch is computed from cumulative billable time, so per-period rounding
//! never drifts: `floor(rate × billable(until) / 1 h) − floor(rate × billable(from) / 1 h)`.
//! Time a node was down is not billable.

use std::collections::HashMap;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{db_run, tx_run};
use serde::Serialize;

use crate::ledger::holds::capture_in;
use crate::ledger::post::ROWS_PER_STATEMENT;
use crate::ledger::{
    AccountKind, AccountRef, FeeBps, Ledger, NewTransaction, Posting, TransactionKind,
};
use crate::money::{Currency, Money, Rounding};
use crate::{BillingError, Result};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const CHUNK: i64 = 500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
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

const COLUMNS: &str = "id, org_id, cluster_id, node_id, device_id, provider_org_id, hold_id, currency, gpus, rate_per_hour, started_at, ended_at, accrued_until";

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

#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccrualReport {
    pub period_end: i64,
    /// Records charged by this pass (others may have been charged by another replica).
    pub charged_records: usize,
    /// Micro-units captured, per currency.
    pub captured: HashMap<Currency, i64>,
    /// Records whose hold could not cover the charge.
    pub short: Vec<String>,
}

/// Billable microseconds of a record between its start and `t`: elapsed time less downtime.
fn billable(record: &UsageRecord, downtime: &[(i64, i64)], t: i64) -> i64 {
    let end = t.max(record.started_at);
    let down: i64 = downtime
        .iter()
        .map(|(from, to)| ((*to).min(end) - (*from).max(record.started_at)).max(0))
        .sum();
    (end - record.started_at - down).max(0)
}

impl Ledger {
    pub async fn start_usage(&self, u: NewUsage<'_>) -> Result<UsageRecord> {
        if !u.rate_per_hour.is_positive() {
            return Err(BillingError::InvalidAmount(
                "the rate must be positive".into(),
            ));
        }
        let id = new_id("use");
        db_run!(self.db(), |p| {
            sqlx::query(
                "INSERT INTO usage_records (id, org_id, cluster_id, node_id, device_id, provider_org_id, hold_id, currency, gpus, rate_per_hour, started_at, accrued_until, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $12, $9, $10, $10, $11)",
            )
            .bind(&id)
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
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
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
        db_run!(self.db(), |p| {
            sqlx::query("UPDATE usage_records SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(at.max(0))
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Ends a node: charges it to the second it stopped and, when no other node still runs on
    /// its hold, releases what is left of the hold (the final settlement of a cluster). Safe to
    /// call again: nothing is charged or released twice.
    pub async fn settle_usage(
        &self,
        id: &str,
        at: i64,
        fee_bps: FeeBps,
    ) -> Result<Option<crate::ledger::Hold>> {
        self.stop_usage(id, at).await?;
        let record = self.usage_record(id).await?;
        let end = record.ended_at.unwrap_or(at);
        let downtime = self.downtime_of(std::slice::from_ref(&record)).await?;
        let down = downtime.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut report = AccrualReport::default();
        self.accrue_record(&record, down, end, fee_bps, &mut report)
            .await?;
        let running: i64 = db_run!(self.db(), |p| {
            sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE hold_id = $1 AND (ended_at IS NULL OR accrued_until < ended_at)")
                .bind(&record.hold_id)
                .fetch_one(p)
                .await
        })?;
        if running > 0 {
            return Ok(None);
        }
        Ok(Some(
            self.release(&record.hold_id, &format!("settle:{}", record.hold_id))
                .await?,
        ))
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

    /// Charges every due record up to the end of the period containing `now`
    /// (`now` rounded down to a multiple of `interval_micros`).
    pub async fn accrue(
        &self,
        now: i64,
        interval_micros: i64,
        fee_bps: FeeBps,
    ) -> Result<AccrualReport> {
        let period_end = now - now.rem_euclid(interval_micros.max(1));
        let mut report = AccrualReport {
            period_end,
            ..Default::default()
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM usage_records WHERE accrued_until < $1 AND (ended_at IS NULL OR accrued_until < ended_at) \
             AND id > $2 ORDER BY id LIMIT $3"
        );
        let mut after = String::new();
        loop {
            let due: Vec<UsageRecord> = db_run!(self.db(), |p| sqlx::query_as(&sql)
                .bind(period_end)
                .bind(&after)
                .bind(CHUNK)
                .fetch_all(p)
                .await)?;
            let Some(last) = due.last() else { break };
            after = last.id.clone();
            let downtime = self.downtime_of(&due).await?;
            if self
                .accrue_chunk(&due, &downtime, period_end, fee_bps, &mut report)
                .await?
            {
                if (due.len() as i64) < CHUNK {
                    break;
                }
                continue;
            }
            for record in &due {
                let empty = Vec::new();
                let down = downtime.get(&record.id).unwrap_or(&empty);
                self.accrue_record(record, down, period_end, fee_bps, &mut report)
                    .await?;
            }
            if (due.len() as i64) < CHUNK {
                break;
            }
        }
        Ok(report)
    }

    async fn downtime_of(
        &self,
        records: &[UsageRecord],
    ) -> Result<HashMap<String, Vec<(i64, i64)>>> {
        let placeholders: Vec<String> = (1..=records.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT record_id, started_at, ended_at FROM node_downtime WHERE record_id IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<(String, i64, i64)> = db_run!(self.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for r in records {
                q = q.bind(&r.id);
            }
            q.fetch_all(p).await
        })?;
        let mut map: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for (id, from, to) in rows {
            map.entry(id).or_default().push((from, to));
        }
        Ok(map)
    }

    /// Charges a whole chunk in one database transaction with set-based statements. Returns
    /// false, having written nothing, when the chunk raced another replica or something needs
    /// the per-record path (a reference already used, a hold that changed under us).
    async fn accrue_chunk(
        &self,
        chunk: &[UsageRecord],
        downtime: &HashMap<String, Vec<(i64, i64)>>,
        period_end: i64,
        fee_bps: FeeBps,
        report: &mut AccrualReport,
    ) -> Result<bool> {
        struct Charge<'a> {
            r: &'a UsageRecord,
            until: i64,
            billable: i64,
            owed: i64,
            paid: i64,
        }
        let empty = Vec::new();
        let mut charges = Vec::with_capacity(chunk.len());
        for r in chunk {
            let until = r.ended_at.map_or(period_end, |e| e.min(period_end));
            if until <= r.accrued_until {
                continue;
            }
            let down = downtime.get(&r.id).unwrap_or(&empty);
            let rate = Money::from_micros(
                r.rate_per_hour,
                Currency::parse(&r.currency).unwrap_or(Currency::Usd),
            );
            let (b_from, b_to) = (billable(r, down, r.accrued_until), billable(r, down, until));
            let owed = rate
                .mul_div(b_to, MICROS_PER_HOUR, Rounding::Down)?
                .checked_sub(rate.mul_div(b_from, MICROS_PER_HOUR, Rounding::Down)?)?
                .micros();
            charges.push(Charge {
                r,
                until,
                billable: b_to - b_from,
                owed,
                paid: 0,
            });
        }
        if charges.is_empty() {
            return Ok(true);
        }
        // What each hold can still pay, and the cluster it names (for the capture's memo).
        let hold_ids: Vec<&str> = {
            let mut v: Vec<&str> = charges.iter().map(|c| c.r.hold_id.as_str()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let sql = format!(
            "SELECT id, amount - captured - released, reference FROM holds WHERE status = 'open' AND id IN ({})",
            (1..=hold_ids.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<(String, i64, String)> = db_run!(self.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for h in &hold_ids {
                q = q.bind(*h);
            }
            q.fetch_all(p).await
        })?;
        let mut holds: HashMap<String, (i64, String, i64)> = rows
            .into_iter()
            .map(|(id, left, reference)| (id, (left, reference, 0)))
            .collect();
        for c in &mut charges {
            let left = holds.get_mut(&c.r.hold_id).map(|(left, _, taken)| {
                let pay = c.owed.min(*left - *taken).max(0);
                *taken += pay;
                pay
            });
            c.paid = left.unwrap_or(0);
        }
        let now = now_micros();
        let mut captures = Vec::new();
        for c in charges.iter().filter(|c| c.paid > 0) {
            let currency = Currency::parse(&c.r.currency).unwrap_or(Currency::Usd);
            let amount = Money::from_micros(c.paid, currency);
            let (share, fee) = crate::ledger::split_fee(amount, fee_bps)?;
            let mut postings = vec![Posting {
                account: AccountRef::org(&c.r.org_id, AccountKind::Held, currency),
                amount: amount.checked_neg()?,
            }];
            if share.is_positive() {
                postings.push(Posting {
                    account: AccountRef::org(
                        &c.r.provider_org_id,
                        AccountKind::ProviderEarnings,
                        currency,
                    ),
                    amount: share,
                });
            }
            if fee.is_positive() {
                postings.push(Posting {
                    account: AccountRef::platform(AccountKind::PlatformRevenue, currency),
                    amount: fee,
                });
            }
            let reference = holds
                .get(&c.r.hold_id)
                .map(|(_, r, _)| r.as_str())
                .unwrap_or("");
            captures.push(NewTransaction {
                external_ref: format!("accrual:{}:{}", c.r.id, c.until),
                kind: TransactionKind::Capture,
                org_id: Some(c.r.org_id.clone()),
                // The same memo `capture_in` writes, so either path recognises the other's work.
                memo: format!("capture from hold {} for {reference}", c.r.hold_id),
                postings,
            });
        }

        let mut tx = self.db().begin().await?;
        // 1. Move every record's `accrued_until`, only where nobody else has.
        let mut moved = 0;
        for part in charges.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE usage_records SET accrued_until = d.until \
                 FROM (SELECT column1 AS id, column2 AS old, column3 AS until FROM (VALUES {}) AS v) AS d \
                 WHERE usage_records.id = d.id AND usage_records.accrued_until = d.old",
                crate::ledger::placeholders(part.len(), 3)
            );
            moved += tx_run!(&mut tx, |c| {
                let mut q = sqlx::query(&sql);
                for ch in part {
                    q = q.bind(&ch.r.id).bind(ch.r.accrued_until).bind(ch.until);
                }
                q.execute(c).await.map(|x| x.rows_affected())
            })?;
        }
        if moved != charges.len() as u64 {
            tracing::debug!(
                moved,
                expected = charges.len(),
                "accrual chunk raced another pass; per-record path"
            );
            return Ok(false);
        }
        // 2. Each hold takes its captures, all or nothing.
        let taking: Vec<(&String, i64)> = holds
            .iter()
            .filter(|(_, (_, _, t))| *t > 0)
            .map(|(id, (_, _, t))| (id, *t))
            .collect();
        let mut updated = 0;
        for part in taking.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE holds SET captured = captured + d.amt, updated_at = $1, \
                 status = CASE WHEN captured + released + d.amt = amount THEN 'settled' ELSE status END \
                 FROM (SELECT column1 AS id, column2 AS amt FROM (VALUES {}) AS v) AS d \
                 WHERE holds.id = d.id AND holds.status = 'open' AND holds.captured + holds.released + d.amt <= holds.amount",
                crate::ledger::placeholders_from(part.len(), 2, 2)
            );
            updated += tx_run!(&mut tx, |c| {
                let mut q = sqlx::query(&sql).bind(now);
                for (id, amt) in part {
                    q = q.bind(*id).bind(*amt);
                }
                q.execute(c).await.map(|x| x.rows_affected())
            })?;
        }
        if updated != taking.len() as u64 {
            tracing::debug!(
                updated,
                expected = taking.len(),
                "a hold changed under the accrual chunk; per-record path"
            );
            return Ok(false);
        }
        // 3. The captures, set-based.
        if crate::ledger::post::batch_fast_in(&mut tx, &captures)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        // 4. The usage lines.
        for part in charges.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO usage_lines (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, rate_per_hour, \
             period_start, period_end, billable_micros, amount, unpaid, created_at, gpus) VALUES {}",
                crate::ledger::placeholders(part.len(), 16)
            );
            tx_run!(&mut tx, |c| {
                let mut q = sqlx::query(&sql);
                for ch in part {
                    q = q
                        .bind(new_id("uln"))
                        .bind(&ch.r.id)
                        .bind(&ch.r.org_id)
                        .bind(&ch.r.cluster_id)
                        .bind(&ch.r.node_id)
                        .bind(&ch.r.device_id)
                        .bind(&ch.r.provider_org_id)
                        .bind(&ch.r.currency)
                        .bind(ch.r.rate_per_hour)
                        .bind(ch.r.accrued_until)
                        .bind(ch.until)
                        .bind(ch.billable)
                        .bind(ch.paid)
                        .bind(ch.owed - ch.paid)
                        .bind(now)
                        .bind(ch.r.gpus);
                }
                q.execute(c).await.map(|x| x.rows_affected())
            })?;
        }
        tx.commit().await?;
        for ch in &charges {
            report.charged_records += 1;
            *report
                .captured
                .entry(Currency::parse(&ch.r.currency).unwrap_or(Currency::Usd))
                .or_default() += ch.paid;
            if ch.paid < ch.owed {
                report.short.push(ch.r.id.clone());
            }
        }
        Ok(true)
    }

    async fn accrue_record(
        &self,
        r: &UsageRecord,
        down: &[(i64, i64)],
        period_end: i64,
        fee_bps: FeeBps,
        report: &mut AccrualReport,
    ) -> Result<()> {
        let until = r.ended_at.map_or(period_end, |e| e.min(period_end));
        if until <= r.accrued_until {
            return Ok(());
        }
        let currency = Currency::parse(&r.currency).unwrap_or(Currency::Usd);
        let rate = Money::from_micros(r.rate_per_hour, currency);
        let (b_from, b_to) = (billable(r, down, r.accrued_until), billable(r, down, until));
        let owed = rate
            .mul_div(b_to, MICROS_PER_HOUR, Rounding::Down)?
            .checked_sub(rate.mul_div(b_from, MICROS_PER_HOUR, Rounding::Down)?)?;

        let mut tx = self.db().begin().await?;
        // Whoever moves `accrued_until` first charges the stretch; everyone else stops here.
        let moved = tx_run!(&mut tx, |c| {
            sqlx::query(
                "UPDATE usage_records SET accrued_until = $1 WHERE id = $2 AND accrued_until = $3",
            )
            .bind(until)
            .bind(&r.id)
            .bind(r.accrued_until)
            .execute(c)
            .await
            .map(|x| x.rows_affected())
        })?;
        if moved == 0 {
            return Ok(());
        }
        let remaining: i64 = tx_run!(&mut tx, |c| {
            sqlx::query_scalar(
                "SELECT amount - captured - released FROM holds WHERE id = $1 AND status = 'open'",
            )
            .bind(&r.hold_id)
            .fetch_optional(c)
            .await
        })?
        .unwrap_or(0);
        let paid = owed.micros().min(remaining).max(0);
        if paid > 0 {
            let reference = format!("accrual:{}:{until}", r.id);
            capture_in(
                &mut tx,
                &r.hold_id,
                Money::from_micros(paid, currency),
                &r.provider_org_id,
                fee_bps,
                &reference,
            )
            .await?;
        }
        tx_run!(&mut tx, |c| {
            sqlx::query(
                "INSERT INTO usage_lines (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, rate_per_hour, \
                 period_start, period_end, billable_micros, amount, unpaid, created_at, gpus) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(new_id("uln"))
            .bind(&r.id)
            .bind(&r.org_id)
            .bind(&r.cluster_id)
            .bind(&r.node_id)
            .bind(&r.device_id)
            .bind(&r.provider_org_id)
            .bind(&r.currency)
            .bind(r.rate_per_hour)
            .bind(r.accrued_until)
            .bind(until)
            .bind(b_to - b_from)
            .bind(paid)
            .bind(owed.micros() - paid)
            .bind(now_micros())
            .bind(r.gpus)
            .execute(c)
            .await
            .map(|x| x.rows_affected())
        })?;
        tx.commit().await?;
        report.charged_records += 1;
        *report.captured.entry(currency).or_default() += paid;
        if paid < owed.micros() {
            report.short.push(r.id.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(started: i64) -> UsageRecord {
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
}
