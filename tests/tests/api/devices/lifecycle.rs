//! A device's whole life over REST and the agent API: registered, verified, staked and listed,
//! heard from, repriced, in maintenance, given a node and back, retired and its stake
//! withdrawn, each change an event the provider can read.

use iocloud_control::providers::verification;
use iocloud_tests::{Backend, TestApp, agent, beat, on_both_engines, rig};
use serde_json::json;

on_both_engines!(a_device_from_registration_to_retirement);

async fn a_device_from_registration_to_retirement(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    app.grant_credit(&s.org_id, "20000", "IO").await;

    let created = app.post("/v1/devices", Some(&s.access), rig("rig-1")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let d = &created.body;
    assert!(d["token"].as_str().unwrap().starts_with("iodt_"));
    assert_eq!(d["status"], "pending_verification");
    assert_eq!(d["gpu_model"], "h100-sxm");
    assert_eq!(d["gpus_free"], 8);
    assert_eq!(d["price_per_gpu_hour"], "2.10");
    assert_eq!(d["location"]["lat"], 50.11);
    assert_eq!(d["bandwidth_mbps"]["up"], 1000);
    assert_eq!(
        d["required_stake"], "16000.00",
        "200 $IO × 8 GPUs × multiplier 10"
    );
    let id = d["id"].as_str().unwrap().to_string();
    let token = d["token"].as_str().unwrap().to_string();
    // The token is stored hashed and never shown again.
    let shown = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert!(shown.body.get("token").is_none());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM devices WHERE token_hash LIKE 'iodt_%'")
            .await,
        0
    );
    // Same name twice in one organisation: refused.
    app.post("/v1/devices", Some(&s.access), rig("rig-1"))
        .await
        .assert_problem(409, "name_taken");

    // The agent connects, proves itself, and waits for stake.
    let hello = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/hello"),
        json!({"agent_version": "1.4.2"}),
    )
    .await;
    assert_eq!(hello.status, 200, "{}", hello.text);
    assert_eq!(hello.body["status"], "pending_verification");
    assert_eq!(hello.body["heartbeat_interval_secs"], 20);
    let again = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/hello"),
        json!({"agent_version": "1.4.2"}),
    )
    .await;
    assert_eq!(
        again.body["challenge"]["nonce"], hello.body["challenge"]["nonce"],
        "the same challenge until it expires"
    );
    let nonce = hello.body["challenge"]["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let n = {
        let nonce = nonce.clone();
        tokio::task::spawn_blocking(move || verification::solve(&nonce, 18))
            .await
            .unwrap()
    };
    let verified = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/challenge"),
        json!({"nonce": nonce, "answer": n}),
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.body["status"], "pending_stake");
    assert!(
        verified.body["status_reason"]
            .as_str()
            .unwrap()
            .contains("needs 16000.00 $IO"),
        "{}",
        verified.text
    );

    // Staking 16,000 $IO lists it.
    let staked = app
        .post(
            "/v1/stake",
            Some(&s.access),
            json!({"amount": "16000", "reference": "first"}),
        )
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    assert_eq!(staked.body["status"], "active");
    let stake_id = staked.body["id"].as_str().unwrap().to_string();
    let retried = app
        .post(
            "/v1/stake",
            Some(&s.access),
            json!({"amount": "16000", "reference": "first"}),
        )
        .await;
    assert_eq!(retried.body["id"], stake_id, "one stake per reference");
    let device = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(device.body["status"], "available", "{}", device.text);
    let summary = app.get("/v1/stake", &s.access).await;
    assert_eq!(summary.body["active"], "16000.00");
    assert_eq!(summary.body["required"], "16000.00");
    assert_eq!(summary.body["free"], "0.00");
    let balances = app.get("/v1/balances", &s.access).await;
    assert!(
        balances.text.contains("\"available\":\"4000.00\""),
        "20,000 granted, 16,000 staked: {}",
        balances.text
    );
    // The stake the device needs cannot be unstaked while it is listed.
    app.post(
        &format!("/v1/stake/{stake_id}/unstake"),
        Some(&s.access),
        json!({}),
    )
    .await
    .assert_problem(409, "stake_required");

    // Heartbeats are taken at once and written in a batch.
    let hb = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/heartbeat"),
        beat(8),
    )
    .await;
    assert_eq!(hb.status, 202, "{}", hb.text);
    let control = &app.server.state.control;
    control.devices.flush_heartbeats().await.unwrap();
    let device = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(device.body["telemetry"]["utilization_pct"], 37);
    assert_eq!(device.body["telemetry"]["agent_version"], "1.4.2");
    assert!(device.body["telemetry"]["last_heartbeat_at"].is_string());
    assert!(device.body["uptime"]["last_24h"].as_f64().unwrap() > 0.0);
    assert!(device.body["uptime"]["reliability"].as_f64().unwrap() > 0.0);

    // Price and name change within bounds; maintenance and back.
    let patched = app
        .patch(
            &format!("/v1/devices/{id}"),
            &s.access,
            json!({"price_per_gpu_hour": "2.45", "name": "rig-one"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["price_per_gpu_hour"], "2.45");
    assert_eq!(patched.body["name"], "rig-one");
    let m = app
        .post(
            &format!("/v1/devices/{id}/maintenance"),
            Some(&s.access),
            json!({"reason": "new fans"}),
        )
        .await;
    assert_eq!(m.body["status"], "maintenance", "{}", m.text);
    let back = app
        .delete(&format!("/v1/devices/{id}/maintenance"), &s.access)
        .await;
    assert_eq!(back.body["status"], "available", "{}", back.text);

    // A node: the device turns busy, the agent gets the bootstrap, reports, gives it back.
    let node = control
        .agents
        .assign_node(
            &id,
            "clu_test",
            "org_customer",
            8,
            &json!({"kind": "ray", "role": "head", "ray_version": "2.40.0"}),
        )
        .await
        .unwrap();
    control
        .agents
        .assign_node(&id, "clu_other", "org_customer", 1, &json!({}))
        .await
        .expect_err("no GPU is free");
    let device = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(device.body["status"], "busy");
    assert_eq!(device.body["gpus_free"], 0);
    let work = agent(
        &app,
        &token,
        "GET",
        &format!("/agent/v1/devices/{id}/assignments?wait_secs=1"),
        json!({}),
    )
    .await;
    assert_eq!(work.status, 200, "{}", work.text);
    assert_eq!(work.body["items"][0]["id"], node.as_str());
    assert_eq!(work.body["items"][0]["bootstrap"]["role"], "head");
    app.delete(&format!("/v1/devices/{id}"), &s.access)
        .await
        .assert_problem(409, "device_busy");
    for (status, extra) in [
        ("starting", json!({})),
        ("ready", json!({"endpoints": {"ray": "10.0.0.5:6379"}})),
        ("released", json!({})),
    ] {
        let mut body = extra.clone();
        body["status"] = json!(status);
        let r = agent(
            &app,
            &token,
            "POST",
            &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
            body,
        )
        .await;
        assert_eq!(r.status, 204, "{status}: {}", r.text);
    }
    let r = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
        json!({"status": "ready"}),
    )
    .await;
    r.assert_problem(409, "invalid_state");
    let device = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(device.body["status"], "available");
    assert_eq!(device.body["gpus_free"], 8);
    assert_eq!(device.body["uptime"]["nodes_ok"], 1);

    // Retired: its token stops working and its stake can be unstaked, then withdrawn
    // after the cooldown.
    let retired = app.delete(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(retired.body["status"], "retired", "{}", retired.text);
    agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/heartbeat"),
        beat(8),
    )
    .await
    .assert_problem(403, "device_retired");
    let unbonding = app
        .post(
            &format!("/v1/stake/{stake_id}/unstake"),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(unbonding.body["status"], "unbonding", "{}", unbonding.text);
    app.post(
        &format!("/v1/stake/{stake_id}/withdraw"),
        Some(&s.access),
        json!({}),
    )
    .await
    .assert_problem(409, "stake_locked");
    app.exec(
        "UPDATE stakes SET available_at = 1 WHERE id = $1",
        &stake_id,
    )
    .await;
    let withdrawn = app
        .post(
            &format!("/v1/stake/{stake_id}/withdraw"),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(withdrawn.body["status"], "withdrawn", "{}", withdrawn.text);
    let balances = app.get("/v1/balances", &s.access).await;
    assert!(
        balances.text.contains("\"available\":\"20000.00\""),
        "{}",
        balances.text
    );

    // Every change is an event the provider can read.
    let events = app
        .get(&format!("/v1/devices/{id}/events?limit=50"), &s.access)
        .await;
    let to: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_status"].as_str().unwrap())
        .collect();
    assert_eq!(
        to,
        [
            "pending_verification",
            "pending_stake",
            "available",
            "maintenance",
            "available",
            "busy",
            "available",
            "retired"
        ]
    );
    assert!(control.ledger.verify().await.unwrap().is_balanced());
}
