//! A create dropped while it claims GPUs (here by the request timeout; a client hanging up
//! drops it the same way) leaves nothing behind: the next create that does not fit is told
//! so at once, for any organisation, and the GPUs are placed again.

use iocloud_tests::{Backend, on_both_engines};
use serde_json::json;

use crate::clusters::{Fleet, fleet, frankfurt};

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

    // Another organisation asks for more than there is: refused for capacity, not kept
    // waiting until its own request times out.
    let other = app.signup("bo@example.com", "Other").await;
    app.post("/v1/clusters", Some(&other.access), spec("too-big", 16))
        .await
        .assert_problem(422, "insufficient_capacity");
    // And the machine is placed again.
    let created = app
        .post("/v1/clusters", Some(&s.access), spec("placed", 8))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clusters WHERE name = 'dropped'")
            .await,
        0,
        "the dropped create left no cluster"
    );
}
