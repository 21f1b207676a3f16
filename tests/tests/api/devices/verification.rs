//! Verification that fails: a wrong answer, a late one, or none before the deadline.

use iocloud_control::providers::verification;
use iocloud_tests::{Backend, TestApp, agent, on_both_engines, rig};
use serde_json::json;

on_both_engines!(verification_fails_wrong_late_or_silent);

async fn verification_fails_wrong_late_or_silent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let created = app.post("/v1/devices", Some(&s.access), rig("rig-1")).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let token = created.body["token"].as_str().unwrap().to_string();
    let hello_path = format!("/agent/v1/devices/{id}/hello");
    let answer_path = format!("/agent/v1/devices/{id}/challenge");
    let v = json!({"agent_version": "1.0.0"});

    // Answering before hello: no challenge.
    agent(
        &app,
        &token,
        "POST",
        &answer_path,
        json!({"nonce": "x", "answer": 1}),
    )
    .await
    .assert_problem(409, "no_challenge");
    // Wrong: verification_failed, with the reason.
    let h = agent(&app, &token, "POST", &hello_path, v.clone()).await;
    let nonce = h.body["challenge"]["nonce"].as_str().unwrap().to_string();
    let wrong = (0..)
        .find(|n| !verification::check(&nonce, 18, *n))
        .unwrap();
    let a = agent(
        &app,
        &token,
        "POST",
        &answer_path,
        json!({"nonce": nonce, "answer": wrong}),
    )
    .await;
    assert_eq!(a.body["status"], "verification_failed", "{}", a.text);
    assert_eq!(a.body["status_reason"], "the challenge answer was wrong");
    // Hello again: a fresh try with a new challenge.
    let h2 = agent(&app, &token, "POST", &hello_path, v.clone()).await;
    assert_eq!(h2.body["status"], "pending_verification");
    assert_ne!(h2.body["challenge"]["nonce"], nonce.as_str());
    // Late: right answer after the deadline.
    let nonce2 = h2.body["challenge"]["nonce"].as_str().unwrap().to_string();
    let right = {
        let n = nonce2.clone();
        tokio::task::spawn_blocking(move || verification::solve(&n, 18))
            .await
            .unwrap()
    };
    app.exec(
        "UPDATE device_challenges SET deadline = 1 WHERE device_id = $1",
        &id,
    )
    .await;
    let late = agent(
        &app,
        &token,
        "POST",
        &answer_path,
        json!({"nonce": nonce2, "answer": right}),
    )
    .await;
    assert_eq!(late.body["status"], "verification_failed");
    assert_eq!(
        late.body["status_reason"],
        "the challenge was answered after its deadline"
    );
    // Silent: the sweep fails a device whose challenge expired unanswered.
    agent(&app, &token, "POST", &hello_path, v.clone()).await;
    app.exec(
        "UPDATE device_challenges SET deadline = 1 WHERE device_id = $1",
        &id,
    )
    .await;
    let report = app
        .server
        .state
        .control
        .devices
        .sweep(iocloud_db::time::now_micros())
        .await
        .unwrap();
    assert_eq!(report.challenges_expired, 1);
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "verification_failed");
    assert_eq!(
        d.body["status_reason"],
        "the challenge was not answered before its deadline"
    );
}
