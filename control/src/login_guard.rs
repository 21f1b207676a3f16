//! A limit on wrong passwords per account, beside the per-address rate limit: an attacker with
//! many addresses still gets only a few guesses at one account per window.
//!
//! Every attempt counts before its password is checked, so guesses sent in parallel cannot all
//! slip in before the first failure is counted; a successful login clears the count. Once an
//! account has had `max_attempts` in a window, every login to it (even the right password) is
//! refused until the window ends. The count lives in Redis when configured, so every replica
//! shares it; if the store cannot be reached, logins go on (a store outage must not lock every
//! user out) and the per-address limit still applies.

use std::time::Duration;

use iocloud_db::Kv;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// How many logins one account may attempt in a window before it is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginThrottle {
    pub max_attempts: u32,
    pub window: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            max_attempts: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The counter of one account, named by a hash so no email reaches Redis.
fn counter(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    format!("login:attempts:{}", hex::encode(&digest[..16]))
}

/// The per-account counts, where every replica sees them.
#[derive(Clone)]
pub(crate) struct LoginGuard {
    kv: Kv,
    limit: LoginThrottle,
}

impl LoginGuard {
    pub(crate) fn new(kv: Kv, limit: LoginThrottle) -> Self {
        LoginGuard { kv, limit }
    }

    /// Counts a login attempt for `email`; refuses it when the account has had too many.
    pub(crate) async fn count(&self, email: &str) -> Result<()> {
        let limit = self.limit;
        match self.kv.count_in_window(&counter(email), limit.window).await {
            Ok((count, left)) if count > u64::from(limit.max_attempts) => {
                tracing::warn!("login refused: too many attempts on one account");
                Err(Error::TooManyLoginAttempts { retry_after: left })
            }
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "login throttle unavailable; attempt let through");
                Ok(())
            }
        }
    }

    /// Forgets an account's attempts after it logged in.
    pub(crate) async fn clear(&self, email: &str) {
        if let Err(e) = self.kv.del(&counter(email)).await {
            tracing::warn!(error = %e, "could not clear an account's login attempts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_counter_per_account_whatever_its_case() {
        assert_eq!(counter("A@Example.com"), counter(" a@example.com"));
        assert_ne!(counter("a@example.com"), counter("b@example.com"));
        assert!(!counter("a@example.com").contains("example"));
    }
}
