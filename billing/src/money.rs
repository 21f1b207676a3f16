//! Money: integer micro-units (1 unit = 10⁻⁶ of the currency) with their currency, checked
//! arithmetic that refuses overflow, and the rounding rules.
//!
//! Rounding, always in the customer's favour:
//! * what a customer is charged rounds **down** to the micro-unit ([`Rounding::Down`]);
//! * what a customer is credited or refunded rounds **up** ([`Rounding::Up`]);
//! * a charge is split between the provider and the platform with the platform's fee rounded
//!   down, so the provider receives the remainder (`ledger::split_fee`).
//!
//! People see USD and $IOSD to the cent (half up) and $IO to six decimals; the API carries the
//! exact amount as a decimal string of the currency unit (`"2.10"`, `"0.000001"`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{BillingError, Result};

pub const MICROS_PER_UNIT: i64 = 1_000_000;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// US dollars, held as fiat credit (Stripe).
    Usd,
    /// The USD-pegged SPL token on Solana; 1 IOSD = 1 USD.
    Iosd,
    /// The network token, converted at a price feed.
    Io,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::Usd, Currency::Iosd, Currency::Io];

    pub fn code(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
            Currency::Iosd => "IOSD",
            Currency::Io => "IO",
        }
    }

    pub fn parse(s: &str) -> Option<Currency> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(s))
    }
}

/// What decoding a currency column fails with when its code is none of ours; read back as
/// [`BillingError::CorruptRow`] naming the column.
#[derive(Debug, thiserror::Error)]
#[error("unknown currency {0:?}")]
pub(crate) struct UnknownCurrency(pub(crate) String);

/// A currency column is read as a [`Currency`] (stored as its code): a code that is none of
/// ours fails the read, so no row is ever taken for another currency.
impl<DB: sqlx::Database> sqlx::Type<DB> for Currency
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Currency
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let code = <&str as sqlx::Decode<DB>>::decode(value)?;
        Currency::parse(code).ok_or_else(|| UnknownCurrency(code.to_string()).into())
    }
}

// In GraphQL a currency is its code, a `String`, the same text REST answers.
#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(Currency, |c| c.code());

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// Toward zero-or-less for the customer: charges.
    Down,
    /// Away from zero: credits and refunds.
    Up,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    micros: i64,
    currency: Currency,
}

impl Money {
    pub const fn from_micros(micros: i64, currency: Currency) -> Money {
        Money { micros, currency }
    }

    pub const fn zero(currency: Currency) -> Money {
        Money {
            micros: 0,
            currency,
        }
    }

    pub const fn micros(self) -> i64 {
        self.micros
    }

    pub const fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_positive(self) -> bool {
        self.micros > 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money> {
        self.same_currency(other)?;
        let micros = self
            .micros
            .checked_add(other.micros)
            .ok_or(BillingError::Overflow)?;
        Ok(Money { micros, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money> {
        self.same_currency(other)?;
        let micros = self
            .micros
            .checked_sub(other.micros)
            .ok_or(BillingError::Overflow)?;
        Ok(Money { micros, ..self })
    }

    pub fn checked_neg(self) -> Result<Money> {
        let micros = self.micros.checked_neg().ok_or(BillingError::Overflow)?;
        Ok(Money { micros, ..self })
    }

    /// `self × numerator ÷ denominator`, rounded as asked; e.g. a rate per hour times seconds
    /// used over 3600.
    pub fn mul_div(self, numerator: i64, denominator: i64, rounding: Rounding) -> Result<Money> {
        if denominator <= 0 {
            return Err(BillingError::InvalidAmount(
                "division by a non-positive number".into(),
            ));
        }
        let product = i128::from(self.micros) * i128::from(numerator);
        let d = i128::from(denominator);
        let q = product.div_euclid(d);
        let r = product.rem_euclid(d);
        let rounded = match rounding {
            Rounding::Down => q,
            Rounding::Up if r != 0 => q + 1,
            Rounding::Up => q,
        };
        let micros = i64::try_from(rounded).map_err(|_| BillingError::Overflow)?;
        Ok(Money { micros, ..self })
    }

    fn same_currency(self, other: Money) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(BillingError::CurrencyMismatch(
                self.currency,
                other.currency,
            ))
        }
    }

    /// Parses a decimal amount of the currency unit: `"12"`, `"2.10"`, `"0.000001"`. At most six
    /// decimals; no sign, exponent or separators. Amounts a client sends are never negative.
    pub fn parse(text: &str, currency: Currency) -> Result<Money> {
        let bad =
            |why: &str| BillingError::InvalidAmount(format!("{text:?} is not an amount: {why}"));
        let t = text.trim();
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("write it like 12.34"));
        }
        if t.contains('.') && frac.is_empty() {
            return Err(bad("digits must follow the point"));
        }
        if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("at most six decimals"));
        }
        let whole: i64 = whole.parse().map_err(|_| BillingError::Overflow)?;
        let frac_micros: i64 = format!("{frac:0<6}")
            .parse()
            .map_err(|_| bad("bad decimals"))?;
        let micros = whole
            .checked_mul(MICROS_PER_UNIT)
            .and_then(|w| w.checked_add(frac_micros))
            .ok_or(BillingError::Overflow)?;
        Ok(Money { micros, currency })
    }

    /// The exact amount as a decimal string: at least two decimals, trailing zeros past the
    /// second trimmed (`"2.10"`, `"0.000001"`, `"-3.50"`).
    pub fn to_decimal(self) -> String {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        let whole = abs / MICROS_PER_UNIT as u64;
        let frac = format!("{:06}", abs % MICROS_PER_UNIT as u64);
        let trimmed = frac.trim_end_matches('0');
        let frac = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        format!("{sign}{whole}.{frac}")
    }

    /// For people: `$12.35`, `12.35 IOSD` (to the cent, half up), `0.123456 IO`.
    pub fn for_people(self) -> String {
        match self.currency {
            Currency::Io => format!("{} IO", self.to_decimal()),
            c => {
                let cents = round_half_up(self.micros, 10_000);
                let sign = if cents < 0 { "-" } else { "" };
                let abs = cents.unsigned_abs();
                let amount = format!("{}.{:02}", group_thousands(abs / 100), abs % 100);
                match c {
                    Currency::Usd => format!("{sign}${amount}"),
                    _ => format!("{sign}{amount} {c}"),
                }
            }
        }
    }
}

