//! Operators' suspensions: only operators suspend, the stake still counts meanwhile, and lifting
//! one gives back what the device had.

use iocloud_tests::{Backend, on_both_engines, staked_rig, verified_rig};
use serde_json::json;

on_both_engines!(operators_suspend_devices);

async fn operators_suspend_devices(b: Backend) {
    let (app, s, id, _) = staked_rig(b).await;
    let path = format!("/v1/admin/devices/{id}/suspension");
    // The provider is no operator.
    app.post(&path, Some(&s.access), json!({"reason": "x"}))
        .await
        .assert_problem(403, "forbidden");
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;
    let suspended = app
        .post(
            &path,
            Some(&ops.access),
            json!({"reason": "fraud report #12"}),
        )
        .await;
    assert_eq!(suspended.status, 200, "{}", suspended.text);
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(
        suspended.body["status_reason"],
        "suspended by an operator: fraud report #12"
    );
    // Still counted against the stake: it cannot be unstaked meanwhile.
    let summary = app.get("/v1/stake", &s.access).await;
    assert_eq!(summary.body["required"], "16000.00");
    let lifted = app.delete(&path, &ops.access).await;
    assert_eq!(lifted.body["status"], "available", "{}", lifted.text);
    // A verified device the stake does not cover stays waiting when its suspension is lifted.
    let (waiting, _) = verified_rig(&app, &s, "rig-2").await;
    let wpath = format!("/v1/admin/devices/{waiting}/suspension");
    let w = app.get(&format!("/v1/devices/{waiting}"), &s.access).await;
    assert_eq!(w.body["status"], "pending_stake");
    app.post(&wpath, Some(&ops.access), json!({})).await;
    let lifted = app.delete(&wpath, &ops.access).await;
    assert_eq!(lifted.body["status"], "pending_stake", "{}", lifted.text);
    app.post(
        "/v1/admin/devices/dev_00000000000000000000000000/suspension",
        Some(&ops.access),
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}
