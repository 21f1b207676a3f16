//! Payouts on chain go to a wallet the provider organisation proved it holds ([`wallets`]): a
//! challenge signed with the wallet's key (ed25519), several wallets, one default.

pub mod wallets;

use iocloud_db::Db;

pub use wallets::{Wallet, WalletChallenge, WalletChallengeRequest, WalletRequest};

/// The payouts service (see the module's documentation).
#[derive(Clone)]
pub struct Payouts {
    db: Db,
}

impl Payouts {
    pub(crate) fn new(db: Db) -> Self {
        Payouts { db }
    }
}
