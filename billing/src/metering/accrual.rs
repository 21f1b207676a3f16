//! The accrual pass: every due record charged to the end of the current period, a chunk of
//! records per database transaction (record by record when a chunk raced another pass), each
//! chunk paid with one ledger transaction.

use std::collections::{BTreeMap, HashMap};

use iocloud_db::time::now_micros;
use iocloud_db::{db_run, tx_run};

use super::lines::{
    add_to_existing_lines, add_to_lines, line_ahead, line_parts, parts_without_lines,
};
use super::records::{COLUMNS, UsageRecord, billable, charge_end, currency_of, owed};
use crate::ledger::holds::capture_in;
use crate::ledger::{
    AccountKind, AccountRef, ChargeTerms, FeeBps, Ledger, NewTransaction, Posting, TransactionKind,
};
use crate::money::{Currency, Money};
use crate::{BillingError, Result};

/// Records charged per database transaction.
const CHUNK: i64 = 5_000;

/// Chunks charged at once by one pass.
const PARALLEL_CHUNKS: usize = 2;

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

impl AccrualReport {
    /// Adds what another pass did.
    pub fn merge(&mut self, other: AccrualReport) {
        self.charged_records += other.charged_records;
        for (currency, micros) in other.captured {
            *self.captured.entry(currency).or_default() += micros;
        }
        self.short.extend(other.short);
    }
}

/// Captures of many nodes as one ledger transaction's postings, summed per account: each
/// account moves once however many nodes paid. The fee is split per node, as `capture_in`
/// would, so earnings summed from usage lines match the ledger to the micro-unit.
#[derive(Default)]
pub(super) struct Captures(BTreeMap<String, (AccountRef, i64)>);

impl Captures {
    pub(super) fn add(&mut self, account: AccountRef, amount: i64) -> Result<()> {
        let entry = self.0.entry(account.id()).or_insert((account, 0));
        entry.1 = entry.1.checked_add(amount).ok_or(BillingError::Overflow)?;
        Ok(())
    }

    /// `paid` for record `r`: out of its organisation's held funds, to its provider (their
    /// share) and the platform (the fee).
    pub(super) fn capture(&mut self, r: &UsageRecord, paid: i64, fee_bps: FeeBps) -> Result<()> {
        let currency = currency_of(r)?;
        let (share, fee) = crate::ledger::split_fee(Money::from_micros(paid, currency), fee_bps)?;
        self.add(
            AccountRef::org(&r.org_id, AccountKind::Held, currency),
            -paid,
        )?;
        self.add(
            AccountRef::org(&r.provider_org_id, AccountKind::ProviderEarnings, currency),
            share.micros(),
        )?;
        self.add(
            AccountRef::platform(AccountKind::PlatformRevenue, currency),
            fee.micros(),
        )
    }

    pub(super) fn postings(self) -> Vec<Posting> {
        self.0
            .into_values()
            .filter(|(_, amount)| *amount != 0)
            .map(|(account, amount)| Posting {
                amount: Money::from_micros(amount, account.currency),
                account,
            })
            .collect()
    }
}

impl Ledger {
    /// Charges every due record up to the end of the period containing `now`
    /// (`now` rounded down to a multiple of `interval_micros`).
    ///
    /// Chunks are read one after another and charged up to [`PARALLEL_CHUNKS`] at a time, each
    /// in its own transaction on its own connection (Postgres uses a core per connection).
    pub async fn accrue(
        &self,
        now: i64,
        interval_micros: i64,
        terms: impl Into<ChargeTerms>,
    ) -> Result<AccrualReport> {
        let terms = terms.into();
        use futures::StreamExt;
        use futures::stream::FuturesUnordered;

        let period_end = now - now.rem_euclid(interval_micros.max(1));
        let mut report = AccrualReport {
            period_end,
            ..Default::default()
        };
        // The chunk comes back as one JSON text: thousands of rows decoded by serde rather
        // than row by row through the driver.
        let sql = format!(
            "SELECT {} FROM (SELECT {COLUMNS} FROM usage_records WHERE NOT settled AND accrued_until < $1 \
             AND id > $2 ORDER BY id LIMIT $3) AS due",
            self.db().engine().json_agg(COLUMNS)
        );
        let mut in_flight = FuturesUnordered::new();
        let mut after = String::new();
        loop {
            let json: String = db_run!(self.db(), |p| sqlx::query_scalar(&sql)
                .bind(period_end)
                .bind(&after)
                .bind(CHUNK)
                .fetch_one(p)
                .await)?;
            let mut due: Vec<UsageRecord> =
                serde_json::from_str(&json).map_err(BillingError::internal)?;
            due.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            let Some(last) = due.last() else { break };
            let (first, last) = (after.clone(), last.id.clone());
            let full = due.len() as i64 == CHUNK;
            in_flight.push(self.accrue_due(due, first, last.clone(), period_end, terms));
            if in_flight.len() >= PARALLEL_CHUNKS
                && let Some(done) = in_flight.next().await
            {
                report.merge(done?);
            }
            if !full {
                break;
            }
            after = last;
        }
        while let Some(done) = in_flight.next().await {
            report.merge(done?);
        }
        Ok(report)
    }

