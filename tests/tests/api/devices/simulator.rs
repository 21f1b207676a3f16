//! The simulator's agents over real HTTP, from registration to a node brought up.

use iocloud_tests::{Backend, TestApp, on_both_engines};
use serde_json::json;

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
