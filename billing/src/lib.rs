//! Every cent that moves through the platform: money in integer micro-units, a double-entry
//! ledger whose postings always sum to zero, and holds that reserve a cluster's cost.

pub mod emission;
mod error;
pub mod ledger;
pub mod metering;
pub mod money;
pub mod prices;
pub mod rails;
pub mod rewards;
pub mod staking;
#[cfg(test)]
mod testing;

pub use error::BillingError;
pub use ledger::{AccountKind, AccountRef, Ledger, Posting, TransactionKind};
pub use money::{Currency, Money, Rounding};

pub type Result<T, E = BillingError> = std::result::Result<T, E>;
