//! Payouts on chain: a provider organisation's earnings paid to a wallet it proved it holds
//! ([`wallets`]: a challenge signed with the wallet's key, several wallets, one default).
//!
//! Asking for a payout ([`requests`]) moves the earnings to `payout_pending` on the ledger, in
//! the same transaction as the payout's row and the provider's daily total. Above the approval
//! threshold an operator approves it first. The sender ([`sender`]), on one replica at a time,
//! signs each payout's transfer out of the treasury, keeps the signed bytes, the signature and
//! the last block height they can land at before sending them, sends the same bytes until they
//! are finalized, and signs anew only when they can no longer land and nothing landed: so a
//! payout is paid once, whatever crashes or the node does. Finalized, the payout is paid and
//! leaves the ledger; failed for good, its earnings come back.

pub mod requests;
pub mod sender;
pub mod wallets;

use std::sync::Arc;

use iocloud_billing::prices::PriceFeed;
use iocloud_billing::rails::solana::SolanaRail;
use iocloud_billing::{Currency, Money};
use iocloud_db::Db;

use crate::audit::Audit;
use crate::leases::Leases;
use crate::{Error, Result};

pub use requests::{DecisionRequest, Payout, PayoutRequest, PayoutStatus};
pub use sender::{PayoutStep, SendPass, StepHook};
pub use wallets::{Wallet, WalletChallenge, WalletChallengeRequest, WalletRequest};

/// The limits on payouts, in USD (IO earnings are valued at the price feed).
#[derive(Clone, Copy, Debug)]
pub struct PayoutLimits {
    /// The smallest payout.
    pub minimum: Money,
    /// The most one provider is paid per UTC day.
    pub daily: Money,
    /// Payouts above this wait for an operator's approval.
    pub approval_above: Money,
}

impl Default for PayoutLimits {
    fn default() -> Self {
        let usd = |units: i64| Money::from_micros(units * 1_000_000, Currency::Usd);
        PayoutLimits {
            minimum: usd(10),
            daily: usd(10_000),
            approval_above: usd(5_000),
        }
    }
}

/// The payouts service (see the module's documentation).
#[derive(Clone)]
pub struct Payouts {
    db: Db,
    audit: Audit,
    leases: Leases,
    rail: Option<SolanaRail>,
    prices: Arc<PriceFeed>,
    limits: PayoutLimits,
    /// Told of each step the sender takes; see [`Payouts::observe`].
    hook: Arc<parking_lot::RwLock<Option<StepHook>>>,
}

impl Payouts {
    pub(crate) fn new(
        db: Db,
        audit: Audit,
        leases: Leases,
        rail: Option<SolanaRail>,
        prices: Arc<PriceFeed>,
        limits: PayoutLimits,
    ) -> Self {
        Payouts {
            db,
            audit,
            leases,
            rail,
            prices,
            limits,
            hook: Default::default(),
        }
    }

    pub fn limits(&self) -> PayoutLimits {
        self.limits
    }

    fn rail(&self) -> Result<&SolanaRail> {
        self.rail
            .as_ref()
            .ok_or(Error::RailNotConfigured("payouts on Solana"))
    }
}