    /// Charges one chunk of due records (ids in `(after, last]`): set-based when it can,
    /// record by record when the chunk raced another pass.
    async fn accrue_due(
        &self,
        due: Vec<UsageRecord>,
        after: String,
        last: String,
        period_end: i64,
        terms: ChargeTerms,
    ) -> Result<AccrualReport> {
        let mut report = AccrualReport {
            period_end,
            ..Default::default()
        };
        let downtime = self.downtime_between(&after, &last).await?;
        if !self
            .accrue_chunk(&due, &downtime, period_end, terms, &mut report)
            .await?
        {
            for record in &due {
                let down = downtime.get(&record.id).map(Vec::as_slice).unwrap_or(&[]);
                self.accrue_record(record, down, period_end, terms, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }

    /// Charges a whole chunk in one database transaction with set-based statements, and pays
    /// it with one ledger transaction whose postings are summed per account (each node's
    /// charge stays visible as its usage line). Returns false, having written nothing, when the
    /// chunk raced another replica or a hold changed under it: the per-record path then
    /// sorts out who charged what.
    async fn accrue_chunk(
        &self,
        chunk: &[UsageRecord],
        downtime: &HashMap<String, Vec<(i64, i64)>>,
        period_end: i64,
        terms: ChargeTerms,
        report: &mut AccrualReport,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        struct Charge<'a> {
            r: &'a UsageRecord,
            currency: Currency,
            until: i64,
            owed: i64,
            paid: i64,
        }
        let mut charges = Vec::with_capacity(chunk.len());
        for r in chunk {
            let until = charge_end(r, period_end);
            if until <= r.accrued_until {
                continue;
            }
            let down = downtime.get(&r.id).map(Vec::as_slice).unwrap_or(&[]);
            let (b_from, b_to) = (billable(r, down, r.accrued_until), billable(r, down, until));
            charges.push(Charge {
                r,
                currency: currency_of(r)?,
                until,
                owed: owed(r, b_from, b_to)?.micros(),
                paid: 0,
            });
        }
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(true);
        };
        if charges.is_empty() {
            return Ok(true);
        }
        let mut tx = self.db().begin().await?;
        let engine = tx.engine();
        // What each hold can still pay, locked (in id order, so two chunks sharing holds
        // never wait on each other in a cycle); each charge takes what its hold has left.
        let lock = engine.for_update();
        let sql = format!(
            "SELECT {} FROM (SELECT id, amount - captured - released AS remaining FROM holds WHERE status = 'open' \
             AND id IN (SELECT hold_id FROM usage_records WHERE id >= $1 AND id <= $2) ORDER BY id{lock}) AS h",
            engine.json_agg("id, remaining")
        );
        let json: String = tx_run!(&mut tx, |c| sqlx::query_scalar(&sql)
            .bind(&first.id)
            .bind(&last.id)
            .fetch_one(c)
            .await)?;
        let rows: Vec<(String, i64)> =
            serde_json::from_str(&json).map_err(BillingError::internal)?;
        let mut holds: HashMap<String, (i64, i64)> =
            rows.into_iter().map(|(id, left)| (id, (left, 0))).collect();
        for c in &mut charges {
            if let Some((left, taken)) = holds.get_mut(&c.r.hold_id) {
                c.paid = c.owed.min(*left - *taken).max(0);
                *taken += c.paid;
            }
        }
        // One ledger transaction pays the chunk, one posting per account.
        let mut captures = Captures::default();
        for c in charges.iter().filter(|c| c.paid > 0) {
            captures.capture(c.r, c.paid, terms.fee_bps)?;
        }
        let postings = captures.postings();
        let payment = NewTransaction {
            external_ref: format!("accrual:{period_end}:{}:{}", first.id, last.id),
            kind: TransactionKind::Capture,
            org_id: None,
            memo: format!("usage to {}", iocloud_db::time::to_rfc3339(period_end)),
            postings,
        };

        let prepared = started.elapsed();
        // 1. Move every record's `accrued_until`, only where nobody else has and where the node
        // did not stop before `until` since the chunk was read.
        let moves: Vec<(&str, i64, i64)> = charges
            .iter()
            .map(|c| (c.r.id.as_str(), c.r.accrued_until, c.until))
            .collect();
        let sql = format!(
            "UPDATE usage_records SET accrued_until = d.until, \
             settled = (usage_records.ended_at IS NOT NULL AND d.until >= usage_records.ended_at) \
             FROM (SELECT value ->> 0 AS id, CAST(value ->> 1 AS BIGINT) AS old, CAST(value ->> 2 AS BIGINT) AS until FROM {}) AS d \
             WHERE usage_records.id = d.id AND usage_records.accrued_until = d.old \
             AND (usage_records.ended_at IS NULL OR usage_records.ended_at >= d.until)",
            engine.json_rows("$1")
        );
        let json = serde_json::to_string(&moves).map_err(BillingError::internal)?;
        let moved = tx_run!(&mut tx, |c| sqlx::query(&sql)
            .bind(&json)
            .execute(c)
            .await
            .map(|x| x.rows_affected()))?;
        if moved != charges.len() as u64 {
            tracing::debug!(
                moved,
                expected = charges.len(),
                "accrual chunk raced another pass; per-record path"
            );
            return Ok(false);
        }
        // 2. Each hold takes its captures, all or nothing.
        let now = now_micros();
        let taking: Vec<(&str, i64)> = holds
            .iter()
            .filter(|(_, (_, taken))| *taken > 0)
            .map(|(id, (_, taken))| (id.as_str(), *taken))
            .collect();
        let sql = format!(
            "UPDATE holds SET captured = captured + d.amt, updated_at = $2, \
             status = CASE WHEN captured + released + d.amt = amount THEN 'settled' ELSE status END \
             FROM (SELECT value ->> 0 AS id, CAST(value ->> 1 AS BIGINT) AS amt FROM {}) AS d \
             WHERE holds.id = d.id AND holds.status = 'open' AND holds.captured + holds.released + d.amt <= holds.amount",
            engine.json_rows("$1")
        );
        let json = serde_json::to_string(&taking).map_err(BillingError::internal)?;
        let updated = tx_run!(&mut tx, |c| sqlx::query(&sql)
            .bind(&json)
            .bind(now)
            .execute(c)
            .await
            .map(|x| x.rows_affected()))?;
        if updated != taking.len() as u64 {
            tracing::debug!(
                updated,
                expected = taking.len(),
                "a hold changed under the accrual chunk; per-record path"
            );
            return Ok(false);
        }
        let holds_done = started.elapsed();
        // 3. The usage lines.
        let (mut parts, mut opening) = (Vec::with_capacity(charges.len()), Vec::new());
        for ch in &charges {
            let down = downtime.get(&ch.r.id).map(Vec::as_slice).unwrap_or(&[]);
            for part in line_parts(ch.r, down, ch.until, ch.paid, terms)? {
                // Only a record's very first part is sure to find no line.
                if part.period_start == ch.r.started_at {
                    opening.push((ch.r, part));
                } else {
                    parts.push((ch.r, part));
                }
            }
            opening.extend(
                line_ahead(ch.r, ch.r.accrued_until, ch.until, terms.params_version)
                    .map(|p| (ch.r, p)),
            );
        }
        // Added to in place where the line is. If some were not, those whose hour has no line
        // yet and which open it are inserted; anything else means a race.
        let added = add_to_existing_lines(&mut tx, &parts).await?;
        if added < parts.len() as u64 {
            let missing = parts_without_lines(&mut tx, &parts).await?;
            let (new, found): (Vec<_>, Vec<_>) = parts
                .into_iter()
                .partition(|(r, p)| missing.contains(&(r.id.clone(), p.hour_start)));
            if added != found.len() as u64 || new.iter().any(|(_, p)| !p.opens_line) {
                tracing::debug!(
                    "a usage line was not where the accrual chunk expected; per-record path"
                );
                return Ok(false);
            }
            opening.extend(new);
        }
        if !opening.is_empty() {
            add_to_lines(&mut tx, &opening).await?;
        }
        let lines_done = started.elapsed();
        // 4. The payment, last: it locks accounts every chunk shares, so they are held briefly.
        if !payment.postings.is_empty()
            && crate::ledger::post::batch_fast_in(&mut tx, std::slice::from_ref(&payment))
                .await?
                .is_none()
        {
            return Ok(false);
        }
        tx.commit().await?;
        tracing::debug!(
            records = charges.len(),
            ?prepared,
            ?holds_done,
            ?lines_done,
            total = ?started.elapsed(),
            "accrual chunk"
        );
        for ch in &charges {
            report.charged_records += 1;
            *report.captured.entry(ch.currency).or_default() += ch.paid;
            if ch.paid < ch.owed {
                report.short.push(ch.r.id.clone());
            }
        }
        Ok(true)
    }

    /// Charges one record to `period_end` (to its end, if it ended before) in a transaction of
    /// its own, from where the record is when the transaction has it.
    ///
    /// `seen` is the record as the caller read it, before the transaction, and may be stale:
    /// another pass may have charged it since (one cancelled after its commit was sent, whose
    /// commit lands after this pass read its due records), or the node stopped. So the record
    /// is read again under its hold's lock. Taking "it moved" for "it is charged" would leave the
    /// stretch between the other pass's period end and this one's uncharged; charging to the
    /// period's end a node that stopped would charge it for time it did not run.
    pub(super) async fn accrue_record(
        &self,
        seen: &UsageRecord,
        down: &[(i64, i64)],
        period_end: i64,
        terms: ChargeTerms,
        report: &mut AccrualReport,
    ) -> Result<()> {
        // Nothing to charge as read is nothing to charge now: `accrued_until` only grows, and
        // an end, once set, stays.
        if charge_end(seen, period_end) <= seen.accrued_until {
            return Ok(());
        }
        let mut tx = self.db().begin().await?;
        let lock = tx.engine().for_update();
        // The hold before its record, as a settlement and a chunk of accrual lock them.
        let sql = format!(
            "SELECT amount - captured - released FROM holds WHERE id = $1 AND status = 'open'{lock}"
        );
        let remaining: i64 = tx_run!(&mut tx, |c| {
            sqlx::query_scalar(&sql)
                .bind(&seen.hold_id)
                .fetch_optional(c)
                .await
        })?
        .unwrap_or(0);
        let sql = format!("SELECT {COLUMNS} FROM usage_records WHERE id = $1{lock}");
        let r: UsageRecord = tx_run!(&mut tx, |c| sqlx::query_as(&sql)
            .bind(&seen.id)
            .fetch_one(c)
            .await)?;
        let until = charge_end(&r, period_end);
        if until <= r.accrued_until {
            return Ok(());
        }
        let currency = currency_of(&r)?;
        let owed = owed(
            &r,
            billable(&r, down, r.accrued_until),
            billable(&r, down, until),
        )?;
        // Locked, the record cannot move under us; the condition stays as a guard.
        let moved = tx_run!(&mut tx, |c| {
            sqlx::query(
                "UPDATE usage_records SET accrued_until = $1, settled = (ended_at IS NOT NULL AND $1 >= ended_at) \
                 WHERE id = $2 AND accrued_until = $3",
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
        let paid = owed.micros().min(remaining).max(0);
        if paid > 0 {
            let reference = format!("accrual:{}:{until}", r.id);
            capture_in(
                &mut tx,
                &r.hold_id,
                Money::from_micros(paid, currency),
                &r.provider_org_id,
                terms.fee_bps,
                &reference,
            )
            .await?;
        }
        let parts: Vec<_> = line_parts(&r, down, until, paid, terms)?
            .into_iter()
            .map(|part| (&r, part))
            .collect();
        add_to_lines(&mut tx, &parts).await?;
        tx.commit().await?;
        report.charged_records += 1;
        *report.captured.entry(currency).or_default() += paid;
        if paid < owed.micros() {
            report.short.push(r.id.clone());
        }
        Ok(())
    }
}

/// Passes over records as read before their transaction, against the database.
#[cfg(test)]
mod tests {
    use iocloud_db::db_run;

    use super::super::records::tests::{T0, metered};
    use super::*;
    use crate::testing::scratch_databases;

    const MINUTE: i64 = 60_000_000;
    const SECOND: i64 = 1_000_000;

    /// What the usage lines and the hold say was charged.
    async fn charged(ledger: &Ledger) -> (i64, i64) {
        db_run!(ledger.db(), |p| sqlx::query_as::<_, (i64, i64)>(
            "SELECT CAST((SELECT COALESCE(SUM(amount), 0) FROM usage_lines) AS BIGINT), \
             (SELECT captured FROM holds)"
        )
        .fetch_one(p)
        .await)
        .unwrap()
    }

    /// One pass read the record before another's commit landed (the other cancelled after
    /// its commit was sent, say); the other charged it to minute 28. The first charges the
    /// two minutes left to its own period's end, rather than taking the record for charged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_charged_since_it_was_read_is_charged_the_rest_of_the_period() {
        for scratch in scratch_databases().await {
            let (ledger, seen) = metered(&scratch).await;
            ledger.accrue(T0 + 28 * MINUTE, MINUTE, 500).await.unwrap();
            let report = ledger
                .accrue_due(
                    vec![seen.clone()],
                    String::new(),
                    seen.id.clone(),
                    T0 + 30 * MINUTE,
                    500.into(),
                )
                .await
                .unwrap();
            assert_eq!(report.charged_records, 1);
            assert_eq!(
                charged(&ledger).await,
                (1_050_000, 1_050_000),
                "$2.10/h for 30 minutes, exactly"
            );
            let record = ledger.usage_record(&seen.id).await.unwrap();
            assert_eq!(record.accrued_until, T0 + 30 * MINUTE);
            assert!(ledger.verify().await.unwrap().is_balanced());
        }
    }

    /// The node stopped after the pass read it running: it is charged to the second it
    /// stopped, never to the end of the period.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_stopped_since_it_was_read_is_charged_to_its_stop() {
        for scratch in scratch_databases().await {
            let (ledger, seen) = metered(&scratch).await;
            ledger.stop_usage(&seen.id, T0 + 90 * SECOND).await.unwrap();
            ledger
                .accrue_due(
                    vec![seen.clone()],
                    String::new(),
                    seen.id.clone(),
                    T0 + 2 * MINUTE,
                    500.into(),
                )
                .await
                .unwrap();
            assert_eq!(
                charged(&ledger).await,
                (52_500, 52_500),
                "$2.10/h for exactly 90 s"
            );
            let record = ledger.usage_record(&seen.id).await.unwrap();
            assert_eq!(record.accrued_until, T0 + 90 * SECOND);
            assert!(ledger.verify().await.unwrap().is_balanced());
        }
    }

    /// A record whose stored currency is none of ours stops the pass with an error naming
    /// it: nothing is charged, in USD or otherwise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_in_a_currency_that_does_not_parse_is_an_error_not_a_charge_in_usd() {
        for scratch in scratch_databases().await {
            let (ledger, record) = metered(&scratch).await;
            db_run!(ledger.db(), |p| sqlx::query(
                "UPDATE usage_records SET currency = 'XYZ' WHERE id = $1"
            )
            .bind(&record.id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
            .unwrap();
            let err = ledger
                .accrue(T0 + 2 * MINUTE, MINUTE, 500)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, BillingError::CorruptRow { column, value }
                    if column == "usage_records.currency" && value == "XYZ"),
                "{err:?}"
            );
            assert_eq!(charged(&ledger).await, (0, 0));
            let record = ledger.usage_record(&record.id).await.unwrap();
            assert_eq!(record.accrued_until, T0, "not moved");
        }
    }
}
