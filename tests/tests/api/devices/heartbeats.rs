//! Heartbeats: a silent device goes offline and comes back when heard from, and an agent speaks
//! only for its own device, within its rate limit.

use iocloud_tests::{Backend, Session, TestApp, agent, beat, on_both_engines, rig, staked_rig};
use serde_json::json;

on_both_engines!(
    silent_devices_go_offline_and_come_back,
    agents_are_held_to_their_own_device,
);

async fn silent_devices_go_offline_and_come_back(b: Backend) {
    let (app, s, id, token) = staked_rig(b).await;
    let control = &app.server.state.control;
    let hb = format!("/agent/v1/devices/{id}/heartbeat");
    agent(&app, &token, "POST", &hb, beat(8)).await;
    control.devices.flush_heartbeats().await.unwrap();
    let now = iocloud_db::time::now_micros();
    assert_eq!(control.devices.sweep(now).await.unwrap().went_offline, 0);
    // 91 s later with no heartbeat: offline.
    let later = now + 91_000_000;
    assert_eq!(control.devices.sweep(later).await.unwrap().went_offline, 1);
    assert_eq!(
        control.devices.sweep(later).await.unwrap().went_offline,
        0,
        "once"
    );
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "offline");
    assert_eq!(d.body["status_reason"], "no heartbeat for 90 s");
    // Heard from again: back.
    agent(&app, &token, "POST", &hb, beat(8)).await;
    control.devices.flush_heartbeats().await.unwrap();
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "available", "{}", d.text);
    let events = app
        .get(&format!("/v1/devices/{id}/events"), &s.access)
        .await;
    let last = events.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from_status"], "offline");
    assert_eq!(last["reason"], "heard from again");
    // In maintenance, silence changes nothing: the provider is working on it.
    app.post(
        &format!("/v1/devices/{id}/maintenance"),
        Some(&s.access),
        json!({}),
    )
    .await;
    let much_later = iocloud_db::time::now_micros() + 3_600_000_000;
    assert_eq!(
        control
            .devices
            .sweep(much_later)
            .await
            .unwrap()
            .went_offline,
        0
    );
}

async fn agents_are_held_to_their_own_device(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.rate_limit_per_device = 5).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let other = app.signup("other@example.com", "Other Farm").await;
    let a = app.post("/v1/devices", Some(&s.access), rig("a")).await;
    let b2 = app.post("/v1/devices", Some(&s.access), rig("b")).await;
    let theirs = app.post("/v1/devices", Some(&other.access), rig("c")).await;
    let (a_id, a_token) = (
        a.body["id"].as_str().unwrap(),
        a.body["token"].as_str().unwrap(),
    );
    let b_id = b2.body["id"].as_str().unwrap();
    let their_id = theirs.body["id"].as_str().unwrap();
    let hb = |id: &str| format!("/agent/v1/devices/{id}/heartbeat");

    // Another device's id, in this organisation or another: not found.
    agent(&app, a_token, "POST", &hb(b_id), beat(8))
        .await
        .assert_problem(404, "not_found");
    agent(&app, a_token, "POST", &hb(their_id), beat(8))
        .await
        .assert_problem(404, "not_found");
    // No token, a garbage token, a user's token.
    let none = TestApp::answer(
        app.client
            .post(app.url(&hb(a_id)))
            .json(&beat(8))
            .send()
            .await
            .unwrap(),
    )
    .await;
    none.assert_problem(401, "unauthenticated");
    agent(&app, "iodt_nope", "POST", &hb(a_id), beat(8))
        .await
        .assert_problem(401, "invalid_token");
    agent(&app, &s.access, "POST", &hb(a_id), beat(8))
        .await
        .assert_problem(401, "invalid_token");
    // Impossible telemetry.
    agent(&app, a_token, "POST", &hb(a_id), beat(9))
        .await
        .assert_problem(422, "validation_failed");
    // Another organisation's device over REST: not found.
    app.get(&format!("/v1/devices/{their_id}"), &s.access)
        .await
        .assert_problem(404, "not_found");
    app.delete(&format!("/v1/devices/{their_id}"), &s.access)
        .await
        .assert_problem(404, "not_found");
    // A flood of heartbeats is cut off per device (5 a minute here).
    let mut limited = 0;
    for _ in 0..10 {
        let r = agent(&app, a_token, "POST", &hb(a_id), beat(8)).await;
        if r.status == 429 {
            limited += 1;
            assert!(r.header("retry-after").is_some());
        }
    }
    assert!(limited >= 4, "{limited} of 10 limited");
    // Nothing above wrote a heartbeat for another device: once the server's flush has
    // written this device's (the last heartbeats sent), neither other device has one.
    let heard = |id: &str, owner: &Session| {
        let (app, path, token) = (&app, format!("/v1/devices/{id}"), owner.access.clone());
        async move {
            let d = app.get(&path, &token).await;
            assert_eq!(d.status, 200, "{}", d.text);
            d.body["telemetry"]["last_heartbeat_at"].is_string()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !heard(a_id, &s).await {
        assert!(std::time::Instant::now() < deadline, "{a_id} never heard");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!heard(b_id, &s).await, "{b_id} heard of");
    assert!(!heard(their_id, &other).await, "{their_id} heard of");
}
