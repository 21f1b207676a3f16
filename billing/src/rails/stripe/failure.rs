//! Failed calls to Stripe, sorted by what the caller can do about them.

use std::fmt;

use stripe::{ApiErrorsType, StripeError};

use crate::BillingError;

/// What went wrong with a call to Stripe, by what the caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripeFailureKind {
    /// The card was declined (`card_error`): the customer's to fix, never worth retrying.
    Declined,
    /// Stripe refused the request (400, 402, 404, an idempotency key reused with other
    /// fields): sending it again fails again.
    Refused,
    /// The key is wrong or lacks the permission (401, 403): a setting to fix.
    Unauthorized,
    /// Too many requests (429): retry later with the same idempotency key.
    RateLimited,
    /// No answer in time, no connection, or Stripe's own failure (5xx, 409 while the same
    /// idempotency key is in flight, 424): retry with the same idempotency key.
    Unavailable,
    /// An answer that does not parse as what was asked for.
    BadAnswer,
}

/// A failed call to Stripe: its kind, and what Stripe said of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeFailure {
    pub kind: StripeFailureKind,
    /// The HTTP status, when Stripe answered.
    pub status: Option<u16>,
    /// Stripe's error code (`card_declined`, `resource_missing`, …).
    pub code: Option<String>,
    /// For a declined card, the issuer's reason (`generic_decline`, `insufficient_funds`, …).
    pub decline_code: Option<String>,
    pub message: String,
    /// The PaymentIntent the failure is about (a declined card leaves one behind).
    pub payment_intent: Option<String>,
}

impl StripeFailure {
    /// True when the same call, with the same idempotency key, may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            StripeFailureKind::RateLimited | StripeFailureKind::Unavailable
        )
    }
}

impl fmt::Display for StripeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(decline) = &self.decline_code {
            write!(f, "/{decline}")?;
        }
        write!(f, ": {}", self.message)
    }
}

pub(super) fn failure(e: StripeError) -> BillingError {
    BillingError::Stripe(Box::new(classify(e)))
}

pub(super) fn classify(e: StripeError) -> StripeFailure {
    let bare = |kind, message: String| StripeFailure {
        kind,
        status: None,
        code: None,
        decline_code: None,
        message,
        payment_intent: None,
    };
    match e {
        StripeError::Stripe(error, status) => {
            let kind = match status {
                _ if error.type_ == ApiErrorsType::CardError => StripeFailureKind::Declined,
                401 | 403 => StripeFailureKind::Unauthorized,
                429 => StripeFailureKind::RateLimited,
                409 | 424 | 500..=599 => StripeFailureKind::Unavailable,
                _ => StripeFailureKind::Refused,
            };
            StripeFailure {
                kind,
                status: Some(status),
                code: error.code.as_ref().map(|c| c.as_str().to_string()),
                decline_code: error.decline_code.clone(),
                message: error
                    .message
                    .clone()
                    .unwrap_or_else(|| error.type_.as_str().to_string()),
                payment_intent: error
                    .payment_intent
                    .as_ref()
                    .map(|pi| pi.id.as_str().to_string()),
            }
        }
        StripeError::Timeout => bare(StripeFailureKind::Unavailable, "no answer in time".into()),
        StripeError::ClientError(message) => bare(StripeFailureKind::Unavailable, message),
        StripeError::JSONDeserialize(message) => bare(StripeFailureKind::BadAnswer, message),
        StripeError::ConfigError(message) => bare(StripeFailureKind::Refused, message),
    }
}
