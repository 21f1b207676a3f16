//! How the rail reaches Stripe: the four settings, read from the environment (or given by the
//! config file), with the two secrets never printed.

use std::fmt;
use std::time::Duration;

use crate::{BillingError, Result};

/// The secret API key (`sk_…`, or a restricted `rk_…`): authenticates every call to Stripe.
pub const SECRET_KEY_VAR: &str = "IOCLOUD_STRIPE_SECRET_KEY";
/// The webhook endpoint's signing secret (`whsec_…`).
pub const WEBHOOK_SECRET_VAR: &str = "IOCLOUD_STRIPE_WEBHOOK_SECRET";
/// The publishable key (`pk_…`) browsers give Stripe.js; public by design.
pub const PUBLISHABLE_KEY_VAR: &str = "IOCLOUD_STRIPE_PUBLISHABLE_KEY";
/// Where Stripe's API is; unset, Stripe itself. Tests point it at a stand-in.
pub const API_BASE_VAR: &str = "IOCLOUD_STRIPE_API_BASE";
/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";
/// How long one attempt at a call may take before it counts as a retryable failure. async-stripe
/// sets none of its own, and a payment must not hang the request that made it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Oldest signature timestamp a webhook may carry, as Stripe's libraries accept by default
/// (fixed in async-stripe-webhook).
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// How the rail reaches Stripe.
#[derive(Clone)]
pub struct StripeSettings {
    /// `IOCLOUD_STRIPE_SECRET_KEY`.
    pub secret_key: String,
    /// `IOCLOUD_STRIPE_WEBHOOK_SECRET`.
    pub webhook_secret: String,
    /// `IOCLOUD_STRIPE_PUBLISHABLE_KEY`, when the console takes card details itself.
    pub publishable_key: Option<String>,
    /// `IOCLOUD_STRIPE_API_BASE`, [`DEFAULT_API_BASE`] when unset.
    pub api_base: String,
    /// Per attempt; [`DEFAULT_TIMEOUT`] from the environment.
    pub timeout: Duration,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("secret_key", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("publishable_key", &self.publishable_key)
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StripeSettings {
    /// The settings from the environment: `None` when no secret key is set (the fiat rail is
    /// off); an error when a secret key is set without the webhook secret, since a payment
    /// could then be taken and never credited.
    pub fn from_env() -> Result<Option<StripeSettings>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading each variable from `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<StripeSettings>> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(secret_key) = get(SECRET_KEY_VAR) else {
            return Ok(None);
        };
        let webhook_secret = get(WEBHOOK_SECRET_VAR).ok_or_else(|| {
            BillingError::Internal(format!(
                "{SECRET_KEY_VAR} is set but {WEBHOOK_SECRET_VAR} is not"
            ))
        })?;
        Ok(Some(StripeSettings {
            secret_key,
            webhook_secret,
            publishable_key: get(PUBLISHABLE_KEY_VAR),
            api_base: get(API_BASE_VAR).unwrap_or_else(|| DEFAULT_API_BASE.to_string()),
            timeout: DEFAULT_TIMEOUT,
        }))
    }
}
