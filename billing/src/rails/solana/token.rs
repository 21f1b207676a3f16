//! The tokens the crypto rail takes, what each credits, and their amounts in the ledger's
//! micro-units.

use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// A token taken on chain. USDC has no currency of its own here: it credits IOSD, less a fee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
pub enum ChainToken {
    Iosd,
    Usdc,
    Io,
}

impl ChainToken {
    pub const ALL: [ChainToken; 3] = [ChainToken::Iosd, ChainToken::Usdc, ChainToken::Io];

    pub fn code(self) -> &'static str {
        match self {
            ChainToken::Iosd => "IOSD",
            ChainToken::Usdc => "USDC",
            ChainToken::Io => "IO",
        }
    }

    /// Upper or lower case.
    pub fn parse(text: &str) -> Option<ChainToken> {
        Self::ALL
            .into_iter()
            .find(|t| t.code().eq_ignore_ascii_case(text.trim()))
    }

    /// The ledger currency a deposit of this token credits.
    pub fn credits(self) -> Currency {
        match self {
            ChainToken::Iosd | ChainToken::Usdc => Currency::Iosd,
            ChainToken::Io => Currency::Io,
        }
    }
}

/// Micro-units (the ledger's six decimals) in `amount` base units of a mint with `decimals`;
/// digits past the sixth are dropped (dust). `None` when it does not fit.
pub fn to_micros(amount: u64, decimals: u8) -> Option<i64> {
    let micros = if decimals >= 6 {
        amount / 10u64.checked_pow(u32::from(decimals - 6))?
    } else {
        amount.checked_mul(10u64.pow(u32::from(6 - decimals)))?
    };
    i64::try_from(micros).ok()
}

/// Base units of a mint with `decimals` in `micros`. `None` when it does not fit, or when the
/// mint has fewer decimals than the amount needs.
pub fn from_micros(micros: i64, decimals: u8) -> Option<u64> {
    let micros = u64::try_from(micros).ok()?;
    if decimals >= 6 {
        micros.checked_mul(10u64.checked_pow(u32::from(decimals - 6))?)
    } else {
        let unit = 10u64.pow(u32::from(6 - decimals));
        (micros % unit == 0).then_some(micros / unit)
    }
}

/// `amount` base units as a decimal string (`1.5` for 1,500,000 at six decimals), as Solana
/// Pay writes amounts.
pub fn decimal(amount: u64, decimals: u8) -> String {
    let unit = 10u128.pow(u32::from(decimals));
    let (whole, frac) = (u128::from(amount) / unit, u128::from(amount) % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_convert_both_ways() {
        assert_eq!(to_micros(1_500_000, 6), Some(1_500_000));
        assert_eq!(to_micros(1_500_000_001, 9), Some(1_500_000));
        assert_eq!(to_micros(15, 1), Some(1_500_000));
        assert_eq!(from_micros(1_500_000, 9), Some(1_500_000_000));
        assert_eq!(from_micros(1_500_000, 1), Some(15));
        assert_eq!(from_micros(1_500_001, 1), None);
        assert_eq!(from_micros(-1, 6), None);
        assert_eq!(decimal(1_500_000, 6), "1.5");
        assert_eq!(decimal(25_000_000, 6), "25");
        assert_eq!(decimal(1, 9), "0.000000001");
        assert_eq!(ChainToken::parse("usdc"), Some(ChainToken::Usdc));
        assert_eq!(ChainToken::parse("USD"), None);
        assert_eq!(ChainToken::Usdc.credits(), Currency::Iosd);
    }
}
