//! The supply side: catalogs, device registration, verification, stake, the agent protocol,
//! heartbeats, offline sweeps and node assignments.
//!
//! One file per surface is this suite's convention; the agent helpers here serve every test of it.

use iocloud_control::providers::verification;
use iocloud_tests::{Answer, Backend, Session, TestApp, on_both_engines};
use serde_json::{Value, json};

on_both_engines!(
    catalogs_are_public,
    a_device_from_registration_to_retirement,
    bad_device_input_changes_nothing,
    verification_fails_wrong_late_or_silent,
    silent_devices_go_offline_and_come_back,
    agents_are_held_to_their_own_device,
    devices_over_graphql,
);

fn rig(name: &str) -> Value {
    json!({"name": name, "gpu_model": "h100-sxm", "gpu_count": 8, "cpu_cores": 64, "ram_gib": 512,
        "disk_gib": 2000, "region": "eu-central", "country": "DE", "location": {"lat": 50.11, "lon": 8.68},
        "bandwidth_mbps": {"up": 1000, "down": 1000}, "price_per_gpu_hour": "2.10"})
}

/// Gives an organisation $IO, as an operator would until $IO arrives on chain.
async fn agent(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> Answer {
    let url = app.url(path);
    let req = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url).json(&body),
    };
    TestApp::answer(req.bearer_auth(token).send().await.unwrap()).await
}

/// A provider with enough stake for one verified rig: (app, provider, device id, token).
async fn staked_rig(b: Backend) -> (TestApp, Session, String, String) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    app.grant_credit(&s.org_id, "16000", "IO").await;
    app.post("/v1/stake", Some(&s.access), json!({"amount": "16000"}))
        .await;
    let (id, token) = verified_rig(&app, &s, "rig-1").await;
    (app, s, id, token)
}

