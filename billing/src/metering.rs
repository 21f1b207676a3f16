//! Metering: per-second charging of running nodes from their cluster's hold.
//!
//! A usage record says what a node costs per hour, since when, and how far it has been charged
//! (`accrued_until`). An accrual pass (every minute by default) charges each due record up to
//! the end of the current period. Each record's charge is one database transaction that moves
//! `accrued_until` conditionally, captures from the hold under a reference naming the record and
//! period, and adds the charge to the record's usage line for that clock hour: with several
//! replicas, or a crash half-way, every period is charged exactly once.
//!
//! Usage lines are hourly (UTC): a pass adds to the hour's line in place, so in steady state
//! it writes no new rows except in the first minute of an hour. A charge that spans an hour
//! boundary is split into one part per hour.
//!
//! The charge for a stretch is computed from cumulative billable time, so per-period rounding
//! never drifts: `floor(rate × billable(until) / 1 h) − floor(rate × billable(from) / 1 h)`.
//! Time a node was down is not billable.
//!
//! One file for now because usage records, their hourly lines, settlement and the accrual pass
//! share one invariant (a record is charged exactly to `accrued_until`, once) and the SQL that
//! keeps it; splitting them by those four parts, each with its own module, is the next step
//! when this file grows again.

use std::collections::{BTreeMap, HashMap, HashSet};

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Tx, db_run, tx_run};
use serde::Serialize;

use crate::ledger::holds::capture_in;
use crate::ledger::{
    AccountKind, AccountRef, FeeBps, Ledger, NewTransaction, Posting, TransactionKind,
};
use crate::money::{Currency, Money, Rounding};
use crate::{BillingError, Result};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// Records charged per database transaction.
const CHUNK: i64 = 5_000;

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

const COLUMNS: &str = "id, org_id, cluster_id, node_id, device_id, provider_org_id, hold_id, currency, gpus, rate_per_hour, started_at, ended_at, accrued_until";

/// A usage record with one stretch of its downtime, if it has any.
#[derive(sqlx::FromRow)]
struct RecordDown {
    #[sqlx(flatten)]
    record: UsageRecord,
    down_from: Option<i64>,
    down_to: Option<i64>,
}

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
    fn merge(&mut self, other: AccrualReport) {
        self.charged_records += other.charged_records;
        for (currency, micros) in other.captured {
            *self.captured.entry(currency).or_default() += micros;
        }
        self.short.extend(other.short);
    }
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

/// What a record owes for the billable stretch `(b_from, b_to]`, from cumulative totals so that
/// per-period rounding never drifts.
fn owed(r: &UsageRecord, b_from: i64, b_to: i64) -> Result<Money> {
    let rate = Money::from_micros(r.rate_per_hour, currency_of(r));
    rate.mul_div(b_to, MICROS_PER_HOUR, Rounding::Down)?
        .checked_sub(rate.mul_div(b_from, MICROS_PER_HOUR, Rounding::Down)?)
}

/// One clock hour's share of a charge: what is added to that hour's usage line.
#[derive(Debug, PartialEq, Eq)]
struct LinePart {
    hour_start: i64,
    period_start: i64,
    period_end: i64,
    billable: i64,
    /// Captured from the hold.
    paid: i64,
    unpaid: i64,
    /// The provider's share of `paid`.
    earned: i64,
    /// The hour's line does not exist yet: this is the record's first charge in the hour.
    opens_line: bool,
}

/// Splits the charge of `r` from `accrued_until` to `until` (of which `paid` could be
/// captured) into clock hours. Every sum is worked out cumulatively, so the parts add up
/// exactly to the charge, to what was paid, and to the provider's share of the one capture.
fn line_parts(
    r: &UsageRecord,
    down: &[(i64, i64)],
    until: i64,
    paid: i64,
    fee_bps: FeeBps,
) -> Result<Vec<LinePart>> {
    let currency = currency_of(r);
    let mut parts = Vec::with_capacity(1);
    let (mut t, mut b_prev) = (r.accrued_until, billable(r, down, r.accrued_until));
    let (mut paid_left, mut paid_so_far, mut earned_so_far) = (paid, 0, 0);
    while t < until {
        let hour_start = t - t.rem_euclid(MICROS_PER_HOUR);
        let end = (hour_start + MICROS_PER_HOUR).min(until);
        let b = billable(r, down, end);
        let owed = owed(r, b_prev, b)?.micros();
        let part_paid = owed.min(paid_left).max(0);
        paid_left -= part_paid;
        paid_so_far += part_paid;
        let earned = crate::ledger::split_fee(Money::from_micros(paid_so_far, currency), fee_bps)?
            .0
            .micros();
        parts.push(LinePart {
            hour_start,
            period_start: t,
            period_end: end,
            billable: b - b_prev,
            paid: part_paid,
            unpaid: owed - part_paid,
            earned: earned - earned_so_far,
            opens_line: t == hour_start || t == r.started_at,
        });
        earned_so_far = earned;
        (t, b_prev) = (end, b);
    }
    Ok(parts)
}

