//! The network's $IO emission: how many new $IO each hourly block mints, from launch until the
//! supply reaches its cap.
//!
//! The supply starts at the launch supply (500 M $IO by default) and never passes the cap
//! (800 M $IO): the difference, 300 M $IO, is emitted over a fixed number of calendar months
//! (240, twenty years). Each month emits a fixed share less than the month before (1.02 % less
//! by default), so the providers who back a young network earn the most, and the flow tapers
//! off smoothly rather than stopping at a cliff. The first month's amount is the one that makes
//! the months add up to exactly the difference:
//!
//! ```text
//! E(m) = E0 × (1 − decay)^m            for m = 0 … months − 1
//! E0   = (cap − launch supply) × decay ÷ (1 − (1 − decay)^months)
//! ```
//!
//! With the defaults E0 ≈ 3,345,674.56 $IO and the last month emits ≈ 288,618.47 $IO.
//!
//! Everything is counted in integer micro-$IO, so every replica, every audit and every later
//! recomputation gets the same numbers, and the totals are exact:
//!
//! * **Months.** Each month is its exact amount rounded down to the micro-$IO. Rounding down
//!   leaves a few micro-$IO over (fewer than one per month); they go one each to the earliest
//!   months. The months then sum to exactly `cap − launch supply`: the supply ends on the cap,
//!   neither one micro-$IO past it nor short of it. (The exact amounts are computed with weights
//!   `(1 − decay)^m` carried to 30 decimal places, which puts them within 10⁻⁵ micro-$IO of the
//!   true values before rounding, for any valid parameters.)
//! * **Hours.** A month's emission `E` is spread evenly over its `H` hours (its calendar days
//!   × 24, UTC, leap years included): hour `h` (from 0) of the month gets
//!   `⌊E·(h+1)/H⌋ − ⌊E·h/H⌋`. This is the carry: what rounding down takes from one hour is paid
//!   by a later one, so the hours of a month sum to exactly `E`, no two hours differ by more
//!   than one micro-$IO, and any hour's block can be computed on its own, with no running state
//!   to keep or lose.
//!
//! The parameters are a value ([`EmissionParams`]) handed to [`Schedule::new`], never constants,
//! because governance may change them. This module is pure: no storage and no clock.
//!
//! One file, though a long one: the schedule and the integer arithmetic that makes its sums
//! exact are read together, and half of it is the tests that prove those sums.

use iocloud_db::time::{MICROS_PER_DAY, days_from_civil};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, MICROS_PER_UNIT, Money};
use crate::{BillingError, Result};

/// One hour in microseconds: a block's span.
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The most months a schedule may last (a century): enough for any sensible policy, and it keeps
/// a schedule's tables small.
pub const MAX_MONTHS: u32 = 1_200;

/// Parts per million: the decay's unit (10 200 ppm = 1.02 %).
const PPM: u32 = 1_000_000;

/// The fixed-point scale of the monthly weights `(1 − decay)^m`: 30 decimal places.
const WEIGHT_SCALE: u128 = 10u128.pow(30);

/// The protocol's emission parameters. [`Default`] is the network's launch policy: 300 M $IO
/// between the launch supply of 500 M and the cap of 800 M, over 240 months starting in June
/// 2024, each month 1.02 % below the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmissionParams {
    /// The calendar year of the first month of emission. Emission starts at 00:00 UTC on the
    /// first day of that month; the launch date is a parameter like the others.
    pub launch_year: i32,
    /// The first month of emission, 1 (January) to 12 (December).
    pub launch_month: u32,
    /// $IO in existence before the first block, in micro-$IO.
    pub launch_supply_micro: i64,
    /// The most $IO that will ever exist, in micro-$IO: the supply reaches it with the last
    /// block and never passes it.
    pub cap_micro: i64,
    /// How much smaller each month's emission is than the month before, in parts per million
    /// (10 200 = 1.02 %). 0 spreads the emission evenly over the months.
    pub monthly_decay_ppm: u32,
    /// How many calendar months emission lasts (240 = twenty years).
    pub months: u32,
}