/// Registers a rig and brings it through verification; answers (device id, token).
async fn verified_rig(app: &TestApp, s: &Session, name: &str) -> (String, String) {
    let created = app.post("/v1/devices", Some(&s.access), rig(name)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    let token = created.body["token"].as_str().unwrap().to_string();
    let hello = agent(
        app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/hello"),
        json!({"agent_version": "1.4.2"}),
    )
    .await;
    assert_eq!(hello.status, 200, "{}", hello.text);
    let c = &hello.body["challenge"];
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let difficulty = c["difficulty"].as_u64().unwrap() as u32;
    assert_eq!(difficulty, 18, "an H100 is datacenter class");
    let n = tokio::task::spawn_blocking(move || (verification::solve(&nonce, difficulty), nonce))
        .await
        .unwrap();
    let answered = agent(
        app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/challenge"),
        json!({"nonce": n.1, "answer": n.0}),
    )
    .await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    (id, token)
}

fn beat(free: i64) -> Value {
    json!({"free_gpus": free, "utilization_pct": 37, "temperature_c": 64, "agent_version": "1.4.2"})
}

async fn catalogs_are_public(b: Backend) {
    let app = TestApp::spawn(b).await;
    let models = app.get_public("/v1/gpu-models").await;
    assert_eq!(models.status, 200, "{}", models.text);
    let items = models.body["items"].as_array().unwrap();
    for id in [
        "h200",
        "h100-sxm",
        "h100-pcie",
        "a100-80gb",
        "a100-40gb",
        "l40s",
        "rtx-a6000",
        "rtx-6000-ada",
        "rtx-4090",
        "rtx-3090",
        "a10",
        "t4",
    ] {
        assert!(
            items.iter().any(|m| m["id"] == id),
            "{id} is in the catalog"
        );
    }
    let h100 = items.iter().find(|m| m["id"] == "h100-sxm").unwrap();
    assert_eq!(h100["staking_multiplier"], 10);
    assert_eq!(h100["vram_gib"], 80);
    assert_eq!(h100["class"], "datacenter");
    assert!(h100["price_floor"].is_string() && h100["price_ceiling"].is_string());
    let t4 = items.iter().find(|m| m["id"] == "t4").unwrap();
    assert_eq!(t4["staking_multiplier"], 1);

    let regions = app.get_public("/v1/regions").await;
    let regions = regions.body["items"].as_array().unwrap().clone();
    assert!(regions.len() >= 20);
    let continents: std::collections::BTreeSet<&str> = regions
        .iter()
        .map(|r| r["continent"].as_str().unwrap())
        .collect();
    for c in [
        "north-america",
        "south-america",
        "europe",
        "asia",
        "oceania",
        "africa",
    ] {
        assert!(continents.contains(c), "a region in {c}");
    }
    for code in [
        "us-east",
        "us-west",
        "eu-central",
        "eu-west",
        "ap-northeast",
        "ap-southeast",
    ] {
        assert!(regions.iter().any(|r| r["code"] == code), "{code}");
    }
}

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

async fn bad_device_input_changes_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "vram_gib",
            json!({"vram_gib": 24}),
            "VRAM that is not the model's",
        ),
        (
            "gpu_count",
            json!({"gpu_count": 9}),
            "more GPUs than a node holds",
        ),
        (
            "gpu_count",
            json!({"gpu_count": 0}),
            "no GPUs of a GPU model",
        ),
        (
            "gpu_model",
            json!({"gpu_model": "h900"}),
            "an unknown model",
        ),
        (
            "gpu_model",
            json!({"gpu_model": null}),
            "GPUs without a model",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "0.10"}),
            "under the floor",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "99"}),
            "over the ceiling",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "two"}),
            "not a number",
        ),
        (
            "region",
            json!({"region": "mars-north"}),
            "an unknown region",
        ),
        (
            "location.lat",
            json!({"location": {"lat": 91.0, "lon": 0.0}}),
            "off the globe",
        ),
        (
            "location.lon",
            json!({"location": {"lat": 0.0, "lon": -180.5}}),
            "off the globe",
        ),
        ("country", json!({"country": "de"}), "not ISO alpha-2"),
        ("cpu_cores", json!({"cpu_cores": 0}), "no CPU"),
        (
            "bandwidth_mbps.up",
            json!({"bandwidth_mbps": {"up": 0, "down": 10}}),
            "no uplink",
        ),
        ("name", json!({"name": "  "}), "a blank name"),
    ];
    for (field, change, why) in cases {
        let mut body = rig("rig-x");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = app.post("/v1/devices", Some(&s.access), body).await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], field, "{why}: {}", a.text);
    }
    let mut unknown = rig("rig-x");
    unknown["gpu_colour"] = json!("green");
    app.post("/v1/devices", Some(&s.access), unknown)
        .await
        .assert_problem(422, "invalid_body");
    // A CPU-only machine is fine, priced per node-hour, and needs one unit of stake.
    let mut cpu = rig("cpu-1");
    cpu["gpu_model"] = Value::Null;
    cpu["gpu_count"] = json!(0);
    cpu["price_per_gpu_hour"] = json!("0.08");
    let c = app.post("/v1/devices", Some(&s.access), cpu).await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(c.body["required_stake"], "200.00");
    assert_eq!(app.items("/v1/devices", &s.access).await.len(), 1);
    // The history of a refused device would have no device to be read through.
    assert_eq!(app.count("SELECT COUNT(*) FROM device_events").await, 1);
    // A viewer cannot register.
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.post("/v1/devices", Some(&viewer.access), rig("rig-v"))
        .await
        .assert_problem(403, "forbidden");
    // Bad price updates change nothing.
    let id = c.body["id"].as_str().unwrap();
    app.patch(
        &format!("/v1/devices/{id}"),
        &s.access,
        json!({"price_per_gpu_hour": "5"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.get("/v1/devices?status=flying", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    let still = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(still.body["price_per_gpu_hour"], "0.08");
}

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

async fn devices_over_graphql(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let q = "mutation($input: DeviceInput!) { registerDevice(input: $input) { token device { id status gpuModel requiredStake } } }";
    let input = json!({"name": "rig-g", "gpuModel": "rtx-4090", "gpuCount": 2, "cpuCores": 16, "ramGib": 64,
        "diskGib": 1000, "region": "us-west", "country": "US", "lat": 37.3, "lon": -121.9,
        "bandwidthUpMbps": 500, "bandwidthDownMbps": 1000, "pricePerGpuHour": "0.40"});
    let r = app
        .graphql(Some(&s.access), q, json!({"input": input}))
        .await;
    let created = &r.body["data"]["registerDevice"];
    assert!(
        created["token"].as_str().unwrap().starts_with("iodt_"),
        "{}",
        r.text
    );
    assert_eq!(created["device"]["status"], "pending_verification");
    assert_eq!(created["device"]["requiredStake"], "400.00");
    let list = app
        .graphql(
            Some(&s.access),
            "{ devices { items { name gpuModel pricePerGpuHour } } gpuModels { id } regions { code } }",
            json!({}),
        )
        .await;
    assert_eq!(list.body["data"]["devices"]["items"][0]["name"], "rig-g");
    assert!(list.body["data"]["gpuModels"].as_array().unwrap().len() >= 12);
    let mut bad = input.clone();
    bad["pricePerGpuHour"] = json!("9.99");
    bad["name"] = json!("rig-h");
    let e = app.graphql(Some(&s.access), q, json!({"input": bad})).await;
    assert_eq!(
        e.body["errors"][0]["extensions"]["code"], "validation_failed",
        "{}",
        e.text
    );
    assert_eq!(
        e.body["errors"][0]["extensions"]["field"],
        "price_per_gpu_hour"
    );
    assert_eq!(app.items("/v1/devices", &s.access).await.len(), 1);
}

on_both_engines!(simulated_agents_verify_heartbeat_and_run_nodes);

/// The simulator's agents over real HTTP: registered with an API key, verified, listed once
/// staked, heard from, and bringing an assigned node to ready.
async fn simulated_agents_verify_heartbeat_and_run_nodes(b: Backend) {
    use iocloud_api::simulator::{self, SimOptions};
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    app.grant_credit(&s.org_id, "200000", "IO").await;
    app.post("/v1/stake", Some(&s.access), json!({"amount": "200000"}))
        .await;
    let (_, key) = app.api_key(&s.access, &["write"]).await;
    let devices = simulator::register(&app.base, &key, 4, 3).await.unwrap();
    assert_eq!(devices.len(), 4);
    let first = devices[0].clone();
    let stats = simulator::spawn(
        &app.base,
        devices,
        SimOptions {
            heartbeat_secs: Some(0.2),
            node_ready_secs: 0.2,
            node_failure_rate: 0.0,
            offline_rate: 0.0,
            start_spread_secs: 0.1,
            ..SimOptions::default()
        },
    );
    let control = &app.server.state.control;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // Heartbeats reach the devices at the server's next flush.
        let listed = app
            .items("/v1/devices", &s.access)
            .await
            .iter()
            .filter(|d| {
                d["status"] == "available" && d["telemetry"]["last_heartbeat_at"].is_string()
            })
            .count();
        if listed == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{listed} of 4 listed and heard from; {stats:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let node = control
        .agents
        .assign_node(
            &first.id,
            "clu_sim",
            "org_customer",
            1,
            &json!({"kind": "container", "image": "busybox"}),
        )
        .await
        .unwrap();
    loop {
        let status = app
            .scalar("SELECT status FROM node_assignments WHERE id = $1", &node)
            .await;
        if status == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node is {status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(stats.heartbeats.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    assert_eq!(stats.verified.load(std::sync::atomic::Ordering::Relaxed), 4);
}

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

on_both_engines!(a_cpu_only_device_runs_one_node_at_a_time);

async fn a_cpu_only_device_runs_one_node_at_a_time(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "CPU Farm").await;
    let mut cpu = rig("cpu-1");
    cpu["gpu_model"] = Value::Null;
    cpu["gpu_count"] = json!(0);
    cpu["price_per_gpu_hour"] = json!("0.08");
    let c = app.post("/v1/devices", Some(&s.access), cpu).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    // Listed (verification and stake are covered by the other tests).
    app.exec(
        "UPDATE devices SET status = 'available', verified_at = 1 WHERE id = $1",
        &id,
    )
    .await;
    let control = &app.server.state.control;
    let spec = json!({"kind": "container", "image": "busybox"});
    control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 1, &spec)
        .await
        .expect_err("a CPU-only device has no GPU to give");
    let node = control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 0, &spec)
        .await
        .unwrap();
    control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 0, &spec)
        .await
        .expect_err("one node at a time");
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "busy");
    let token = app
        .post(
            &format!("/v1/devices/{id}/token"),
            Some(&s.access),
            json!({}),
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
        json!({"status": "released"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "available");
    control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 0, &spec)
        .await
        .unwrap();
}

on_both_engines!(a_waiting_agent_is_woken_by_its_assignment);

async fn a_waiting_agent_is_woken_by_its_assignment(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;
    let started = std::time::Instant::now();
    let path = format!("/agent/v1/devices/{id}/assignments?wait_secs=20");
    let poll = agent(&app, &token, "GET", &path, json!({}));
    let assign = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.server
            .state
            .control
            .agents
            .assign_node(&id, "clu_w", "org_customer", 8, &json!({"kind": "ray"}))
            .await
            .unwrap()
    };
    let (answer, node) = tokio::join!(poll, assign);
    assert_eq!(
        answer.body["items"][0]["id"],
        node.as_str(),
        "{}",
        answer.text
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "woken, not timed out: {:?}",
        started.elapsed()
    );
}

on_both_engines!(an_agent_told_nothing_is_still_given_the_next_node);

/// An agent that has reported on every node it was given waits for more without the server
/// reading (it knows there is nothing); a node assigned after that still reaches it at once,
/// whether it is waiting at the time or comes back later.
async fn an_agent_told_nothing_is_still_given_the_next_node(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;
    let control = &app.server.state.control;
    let now = format!("/agent/v1/devices/{id}/assignments?wait_secs=0");
    let items = |a: &Answer| -> Vec<String> {
        a.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = control
        .agents
        .assign_node(&id, "clu_1", "org_customer", 2, &json!({"kind": "ray"}))
        .await
        .unwrap();
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        [first.as_str()]
    );
    let started = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{first}/status"),
        json!({"status": "starting"}),
    )
    .await;
    assert_eq!(started.status, 204, "{}", started.text);
    let empty: [String; 0] = [];
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        empty
    );

    // Waiting when the next node comes.
    let wait = format!("/agent/v1/devices/{id}/assignments?wait_secs=20");
    let t0 = std::time::Instant::now();
    let later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        control
            .agents
            .assign_node(&id, "clu_2", "org_customer", 2, &json!({"kind": "ray"}))
            .await
            .unwrap()
    };
    let (answer, second) = tokio::join!(agent(&app, &token, "GET", &wait, json!({})), later);
    assert_eq!(items(&answer), [second.as_str()]);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    let ready = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{second}/status"),
        json!({"status": "ready"}),
    )
    .await;
    assert_eq!(ready.status, 204, "{}", ready.text);
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        empty
    );

    // Not waiting when it comes: the next poll that would wait answers it at once.
    let third = control
        .agents
        .assign_node(&id, "clu_3", "org_customer", 2, &json!({"kind": "ray"}))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let answer = agent(&app, &token, "GET", &wait, json!({})).await;
    assert_eq!(items(&answer), [third.as_str()]);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
}

