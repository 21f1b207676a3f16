pub mod capacity;
mod code;

use iocloud_billing::BillingError;
use iocloud_billing::rails::stripe::StripeFailureKind;
use iocloud_db::DbError;

pub use code::ErrorCode;

/// The domain's error. Each variant has a stable `code` that REST (problem+json) and GraphQL
/// (`extensions.code`) both carry; the message is written for the client. Internal causes
/// (`Db`, `Internal`) are logged by the adapter, never shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    Validation {
        field: &'static str,
        message: String,
        /// `validation_failed`, or a more precise code a client may act on.
        code: ErrorCode,
    },
    #[error("no credentials were given")]
    Unauthenticated,
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("the token is invalid")]
    InvalidToken,
    #[error("the token has expired")]
    TokenExpired,
    #[error("too many login attempts for this account; try again in {} s", retry_after.as_secs().max(1))]
    TooManyLoginAttempts { retry_after: std::time::Duration },
    #[error("this refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("this device is retired; its token no longer works")]
    DeviceRetired,
    #[error("your role does not allow {0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// An agent reported an endpoint that is not an address; `name` is the endpoint's name
    /// as reported (cut to 32 characters), empty when the report as a whole is refused.
    #[error("{}", endpoint_message(name, reason))]
    InvalidEndpoint { name: String, reason: &'static str },
    #[error("{0}")]
    InsufficientCapacity(Box<crate::placement::Infeasible>),
    #[error("{0}")]
    QuotaExceeded(Box<crate::clusters::QuotaExceeded>),
    #[error("an organisation must keep at least one owner")]
    LastOwner,
    #[error("{0}")]
    Billing(#[from] iocloud_billing::BillingError),
    /// A card was declined; the top-up it was for stays, failed, with the reason.
    #[error("the card was declined ({reason}): {message} (top-up {top_up_id})")]
    CardDeclined {
        top_up_id: String,
        /// The issuer's reason (`insufficient_funds`, …), else Stripe's code.
        reason: String,
        message: String,
    },
    /// The named rail (`card payments`, …) has no settings in this deployment.
    #[error("{0} are not configured on this deployment")]
    RailNotConfigured(&'static str),
    #[error("internal error")]
    Db(#[from] DbError),
    #[error("internal error")]
    Internal(String),
    /// A stored value this code does not know (`column` is `table.column`): the data is at
    /// fault, never the request, so it answers as an internal error. Made by [`Error::corrupt`].
    #[error("stored {column} {value:?} is not a value this code knows")]
    CorruptData { column: &'static str, value: String },
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Validation { code, .. } | Error::Conflict { code, .. } => *code,
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::InvalidCredentials => ErrorCode::InvalidCredentials,
            Error::InvalidToken => ErrorCode::InvalidToken,
            Error::TokenExpired => ErrorCode::TokenExpired,
            Error::RefreshTokenReused => ErrorCode::RefreshTokenReused,
            Error::TooManyLoginAttempts { .. } => ErrorCode::TooManyLoginAttempts,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::DeviceRetired => ErrorCode::DeviceRetired,
            Error::NotFound(_) | Error::Db(DbError::NotFound) => ErrorCode::NotFound,
            Error::Db(e) if e.is_unavailable() => ErrorCode::DatabaseUnavailable,
            Error::LastOwner => ErrorCode::LastOwner,
            Error::InvalidEndpoint { .. } => ErrorCode::InvalidEndpoint,
            Error::InsufficientCapacity(_) => ErrorCode::InsufficientCapacity,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::Billing(e) => billing_code(e),
            Error::RailNotConfigured(_) => ErrorCode::RailNotConfigured,
            Error::CardDeclined { .. } => ErrorCode::CardDeclined,
            Error::Db(_) | Error::Internal(_) | Error::CorruptData { .. } => ErrorCode::Internal,
        }
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Error::Validation {
            field,
            message: message.into(),
            code: ErrorCode::ValidationFailed,
        }
    }

    /// A stored value of `column` that reads as nothing this code knows, logged where it is
    /// found: a caller may retry or swallow the error, and the row must still be found.
    pub fn corrupt(column: &'static str, value: &str) -> Self {
        tracing::error!(column, value, "a stored value is not one this code knows");
        Error::CorruptData {
            column,
            value: value.to_string(),
        }
    }

    /// True for errors whose detail must not reach the client.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Db(e) if !matches!(e, DbError::NotFound))
            || matches!(self, Error::Internal(_) | Error::CorruptData { .. })
            || matches!(
                self,
                Error::Billing(e) if matches!(billing_code(e), ErrorCode::Internal | ErrorCode::UnbalancedTransaction)
            )
    }
}

/// Billing's errors, by variant: a new variant does not compile until it has a code.
fn billing_code(e: &BillingError) -> ErrorCode {
    match e {
        BillingError::InvalidAmount(_) => ErrorCode::InvalidAmount,
        BillingError::CurrencyMismatch(..) => ErrorCode::CurrencyMismatch,
        BillingError::Overflow => ErrorCode::AmountOverflow,
        BillingError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
        BillingError::Unbalanced => ErrorCode::UnbalancedTransaction,
        BillingError::ExternalRefReused(_) => ErrorCode::ExternalRefReused,
        BillingError::HoldNotFound(_)
        | BillingError::TransactionNotFound(_)
        | BillingError::Db(DbError::NotFound) => ErrorCode::NotFound,
        BillingError::Db(e) if e.is_unavailable() => ErrorCode::DatabaseUnavailable,
        BillingError::HoldExceeded { .. } => ErrorCode::HoldExceeded,
        BillingError::PriceFeed(_) => ErrorCode::PriceFeedUnavailable,
        BillingError::QuoteExpired(_) => ErrorCode::QuoteExpired,
        BillingError::StakeLocked(_) => ErrorCode::StakeLocked,
        BillingError::NotReversible(_) => ErrorCode::NotReversible,
        BillingError::Db(_) | BillingError::Internal(_) | BillingError::CorruptRow { .. } => {
            ErrorCode::Internal
        }
        BillingError::Stripe(f) => match f.kind {
            StripeFailureKind::Declined => ErrorCode::CardDeclined,
            StripeFailureKind::Refused => ErrorCode::PaymentRefused,
            StripeFailureKind::RateLimited
            | StripeFailureKind::Unavailable
            | StripeFailureKind::BadAnswer => ErrorCode::RailUnavailable,
            // Our key is wrong: nothing the caller can do.
            StripeFailureKind::Unauthorized => ErrorCode::Internal,
        },
        BillingError::WebhookRejected(_) => ErrorCode::WebhookRejected,
        // The node away or refusing a request of ours: the caller can only try again later.
        BillingError::Solana { .. } => ErrorCode::RailUnavailable,
    }
}

fn endpoint_message(name: &str, reason: &str) -> String {
    if name.is_empty() {
        format!("endpoints: {reason}")
    } else {
        // Debug quoting shows a hostile name's control characters escaped.
        format!("endpoint {name:?}: {reason}")
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(DbError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_nobody_knows_are_our_fault() {
        let billing = Error::Billing(BillingError::CorruptRow {
            column: "holds.currency".into(),
            value: "XYZ".into(),
        });
        assert_eq!(billing.code(), ErrorCode::Internal);
        assert!(billing.is_internal());
        let control = Error::corrupt("clusters.status", "melting");
        assert_eq!(control.code(), ErrorCode::Internal);
        assert!(control.is_internal());
        let client = Error::Billing(BillingError::InsufficientFunds {
            kind: iocloud_billing::AccountKind::Available,
            currency: iocloud_billing::Currency::Usd,
            needed: "1.00".into(),
        });
        assert_eq!(client.code(), ErrorCode::InsufficientFunds);
        assert!(!client.is_internal());
    }
}