impl Default for EmissionParams {
    fn default() -> Self {
        EmissionParams {
            launch_year: 2024,
            launch_month: 6,
            launch_supply_micro: 500_000_000 * MICROS_PER_UNIT,
            cap_micro: 800_000_000 * MICROS_PER_UNIT,
            monthly_decay_ppm: 10_200,
            months: 240,
        }
    }
}

/// The emission of every month and every hour for one set of parameters, worked out once.
///
/// Hours are counted from launch: hour 0 is the first hour of the first month (see
/// [`Schedule::hour_at`] and [`Schedule::hour_start`] for instants). Months are counted from 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    params: EmissionParams,
    /// The instant (µs since the epoch, UTC) emission starts.
    launch_micros: i64,
    /// `month_start[m]`: the first hour of month `m`; the last entry is the hour after the last
    /// block (`months + 1` entries).
    month_start: Vec<i64>,
    /// Micro-$IO emitted in each month.
    amounts: Vec<i64>,
    /// `emitted_before[m]`: micro-$IO emitted by all months before `m`; the last entry is the
    /// total (`months + 1` entries).
    emitted_before: Vec<i64>,
}

impl Schedule {
    /// Checks the parameters and works out every month's emission.
    ///
    /// Refused ([`BillingError::InvalidAmount`]): a launch month outside 1970-01 … 9999-12, a
    /// negative launch supply, a cap not above the launch supply, a decay of 100 % or more, or a
    /// number of months outside 1 … [`MAX_MONTHS`].
    pub fn new(params: EmissionParams) -> Result<Schedule> {
        validate(&params)?;
        let months = params.months as usize;
        let launch_day = days_from_civil(i64::from(params.launch_year), params.launch_month, 1);
        let month_start: Vec<i64> = (0..=months)
            .map(|m| {
                let (year, month) = nth_month(params.launch_year, params.launch_month, m);
                (days_from_civil(year, month, 1) - launch_day) * 24
            })
            .collect();
        let total = params.cap_micro - params.launch_supply_micro;
        let amounts = month_amounts(total, params.monthly_decay_ppm, months)?;
        let mut emitted_before = Vec::with_capacity(months + 1);
        let mut sum = 0i64;
        emitted_before.push(sum);
        for &amount in &amounts {
            sum = sum.checked_add(amount).ok_or(BillingError::Overflow)?;
            emitted_before.push(sum);
        }
        if sum != total {
            return Err(BillingError::internal(format!(
                "the months of the emission sum to {sum} micro-IO, not {total}"
            )));
        }
        Ok(Schedule {
            params,
            launch_micros: launch_day * MICROS_PER_DAY,
            month_start,
            amounts,
            emitted_before,
        })
    }

    pub fn params(&self) -> &EmissionParams {
        &self.params
    }

    /// The instant (µs since the epoch, UTC) the first block's hour begins.
    pub fn launch_micros(&self) -> i64 {
        self.launch_micros
    }

    /// Micro-$IO emitted over the whole schedule: always exactly `cap − launch supply`.
    pub fn total(&self) -> i64 {
        self.emitted_before[self.amounts.len()]
    }

    /// Every month's emission in micro-$IO, month 0 first.
    pub fn month_emissions(&self) -> &[i64] {
        &self.amounts
    }

    /// Micro-$IO emitted in month `m` (from 0); `None` past the last month.
    pub fn month_emission(&self, m: usize) -> Option<i64> {
        self.amounts.get(m).copied()
    }

    /// The first hour (from launch) of month `m`; `None` past the last month.
    pub fn month_start_hour(&self, m: usize) -> Option<i64> {
        self.month_start[..self.amounts.len()].get(m).copied()
    }

    /// How many hours (blocks) month `m` has: its calendar days × 24.
    pub fn month_hours(&self, m: usize) -> Option<i64> {
        self.month_start_hour(m)
            .map(|start| self.month_start[m + 1] - start)
    }