on_both_engines!(a_device_is_available_again_only_when_its_last_node_is_released);

/// GPUs come back node by node: a device sharing its GPUs between two nodes stays busy while
/// either holds some, becomes available with the second release (one event, its reason naming
/// that node), and a release said twice gives nothing back twice.
async fn a_device_is_available_again_only_when_its_last_node_is_released(b: Backend) {
    let (app, s, id, token) = staked_rig(b).await;
    let control = &app.server.state.control;
    let spec = json!({"kind": "container", "image": "busybox"});
    let first = control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 3, &spec)
        .await
        .unwrap();
    let second = control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 5, &spec)
        .await
        .unwrap();
    let release = |node: String| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            agent(
                app,
                token,
                "POST",
                &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
                json!({"status": "released"}),
            )
            .await
        }
    };
    let path = format!("/v1/devices/{id}");
    let device = || app.get(&path, &s.access);

    assert_eq!(release(first.clone()).await.status, 204);
    let d = device().await;
    assert_eq!(d.body["status"], "busy", "{}", d.text);
    assert_eq!(d.body["gpus_free"], 3);
    // Said again (an agent's retry): nothing more comes back.
    assert_eq!(release(first.clone()).await.status, 204);
    assert_eq!(device().await.body["gpus_free"], 3);

    assert_eq!(release(second.clone()).await.status, 204);
    let d = device().await;
    assert_eq!(d.body["status"], "available", "{}", d.text);
    assert_eq!(d.body["gpus_free"], 8);
    assert_eq!(release(second.clone()).await.status, 204);
    assert_eq!(device().await.body["gpus_free"], 8);

    let events = app
        .get(&format!("/v1/devices/{id}/events?limit=50"), &s.access)
        .await;
    let moves: Vec<(&str, &str)> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| matches!(e["to_status"].as_str(), Some("busy" | "available")))
        .map(|e| {
            (
                e["to_status"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    let (assigned, released) = (
        format!("node {first} assigned"),
        format!("node {second} released"),
    );
    assert_eq!(
        moves,
        [
            ("available", moves[0].1),
            ("busy", assigned.as_str()),
            ("available", released.as_str()),
        ],
        "{}",
        events.text
    );
}