/// Lines for the next clock hour are opened ahead, spread over the last half hour of the one
/// before: each record's in the minute its id picks. The first pass of an hour then adds to
/// lines that exist instead of inserting one per running node at once. A line opened ahead
/// whose node ended first holds no time (`period_end = period_start`); readers skip those.
const OPEN_AHEAD_SLOTS: i64 = 30;

/// The empty line to open ahead for `r` while charging it from `from` to `until`, when its
/// minute falls in that stretch and the next hour's line is not opened by the charge itself.
fn line_ahead(r: &UsageRecord, from: i64, until: i64) -> Option<LinePart> {
    if r.ended_at.is_some() {
        return None;
    }
    const MINUTE: i64 = 60_000_000;
    let next = from - from.rem_euclid(MICROS_PER_HOUR) + MICROS_PER_HOUR;
    let slot =
        r.id.bytes()
            .fold(0i64, |h, b| (h * 31 + i64::from(b)) % OPEN_AHEAD_SLOTS);
    let at = next - (OPEN_AHEAD_SLOTS - 1 - slot) * MINUTE;
    (from < at && at <= until && until <= next).then_some(LinePart {
        hour_start: next,
        period_start: next,
        period_end: next,
        billable: 0,
        paid: 0,
        unpaid: 0,
        earned: 0,
        opens_line: true,
    })
}

/// The parts bound as `$1`, each as `[record id, hour_start, period_start, period_end,
/// billable, paid, unpaid, earned]`, read back as a table `d` by [`PARTS_COLUMNS`].
fn parts_json(parts: &[(&UsageRecord, LinePart)]) -> Result<String> {
    let rows: Vec<_> = parts
        .iter()
        .map(|(r, p)| {
            (
                &r.id,
                p.hour_start,
                p.period_start,
                p.period_end,
                p.billable,
                p.paid,
                p.unpaid,
                p.earned,
            )
        })
        .collect();
    serde_json::to_string(&rows).map_err(BillingError::internal)
}

const PARTS_COLUMNS: &str = "value ->> 0 AS record_id, CAST(value ->> 1 AS BIGINT) AS hour_start, \
     CAST(value ->> 2 AS BIGINT) AS period_start, CAST(value ->> 3 AS BIGINT) AS period_end, \
     CAST(value ->> 4 AS BIGINT) AS billable, CAST(value ->> 5 AS BIGINT) AS amount, \
     CAST(value ->> 6 AS BIGINT) AS unpaid, CAST(value ->> 7 AS BIGINT) AS earned";