    /// The hour after the last block: hours `0 … end_hour() − 1` emit.
    pub fn end_hour(&self) -> i64 {
        self.month_start[self.amounts.len()]
    }

    /// The month (from 0) that hour `hour` belongs to; `None` before launch and after the last
    /// month.
    pub fn month_at(&self, hour: i64) -> Option<usize> {
        self.locate(hour).map(|(m, _)| m)
    }

    /// Micro-$IO minted by the block of hour `hour` (from launch); 0 before launch and after
    /// the last month.
    pub fn hour_emission(&self, hour: i64) -> i64 {
        match self.locate(hour) {
            Some((m, within)) => {
                let (amount, hours) = (self.amounts[m], self.month_hours_at(m));
                share(amount, within + 1, hours) - share(amount, within, hours)
            }
            None => 0,
        }
    }

    /// Micro-$IO minted by the block of the hour that contains the instant `micros`.
    pub fn hour_emission_at(&self, micros: i64) -> i64 {
        self.hour_emission(self.hour_at(micros))
    }

    /// Micro-$IO minted by all blocks before hour `hour` (from launch): 0 up to launch, the
    /// [`total`](Self::total) from the end of the last month on, and never decreasing.
    pub fn emitted_until(&self, hour: i64) -> i64 {
        match self.locate(hour) {
            Some((m, within)) => {
                self.emitted_before[m] + share(self.amounts[m], within, self.month_hours_at(m))
            }
            None if hour < 0 => 0,
            None => self.total(),
        }
    }

    /// The $IO in existence, in micro-$IO, once every block before hour `hour` is minted: the
    /// launch supply plus what they emitted. It ends on the cap.
    pub fn supply_until(&self, hour: i64) -> i64 {
        self.params.launch_supply_micro + self.emitted_until(hour)
    }

    /// The hour (from launch) that contains the instant `micros`; negative before launch.
    pub fn hour_at(&self, micros: i64) -> i64 {
        micros
            .saturating_sub(self.launch_micros)
            .div_euclid(MICROS_PER_HOUR)
    }

    /// The instant (µs since the epoch, UTC) hour `hour` (from launch) begins.
    pub fn hour_start(&self, hour: i64) -> i64 {
        self.launch_micros
            .saturating_add(hour.saturating_mul(MICROS_PER_HOUR))
    }

    /// The month of `hour` and the hour's place in it, for hours that emit.
    fn locate(&self, hour: i64) -> Option<(usize, i64)> {
        if hour < 0 || hour >= self.end_hour() {
            return None;
        }
        // month_start[0] is 0 ≤ hour, so at least one entry is ≤ hour.
        let m = self.month_start.partition_point(|&start| start <= hour) - 1;
        Some((m, hour - self.month_start[m]))
    }

    fn month_hours_at(&self, m: usize) -> i64 {
        self.month_start[m + 1] - self.month_start[m]
    }
}

/// `⌊amount × hours ÷ month_hours⌋`: what the first `hours` hours of a month emit together.
fn share(amount: i64, hours: i64, month_hours: i64) -> i64 {
    // hours ≤ month_hours, so the result is at most `amount` and fits.
    (i128::from(amount) * i128::from(hours) / i128::from(month_hours)) as i64
}

/// The calendar (year, month) `m` months after the launch month.
fn nth_month(launch_year: i32, launch_month: u32, m: usize) -> (i64, u32) {
    let index = i64::from(launch_month) - 1 + m as i64;
    (
        i64::from(launch_year) + index.div_euclid(12),
        index.rem_euclid(12) as u32 + 1,
    )
}

