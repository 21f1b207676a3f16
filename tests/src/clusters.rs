//! Clusters as their customer makes and reads them: a create that must be accepted, a cluster
//! running on a fleet of its own, the list, one cluster, waiting for a status, its events
//! (stored, or followed as they happen) and its current nodes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Backend, Fleet, Session, TestApp, fleet, frankfurt};

/// Creates a cluster that must be accepted; its id.
pub async fn create(app: &TestApp, s: &Session, spec: Value) -> String {
    let created = app.post("/v1/clusters", Some(&s.access), spec).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_string()
}

/// The organisation's clusters, as its customer lists them.
pub async fn clusters(app: &TestApp, s: &Session) -> Vec<Value> {
    app.items("/v1/clusters", &s.access).await
}

/// A cluster of `kind` with 16 GPUs on two 8-GPU nodes, running, on `machines` machines.
pub async fn running_cluster(b: Backend, machines: usize, kind: &str) -> (Fleet, String, Value) {
    let fleet = fleet(b, frankfurt(machines), true, |_| {}).await;
    let created = fleet
        .app
        .post(
            "/v1/clusters",
            Some(&fleet.customer.access),
            json!({"name": "c", "kind": kind, "gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8, "duration_hours": 2}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    let running = wait_status(&fleet.app, &fleet.customer, &id, "running").await;
    (fleet, id, running)
}

/// A cluster by id or name, which must be found.
pub async fn cluster(app: &TestApp, s: &Session, id: &str) -> Value {
    let c = app.get(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(c.status, 200, "{}", c.text);
    c.body
}

/// Polls a cluster until it is in `status`, for at most a minute; the cluster then.
pub async fn wait_status(app: &TestApp, s: &Session, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = cluster(app, s, id).await;
        if c["status"] == status {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "cluster never became {status}: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The kinds of a cluster's latest events, oldest first.
pub fn kinds(c: &Value) -> Vec<String> {
    c["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The nodes that still belong to the cluster (not those lost or replaced).
pub fn current_nodes(c: &Value) -> Vec<&Value> {
    c["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["current"] == true)
        .collect()
}

/// Server-sent events of a cluster after `after`, as they arrive.
pub async fn follow(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    after: &str,
) -> mpsc::Receiver<Value> {
    let mut res = client
        .get(format!(
            "{base}/v1/clusters/{id}/events?follow=true&after={after}"
        ))
        .bearer_auth(token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            for e in iocloud_api::ctl::drain_sse(&mut buffer) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}
