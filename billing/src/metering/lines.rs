//! Hourly usage lines: a charge split into one part per clock hour, each added to the record's
//! line for that hour (opened ahead, or by the hour's first charge).

use std::collections::HashSet;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::tx_run;
use serde::Serialize;

use super::records::{MICROS_PER_HOUR, UsageRecord, billable, currency_of, owed};
use crate::ledger::ChargeTerms;
use crate::money::Money;
use crate::{BillingError, Result};

/// One clock hour's share of a charge: what is added to that hour's usage line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LinePart {
    pub(super) hour_start: i64,
    pub(super) period_start: i64,
    pub(super) period_end: i64,
    pub(super) billable: i64,
    /// Captured from the hold.
    pub(super) paid: i64,
    pub(super) unpaid: i64,
    /// The provider's share of `paid`.
    pub(super) earned: i64,
    /// The hour's line does not exist yet: this is the record's first charge in the hour.
    pub(super) opens_line: bool,
    /// The version of the protocol's parameters it was charged under.
    pub(super) params_version: i64,
}

/// Splits the charge of `r` from `accrued_until` to `until` (of which `paid` could be
/// captured) into clock hours. Every sum is worked out cumulatively, so the parts add up
/// exactly to the charge, to what was paid, and to the provider's share of the one capture.
pub(super) fn line_parts(
    r: &UsageRecord,
    down: &[(i64, i64)],
    until: i64,
    paid: i64,
    terms: ChargeTerms,
) -> Result<Vec<LinePart>> {
    let currency = currency_of(r)?;
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
        let earned =
            crate::ledger::split_fee(Money::from_micros(paid_so_far, currency), terms.fee_bps)?
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
            params_version: terms.params_version,
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
/// It takes `params_version` for now; the hour's first charge sets the version it is charged
/// under.
pub(super) fn line_ahead(
    r: &UsageRecord,
    from: i64,
    until: i64,
    params_version: i64,
) -> Option<LinePart> {
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
        params_version,
    })
}

/// The parts bound as `$1`, each as `[record id, hour_start, period_start, period_end,
/// billable, paid, unpaid, earned, params_version]`, read back as a table `d` by
/// [`PARTS_COLUMNS`].
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
                p.params_version,
            )
        })
        .collect();
    serde_json::to_string(&rows).map_err(BillingError::internal)
}

const PARTS_COLUMNS: &str = "value ->> 0 AS record_id, CAST(value ->> 1 AS BIGINT) AS hour_start, \
     CAST(value ->> 2 AS BIGINT) AS period_start, CAST(value ->> 3 AS BIGINT) AS period_end, \
     CAST(value ->> 4 AS BIGINT) AS billable, CAST(value ->> 5 AS BIGINT) AS amount, \
     CAST(value ->> 6 AS BIGINT) AS unpaid, CAST(value ->> 7 AS BIGINT) AS earned, \
     CAST(value ->> 8 AS BIGINT) AS params_version";

/// Adds the parts to their hourly usage lines, creating the lines an hour's first charge
/// needs. Every part is one line: returns how many were written.
///
/// Each new line carries what it copies from its record (organisation, cluster, node, device,
/// provider, currency, GPUs, rate) in the bound rows, so the database writes lines without
/// looking the records up again.
pub(super) async fn add_to_lines(
    tx: &mut iocloud_db::Tx,
    parts: &[(&UsageRecord, LinePart)],
) -> Result<u64> {
    let sql = format!(
        "INSERT INTO usage_lines (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour, \
         hour_start, period_start, period_end, billable_micros, amount, unpaid, earned, params_version, created_at) \
         SELECT d.id, d.record_id, d.org_id, d.cluster_id, d.node_id, d.device_id, d.provider_org_id, d.currency, d.gpus, d.rate_per_hour, \
         d.hour_start, d.period_start, d.period_end, d.billable, d.amount, d.unpaid, d.earned, d.params_version, $2 \
         FROM (SELECT {PARTS_COLUMNS}, value ->> 9 AS id, value ->> 10 AS org_id, value ->> 11 AS cluster_id, value ->> 12 AS node_id, \
         value ->> 13 AS device_id, value ->> 14 AS provider_org_id, value ->> 15 AS currency, CAST(value ->> 16 AS BIGINT) AS gpus, \
         CAST(value ->> 17 AS BIGINT) AS rate_per_hour FROM {}) AS d \
         WHERE true ON CONFLICT (record_id, hour_start) DO UPDATE SET period_end = excluded.period_end, \
         billable_micros = usage_lines.billable_micros + excluded.billable_micros, amount = usage_lines.amount + excluded.amount, \
         unpaid = usage_lines.unpaid + excluded.unpaid, earned = usage_lines.earned + excluded.earned, \
         params_version = excluded.params_version",
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
                p.params_version,
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
pub(super) async fn add_to_existing_lines(
    tx: &mut iocloud_db::Tx,
    parts: &[(&UsageRecord, LinePart)],
) -> Result<u64> {
    if parts.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE usage_lines SET period_end = d.period_end, billable_micros = usage_lines.billable_micros + d.billable, \
         amount = usage_lines.amount + d.amount, unpaid = usage_lines.unpaid + d.unpaid, earned = usage_lines.earned + d.earned, \
         params_version = d.params_version FROM (SELECT {PARTS_COLUMNS} FROM {}) AS d WHERE usage_lines.record_id = d.record_id AND usage_lines.hour_start = d.hour_start \
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
pub(super) async fn parts_without_lines(
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

#[cfg(test)]
mod tests {
    use super::super::records::tests::record;
    use super::*;
    use crate::money::Currency;

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
                    line_ahead(&r, from, until, 1).map(|p| {
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
            assert!(line_ahead(&r, hour, hour + MICROS_PER_HOUR, 1).is_some());
            assert!(
                line_ahead(&r, hour + 59 * MINUTE, hour + MICROS_PER_HOUR + MINUTE, 1).is_none()
            );
            r.ended_at = Some(hour + MICROS_PER_HOUR);
            assert!(line_ahead(&r, hour, hour + MICROS_PER_HOUR, 1).is_none());
        }
    }

    const H: i64 = MICROS_PER_HOUR;

    #[test]
    fn a_charge_inside_an_hour_is_one_part() {
        let mut r = record(10 * H);
        r.accrued_until = 10 * H + 60_000_000;
        let parts = line_parts(&r, &[], 10 * H + 120_000_000, 35_000, 500.into()).unwrap();
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
                params_version: 1,
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
        let parts = line_parts(&r, &down, until, paid, 500.into()).unwrap();
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
}
