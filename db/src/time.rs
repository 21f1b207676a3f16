//! Instants are stored as `i64` microseconds since the Unix epoch (UTC) on both engines.

use std::time::{SystemTime, UNIX_EPOCH};

pub const MICROS_PER_SEC: i64 = 1_000_000;

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// RFC 3339 text for an instant, for API answers (`2026-11-25T10:49:31.123456Z`).
pub fn to_rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// A (year, month, day) date to days since 1970-01-01; the inverse of `civil_from_days`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `"2026-11"` → the month's first instant and the next month's first instant (µs, UTC).
/// Only `YYYY-MM` in ASCII digits: no sign, space or other form of the number.
pub fn month_bounds(month: &str) -> Option<(i64, i64)> {
    let (y, m) = month.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(y, 4) || !digits(m, 2) {
        return None;
    }
    let (y, m): (i64, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return None;
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some((
        days_from_civil(y, m, 1) * MICROS_PER_DAY,
        days_from_civil(ny, nm, 1) * MICROS_PER_DAY,
    ))
}

/// `"2026-11"` for an instant.
pub fn month_of(micros: i64) -> String {
    let (y, m, _) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
    format!("{y:04}-{m:02}")
}

/// `"2026-11-25"` for a day number (days since 1970-01-01).
pub fn day_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a (year, month, day) date; Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days() {
        let (a, b) = month_bounds("2026-11").unwrap();
        assert_eq!(to_rfc3339(a), "2026-11-01T00:00:00.000000Z");
        assert_eq!(to_rfc3339(b), "2026-12-01T00:00:00.000000Z");
        let (_, b) = month_bounds("2026-12").unwrap();
        assert_eq!(to_rfc3339(b), "2027-01-01T00:00:00.000000Z");
        assert_eq!(
            month_bounds("2024-02").map(|(a, b)| (b - a) / MICROS_PER_DAY),
            Some(29)
        );
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "x", "2026-00"] {
            assert!(month_bounds(bad).is_none(), "{bad}");
        }
        assert_eq!(day_string(days_from_civil(2026, 11, 25)), "2026-11-25");
        assert_eq!(month_of(a), "2026-11");
        for day in [-1000, 0, 19_000, 20_417, 100_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn a_month_is_four_digits_a_dash_and_two_digits() {
        for bad in [
            "2026-+1",
            "2026-+9",
            "2026--1",
            "+026-11",
            "-026-11",
            "2026- 1",
            "2026-1 ",
            " 2026-11",
            "2026-1a",
            "2026-011",
            "2026-11-01",
            "2026-",
            "-11",
            "２０２６-11",
            "2026-１１",
        ] {
            assert!(month_bounds(bad).is_none(), "{bad:?}");
        }
        assert!(month_bounds("2026-01").is_some());
        assert!(month_bounds("2026-09").is_some());
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            to_rfc3339(1_795_000_000_123_456),
            "2026-11-18T11:06:40.123456Z"
        );
        assert_eq!(
            to_rfc3339(951_782_400 * MICROS_PER_SEC),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}

/// Serde helpers so domain types answer instants as RFC 3339 text.
pub mod serde_rfc3339 {
    pub fn serialize<S: serde::Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_rfc3339(*micros))
    }

    pub mod option {
        pub fn serialize<S: serde::Serializer>(
            micros: &Option<i64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match micros {
                Some(m) => s.serialize_str(&super::super::to_rfc3339(*m)),
                None => s.serialize_none(),
            }
        }
    }
}
