use iocloud_db::DbError;

use crate::ledger::AccountKind;
use crate::money::{Currency, UnknownCurrency};

/// The billing domain's error. The control plane gives each variant the stable code clients
/// read (`control::ErrorCode`).
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0}")]
    InvalidAmount(String),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("the amount is too large")]
    Overflow,
    /// An account of `kind` holds `needed` less than asked. The message says what to do in
    /// the product's words, never an account's id.
    #[error("{}", insufficient_message(*kind, *currency, needed))]
    InsufficientFunds {
        kind: AccountKind,
        currency: Currency,
        needed: String,
    },
    #[error("the postings of a transaction must sum to zero in each currency")]
    Unbalanced,
    #[error("external reference {0} was already used for a different transaction")]
    ExternalRefReused(String),
    #[error("hold {0} not found")]
    HoldNotFound(String),
    #[error("hold {hold} has only {remaining} left")]
    HoldExceeded { hold: String, remaining: String },
    #[error("the price feed is unavailable: {0}")]
    PriceFeed(String),
    #[error("quote {0} has expired; ask for a new one")]
    QuoteExpired(String),
    #[error("{0}")]
    StakeLocked(String),
    #[error("transaction {0} not found")]
    TransactionNotFound(String),
    #[error("{0}")]
    NotReversible(String),
    /// A value read back from storage that does not parse (a row damaged, or written by
    /// something else): never the caller's input, and never read as a default instead.
    #[error("stored {column} {value:?} does not parse")]
    CorruptRow { column: String, value: String },
    /// A call to Stripe failed; [`StripeFailure::kind`](crate::rails::stripe::StripeFailure)
    /// says whether the customer, a setting or time can fix it.
    #[error("stripe: {0}")]
    Stripe(Box<crate::rails::stripe::StripeFailure>),
    /// A call to the Solana node failed: `retryable` when the node was away, slow or busy
    /// (a timeout, 429, 5xx, unhealthy), not when it refused what was asked.
    #[error("solana: {message}")]
    Solana { retryable: bool, message: String },
    /// A webhook that is not Stripe's, not for this body, too old, or does not parse.
    #[error("webhook refused: {0}")]
    WebhookRejected(String),
    #[error("storage: {0}")]
    Db(#[from] DbError),
    /// A broken invariant of our own (never the caller's input).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for BillingError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // A currency column whose code is none of ours (see `Currency`'s decoding).
            sqlx::Error::ColumnDecode { index, source } => {
                match source.downcast::<UnknownCurrency>() {
                    Ok(unknown) => BillingError::CorruptRow {
                        column: index.trim_matches('"').to_string(),
                        value: unknown.0,
                    },
                    Err(source) => {
                        BillingError::Db(DbError::from(sqlx::Error::ColumnDecode { index, source }))
                    }
                }
            }
            e => BillingError::Db(DbError::from(e)),
        }
    }
}

impl BillingError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        BillingError::Internal(e.to_string())
    }

    /// `column` (as `table.column`) was read back holding `value`, which does not parse.
    pub fn corrupt(column: &str, value: &str) -> Self {
        BillingError::CorruptRow {
            column: column.to_string(),
            value: value.to_string(),
        }
    }

    /// A conflict with a concurrent transaction that did nothing and may be retried, or a call
    /// to Stripe that may be sent again with the same idempotency key.
    pub fn is_retryable(&self) -> bool {
        match self {
            BillingError::Db(e) => e.is_retryable(),
            BillingError::Stripe(f) => f.is_retryable(),
            BillingError::Solana { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

fn insufficient_message(kind: AccountKind, currency: Currency, needed: &str) -> String {
    let code = currency.code();
    match (kind, currency) {
        (AccountKind::Available, Currency::Usd) => format!(
            "insufficient funds: {needed} {code} more is needed in your available balance; top up \
             by card (`iocloud billing top-up`, POST /v1/billing/top-ups) or pay in IOSD or USDC \
             on Solana (POST /v1/billing/deposits), or pay in another currency you hold"
        ),
        (AccountKind::Available, _) => format!(
            "insufficient funds: {needed} {code} more is needed in your available balance; \
             deposit {code} on Solana (`iocloud billing deposit {code}`, POST \
             /v1/billing/deposits), or pay in another currency you hold"
        ),
        (AccountKind::ProviderEarnings, _) => {
            format!("insufficient earnings: {needed} {code} more than your {code} earnings")
        }
        (AccountKind::Stake, _) => {
            format!("insufficient stake: {needed} {code} more than is staked")
        }
        (kind, _) => format!(
            "insufficient funds: {needed} {code} more is needed in the {} balance",
            kind.as_str().replace('_', " ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_funds_say_what_to_do_and_name_no_account() {
        let e = BillingError::InsufficientFunds {
            kind: AccountKind::Available,
            currency: Currency::Usd,
            needed: "12.50".into(),
        };
        let text = e.to_string();
        assert!(text.contains("12.50 USD more"), "{text}");
        assert!(text.contains("top up"), "{text}");
        assert!(!text.contains("acc_"), "{text}");
        let io = BillingError::InsufficientFunds {
            kind: AccountKind::Available,
            currency: Currency::Io,
            needed: "3".into(),
        };
        assert!(io.to_string().contains("deposit IO on Solana"), "{io}");
    }
}
