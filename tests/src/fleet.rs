//! A provider's fleet for cluster tests: machines registered, staked and listed (each run by a
//! simulated agent over the real agent API, when asked), and a customer with credit to rent
//! them. Several suites rent from the same fleet, so it lives here.

use std::time::{Duration, Instant};

use iocloud_api::simulator::{self, SimDevice, SimOptions};
use serde_json::{Value, json};

use crate::{Answer, Backend, Session, TestApp};

/// A machine spec as `POST /v1/devices` takes it.
pub fn machine(name: &str, model: &str, gpus: i64, region: &str, price: &str) -> Value {
    let (country, lat, lon) = match region {
        "eu-central" => ("DE", 50.11, 8.68),
        "us-east" => ("US", 39.04, -77.49),
        _ => ("JP", 35.68, 139.69),
    };
    json!({
        "name": name, "gpu_model": model, "gpu_count": gpus, "cpu_cores": 64, "ram_gib": 512,
        "disk_gib": 2000, "region": region, "country": country, "location": {"lat": lat, "lon": lon},
        "bandwidth_mbps": {"up": 10000, "down": 10000}, "price_per_gpu_hour": price,
    })
}

/// `n` machines of eight H100s in Frankfurt at 2.00 USD per GPU-hour.
pub fn frankfurt(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| machine(&format!("fra-{i}"), "h100-sxm", 8, "eu-central", "2.00"))
        .collect()
}

pub struct Fleet {
    pub app: TestApp,
    /// The machines' owner, who reads them through `/v1/devices`.
    pub provider: Session,
    /// A customer with 1,000 USD of credit.
    pub customer: Session,
    pub devices: Vec<SimDevice>,
}

/// A provider with these machines, staked, verified and heard from, each run by a simulated
/// agent (unless `agents` is false: then nobody brings nodes up).
pub async fn fleet(
    b: Backend,
    specs: Vec<Value>,
    agents: bool,
    tweak: impl FnOnce(&mut iocloud_api::config::Config),
) -> Fleet {
    let options = SimOptions {
        heartbeat_secs: Some(0.3),
        node_ready_secs: 0.2,
        node_failure_rate: 0.0,
        offline_rate: 0.0,
        start_spread_secs: 0.1,
        ..SimOptions::default()
    };
    fleet_run_by(b, specs, agents.then_some(options), tweak).await
}

/// [`fleet`], its machines run by simulated agents playing `options` (none: no agents).
pub async fn fleet_run_by(
    b: Backend,
    specs: Vec<Value>,
    agents: Option<SimOptions>,
    tweak: impl FnOnce(&mut iocloud_api::config::Config),
) -> Fleet {
    let app = TestApp::spawn_with(b, |c| {
        c.signup_credit_usd = Some("1000".into());
        tweak(c);
    })
    .await;
    let provider = app.signup("provider@example.com", "GPU Farm").await;
    app.grant_credit(&provider.org_id, "1000000", "IO").await;
    let st = app
        .post(
            "/v1/stake",
            Some(&provider.access),
            json!({"amount": "1000000"}),
        )
        .await;
    assert!(st.status.is_success(), "{}", st.text);
    let (_, key) = app.api_key(&provider.access, &["write"]).await;
    let n = specs.len();
    let devices = simulator::register_specs(&app.base, &key, specs)
        .await
        .unwrap();
    if let Some(options) = agents {
        simulator::spawn(&app.base, devices.clone(), options);
        // Heartbeats reach the devices' rows at the server's next flush.
        wait_for("every device listed and heard from", || async {
            let listed = provider_devices(&app, &provider).await;
            listed.len() == n
                && listed.iter().all(|d| {
                    d["status"] == "available" && d["telemetry"]["last_heartbeat_at"].is_string()
                })
        })
        .await;
    } else {
        // Listed without an agent: verified and available, but nobody will run a node.
        app.exec(
            "UPDATE devices SET status = 'available' WHERE org_id = $1",
            &provider.org_id,
        )
        .await;
    }
    let customer = app.signup("ada@example.com", "Acme").await;
    Fleet {
        app,
        provider,
        customer,
        devices,
    }
}