fn round_half_up(micros: i64, unit: i64) -> i64 {
    let q = micros / unit;
    let r = micros % unit;
    if r.abs() * 2 >= unit {
        q + r.signum()
    } else {
        q
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(m: i64) -> Money {
        Money::from_micros(m, Currency::Usd)
    }

    #[test]
    fn parses_and_prints_exact_amounts() {
        assert_eq!(
            Money::parse("2.10", Currency::Usd).unwrap().micros(),
            2_100_000
        );
        assert_eq!(
            Money::parse("12", Currency::Usd).unwrap().micros(),
            12_000_000
        );
        assert_eq!(Money::parse("0.000001", Currency::Io).unwrap().micros(), 1);
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.0000001",
            "1e3",
            "1,000",
            "abc",
            "99999999999999999999",
        ] {
            assert!(Money::parse(bad, Currency::Usd).is_err(), "{bad:?}");
        }
        assert_eq!(usd(2_100_000).to_decimal(), "2.10");
        assert_eq!(usd(1).to_decimal(), "0.000001");
        assert_eq!(usd(-3_500_000).to_decimal(), "-3.50");
        assert_eq!(usd(0).to_decimal(), "0.00");
    }

    #[test]
    fn rounding_cases_written_out() {
        // $2.10 per hour for 1 second: 2_100_000 / 3600 = 583.33… micro-dollars.
        let rate = usd(2_100_000);
        assert_eq!(
            rate.mul_div(1, 3600, Rounding::Down).unwrap().micros(),
            583,
            "a charge rounds down"
        );
        assert_eq!(
            rate.mul_div(1, 3600, Rounding::Up).unwrap().micros(),
            584,
            "a refund rounds up"
        );
        // Exact divisions do not move.
        assert_eq!(
            rate.mul_div(3600, 3600, Rounding::Up).unwrap().micros(),
            2_100_000
        );
        // 8 GPUs at $2.10 for 90 minutes: 25.2 exactly.
        assert_eq!(
            rate.mul_div(8 * 5400, 3600, Rounding::Down)
                .unwrap()
                .micros(),
            25_200_000
        );
        // Negative amounts round toward the customer too: down is toward minus infinity.
        assert_eq!(usd(-1).mul_div(1, 2, Rounding::Down).unwrap().micros(), -1);
        // People see cents, half up.
        assert_eq!(usd(12_345_000).for_people(), "$12.35");
        assert_eq!(usd(12_344_999).for_people(), "$12.34");
        assert_eq!(usd(1_234_567_890_000).for_people(), "$1,234,567.89");
        assert_eq!(
            Money::from_micros(5_000, Currency::Iosd).for_people(),
            "0.01 IOSD"
        );
        assert_eq!(
            Money::from_micros(123_456, Currency::Io).for_people(),
            "0.123456 IO"
        );
    }

    #[test]
    fn arithmetic_refuses_overflow_and_mixed_currencies() {
        assert!(usd(i64::MAX).checked_add(usd(1)).is_err());
        assert!(usd(i64::MIN).checked_neg().is_err());
        assert!(matches!(
            usd(1).checked_add(Money::from_micros(1, Currency::Io)),
            Err(BillingError::CurrencyMismatch(..))
        ));
        assert!(usd(i64::MAX).mul_div(2, 1, Rounding::Down).is_err());
        assert!(usd(1).mul_div(1, 0, Rounding::Down).is_err());
    }

    proptest! {
        #[test]
        fn decimal_text_round_trips(m in 0i64..=i64::MAX / 2) {
            let money = usd(m);
            prop_assert_eq!(Money::parse(&money.to_decimal(), Currency::Usd).unwrap(), money);
        }

        #[test]
        fn down_never_exceeds_up(m in -1_000_000_000i64..1_000_000_000, n in 0i64..100_000, d in 1i64..100_000) {
            let down = usd(m).mul_div(n, d, Rounding::Down).unwrap().micros();
            let up = usd(m).mul_div(n, d, Rounding::Up).unwrap().micros();
            prop_assert!(down <= up && up - down <= 1);
        }
    }
}
