use iocloud_db::DbError;

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
    #[error("insufficient funds: {needed} more {currency} needed in {account}")]
    InsufficientFunds {
        account: String,
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
