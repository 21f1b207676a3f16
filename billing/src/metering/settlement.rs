//! Settlement: a hold's final charge when its cluster ends, every record charged to its end
//! and the rest of the hold released; and a single node's end ([`Ledger::settle_usage`]).

use std::collections::{HashMap, HashSet};

use iocloud_db::time::now_micros;
use iocloud_db::{Tx, db_run, tx_run};

use super::accrual::{AccrualReport, Captures};
use super::lines::{add_to_lines, line_parts};
use super::records::{COLUMNS, UsageRecord, billable, owed};
use crate::ledger::{
    AccountKind, AccountRef, ChargeTerms, Ledger, NewTransaction, Posting, TransactionKind,
};
use crate::money::Money;
use crate::{BillingError, Result};

/// A usage record with one stretch of its downtime, if it has any.
#[derive(sqlx::FromRow)]
struct RecordDown {
    #[sqlx(flatten)]
    record: UsageRecord,
    down_from: Option<i64>,
    down_to: Option<i64>,
}

/// What a hold's usage records look like before its final settlement.
pub struct HoldUsage {
    pub records: Vec<UsageRecord>,
    downtime: HashMap<String, Vec<(i64, i64)>>,
}

/// One hold for [`settle_holds_in`]: its usage as read before the transaction
/// ([`Ledger::usage_of_holds`]), charged to `at` where a record has not ended.
pub struct HoldToSettle<'a> {
    pub hold_id: &'a str,
    pub usage: &'a HoldUsage,
    pub at: i64,
}

/// The final settlement of a hold (its cluster ended) inside the caller's transaction:
/// [`settle_holds_in`] for one hold. `Ok(None)` when a record moved since `usage` was read.
pub async fn settle_hold_in(
    tx: &mut Tx,
    hold_id: &str,
    usage: &HoldUsage,
    at: i64,
    terms: impl Into<ChargeTerms>,
) -> Result<Option<Settled>> {
    let item = HoldToSettle { hold_id, usage, at };
    Ok(match settle_holds_in(tx, &[item], terms).await? {
        HoldsSettled::Settled(mut settled) => settled.pop(),
        HoldsSettled::Raced(_) => None,
    })
}

/// What [`settle_holds_in`] did.
pub enum HoldsSettled {
    /// Every hold, in the order asked, its money not yet posted.
    Settled(Vec<Settled>),
    /// The holds one of whose records moved since their usage was read (an accrual pass
    /// charged it). The others are not settled either: the caller rolls back and tries again
    /// without these, or reads them again.
    Raced(HashSet<String>),
}