/// Each month's emission: `total` shared in proportion to the weights `(1 − decay)^m`, each
/// share rounded down, and the micro-$IO left over given one each to the earliest months.
fn month_amounts(total: i64, decay_ppm: u32, months: usize) -> Result<Vec<i64>> {
    let total = u128::try_from(total).map_err(|_| BillingError::Overflow)?;
    let keep = u128::from(PPM - decay_ppm);
    // (1 − decay)^m in fixed point, each step rounded down: at most `months` units of the 30th
    // decimal off, and never increasing, so neither are the months.
    let mut weights = Vec::with_capacity(months);
    let mut weight = WEIGHT_SCALE;
    for _ in 0..months {
        weights.push(weight);
        weight = weight * keep / u128::from(PPM);
    }
    let weight_sum: u128 = weights.iter().sum();
    let mut amounts = weights
        .iter()
        .map(|&w| {
            mul_div_floor(total, w, weight_sum)
                .and_then(|amount| i64::try_from(amount).ok())
                .ok_or(BillingError::Overflow)
        })
        .collect::<Result<Vec<i64>>>()?;
    let rounded: u128 = amounts.iter().map(|&a| a as u128).sum();
    // Each share lost less than one micro-$IO to rounding down, so fewer than `months` are left.
    let left = total
        .checked_sub(rounded)
        .and_then(|left| usize::try_from(left).ok())
        .filter(|&left| left < months)
        .ok_or_else(|| {
            BillingError::internal(format!(
                "the emission's months round to {rounded} micro-IO of {total}"
            ))
        })?;
    for amount in amounts.iter_mut().take(left) {
        *amount += 1;
    }
    Ok(amounts)
}

/// `⌊a × b ÷ c⌋` with the product carried in 256 bits; `None` when `c` is 0 or the quotient
/// does not fit in 128 bits.
fn mul_div_floor(a: u128, b: u128, c: u128) -> Option<u128> {
    const LOW: u128 = u64::MAX as u128;
    if c == 0 {
        return None;
    }
    // The product as two 128-bit halves, from 64-bit limbs.
    let (a1, a0) = (a >> 64, a & LOW);
    let (b1, b0) = (b >> 64, b & LOW);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    let lo = (p00 & LOW) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    if hi >= c {
        return None;
    }
    // Long division, one bit of `lo` at a time; the remainder stays below `c`.
    let (mut rem, mut quot) = (hi, 0u128);
    for bit in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> bit) & 1);
        quot <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            quot |= 1;
        }
    }
    Some(quot)
}

