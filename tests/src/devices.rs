//! A provider's device as its agent drives it over the agent API: the rig's spec, the agent's
//! requests (with the device token), verification answered, and a provider staked for one
//! verified rig. The device suites start from these.

use iocloud_control::providers::agent::Heartbeat;
use iocloud_control::providers::verification;
use serde_json::{Value, json};

use crate::{Answer, Backend, Session, TestApp};

/// An 8-GPU H100 rig in Frankfurt at 2.10 per GPU-hour, as `POST /v1/devices` takes it.
pub fn rig(name: &str) -> Value {
    json!({"name": name, "gpu_model": "h100-sxm", "gpu_count": 8, "cpu_cores": 64, "ram_gib": 512,
        "disk_gib": 2000, "region": "eu-central", "country": "DE", "location": {"lat": 50.11, "lon": 8.68},
        "bandwidth_mbps": {"up": 1000, "down": 1000}, "price_per_gpu_hour": "2.10"})
}

/// A request as a device's agent sends it, with the device's token: a GET, or a POST of `body`.
pub async fn agent(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> Answer {
    let url = app.url(path);
    let req = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url).json(&body),
    };
    TestApp::answer(req.bearer_auth(token).send().await.unwrap()).await
}

/// A provider with enough stake for one verified rig: (app, provider, device id, token).
pub async fn staked_rig(b: Backend) -> (TestApp, Session, String, String) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    app.grant_credit(&s.org_id, "16000", "IO").await;
    app.post("/v1/stake", Some(&s.access), json!({"amount": "16000"}))
        .await;
    let (id, token) = verified_rig(&app, &s, "rig-1").await;
    (app, s, id, token)
}

/// Registers a rig and brings it through verification; answers (device id, token).
pub async fn verified_rig(app: &TestApp, s: &Session, name: &str) -> (String, String) {
    let (id, token, difficulty) = verified_device(app, s, rig(name)).await;
    assert_eq!(difficulty, 18, "an H100 is datacenter class");
    (id, token)
}

/// Registers the device `spec` describes and brings it through verification; answers (device
/// id, token, the challenge's difficulty).
pub async fn verified_device(app: &TestApp, s: &Session, spec: Value) -> (String, String, u32) {
    let created = app.post("/v1/devices", Some(&s.access), spec).await;
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
    (id, token, difficulty)
}

/// A heartbeat's telemetry with `free` GPUs free.
pub fn beat(free: i64) -> Value {
    json!({"free_gpus": free, "utilization_pct": 37, "temperature_c": 64, "agent_version": "1.4.2"})
}

/// A CPU-only machine: 32 cores, 1 Gbps, as `POST /v1/devices` takes it.
pub fn cpu_box(name: &str) -> Value {
    json!({"name": name, "gpu_count": 0, "cpu_cores": 32, "ram_gib": 128,
        "disk_gib": 500, "region": "eu-central", "country": "DE", "location": {"lat": 50.11, "lon": 8.68},
        "bandwidth_mbps": {"up": 1000, "down": 1000}, "price_per_gpu_hour": "0.40"})
}

/// A heartbeat as an agent sends it: free GPUs, GPU and CPU use (percent), running nodes.
pub fn heartbeat(free: i64, gpu_pct: i64, cpu_pct: i64, nodes: i64) -> Heartbeat {
    serde_json::from_value(json!({"free_gpus": free, "utilization_pct": gpu_pct,
        "cpu_utilization_pct": cpu_pct, "running_nodes": nodes, "temperature_c": 60,
        "agent_version": "1.4.2"}))
    .unwrap()
}

/// Stores the hour's proof of a device (hours since the epoch) as its agent's answer would
/// have: `outcome` as answered ten minutes in, or never answered (`None`).
pub async fn proof(app: &TestApp, device: &str, org: &str, hour: i64, outcome: Option<&str>) {
    const H: i64 = 3_600_000_000;
    let at = hour * H + 10 * 60_000_000;
    let sql = format!(
        "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline, answered_at, outcome, detail) \
         VALUES ($1, {hour}, '{org}', 'n', 18, 80, {at}, {}, {}, {}, {})",
        at + 30_000_000,
        outcome.map_or("NULL".into(), |_| (at + 1_000_000).to_string()),
        outcome.map_or("NULL".into(), |o| format!("'{o}'")),
        match outcome {
            Some("wrong_answer") => "'the proof of work''s answer was wrong'",
            _ => "NULL",
        }
    );
    app.exec(&sql, device).await;
}
