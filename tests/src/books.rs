//! Checks only the database or the ledger itself can answer: no route shows every device's GPU
//! bookings at once, or whether the whole ledger balances. Suites that stress placement and
//! settlement end with these.

use crate::TestApp;

pub use iocloud_control::books::{GPU_BOOKS_WRONG, QUOTAS_WRONG};

/// Every posting in the ledger sums to zero, per currency (`Ledger::verify`).
pub async fn ledger_balances(app: &TestApp) {
    let v = app.server.state.control.ledger.verify().await.unwrap();
    assert!(v.is_balanced(), "{v:?}");
}