/// Polls `check` until it holds, for at most a minute.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The provider's devices, as `GET /v1/devices` shows them to the provider.
pub async fn provider_devices(app: &TestApp, provider: &Session) -> Vec<Value> {
    app.items("/v1/devices", &provider.access).await
}

/// Free GPUs over all of the provider's devices.
pub async fn gpus_free(app: &TestApp, provider: &Session) -> i64 {
    provider_devices(app, provider)
        .await
        .iter()
        .map(|d| d["gpus_free"].as_i64().unwrap())
        .sum()
}

/// What a device's agent reports about one of its nodes.
pub async fn agent_report(app: &TestApp, device: &SimDevice, node: &str, body: Value) -> Answer {
    agent_post(app, device, &format!("nodes/{node}/status"), body).await
}

/// A device's agent posts `body` to `tail` under its device's agent path.
async fn agent_post(app: &TestApp, device: &SimDevice, tail: &str, body: Value) -> Answer {
    let res = app
        .client
        .post(app.url(&format!("/agent/v1/devices/{}/{tail}", device.id)))
        .bearer_auth(&device.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    TestApp::answer(res).await
}

/// The assignment of `node` that its device's agent is handed, waiting for it for at most a
/// minute.
pub async fn assignment(app: &TestApp, device: &SimDevice, node: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = app
            .client
            .get(app.url(&format!(
                "/agent/v1/devices/{}/assignments?wait_secs=5",
                device.id
            )))
            .bearer_auth(&device.token)
            .send()
            .await
            .unwrap();
        let handed = TestApp::answer(res).await;
        assert_eq!(handed.status, 200, "{}", handed.text);
        if let Some(a) = handed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == node)
        {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{node} never handed to its agent: {}",
            handed.text
        );
    }
}

/// The answer to `node`'s test that its agent computes from the bootstrap it was handed (read
/// from the database: a node reported `starting` is no longer handed out): the right one, or
/// (with `wrong`) the right one with its last digit changed.
pub async fn node_test_answer(app: &TestApp, node: &str, wrong: bool) -> String {
    let bootstrap: Value = serde_json::from_str(
        &app.scalar("SELECT bootstrap FROM node_assignments WHERE id = $1", node)
            .await,
    )
    .unwrap();
    let (modulus, puzzle, _) = iocloud_control::providers::agent::test_of(&bootstrap)
        .unwrap_or_else(|| panic!("{node} came with no test: {bootstrap}"));
    let right = iocloud_control::providers::node_test::solve(&modulus, &puzzle).unwrap();
    if !wrong {
        return right;
    }
    let mut changed = right.clone();
    let last = if changed.ends_with('0') { "1" } else { "0" };
    changed.pop();
    changed + last
}

/// The agent of `device` answers `node`'s test with `body`.
pub async fn post_node_test(app: &TestApp, device: &SimDevice, node: &str, body: Value) -> Answer {
    agent_post(app, device, &format!("nodes/{node}/test"), body).await
}

/// The agent of `device` answers `node`'s test rightly (measuring a clean 1 ms, 10 Gbit/s link
/// when the test names a peer), then reports the node ready with `endpoints`.
pub async fn ready_node(app: &TestApp, device: &SimDevice, node: &str, endpoints: Value) -> Answer {
    pass_node_test(app, device, node).await;
    agent_report(
        app,
        device,
        node,
        json!({"status": "ready", "endpoints": endpoints}),
    )
    .await
}

/// The agent of `device` answers `node`'s test rightly (a clean 1 ms, 10 Gbit/s link when the
/// test names a peer), and it passes.
pub async fn pass_node_test(app: &TestApp, device: &SimDevice, node: &str) {
    let answer = node_test_answer(app, node, false).await;
    let passed = post_node_test(
        app,
        device,
        node,
        json!({"answer": answer, "elapsed_ms": 5, "link": {"rtt_ms": 1.0, "bandwidth_mbps": 10000}}),
    )
    .await;
    assert_eq!(passed.status, 200, "{}", passed.text);
    assert_eq!(passed.body["outcome"], "passed", "{}", passed.text);
}
