//! Money as the API writes it (decimal strings), read back as exact integer micro-units so
//! tests compare amounts the way the ledger keeps them, never as floats.

use serde_json::{Value, json};

use crate::{Session, TestApp};

/// An amount as the API writes it (`"12.50"`, `"-0.000001"`) in integer micro-units, exactly.
pub fn micros(amount: &str) -> i64 {
    let (sign, digits) = match amount.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, amount),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        !whole.is_empty()
            && frac.len() <= 6
            && whole
                .bytes()
                .chain(frac.bytes())
                .all(|b| b.is_ascii_digit()),
        "not an amount: {amount:?}"
    );
    let whole: i64 = whole.parse().unwrap();
    let frac: i64 = format!("{frac:0<6}").parse().unwrap();
    sign * (whole * 1_000_000 + frac)
}

/// Whole units in micro-units: `units(872)` is 872.00.
pub const fn units(n: i64) -> i64 {
    n * 1_000_000
}

/// The session's organisation's (available, held) in `currency`, in micro-units, from
/// `GET /v1/balances` (zero for a currency it holds none of).
pub async fn balance(app: &TestApp, s: &Session, currency: &str) -> (i64, i64) {
    let b = app.get("/v1/balances", &s.access).await;
    let row = b
        .body
        .as_array()
        .unwrap_or_else(|| panic!("{}", b.text))
        .iter()
        .find(|r| r["currency"] == currency)
        .cloned()
        .unwrap_or(json!({"available": "0", "held": "0"}));
    let amount = |v: &Value| micros(v.as_str().unwrap());
    (amount(&row["available"]), amount(&row["held"]))
}

#[cfg(test)]
mod tests {
    use super::micros;

    #[test]
    fn amounts_read_exactly() {
        assert_eq!(micros("0"), 0);
        assert_eq!(micros("872.00"), 872_000_000);
        assert_eq!(micros("2.1"), 2_100_000);
        assert_eq!(micros("0.000001"), 1);
        assert_eq!(micros("-40.00"), -40_000_000);
        assert_eq!(micros("23.809523"), 23_809_523);
    }
}
