//! Checks only the database or the ledger itself can answer: no route shows every device's GPU
//! bookings at once, or whether the whole ledger balances. Suites that stress placement and
//! settlement end with these.

use crate::TestApp;

/// Every posting in the ledger sums to zero, per currency (`Ledger::verify`).
pub async fn ledger_balances(app: &TestApp) {
    let v = app.server.state.control.ledger.verify().await.unwrap();
    assert!(v.is_balanced(), "{v:?}");
}

/// Devices whose free GPUs plus those their unreleased nodes hold are not their GPU count: a
/// GPU booked twice, or lost. Must count 0.
pub const GPU_BOOKS_WRONG: &str = "SELECT COUNT(*) FROM devices d WHERE d.gpus_free < 0 OR d.gpus_free + \
    (SELECT COALESCE(SUM(n.gpus), 0) FROM node_assignments n WHERE n.device_id = d.id AND n.status <> 'released') <> d.gpu_count";