/// Adds the parts to their hourly usage lines, creating the lines an hour's first charge
/// needs. Every part is one line: returns how many were written.
///
/// Each new line carries what it copies from its record (organisation, cluster, node, device,
/// provider, currency, GPUs, rate) in the bound rows, so the database writes lines without
/// looking the records up again.
async fn add_to_lines(tx: &mut iocloud_db::Tx, parts: &[(&UsageRecord, LinePart)]) -> Result<u64> {
    let sql = format!(
        "INSERT INTO usage_lines (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour, \
         hour_start, period_start, period_end, billable_micros, amount, unpaid, earned, created_at) \
         SELECT d.id, d.record_id, d.org_id, d.cluster_id, d.node_id, d.device_id, d.provider_org_id, d.currency, d.gpus, d.rate_per_hour, \
         d.hour_start, d.period_start, d.period_end, d.billable, d.amount, d.unpaid, d.earned, $2 \
         FROM (SELECT {PARTS_COLUMNS}, value ->> 8 AS id, value ->> 9 AS org_id, value ->> 10 AS cluster_id, value ->> 11 AS node_id, \
         value ->> 12 AS device_id, value ->> 13 AS provider_org_id, value ->> 14 AS currency, CAST(value ->> 15 AS BIGINT) AS gpus, \
         CAST(value ->> 16 AS BIGINT) AS rate_per_hour FROM {}) AS d \
         WHERE true ON CONFLICT (record_id, hour_start) DO UPDATE SET period_end = excluded.period_end, \
         billable_micros = usage_lines.billable_micros + excluded.billable_micros, amount = usage_lines.amount + excluded.amount, \
         unpaid = usage_lines.unpaid + excluded.unpaid, earned = usage_lines.earned + excluded.earned",
        tx.engine().json_rows("$1")
    );
    // `WHERE true` keeps SQLite from reading `ON CONFLICT` as part of the `FROM`.
    /// One new line as a JSON array, in the order of the columns above.
    #[derive(Serialize)]
    struct NewLine<'a>(
        &'a str,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        String,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        i64,
        i64,
    );
    let rows: Vec<_> = parts
        .iter()
        .map(|(r, p)| {
            NewLine(
                &r.id,
                p.hour_start,
                p.period_start,
                p.period_end,
                p.billable,
                p.paid,
                p.unpaid,
                p.earned,
                new_id("uln"),
                &r.org_id,
                &r.cluster_id,
                &r.node_id,
                &r.device_id,
                &r.provider_org_id,
                &r.currency,
                r.gpus,
                r.rate_per_hour,
            )
        })
        .collect();
    let json = serde_json::to_string(&rows).map_err(BillingError::internal)?;
    let written = tx_run!(tx, |c| sqlx::query(&sql)
        .bind(&json)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|x| x.rows_affected()))?;
    Ok(written)
}

/// Adds the parts to lines that exist and end where the part starts: every minute of an hour
/// but its first, and the first too when the line was opened ahead. Returns how many lines were
/// added to.
async fn add_to_existing_lines(
    tx: &mut iocloud_db::Tx,
    parts: &[(&UsageRecord, LinePart)],
) -> Result<u64> {
    if parts.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE usage_lines SET period_end = d.period_end, billable_micros = usage_lines.billable_micros + d.billable, \
         amount = usage_lines.amount + d.amount, unpaid = usage_lines.unpaid + d.unpaid, earned = usage_lines.earned + d.earned \
         FROM (SELECT {PARTS_COLUMNS} FROM {}) AS d WHERE usage_lines.record_id = d.record_id AND usage_lines.hour_start = d.hour_start \
         AND usage_lines.period_end = d.period_start",
        tx.engine().json_rows("$1")
    );
    let json = parts_json(parts)?;
    Ok(tx_run!(tx, |c| sqlx::query(&sql)
        .bind(&json)
        .execute(c)
        .await
        .map(|x| x.rows_affected()))?)
}

/// The parts whose hour has no line at all, as (record id, hour start): few, so only they come
/// back (a row returned per part is slow through sqlx-sqlite).
async fn parts_without_lines(
    tx: &mut iocloud_db::Tx,
    parts: &[(&UsageRecord, LinePart)],
) -> Result<HashSet<(String, i64)>> {
    let sql = format!(
        "SELECT d.record_id, d.hour_start FROM (SELECT {PARTS_COLUMNS} FROM {}) AS d \
         WHERE NOT EXISTS (SELECT 1 FROM usage_lines l WHERE l.record_id = d.record_id AND l.hour_start = d.hour_start)",
        tx.engine().json_rows("$1")
    );
    let json = parts_json(parts)?;
    let rows: Vec<(String, i64)> =
        tx_run!(tx, |c| sqlx::query_as(&sql).bind(&json).fetch_all(c).await)?;
    Ok(rows.into_iter().collect())
}

/// Where a pass for the period ending at `period_end` charges `r` to: the period's end, or the
/// record's own if it ended before.
fn charge_end(r: &UsageRecord, period_end: i64) -> i64 {
    r.ended_at.map_or(period_end, |e| e.min(period_end))
}

fn currency_of(r: &UsageRecord) -> Currency {
    Currency::parse(&r.currency).unwrap_or(Currency::Usd)
}

fn group_downtime(rows: Vec<(String, i64, i64)>) -> HashMap<String, Vec<(i64, i64)>> {
    let mut map: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (id, from, to) in rows {
        map.entry(id).or_default().push((from, to));
    }
    map
}

/// Captures of many nodes as one ledger transaction's postings, summed per account: each
/// account moves once however many nodes paid. The fee is split per node, as `capture_in`
/// would, so earnings summed from usage lines match the ledger to the micro-unit.
#[derive(Default)]
struct Captures(BTreeMap<String, (AccountRef, i64)>);

