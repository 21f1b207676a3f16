//! A device's uptime day by day: the minutes of each day in which its agent was heard, against
//! the minutes it could have been heard in, for the chart on the device's page. Minutes are
//! kept per hour (`device_uptime`, keyed by hours since the epoch, one minute for each minute
//! with a heartbeat, written by the flush in [`super::heartbeats`]); a day is 24 of those hours,
//! in UTC.

use iocloud_db::ids::DeviceId;
use iocloud_db::time::{MICROS_PER_DAY, day_string, now_micros};
use iocloud_db::{DbError, db_run};

use super::{Devices, device_row};
use crate::{Action, Actor, Error, Result};

const MICROS_PER_MINUTE: i64 = 60_000_000;
const HOURS_PER_DAY: i64 = 24;

/// The most days one read spans.
pub const MAX_UPTIME_DAYS: i64 = 366;

/// One day of a device's uptime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayUptime {
    /// The day, `2026-11-25` (UTC).
    pub day: String,
    /// Minutes of the day in which the device's agent was heard.
    pub minutes: i64,
    /// Minutes of the day in which it could have been heard: none before the device was
    /// verified (before it was added, while it never was) and none after the last whole
    /// minute, so its first day and today count their part only (at least one minute of a day
    /// it existed in).
    pub possible_minutes: i64,
}

impl DayUptime {
    /// The share of the possible minutes heard, 0 to 1; 0 for a day with none possible.
    pub fn share(&self) -> f64 {
        if self.possible_minutes <= 0 {
            return 0.0;
        }
        (self.minutes as f64 / self.possible_minutes as f64).clamp(0.0, 1.0)
    }
}

impl Devices {
    /// Uptime of one of the actor's devices for each of the last `days` days (today
    /// included), oldest first: every day appears, one without a minute heard with none.
    /// Another organisation's device is not found.
    pub async fn uptime_by_day(
        &self,
        actor: &Actor,
        id: &DeviceId,
        days: i64,
    ) -> Result<Vec<DayUptime>> {
        actor.authorize(Action::ResourcesRead)?;
        if !(1..=MAX_UPTIME_DAYS).contains(&days) {
            return Err(Error::validation(
                "days",
                format!("must be between 1 and {MAX_UPTIME_DAYS}"),
            ));
        }
        let row = device_row(&self.db, &actor.org_id, id).await?;
        let since = row.verified_at.unwrap_or(row.created_at);
        let now = now_micros();
        let today = now.div_euclid(MICROS_PER_DAY);
        let first_day = today - (days - 1);
        // Hours are never negative, so integer division is the same floor on both engines.
        let sums: Vec<(i64, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as(
            "SELECT hour / 24 AS day, CAST(SUM(minutes) AS BIGINT) AS minutes FROM device_uptime \
             WHERE device_id = $1 AND hour >= $2 AND hour < $3 GROUP BY hour / 24"
        )
        .bind(id)
        .bind(first_day * HOURS_PER_DAY)
        .bind((today + 1) * HOURS_PER_DAY)
        .fetch_all(p)
        .await
        })
        .map_err(DbError::from)?;
        Ok(days_of(&sums, days, since, now))
    }
}

/// Each of the `days` days up to and including the day of `now`, oldest first: the minutes
/// `sums` (day number, minutes) holds for it, 0 when it holds none, and the whole minutes
/// between `since` and `now` that fall in it.
fn days_of(sums: &[(i64, i64)], days: i64, since: i64, now: i64) -> Vec<DayUptime> {
    let today = now.div_euclid(MICROS_PER_DAY);
    (today - (days - 1)..=today)
        .map(|d| {
            let start = (d * MICROS_PER_DAY).max(since);
            let end = ((d + 1) * MICROS_PER_DAY).min(now);
            let possible_minutes = if end > start {
                // The minute `since` falls in counts (its heartbeat counts it); the minute
                // under way does not yet, unless it is all there is.
                let whole = end.div_euclid(MICROS_PER_MINUTE) - start.div_euclid(MICROS_PER_MINUTE);
                whole.max(1)
            } else {
                0
            };
            let minutes = sums
                .iter()
                .filter(|(day, _)| *day == d)
                .map(|(_, m)| *m)
                .fold(0, i64::saturating_add);
            DayUptime {
                day: day_string(d),
                minutes,
                possible_minutes,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = MICROS_PER_MINUTE;

    #[test]
    fn every_day_appears_oldest_first_with_nothing_heard_as_zero() {
        let today = 20_000;
        let now = today * MICROS_PER_DAY + 6 * 60 * MINUTE;
        let since = (today - 100) * MICROS_PER_DAY;
        let days = days_of(&[(today - 1, 720)], 30, since, now);
        assert_eq!(days.len(), 30);
        assert_eq!(days[0].day, day_string(today - 29));
        assert_eq!(days[29].day, day_string(today));
        assert!(
            days[..28]
                .iter()
                .all(|d| d.minutes == 0 && d.share() == 0.0)
        );
        assert!(days[..29].iter().all(|d| d.possible_minutes == 1440));
        assert_eq!(days[28].minutes, 720);
        assert_eq!(days[28].share(), 0.5);
        assert_eq!(days[29].possible_minutes, 6 * 60, "today so far");
    }

    #[test]
    fn a_device_counts_from_when_it_was_verified() {
        let today = 20_000;
        let since = today * MICROS_PER_DAY + 12 * 60 * MINUTE + 30_000_000;
        let now = today * MICROS_PER_DAY + 13 * 60 * MINUTE + 10_000_000;
        let days = days_of(&[(today, 61)], 3, since, now);
        assert_eq!(days[0].possible_minutes, 0, "before it was verified");
        assert_eq!(days[0].share(), 0.0);
        assert_eq!(days[1].possible_minutes, 0);
        assert_eq!(
            days[2].possible_minutes, 60,
            "12:00 to 12:59, whole minutes"
        );
        assert_eq!(days[2].share(), 1.0, "never more than all of it");
        let first = days_of(&[(today, 1)], 1, since, since + 1_000_000);
        assert_eq!(first[0].possible_minutes, 1, "its first minute");
        assert_eq!(first[0].share(), 1.0);
    }
}
