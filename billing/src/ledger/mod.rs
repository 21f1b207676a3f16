//! The double-entry ledger.
//!
//! A transaction is a set of postings, each adding a signed amount to one account, that sum to
//! zero in every currency. Transactions are immutable and idempotent by an external reference:
//! posting the same reference twice returns the first transaction; posting it with different
//! postings is refused. Corrections are new, compensating transactions. Account balances are
//! kept beside the postings (so a conditional update can refuse an overdraft without a race)
//! and can be rebuilt from them ([`Ledger::verify`], [`Ledger::rebuild_balances`]).

mod accounts;
mod correct;
pub(crate) mod holds;
pub(crate) mod post;
mod verify;

pub use accounts::{AccountKind, AccountRef, PLATFORM};
pub use holds::{Hold, extend_hold_in, place_hold_in};
pub use post::{NewTransaction, Posted, Posting, batch_fast_in, post_in};
pub use verify::Verification;

use iocloud_db::{Db, Tx, db_run, tx_run};
use serde::Serialize;

use crate::money::{Currency, Money};
use crate::{BillingError, Result};

/// What a ledger transaction was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Deposit,
    CreditGrant,
    Hold,
    HoldExtend,
    Capture,
    Release,
    Refund,
    Transfer,
    Correction,
    /// A card payment disputed by its cardholder, and its return when the dispute is won.
    Dispute,
    /// Earnings paid out on chain: asked for, paid, or returned.
    Payout,
    /// An hourly block: $IO minted and shared among the devices that earned it.
    Reward,
    /// A slashing case's $IO taken into escrow, burned, or returned.
    Slash,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionKind::Deposit => "deposit",
            TransactionKind::CreditGrant => "credit_grant",
            TransactionKind::Hold => "hold",
            TransactionKind::HoldExtend => "hold_extend",
            TransactionKind::Capture => "capture",
            TransactionKind::Release => "release",
            TransactionKind::Refund => "refund",
            TransactionKind::Transfer => "transfer",
            TransactionKind::Correction => "correction",
            TransactionKind::Dispute => "dispute",
            TransactionKind::Payout => "payout",
            TransactionKind::Reward => "reward",
            TransactionKind::Slash => "slash",
        }
    }
}

/// The ledger service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Db,
}

/// Platform fee in basis points (1/100 of a percent): 500 = 5%.
pub type FeeBps = u32;

/// What usage is charged under: the platform's fee, and the version of the protocol's
/// parameters it comes from, which each usage line records so a charge can be explained later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeTerms {
    pub fee_bps: FeeBps,
    pub params_version: i64,
}

impl From<FeeBps> for ChargeTerms {
    /// A fee alone: the launch parameters (version 1).
    fn from(fee_bps: FeeBps) -> Self {
        ChargeTerms {
            fee_bps,
            params_version: 1,
        }
    }
}

/// Splits a charge into (provider's share, platform's fee). The fee rounds down, so the
/// provider receives the remainder.
pub fn split_fee(charge: Money, fee_bps: FeeBps) -> Result<(Money, Money)> {
    let fee = charge.mul_div(
        i64::from(fee_bps.min(10_000)),
        10_000,
        crate::Rounding::Down,
    )?;
    Ok((charge.checked_sub(fee)?, fee))
}

impl Ledger {
    pub fn new(db: Db) -> Ledger {
        Ledger { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// An account's balance (zero for an account never used).
    pub async fn balance(&self, account: &AccountRef) -> Result<Money> {
        let id = account.id();
        let micros: Option<i64> = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT balance FROM ledger_accounts WHERE id = $1")
                .bind(&id)
                .fetch_optional(p)
                .await
        })?;
        Ok(Money::from_micros(micros.unwrap_or(0), account.currency))
    }

    /// An account's balance as an open transaction sees it (not locked: a posting that would
    /// overdraw it is still refused when it is written).
    pub async fn balance_in(tx: &mut Tx, account: &AccountRef) -> Result<Money> {
        let id = account.id();
        let micros: Option<i64> = tx_run!(tx, |c| {
            sqlx::query_scalar("SELECT balance FROM ledger_accounts WHERE id = $1")
                .bind(&id)
                .fetch_optional(c)
                .await
        })?;
        Ok(Money::from_micros(micros.unwrap_or(0), account.currency))
    }

    /// Every account an owner has, with its balance, ordered by kind and currency.
    pub async fn accounts_of(&self, owner: &str) -> Result<Vec<(AccountKind, Money)>> {
        let rows: Vec<(String, String, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as("SELECT kind, currency, balance FROM ledger_accounts WHERE owner = $1 ORDER BY kind, currency")
                .bind(owner)
                .fetch_all(p)
                .await
        })?;
        rows.into_iter()
            .map(|(kind, currency, balance)| {
                let kind = AccountKind::parse(&kind)
                    .ok_or_else(|| BillingError::corrupt("ledger_accounts.kind", &kind))?;
                let currency = Currency::parse(&currency)
                    .ok_or_else(|| BillingError::corrupt("ledger_accounts.currency", &currency))?;
                Ok((kind, Money::from_micros(balance, currency)))
            })
            .collect()
    }
}
