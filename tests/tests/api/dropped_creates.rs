//! A create held up past the request timeout while it claims GPUs is answered 408 but finishes
//! in its own task (a state-changing request outlives its client: `middleware::audit`), and
//! what it marked while claiming is not left behind: the next create that does not fit is told
//! so at once, for any organisation, and no GPU is booked twice. A claim whose future is
//! dropped outright is tested in `control/tests/capacity.rs`.

use iocloud_tests::{Backend, Fleet, fleet, frankfurt, on_both_engines};
use serde_json::json;

on_both_engines!(a_create_dropped_mid_claim_holds_nothing_back);

async fn a_create_dropped_mid_claim_holds_nothing_back(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), false, |c| c.request_timeout_secs = 1).await;
    let spec = |name: &str, gpus: u32| {
        json!({"name": name, "kind": "container", "image": "busybox", "gpu_model": "h100-sxm",
               "gpu_count": gpus, "gpus_per_node": 8, "duration_hours": 1})
    };

    // Another writer holds the machine's row (on SQLite, the write lock) past the request
    // timeout: the create is dropped inside its claim.
    let db = &app.server.state.control.db;
    let mut writer = db.begin().await.unwrap();
    iocloud_db::tx_run!(&mut writer, |c| sqlx::query(
        "UPDATE devices SET updated_at = updated_at + 1"
    )
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
    app.post("/v1/clusters", Some(&s.access), spec("dropped", 8))
        .await
        .assert_problem(408, "timeout");
    writer.rollback().await.unwrap();

    // Once the row is free, the create finishes and holds the machine.
    let mut finished = false;
    for _ in 0..100 {
        if app.get("/v1/clusters/dropped", &s.access).await.status == 200 {
            finished = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(finished, "the create answered 408 ran on to its end");

    // Another organisation asks for more than there is: refused for capacity, not kept
    // waiting until its own request times out.
    let other = app.signup("bo@example.com", "Other").await;
    app.post("/v1/clusters", Some(&other.access), spec("too-big", 16))
        .await
        .assert_problem(422, "insufficient_capacity");
    // And the machine is booked once: the create that timed out has it.
    app.post("/v1/clusters", Some(&other.access), spec("placed", 8))
        .await
        .assert_problem(422, "insufficient_capacity");
}
