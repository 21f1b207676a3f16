//! The network over days and months, summed from the hourly blocks (each keeps what its hour
//! saw, so a year is a few thousand rows read by their key), and the emission schedule from
//! launch to the cap.

use std::collections::BTreeMap;

use iocloud_db::time::{now_micros, to_rfc3339};
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{Explorer, io};
use crate::rewards::MICROS_PER_HOUR;
use crate::{Error, Result};

/// How the history is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// UTC days.
    Day,
    /// Calendar months (UTC).
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// The most periods one answer covers: a year of days, five years of months.
    pub fn max_count(self) -> i64 {
        match self {
            Period::Day => 366,
            Period::Month => 60,
        }
    }
}

/// The network over one day or month, from its blocks.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NetworkPeriod {
    /// `YYYY-MM-DD` for a day, `YYYY-MM` for a month.
    pub period: String,
    /// Hours with a block.
    pub blocks: i64,
    /// Devices and GPUs listed, on average over those hours.
    pub devices: i64,
    pub gpus: i64,
    /// GPU-hours served to rentals (a rented device's GPUs for each of its hours).
    pub rented_gpu_hours: i64,
    /// Rented GPU-hours over listed GPU-hours, percent.
    pub utilisation_pct: f64,
    /// $IO minted and paid out.
    pub emission: String,
    pub paid: String,
    /// $IO backing the network, on average.
    pub staked: String,
}

/// One year of the emission schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct EmissionYear {
    /// 1 for the first twelve months from launch.
    pub year: i64,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    /// $IO minted in its months.
    pub emitted: String,
    /// $IO in existence at its end.
    pub supply_at_end: String,
}

/// The emission schedule to the cap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct EmissionSchedule {
    pub launch_supply: String,
    pub cap: String,
    /// Each month mints this much less than the month before, parts per million.
    pub monthly_decay_ppm: i64,
    /// The year of the schedule now is in (0 before launch, past the last when it has ended).
    pub current_year: i64,
    pub years: Vec<EmissionYear>,
}

/// One period's sums, as read.
#[derive(Default)]
struct Day {
    blocks: i64,
    devices: i64,
    gpus: i64,
    rented_gpus: i64,
    emission: i64,
    paid: i64,
    staked: i64,
}

impl Explorer {
    /// The last `count` days or months (1 to the period's [`Period::max_count`]) with a block,
    /// oldest first; the current one so far. A replica reads each at most once a minute.
    pub async fn network_history(&self, period: Period, count: i64) -> Result<Vec<NetworkPeriod>> {
        let max = period.max_count();
        if !(1..=max).contains(&count) {
            return Err(Error::validation("count", format!("between 1 and {max}")));
        }
        if let Some((at, rows)) = self.history.lock().get(&(period, count))
            && at.elapsed() < super::HISTORY_FRESH
        {
            return Ok(rows.clone());
        }
        let rows = self.read_history(period, count).await?;
        self.history
            .lock()
            .insert((period, count), (std::time::Instant::now(), rows.clone()));
        Ok(rows)
    }

    async fn read_history(&self, period: Period, count: i64) -> Result<Vec<NetworkPeriod>> {
        let today = now_micros().div_euclid(MICROS_PER_HOUR * 24);
        let first_day = match period {
            Period::Day => today - (count - 1),
            // Months are at most 31 days: read enough days, then keep the last `count` months.
            Period::Month => today - count * 31,
        };
        type Sums = (i64, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Sums> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour / 24, COUNT(*), CAST(SUM(listed_devices) AS BIGINT), CAST(SUM(listed_gpus) AS BIGINT), \
             CAST(SUM(rented_gpus) AS BIGINT), CAST(SUM(emission) AS BIGINT), CAST(SUM(gpu_paid + cpu_paid) AS BIGINT), \
             CAST(SUM(staked) AS BIGINT) FROM reward_blocks WHERE hour >= $1 GROUP BY hour / 24 ORDER BY hour / 24"
        )
        .bind(first_day * 24)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut periods: BTreeMap<String, Day> = BTreeMap::new();
        for (day, blocks, devices, gpus, rented_gpus, emission, paid, staked) in rows {
            let date = to_rfc3339(day * 24 * MICROS_PER_HOUR);
            let key = match period {
                Period::Day => date[..10].to_string(),
                Period::Month => date[..7].to_string(),
            };
            let p = periods.entry(key).or_default();
            p.blocks += blocks;
            p.devices += devices;
            p.gpus += gpus;
            p.rented_gpus += rented_gpus;
            p.emission += emission;
            p.paid += paid;
            p.staked += staked;
        }
        let skip = periods.len().saturating_sub(count as usize);
        Ok(periods
            .into_iter()
            .skip(skip)
            .map(|(period, d)| {
                let blocks = d.blocks.max(1);
                NetworkPeriod {
                    period,
                    blocks: d.blocks,
                    devices: d.devices / blocks,
                    gpus: d.gpus / blocks,
                    rented_gpu_hours: d.rented_gpus,
                    utilisation_pct: if d.gpus > 0 {
                        (d.rented_gpus as f64 * 1000.0 / d.gpus as f64).round() / 10.0
                    } else {
                        0.0
                    },
                    emission: io(d.emission),
                    paid: io(d.paid),
                    staked: io(d.staked / blocks),
                }
            })
            .collect())
    }

    /// The emission schedule in force, year by year to the cap.
    pub fn emission_schedule(&self) -> EmissionSchedule {
        let schedule = self.rewards.schedule();
        let params = schedule.params();
        let months = schedule.month_emissions();
        let mut supply = params.launch_supply_micro;
        let years: Vec<EmissionYear> = months
            .chunks(12)
            .enumerate()
            .map(|(y, amounts)| {
                let emitted: i64 = amounts.iter().sum();
                supply += emitted;
                let start = schedule.month_start_hour(y * 12).unwrap_or_default();
                EmissionYear {
                    year: y as i64 + 1,
                    starts_at: Timestamp::from(schedule.hour_start(start)),
                    emitted: io(emitted),
                    supply_at_end: io(supply),
                }
            })
            .collect();
        let hour = schedule.hour_at(now_micros());
        let current_year = match schedule.month_at(hour) {
            Some(m) => m as i64 / 12 + 1,
            None if hour < 0 => 0,
            None => years.len() as i64 + 1,
        };
        EmissionSchedule {
            launch_supply: io(params.launch_supply_micro),
            cap: io(params.cap_micro),
            monthly_decay_ppm: i64::from(params.monthly_decay_ppm),
            current_year,
            years,
        }
    }
}
