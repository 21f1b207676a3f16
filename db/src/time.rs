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