fn validate(p: &EmissionParams) -> Result<()> {
    let io = |micros: i64| Money::from_micros(micros, Currency::Io);
    let refuse = |why: String| -> Result<()> {
        Err(BillingError::InvalidAmount(format!(
            "invalid emission parameters: {why}"
        )))
    };
    if !(1970..=9999).contains(&p.launch_year) || !(1..=12).contains(&p.launch_month) {
        return refuse(format!(
            "the launch month must be a month from 1970-01 to 9999-12, not {}-{:02}",
            p.launch_year, p.launch_month
        ));
    }
    if p.launch_supply_micro < 0 {
        return refuse(format!(
            "the launch supply cannot be negative ({})",
            io(p.launch_supply_micro)
        ));
    }
    if p.cap_micro <= p.launch_supply_micro {
        return refuse(format!(
            "the cap ({}) must be above the launch supply ({})",
            io(p.cap_micro),
            io(p.launch_supply_micro)
        ));
    }
    if p.monthly_decay_ppm >= PPM {
        return refuse(format!(
            "the monthly decay must be below {PPM} ppm (100 %), not {} ppm",
            p.monthly_decay_ppm
        ));
    }
    if !(1..=MAX_MONTHS).contains(&p.months) {
        return refuse(format!(
            "emission must last 1 to {MAX_MONTHS} months, not {}",
            p.months
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use iocloud_db::time::to_rfc3339;
    use proptest::prelude::*;

    use super::*;

    const IO: i64 = MICROS_PER_UNIT;

    fn schedule() -> Schedule {
        Schedule::new(EmissionParams::default()).unwrap()
    }

    /// Month `m`'s emission in $IO from the closed form, in floating point: an independent
    /// check good to far better than one $IO.
    fn closed_form_io(m: i32) -> f64 {
        let keep = 1.0 - 0.0102_f64;
        let first = 300e6 * 0.0102 / (1.0 - keep.powi(240));
        first * keep.powi(m)
    }

    #[test]
    fn months_follow_the_closed_form() {
        let s = schedule();
        for m in [0usize, 1, 2, 12, 239] {
            let got = s.month_emission(m).unwrap() as f64 / IO as f64;
            let want = closed_form_io(m as i32);
            assert!(
                (got - want).abs() <= 1.0,
                "month {m}: {got} $IO, not {want}"
            );
        }
        // The policy's figure for the first month, to the $IO.
        assert_eq!(
            (s.month_emission(0).unwrap() as f64 / IO as f64).round(),
            3_345_675.0
        );
        // Worked out with exact rational arithmetic: month 0 is 3,345,674,560,671.37… rounded
        // down, plus one of the 120 micro-$IO left over (they go to months 0 … 119); month 239
        // is 288,618,469,055.74… rounded down.
        assert_eq!(s.month_emission(0), Some(3_345_674_560_672));
        assert_eq!(s.month_emission(239), Some(288_618_469_055));
        assert_eq!(s.month_emission(240), None);
    }

    #[test]
    fn each_month_is_the_decay_below_the_one_before_and_all_sum_to_the_gap() {
        let s = schedule();
        let months = s.month_emissions();
        assert_eq!(months.len(), 240);
        for pair in months.windows(2) {
            assert!(pair[1] < pair[0], "{pair:?}");
            // E(m+1) = E(m) × 0.9898 exactly before rounding; each is within one micro-$IO of
            // its exact value.
            let drift = i128::from(pair[1]) * 1_000_000 - i128::from(pair[0]) * 989_800;
            assert!(drift.abs() < 2_000_000, "{pair:?}: {drift}");
        }
        assert_eq!(months.iter().sum::<i64>(), 300_000_000 * IO);
        assert_eq!(s.total(), 300_000_000 * IO);
        let p = EmissionParams::default();
        assert_eq!(s.total(), p.cap_micro - p.launch_supply_micro);
    }

    #[test]
    fn hours_sum_to_their_month_and_the_supply_ends_on_the_cap() {
        let s = schedule();
        let (mut hour, mut emitted) = (0i64, 0i64);
        for m in 0..240 {
            assert_eq!(s.month_start_hour(m), Some(hour));
            let hours = s.month_hours(m).unwrap();
            assert!([672, 696, 720, 744].contains(&hours), "month {m}: {hours}");
            let amount = s.month_emission(m).unwrap();
            let (low, high) = (amount / hours, (amount + hours - 1) / hours);
            let mut month = 0;
            for _ in 0..hours {
                assert_eq!(s.emitted_until(hour), emitted);
                assert_eq!(s.month_at(hour), Some(m));
                let block = s.hour_emission(hour);
                assert!(block == low || block == high, "hour {hour}: {block}");
                month += block;
                emitted += block;
                hour += 1;
            }
            assert_eq!(month, amount, "month {m}");
        }
        // 2024-06-01 to 2044-06-01: twenty years with five leap days.
        assert_eq!(hour, (20 * 365 + 5) * 24);
        assert_eq!(s.end_hour(), hour);
        assert_eq!(emitted, 300_000_000 * IO);
        assert_eq!(s.emitted_until(hour), emitted);
        assert_eq!(s.supply_until(hour), 800_000_000 * IO);
        assert_eq!(s.supply_until(0), 500_000_000 * IO);
    }

    #[test]
    fn nothing_before_launch_or_after_the_last_month() {
        let s = schedule();
        assert_eq!(to_rfc3339(s.launch_micros()), "2024-06-01T00:00:00.000000Z");
        assert_eq!(
            to_rfc3339(s.hour_start(s.end_hour())),
            "2044-06-01T00:00:00.000000Z"
        );
        for hour in [
            i64::MIN,
            -1_000_000,
            -1,
            s.end_hour(),
            s.end_hour() + 1,
            i64::MAX,
        ] {
            assert_eq!(s.hour_emission(hour), 0, "hour {hour}");
            assert_eq!(s.month_at(hour), None, "hour {hour}");
        }
        assert!(s.hour_emission(0) > 0);
        assert!(s.hour_emission(s.end_hour() - 1) > 0);
        assert_eq!(s.emitted_until(i64::MIN), 0);
        assert_eq!(s.emitted_until(-1), 0);
        assert_eq!(s.emitted_until(0), 0);
        assert_eq!(s.emitted_until(i64::MAX), s.total());
        assert_eq!(s.hour_emission_at(s.launch_micros() - 1), 0);
        assert_eq!(s.hour_emission_at(s.launch_micros()), s.hour_emission(0));
        let end = s.hour_start(s.end_hour());
        assert_eq!(
            s.hour_emission_at(end - 1),
            s.hour_emission(s.end_hour() - 1)
        );
        assert_eq!(s.hour_emission_at(end), 0);
        assert_eq!(s.hour_emission_at(i64::MIN), 0);
        assert_eq!(s.hour_emission_at(i64::MAX), 0);
    }

    #[test]
    fn a_leap_february_has_696_hours() {
        let s = schedule();
        // 2028-02 is month 44 after 2024-06.
        let feb = 44;
        let start = s.month_start_hour(feb).unwrap();
        assert_eq!(
            to_rfc3339(s.hour_start(start)),
            "2028-02-01T00:00:00.000000Z"
        );
        assert_eq!(s.month_hours(feb), Some(696));
        assert_eq!(
            to_rfc3339(s.hour_start(start + 696)),
            "2028-03-01T00:00:00.000000Z"
        );
        let blocks: i64 = (start..start + 696).map(|h| s.hour_emission(h)).sum();
        assert_eq!(Some(blocks), s.month_emission(feb));
        assert_eq!(s.month_at(start + 695), Some(feb));
        assert_eq!(s.month_at(start + 696), Some(feb + 1));
        // An ordinary February, 2027-02, has 672.
        assert_eq!(s.month_hours(32), Some(672));
        assert_eq!(
            to_rfc3339(s.hour_start(s.month_start_hour(32).unwrap())),
            "2027-02-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn parameters_are_checked() {
        let good = EmissionParams::default();
        let bad = [
            EmissionParams {
                launch_month: 0,
                ..good
            },
            EmissionParams {
                launch_month: 13,
                ..good
            },
            EmissionParams {
                launch_year: 1969,
                ..good
            },
            EmissionParams {
                launch_supply_micro: -1,
                ..good
            },
            EmissionParams {
                cap_micro: good.launch_supply_micro,
                ..good
            },
            EmissionParams {
                cap_micro: good.launch_supply_micro - 1,
                ..good
            },
            EmissionParams {
                monthly_decay_ppm: 1_000_000,
                ..good
            },
            EmissionParams {
                monthly_decay_ppm: u32::MAX,
                ..good
            },
            EmissionParams { months: 0, ..good },
            EmissionParams {
                months: MAX_MONTHS + 1,
                ..good
            },
        ];
        for params in bad {
            let e = Schedule::new(params).unwrap_err();
            assert!(
                matches!(&e, BillingError::InvalidAmount(text) if text.contains("emission")),
                "{params:?}: {e}"
            );
        }
        let cap = Schedule::new(EmissionParams {
            cap_micro: 10,
            launch_supply_micro: 20,
            ..good
        })
        .unwrap_err();
        assert!(cap.to_string().contains("cap"), "{cap}");
    }

    #[test]
    fn other_policies_keep_exact_totals() {
        let good = EmissionParams::default();
        // No decay: an even split, the odd micro-$IO to the first months.
        let flat = Schedule::new(EmissionParams {
            monthly_decay_ppm: 0,
            months: 12,
            cap_micro: good.launch_supply_micro + 1_000_005,
            ..good
        })
        .unwrap();
        // 1,000,005 ÷ 12 = 83,333 rem 9: months 0 … 8 get one more.
        let mut even = vec![83_334; 9];
        even.extend([83_333; 3]);
        assert_eq!(flat.month_emissions(), &even[..]);
        assert_eq!(flat.total(), 1_000_005);
        // One month, launched in December: everything in it, 31 days of blocks.
        let one = Schedule::new(EmissionParams {
            launch_year: 2030,
            launch_month: 12,
            months: 1,
            ..good
        })
        .unwrap();
        assert_eq!(one.month_emissions(), &[300_000_000 * IO]);
        assert_eq!(one.end_hour(), 31 * 24);
        assert_eq!(
            to_rfc3339(one.hour_start(one.end_hour())),
            "2031-01-01T00:00:00.000000Z"
        );
        // The steepest decay: the later months round to nothing, the total is still exact.
        let steep = Schedule::new(EmissionParams {
            monthly_decay_ppm: 999_999,
            ..good
        })
        .unwrap();
        assert_eq!(
            steep.month_emissions().iter().sum::<i64>(),
            300_000_000 * IO
        );
        assert_eq!(steep.month_emission(239), Some(0));
    }

    #[test]
    fn wide_division_is_exact() {
        assert_eq!(
            mul_div_floor(u128::MAX, u128::MAX, u128::MAX),
            Some(u128::MAX)
        );
        assert_eq!(
            mul_div_floor(1u128 << 100, 1u128 << 100, 1u128 << 90),
            Some(1u128 << 110)
        );
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_floor(5, 7, 0), None);
        assert_eq!(
            mul_div_floor(u128::MAX, u128::MAX - 1, u128::MAX),
            Some(u128::MAX - 1)
        );
        assert_eq!(mul_div_floor(7, 3, 2), Some(10));
    }

    proptest! {
        #[test]
        fn wide_division_agrees_with_narrow(a in 0u128..1 << 63, b in 0u128..1 << 63, c in 1u128..1 << 63) {
            prop_assert_eq!(mul_div_floor(a, b, c), Some(a * b / c));
        }

        #[test]
        fn an_hour_is_the_step_of_emitted_until(hour in -2_000i64..180_000, offset in 0i64..MICROS_PER_HOUR) {
            let s = schedule();
            let block = s.hour_emission(hour);
            prop_assert!(block >= 0);
            prop_assert_eq!(s.emitted_until(hour + 1) - s.emitted_until(hour), block);
            prop_assert!(s.emitted_until(hour) <= s.total());
            let start = s.hour_start(hour);
            prop_assert_eq!(s.hour_at(start + offset), hour);
            prop_assert_eq!(s.hour_emission_at(start + offset), block);
        }

        #[test]
        fn any_valid_policy_emits_exactly_the_gap(
            launch_supply in 0i64..1 << 60,
            gap in 1i64..1 << 62,
            decay in 0u32..1_000_000,
            months in 1u32..=MAX_MONTHS,
        ) {
            let s = Schedule::new(EmissionParams {
                launch_year: 2026,
                launch_month: 3,
                launch_supply_micro: launch_supply,
                cap_micro: launch_supply + gap,
                monthly_decay_ppm: decay,
                months,
            })
            .unwrap();
            let amounts = s.month_emissions();
            prop_assert_eq!(amounts.len(), months as usize);
            prop_assert_eq!(amounts.iter().sum::<i64>(), gap);
            prop_assert!(amounts.windows(2).all(|pair| pair[1] <= pair[0]));
            prop_assert_eq!(s.emitted_until(s.end_hour()), gap);
            prop_assert_eq!(s.supply_until(i64::MAX), launch_supply + gap);
        }
    }
}