impl Captures {
    fn add(&mut self, account: AccountRef, amount: i64) -> Result<()> {
        let entry = self.0.entry(account.id()).or_insert((account, 0));
        entry.1 = entry.1.checked_add(amount).ok_or(BillingError::Overflow)?;
        Ok(())
    }

    /// `paid` for record `r`: out of its organisation's held funds, to its provider (their
    /// share) and the platform (the fee).
    fn capture(&mut self, r: &UsageRecord, paid: i64, fee_bps: FeeBps) -> Result<()> {
        let currency = currency_of(r);
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

    fn postings(self) -> Vec<Posting> {
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
    fee_bps: FeeBps,
) -> Result<Option<Settled>> {
    let item = HoldToSettle { hold_id, usage, at };
    Ok(match settle_holds_in(tx, &[item], fee_bps).await? {
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
    fee_bps: FeeBps,
) -> Result<HoldsSettled> {
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
            for part in line_parts(r, down, until, paid, fee_bps)? {
                parts.push((r, part));
            }
            if paid > 0 {
                s.captures.capture(r, paid, fee_bps)?;
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
    ///
    /// Chunks are read one after another and charged up to [`PARALLEL_CHUNKS`] at a time, each
    /// in its own transaction on its own connection (Postgres uses a core per connection).
    pub async fn accrue(
        &self,
        now: i64,
        interval_micros: i64,
        fee_bps: FeeBps,
    ) -> Result<AccrualReport> {
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
            in_flight.push(self.accrue_due(due, first, last.clone(), period_end, fee_bps));
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
        fee_bps: FeeBps,
    ) -> Result<AccrualReport> {
        let mut report = AccrualReport {
            period_end,
            ..Default::default()
        };
        let downtime = self.downtime_between(&after, &last).await?;
        if !self
            .accrue_chunk(&due, &downtime, period_end, fee_bps, &mut report)
            .await?
        {
            for record in &due {
                let down = downtime.get(&record.id).map(Vec::as_slice).unwrap_or(&[]);
                self.accrue_record(record, down, period_end, fee_bps, &mut report)
                    .await?;
            }
        }
        Ok(report)
    }

    async fn downtime_of(
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
    async fn downtime_between(
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
        fee_bps: FeeBps,
        report: &mut AccrualReport,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        struct Charge<'a> {
            r: &'a UsageRecord,
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
            captures.capture(c.r, c.paid, fee_bps)?;
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
            for part in line_parts(ch.r, down, ch.until, ch.paid, fee_bps)? {
                // Only a record's very first part is sure to find no line.
                if part.period_start == ch.r.started_at {
                    opening.push((ch.r, part));
                } else {
                    parts.push((ch.r, part));
                }
            }
            opening.extend(line_ahead(ch.r, ch.r.accrued_until, ch.until).map(|p| (ch.r, p)));
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
            *report.captured.entry(currency_of(ch.r)).or_default() += ch.paid;
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
    async fn accrue_record(
        &self,
        seen: &UsageRecord,
        down: &[(i64, i64)],
        period_end: i64,
        fee_bps: FeeBps,
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
        let currency = currency_of(&r);
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
                fee_bps,
                &reference,
            )
            .await?;
        }
        let parts: Vec<_> = line_parts(&r, down, until, paid, fee_bps)?
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
    fn each_running_record_opens_the_next_hours_line_once_in_the_last_half_hour() {
        const MINUTE: i64 = 60_000_000;
        let hour = 500 * MICROS_PER_HOUR;
        for i in 0..200 {
            let mut r = record(hour - MICROS_PER_HOUR);
            r.id = format!("use_{i:04}");
            let opened: Vec<i64> = (0..60)
                .filter_map(|m| {
                    let (from, until) = (hour + m * MINUTE, hour + (m + 1) * MINUTE);
                    line_ahead(&r, from, until).map(|p| {
                        assert_eq!(
                            (p.hour_start, p.period_start, p.period_end),
                            (
                                hour + MICROS_PER_HOUR,
                                hour + MICROS_PER_HOUR,
                                hour + MICROS_PER_HOUR
                            )
                        );
                        assert_eq!((p.billable, p.paid, p.unpaid, p.earned), (0, 0, 0, 0));
                        m
                    })
                })
                .collect();
            assert_eq!(opened.len(), 1, "{}: opened in minutes {opened:?}", r.id);
            assert!(opened[0] >= 30, "{}: opened at minute {}", r.id, opened[0]);
            // One pass over the whole hour opens it too; a pass across the hour does not
            // (its own part opens the line); an ended record never does.
            assert!(line_ahead(&r, hour, hour + MICROS_PER_HOUR).is_some());
            assert!(line_ahead(&r, hour + 59 * MINUTE, hour + MICROS_PER_HOUR + MINUTE).is_none());
            r.ended_at = Some(hour + MICROS_PER_HOUR);
            assert!(line_ahead(&r, hour, hour + MICROS_PER_HOUR).is_none());
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

    const H: i64 = MICROS_PER_HOUR;

    #[test]
    fn a_charge_inside_an_hour_is_one_part() {
        let mut r = record(10 * H);
        r.accrued_until = 10 * H + 60_000_000;
        let parts = line_parts(&r, &[], 10 * H + 120_000_000, 35_000, 500).unwrap();
        assert_eq!(
            parts,
            vec![LinePart {
                hour_start: 10 * H,
                period_start: 10 * H + 60_000_000,
                period_end: 10 * H + 120_000_000,
                billable: 60_000_000,
                paid: 35_000,
                unpaid: 0,
                earned: 33_250,
                opens_line: false,
            }]
        );
    }

    #[test]
    fn a_charge_across_hours_is_split_and_adds_up() {
        // $2.10 an hour from 10:59:30 to 12:00:10, down 11:30–11:45, the hold short by a cent.
        let mut r = record(10 * H + 59 * 60_000_000 + 30_000_000);
        r.rate_per_hour = 2_100_003;
        let until = 12 * H + 10_000_000;
        let down = [(11 * H + H / 2, 11 * H + 3 * H / 4)];
        let owed_total = owed(&r, 0, billable(&r, &down, until)).unwrap().micros();
        let paid = owed_total - 10_000;
        let parts = line_parts(&r, &down, until, paid, 500).unwrap();
        let hours: Vec<i64> = parts.iter().map(|p| p.hour_start / H).collect();
        assert_eq!(hours, vec![10, 11, 12]);
        assert_eq!(parts[1].billable, 3 * H / 4, "downtime is not billable");
        assert_eq!(
            parts.iter().map(|p| p.paid + p.unpaid).sum::<i64>(),
            owed_total
        );
        assert_eq!(parts.iter().map(|p| p.paid).sum::<i64>(), paid);
        // What the hold could not cover is the latest usage: all of the last ten seconds
        // ($0.005833), the rest from the hour before.
        let unpaid: Vec<i64> = parts.iter().map(|p| p.unpaid).collect();
        assert_eq!(unpaid, vec![0, 10_000 - 5_833, 5_833]);
        assert_eq!(parts[2].paid, 0);
        let share = crate::ledger::split_fee(Money::from_micros(paid, Currency::Usd), 500)
            .unwrap()
            .0
            .micros();
        assert_eq!(parts.iter().map(|p| p.earned).sum::<i64>(), share);
        assert_eq!(parts[0].period_start, r.started_at);
        assert_eq!(parts[2].period_end, until);
    }

    /// A pass over records as read before its transaction, against the database.
    mod stale_reads {
        use iocloud_db::scratch::ScratchDb;
        use iocloud_db::{DatabaseUrl, Db, db_run};

        use super::super::*;

        const T0: i64 = 1_800_000_000_000_000; // a whole hour, in µs
        const MINUTE: i64 = 60_000_000;
        const SECOND: i64 = 1_000_000;

        async fn scratch_databases() -> Vec<ScratchDb> {
            let mut dbs = vec![ScratchDb::sqlite().unwrap()];
            if let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
                dbs.push(ScratchDb::postgres(&url).await.unwrap());
            }
            dbs
        }

        fn usd(m: i64) -> Money {
            Money::from_micros(m, Currency::Usd)
        }

        /// A funded organisation's hold of $10 with a node at $2.10/h on it since `T0`: the
        /// ledger and the node's usage record as first read.
        async fn metered(scratch: &ScratchDb) -> (Ledger, UsageRecord) {
            let db = Db::connect(&DatabaseUrl::new(scratch.url.clone()))
                .await
                .unwrap();
            db.migrate().await.unwrap();
            let ledger = Ledger::new(db);
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
                        500,
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
                        500,
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
    }
}
