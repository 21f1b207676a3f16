//! [`Timestamp`]: an instant as the domain hands it to REST and GraphQL.
//!
//! Stored as `BIGINT` microseconds since the Unix epoch (UTC) like every instant (see
//! [`crate::time`]); shown as RFC 3339 text (`2026-11-25T10:49:31.123456Z`) by serde, in the
//! API document and in GraphQL, so the two surfaces cannot write one instant two ways.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::{MICROS_PER_DAY, MICROS_PER_SEC, days_from_civil, now_micros, to_rfc3339};

/// An instant, held as microseconds since the Unix epoch (UTC).
///
/// In SQL it reads and writes as the `BIGINT` it wraps, on SQLite and Postgres alike.
///
/// In the API document a field of this type says `#[schema(value_type = String, format =
/// DateTime)]`: that inlines it as plain RFC 3339 text (`Option<String>` for an optional one),
/// where the type's own schema would make every field a reference to a `Timestamp` component.
///
/// In GraphQL (with the `graphql` feature) it is a `String`, the same text REST answers, not a
/// scalar of its own: the schema's clients already read these fields as strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub fn now() -> Self {
        Timestamp(now_micros())
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn to_rfc3339(self) -> String {
        to_rfc3339(self.0)
    }

    /// Reads the text [`Timestamp::to_rfc3339`] writes: UTC (`Z` or `+00:00`), with up to nine
    /// digits of fraction (digits past the microsecond are dropped).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())
                .flatten()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        let mut rest = &s[19..];
        let mut frac = 0;
        if let Some(digits) = rest.strip_prefix('.') {
            let n = digits.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 || n > 9 {
                return None;
            }
            let padded = format!("{:0<6}", &digits[..n.min(6)]);
            frac = padded.parse::<i64>().ok()?;
            rest = &digits[n..];
        }
        if !matches!(rest, "Z" | "z" | "+00:00") {
            return None;
        }
        let day = days_from_civil(y, mo as u32, d as u32);
        let secs = h * 3600 + mi * 60 + sec;
        Some(Timestamp(
            day * MICROS_PER_DAY + secs * MICROS_PER_SEC + frac,
        ))
    }
}

impl From<i64> for Timestamp {
    fn from(micros: i64) -> Self {
        Timestamp(micros)
    }
}

impl From<Timestamp> for i64 {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an RFC 3339 instant in UTC"))
        })
    }
}

#[cfg(feature = "graphql")]
crate::graphql_string!(Timestamp, |t| t.to_rfc3339());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for micros in [
            0,
            1,
            -1,
            1_795_000_000_123_456,
            951_782_400 * MICROS_PER_SEC,
            253_402_300_799_999_999,
        ] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t), "{t}");
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t}\""));
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        }
    }

    #[test]
    fn reads_other_utc_spellings() {
        let t = Timestamp::from_micros(1_795_000_000_123_456);
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T11:06:40.123456+00:00"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T11:06:40.123456789Z"),
            Some(t)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T11:06:40Z"),
            Some(Timestamp::from_micros(1_795_000_000_000_000))
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-18T11:06:40.5Z"),
            Some(Timestamp::from_micros(1_795_000_000_500_000))
        );
    }

    #[test]
    fn refuses_what_is_not_an_instant_in_utc() {
        for bad in [
            "",
            "2026-11-18",
            "2026-11-18T11:06:40",
            "2026-11-18T11:06:40+01:00",
            "2026-13-18T11:06:40Z",
            "2026-11-18T24:06:40Z",
            "2026-11-18T11:06:40.Z",
            "2026-11-18T11:06:40.1234567890Z",
            "+026-11-18T11:06:40Z",
            "2026-11-18T11:06:40Zjunk",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("17").is_err());
    }
}