/// The final settlement of holds (their clusters ended) inside the caller's transaction:
/// every record charged to when it ended (to its hold's `at` if it had not), with one ledger
/// transaction per hold paying providers and the platform, and the rest of the hold released
/// with another. Each account moves once however many nodes a cluster had. The money moves
/// when the caller posts the answers ([`Settled::post_all_in`]), after its own writes.
///
/// The holds are locked first, in id order (a hold before any account it moves money
/// between, as capture, extension and release do), then written with one statement per
/// table for all of them: a batch of settlements costs the round trips of one.
///
/// A hold already settled is answered as it is, with nothing to post; nothing more can be
/// charged to it, so its records still running stop at `at` (callers rely on the settlement to
/// stop every record).
pub async fn settle_holds_in(
    tx: &mut Tx,
    holds: &[HoldToSettle<'_>],
    terms: impl Into<ChargeTerms>,
) -> Result<HoldsSettled> {
    let terms = terms.into();
    if holds.is_empty() {
        return Ok(HoldsSettled::Settled(Vec::new()));
    }
    // Twice in one call would charge its usage twice: the caller settles each hold once.
    let mut asked = HashSet::new();
    if let Some(twice) = holds.iter().find(|h| !asked.insert(h.hold_id)) {
        return Err(BillingError::internal(format!(
            "hold {} asked to settle twice at once",
            twice.hold_id
        )));
    }
    let mut locked = holds_in(tx, holds.iter().map(|h| h.hold_id)).await?;
    let mut settling: Vec<Settling> = Vec::with_capacity(holds.len());
    let mut moves: Vec<(&str, &str, i64, i64)> = Vec::new();
    let mut parts = Vec::new();
    for h in holds {
        let hold = locked
            .remove(h.hold_id)
            .ok_or_else(|| BillingError::HoldNotFound(h.hold_id.to_string()))?;
        let mut s = Settling::new(hold);
        if !s.open {
            stop_records_in(tx, h.hold_id, h.at).await?;
            settling.push(s);
            continue;
        }
        for r in &h.usage.records {
            let until = r.ended_at.unwrap_or(h.at).max(r.accrued_until);
            moves.push((r.id.as_str(), h.hold_id, r.accrued_until, until));
            s.moves += 1;
            if until == r.accrued_until {
                continue;
            }
            let down = h
                .usage
                .downtime
                .get(&r.id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let owed = owed(
                r,
                billable(r, down, r.accrued_until),
                billable(r, down, until),
            )?;
            let paid = owed.micros().min(s.left).max(0);
            s.left -= paid;
            s.paid += paid;
            for part in line_parts(r, down, until, paid, terms)? {
                parts.push((r, part));
            }
            if paid > 0 {
                s.captures.capture(r, paid, terms.fee_bps)?;
            }
        }
        settling.push(s);
    }
    // 1. Every record charged to its end, only where nobody charged it meanwhile.
    let moved = move_records_in(tx, &moves).await?;
    let raced: HashSet<String> = settling
        .iter()
        .filter(|s| s.open && moved.get(s.hold.id.as_str()).copied().unwrap_or(0) != s.moves)
        .map(|s| s.hold.id.clone())
        .collect();
    if !raced.is_empty() {
        return Ok(HoldsSettled::Raced(raced));
    }
    // 2. The usage lines.
    if !parts.is_empty() {
        add_to_lines(tx, &parts).await?;
    }
    // 3. The holds: captured what was paid, released the rest, settled.
    let now = now_micros();
    let written = close_holds_in(tx, &settling, now).await?;
    let raced: HashSet<String> = settling
        .iter()
        .filter(|s| s.open && !written.contains(&s.hold.id))
        .map(|s| s.hold.id.clone())
        .collect();
    if !raced.is_empty() {
        return Ok(HoldsSettled::Raced(raced));
    }
    let settled = settling
        .into_iter()
        .map(|s| {
            if s.open {
                s.settled(now)
            } else {
                Ok(s.unposted())
            }
        })
        .collect::<Result<_>>()?;
    Ok(HoldsSettled::Settled(settled))
}

/// One hold's settlement as [`settle_holds_in`] works it out.
struct Settling {
    /// As locked.
    hold: crate::ledger::Hold,
    /// `false`: settled already, nothing to do.
    open: bool,
    /// Its records to move.
    moves: u64,
    paid: i64,
    left: i64,
    captures: Captures,
}

impl Settling {
    /// Nothing paid yet, all of what is left of the hold to release.
    fn new(hold: crate::ledger::Hold) -> Settling {
        let open = hold.status == "open";
        Settling {
            left: if open {
                hold.amount - hold.captured - hold.released
            } else {
                0
            },
            open,
            hold,
            moves: 0,
            paid: 0,
            captures: Captures::default(),
        }
    }

    /// The hold as it was, nothing to post.
    fn unposted(self) -> Settled {
        Settled {
            hold: self.hold,
            payments: Vec::new(),
        }
    }

    /// The hold once written, with the money to post: the usage paid, the rest released.
    fn settled(self, now: i64) -> Result<Settled> {
        let Settling {
            mut hold,
            paid,
            left,
            captures,
            ..
        } = self;
        let hold_id = hold.id.clone();
        let currency = hold.currency();
        let mut payments = Vec::with_capacity(2);
        if paid > 0 {
            payments.push(NewTransaction {
                external_ref: format!("settle:{hold_id}:usage"),
                kind: TransactionKind::Capture,
                org_id: Some(hold.org_id.clone()),
                memo: format!("usage of hold {hold_id} to its end"),
                postings: captures.postings(),
            });
        }
        if left > 0 {
            let rest = Money::from_micros(left, currency);
            payments.push(NewTransaction {
                external_ref: format!("settle:{hold_id}"),
                kind: TransactionKind::Release,
                org_id: Some(hold.org_id.clone()),
                memo: format!("release hold {hold_id}"),
                postings: Posting::transfer(
                    AccountRef::org(&hold.org_id, AccountKind::Held, currency),
                    AccountRef::org(&hold.org_id, AccountKind::Available, currency),
                    rest,
                )?
                .to_vec(),
            });
        }
        hold.captured += paid;
        hold.released += left;
        hold.status = "settled".into();
        hold.updated_at = now;
        Ok(Settled { hold, payments })
    }
}

/// The holds, locked in id order, by id.
async fn holds_in<'a>(
    tx: &mut Tx,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, crate::ledger::Hold>> {
    let mut ids: Vec<&str> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    let sql = format!(
        "SELECT {} FROM holds WHERE id IN ({}) ORDER BY id{}",
        crate::ledger::holds::COLUMNS,
        iocloud_db::sql::params(ids.len()),
        tx.engine().for_update()
    );
    let rows: Vec<crate::ledger::Hold> = tx_run!(tx, |c| {
        let mut q = sqlx::query_as(&sql);
        for id in &ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })?;
    Ok(rows.into_iter().map(|h| (h.id.clone(), h)).collect())
}

/// A settled hold's records still running stop at `at`.
async fn stop_records_in(tx: &mut Tx, hold_id: &str, at: i64) -> Result<()> {
    tx_run!(tx, |c| {
        sqlx::query(
            "UPDATE usage_records SET ended_at = $1, settled = (accrued_until >= $1) WHERE hold_id = $2 AND ended_at IS NULL",
        )
        .bind(at)
        .bind(hold_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Moves records (id, hold, accrued until as read, until) to their end where each still
/// holds what was read. Answers how many moved, per hold.
async fn move_records_in(
    tx: &mut Tx,
    moves: &[(&str, &str, i64, i64)],
) -> Result<HashMap<String, u64>> {
    if moves.is_empty() {
        return Ok(HashMap::new());
    }
    let mut holds: Vec<&str> = moves.iter().map(|m| m.1).collect();
    holds.sort_unstable();
    holds.dedup();
    // The holds named as values find their few records by the hold's index; joined only to
    // the JSON rows (which Postgres guesses at a hundred), it scans them all.
    let sql = format!(
        "UPDATE usage_records SET accrued_until = d.until, ended_at = COALESCE(usage_records.ended_at, d.until), settled = $2 \
         FROM (SELECT value ->> 0 AS rec, value ->> 1 AS hold, CAST(value ->> 2 AS BIGINT) AS old, \
         CAST(value ->> 3 AS BIGINT) AS until FROM {}) AS d \
         WHERE usage_records.hold_id IN ({}) AND usage_records.hold_id = d.hold AND usage_records.id = d.rec \
         AND usage_records.accrued_until = d.old RETURNING hold_id",
        tx.engine().json_rows("$1"),
        iocloud_db::sql::params_from(holds.len(), 3)
    );
    let json = serde_json::to_string(moves).map_err(BillingError::internal)?;
    let rows: Vec<(String,)> = tx_run!(tx, |c| {
        let mut q = sqlx::query_as(&sql).bind(&json).bind(true);
        for h in &holds {
            q = q.bind(*h);
        }
        q.fetch_all(c).await
    })?;
    let mut moved = HashMap::new();
    for (hold_id,) in rows {
        *moved.entry(hold_id).or_default() += 1;
    }
    Ok(moved)
}

/// Writes the open holds settled (captured what was paid, released the rest) where each
/// still holds what was read. Answers the ids written.
async fn close_holds_in(tx: &mut Tx, settling: &[Settling], now: i64) -> Result<HashSet<String>> {
    let rows: Vec<(&str, i64, i64, i64, i64)> = settling
        .iter()
        .filter(|s| s.open)
        .map(|s| {
            (
                s.hold.id.as_str(),
                s.paid,
                s.left,
                s.hold.captured,
                s.hold.released,
            )
        })
        .collect();
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "UPDATE holds SET captured = holds.captured + d.paid, released = holds.released + d.rest, status = 'settled', updated_at = $2 \
         FROM (SELECT value ->> 0 AS hold, CAST(value ->> 1 AS BIGINT) AS paid, CAST(value ->> 2 AS BIGINT) AS rest, \
         CAST(value ->> 3 AS BIGINT) AS was_captured, CAST(value ->> 4 AS BIGINT) AS was_released FROM {}) AS d \
         WHERE holds.id IN ({}) AND holds.id = d.hold AND holds.status = 'open' AND holds.captured = d.was_captured \
         AND holds.released = d.was_released RETURNING id",
        tx.engine().json_rows("$1"),
        iocloud_db::sql::params_from(rows.len(), 3)
    );
    // By key as well as from the JSON rows, as the records above.
    let json = serde_json::to_string(&rows).map_err(BillingError::internal)?;
    let written: Vec<(String,)> = tx_run!(tx, |c| {
        let mut q = sqlx::query_as(&sql).bind(&json).bind(now);
        for row in &rows {
            q = q.bind(row.0);
        }
        q.fetch_all(c).await
    })?;
    Ok(written.into_iter().map(|(id,)| id).collect())
}

/// A hold settled in an open transaction, its money not yet moved: [`Settled::post_in`] moves
/// it, near the end of the transaction (only quota and devices come after).
pub struct Settled {
    /// The hold as it is once settled.
    pub hold: crate::ledger::Hold,
    payments: Vec<NewTransaction>,
}

impl Settled {
    /// Posts several settlements' money at once, each account moved once for all of them.
    pub async fn post_all_in(tx: &mut Tx, all: Vec<Settled>) -> Result<()> {
        let payments: Vec<NewTransaction> = all.into_iter().flat_map(|s| s.payments).collect();
        if crate::ledger::post::batch_fast_in(tx, &payments)
            .await?
            .is_none()
        {
            return Err(BillingError::internal(
                "a batch of settlements could not be posted",
            ));
        }
        Ok(())
    }

    /// Posts the settlement's captures and release. Near the end of the transaction, because
    /// the accounts it moves include those every settlement shares (platform revenue, a
    /// provider's earnings): their rows are then locked only until the commit.
    pub async fn post_in(self, tx: &mut Tx) -> Result<crate::ledger::Hold> {
        let hold = self.hold.clone();
        Settled::post_all_in(tx, vec![self]).await?;
        Ok(hold)
    }
}

impl Ledger {
    /// Ends a node: charges it to the second it stopped and, when no other node still runs on
    /// its hold, releases what is left of the hold (the final settlement of a cluster). Safe to
    /// call again: nothing is charged or released twice.
    pub async fn settle_usage(
        &self,
        id: &str,
        at: i64,
        terms: impl Into<ChargeTerms>,
    ) -> Result<Option<crate::ledger::Hold>> {
        let terms = terms.into();
        self.stop_usage(id, at).await?;
        let record = self.usage_record(id).await?;
        let end = record.ended_at.unwrap_or(at);
        let downtime = self.downtime_of(std::slice::from_ref(&record)).await?;
        let down = downtime.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut report = AccrualReport::default();
        self.accrue_record(&record, down, end, terms, &mut report)
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

    /// Each hold's usage records and their downtime, for [`settle_hold_in`]: one read for
    /// any number of holds.
    pub async fn usage_of_holds(&self, hold_ids: &[&str]) -> Result<HashMap<String, HoldUsage>> {
        let mut usage: HashMap<String, HoldUsage> = hold_ids
            .iter()
            .map(|h| {
                let empty = HoldUsage {
                    records: Vec::new(),
                    downtime: HashMap::new(),
                };
                (h.to_string(), empty)
            })
            .collect();
        if hold_ids.is_empty() {
            return Ok(usage);
        }
        // Each record with its downtime joined on (a row per stretch, most records have
        // none): one read, where a second for the downtime was a round trip per settlement.
        let sql = format!(
            "SELECT {}, d.started_at AS down_from, d.ended_at AS down_to FROM usage_records u \
             LEFT JOIN node_downtime d ON d.record_id = u.id WHERE u.hold_id IN ({}) ORDER BY u.id",
            iocloud_db::sql::qualified("u", COLUMNS),
            iocloud_db::sql::params(hold_ids.len())
        );
        let rows: Vec<RecordDown> = db_run!(self.db(), |p| {
            let mut q = sqlx::query_as(&sql);
            for h in hold_ids {
                q = q.bind(*h);
            }
            q.fetch_all(p).await
        })?;
        for RecordDown {
            record,
            down_from,
            down_to,
        } in rows
        {
            let Some(u) = usage.get_mut(&record.hold_id) else {
                continue;
            };
            if let (Some(from), Some(to)) = (down_from, down_to) {
                u.downtime
                    .entry(record.id.clone())
                    .or_default()
                    .push((from, to));
            }
            // Rows of one record are adjacent (ordered by id): keep the first.
            if u.records.last().is_none_or(|r| r.id != record.id) {
                u.records.push(record);
            }
        }
        Ok(usage)
    }
}
