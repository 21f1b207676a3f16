//! Deposits on chain, the crypto rail: an organisation pays $IOSD, USDC or $IO into the
//! treasury by a Solana Pay transfer request, and the money lands on the ledger exactly once.
//!
//! A deposit intent ([`intents`]) is a transfer request with a fresh reference key. The
//! watcher ([`watcher`]), on one replica at a time, follows the treasury's token accounts and
//! each open intent's reference from a stored cursor, at the rail's commitment (`finalized` by
//! default), and applies ([`apply`]) each token transfer it finds once, by its signature and
//! instruction (the ledger's external reference): credited to the intent's organisation (USDC
//! as IOSD less the fee), or kept unmatched for an operator to assign ([`unmatched`]).
//!
//! Without Solana's settings the rail is off: its calls answer `rail_not_configured`.

mod apply;
pub mod intents;
pub mod unmatched;
pub mod watcher;

use iocloud_billing::rails::solana::SolanaRail;
use iocloud_db::Db;

use crate::audit::Audit;
use crate::leases::Leases;
use crate::{Error, Result};

pub use intents::{DepositIntent, DepositRequest, DepositStatus};
pub use unmatched::{AssignRequest, ChainDeposit, ChainDepositStatus};
pub use watcher::WatchPass;

/// How long a deposit intent stays open (its reference followed on its own; a payment after
/// that still reaches the treasury's account and is credited to it).
pub const INTENT_LIFETIME_SECS: i64 = 3_600;

/// The crypto rail's deposits service (see the module's documentation).
#[derive(Clone)]
pub struct Deposits {
    db: Db,
    audit: Audit,
    leases: Leases,
    rail: Option<SolanaRail>,
}

impl Deposits {
    pub(crate) fn new(db: Db, audit: Audit, leases: Leases, rail: Option<SolanaRail>) -> Self {
        Deposits {
            db,
            audit,
            leases,
            rail,
        }
    }

    /// Whether this deployment takes deposits on chain.
    pub fn is_on(&self) -> bool {
        self.rail.is_some()
    }

    fn rail(&self) -> Result<&SolanaRail> {
        self.rail
            .as_ref()
            .ok_or(Error::RailNotConfigured("deposits on Solana"))
    }
}
