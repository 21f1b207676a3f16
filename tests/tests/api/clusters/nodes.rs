//! A running cluster's nodes: a lost node replaced (or the cluster degraded until a machine
//! comes back), a replacement whose first choice was taken elsewhere, a lost leader taking its
//! followers with it, and what a node's outcome does to its device's and provider's scores.

use std::time::{Duration, Instant};

use iocloud_api::simulator::SimDevice;
use iocloud_tests::{
    Backend, Fleet, Session, TestApp, agent_report, cluster, create, current_nodes, fleet,
    frankfurt, kinds, ledger_balances, machine, on_both_engines, ready_node, running_cluster,
    wait_status,
};
use serde_json::{Value, json};

/// The agent of `node`'s device says the node failed.
async fn fail_node(app: &TestApp, devices: &[SimDevice], node: &Value, reason: &str) {
    let device = devices.iter().find(|d| d.id == node["device_id"]).unwrap();
    let report = agent_report(
        app,
        device,
        node["id"].as_str().unwrap(),
        json!({"status": "failed", "reason": reason}),
    )
    .await;
    assert!(report.status.is_success(), "{}", report.text);
}

/// What an operator's suspension (or its end) does to a device, straight in the database.
async fn set_device_status(app: &TestApp, device: &str, status: &str) {
    let now = iocloud_db::time::now_micros();
    app.exec(
        &format!("UPDATE devices SET status = '{status}', updated_at = {now} WHERE id = $1"),
        device,
    )
    .await;
}

async fn wait_for_event(app: &TestApp, s: &Session, id: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = cluster(app, s, id).await;
        if kinds(&c).iter().any(|k| k == kind) {
            return c;
        }
        assert!(Instant::now() < deadline, "no {kind} event: {c:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_engines!(a_lost_node_is_replaced_or_the_cluster_degrades);

async fn a_lost_node_is_replaced_or_the_cluster_degrades(b: Backend) {
    let (fleet, id, running) = running_cluster(b, 3, "kubernetes").await;
    let (app, s, devices) = (fleet.app, fleet.customer, fleet.devices);
    assert!(
        running["connection"]["api_server"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{}",
        running["connection"]
    );
    // The agent of the second node says it failed.
    let lost = running["nodes"][1].clone();
    fail_node(&app, &devices, &lost, "GPU fell off the bus").await;
    // Replaced on the third machine; the cluster keeps running and bills the new node.
    let c = wait_for_event(&app, &s, &id, "node_ready").await;
    assert_eq!(c["status"], "running");
    let current = current_nodes(&c);
    assert_eq!(current.len(), 2);
    assert!(current.iter().all(|n| n["id"] != lost["id"]));
    let k = kinds(&c);
    assert!(
        k.contains(&"node_lost".to_string()) && k.contains(&"node_replaced".to_string()),
        "{k:?}"
    );
    let ended = app
        .scalar(
            "SELECT CAST(ended_at AS TEXT) FROM usage_records WHERE node_id = $1",
            lost["id"].as_str().unwrap(),
        )
        .await;
    assert!(!ended.is_empty(), "the lost node is no longer metered");

    // The failed machine's agent tears its node down, so the machine is free again. An
    // operator takes it out of service, and then the machine of the serving follower too (not
    // the control plane's: that would take the whole cluster down): that node is lost with no
    // machine left to replace it, so the cluster is degraded and the missing node not charged.
    // (The replacement may have gone to the failed machine itself, if its agent was quick.)
    let leader = running["nodes"][0]["id"].clone();
    let follower = current.iter().find(|n| n["id"] != leader).unwrap();
    let follower_device = follower["device_id"].as_str().unwrap().to_string();
    let serving: Vec<&str> = current
        .iter()
        .map(|n| n["device_id"].as_str().unwrap())
        .collect();
    let failed_device = devices
        .iter()
        .map(|d| d.id.clone())
        .find(|d| !serving.contains(&d.as_str()))
        .unwrap();
    set_device_status(&app, &failed_device, "suspended").await;
    set_device_status(&app, &follower_device, "suspended").await;
    app.server
        .state
        .control
        .clusters
        .reconcile(&id)
        .await
        .unwrap();
    let c = wait_status(&app, &s, &id, "degraded").await;
    assert!(
        c["status_reason"].as_str().unwrap().contains("not charged"),
        "{c}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM usage_records WHERE cluster_id = '{id}' AND ended_at IS NULL"
        ))
        .await,
        1,
        "only the serving node is metered"
    );
    // A machine comes back: the next look replaces the node and the cluster recovers.
    set_device_status(&app, &failed_device, "available").await;
    app.server
        .state
        .control
        .clusters
        .reconcile(&id)
        .await
        .unwrap();
    let c = wait_status(&app, &s, &id, "running").await;
    assert!(
        kinds(&c).contains(&"recovered".to_string()),
        "{:?}",
        kinds(&c)
    );
    app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    ledger_balances(&app).await;
}

on_both_engines!(a_replacement_whose_first_choice_was_taken_elsewhere_takes_the_next);

/// Another replica took the machine this replica's index ranks first for a replacement, and
/// this replica has not heard: the claim on it fails, and the same step claims the next plan
/// (its save of the cluster's row compared against the version it read, not the failed try's).
async fn a_replacement_whose_first_choice_was_taken_elsewhere_takes_the_next(b: Backend) {
    // Three machines in Frankfurt and a dearer one in Virginia, for a user in Virginia who
    // prefers cost: the cluster runs on two in Frankfurt, and a replacement's plans are the
    // cheapest (the third in Frankfurt), then the nearest (the one in Virginia).
    let mut specs = frankfurt(3);
    specs.push(machine("iad-0", "h100-sxm", 8, "us-east", "3.00"));
    let Fleet {
        app,
        provider,
        customer: s,
        devices,
    } = fleet(b, specs, true, |_| {}).await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "c", "kind": "kubernetes", "gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8,
                   "duration_hours": 2, "location": {"lat": 38.9, "lon": -77.0}, "preference": "cost"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    let running = wait_status(&app, &s, &id, "running").await;
    let serving: Vec<&str> = running["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["device_id"].as_str().unwrap())
        .collect();
    let (spare, virginia) = (devices[..3].iter(), devices[3].id.as_str());
    let taken = spare
        .map(|d| d.id.as_str())
        .find(|d| !serving.contains(d))
        .expect("the cluster runs in Frankfurt, the cheaper region");
    // Taken by "another replica": its row keeps an old stamp, so no sync of this replica's
    // index reads it again, and the index ranks it first for as long as the test runs.
    app.exec(
        "UPDATE devices SET gpus_free = 0, status = 'busy', updated_at = 0 WHERE id = $1",
        taken,
    )
    .await;
    // The second node's machine is taken out of service and its node fails.
    let lost = running["nodes"][1].clone();
    set_device_status(&app, lost["device_id"].as_str().unwrap(), "suspended").await;
    fail_node(&app, &devices, &lost, "GPU fell off the bus").await;

    let c = wait_for_event(&app, &s, &id, "node_ready").await;
    assert_eq!(c["status"], "running", "{c:#}");
    let current = current_nodes(&c);
    assert_eq!(current.len(), 2, "{c:#}");
    assert!(
        current
            .iter()
            .any(|n| n["device_id"] == virginia && n["id"] != lost["id"]),
        "replaced in Virginia, the next plan: {c:#}"
    );
    let k = kinds(&c);
    assert_eq!(
        k.iter().filter(|k| *k == "node_replaced").count(),
        1,
        "one replacement, written once: {k:?}"
    );
    // Nothing was booked on the machine taken elsewhere: none of its GPUs went back, and no
    // node of the cluster (the only one), current or past, was ever placed there.
    let taken_device = app
        .get(&format!("/v1/devices/{taken}"), &provider.access)
        .await;
    assert_eq!(taken_device.body["gpus_free"], 0, "{}", taken_device.text);
    assert!(
        c["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["device_id"] != taken),
        "{c:#}"
    );
    app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    wait_status(&app, &s, &id, "terminated").await;
    ledger_balances(&app).await;
}

on_both_engines!(a_lost_leader_takes_its_followers_and_the_cluster_comes_up_again);

/// A Ray worker serves only through its head: when the head is lost, the workers are ended
/// with it (charged to the same moment) and the cluster is brought up around a new head, its
/// new workers pointed at that head.
async fn a_lost_leader_takes_its_followers_and_the_cluster_comes_up_again(b: Backend) {
    let (fleet, id, running) = running_cluster(b, 4, "ray").await;
    let (app, s, devices) = (fleet.app, fleet.customer, fleet.devices);
    let (head, worker) = (running["nodes"][0].clone(), running["nodes"][1].clone());
    assert_eq!(
        (&head["role"], &worker["role"]),
        (&json!("head"), &json!("worker"))
    );
    fail_node(&app, &devices, &head, "raylet crashed").await;

    let c = wait_for_event(&app, &s, &id, "node_ready").await;
    assert_eq!(c["status"], "running");
    let lost = c["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "node_lost")
        .unwrap();
    let message = lost["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "node {} left with its leader {}",
            worker["id"].as_str().unwrap(),
            head["id"].as_str().unwrap()
        )),
        "{message}"
    );
    let current = current_nodes(&c);
    assert_eq!(current.len(), 2, "{c:#}");
    assert!(
        current
            .iter()
            .all(|n| n["id"] != head["id"] && n["id"] != worker["id"]),
        "both nodes replaced: {c:#}"
    );
    let new_head = current.iter().find(|n| n["role"] == "head").unwrap();
    let new_worker = current.iter().find(|n| n["role"] == "worker").unwrap();
    let bootstrap = app
        .scalar(
            "SELECT bootstrap FROM node_assignments WHERE id = $1",
            new_worker["id"].as_str().unwrap(),
        )
        .await;
    let bootstrap: Value = serde_json::from_str(&bootstrap).unwrap();
    assert_eq!(bootstrap["leader_node_id"], new_head["id"], "{bootstrap}");
    assert_eq!(
        c["connection"]["head_node_id"], new_head["id"],
        "{}",
        c["connection"]
    );
    // The old worker is charged to when its head failed, not to when the loss was noticed.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM usage_records u, node_assignments h \
             WHERE u.node_id = '{}' AND h.id = '{}' AND u.ended_at = h.failed_at",
            worker["id"].as_str().unwrap(),
            head["id"].as_str().unwrap()
        ))
        .await,
        1
    );
    app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    wait_status(&app, &s, &id, "terminated").await;
    ledger_balances(&app).await;
}

on_both_engines!(a_nodes_outcome_moves_its_devices_and_providers_scores);

/// A ready node raises its device's learned score and a failed one lowers it, a fifth of the
/// way each time, and its provider's score moves with them. (On Postgres a ready report moves
/// the device's score in the node's own statement; elsewhere after the cluster has its news.)
async fn a_nodes_outcome_moves_its_devices_and_providers_scores(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        devices,
    } = fleet(b, frankfurt(1), false, |_| {}).await;
    let device = &devices[0];
    app.exec(
        "UPDATE devices SET reliability_bps = 5000 WHERE id = $1",
        &device.id,
    )
    .await;
    // The device's and its provider's scores, in basis points, as the provider reads them.
    let scores = || {
        let (app, path, token) = (&app, format!("/v1/devices/{}", device.id), &provider.access);
        async move {
            let d = app.get(&path, token).await;
            assert_eq!(d.status, 200, "{}", d.text);
            let bps = |k: &str| (d.body["uptime"][k].as_f64().unwrap() * 10_000.0).round() as i64;
            (bps("reliability"), bps("provider_reliability"))
        }
    };
    let (_, provider_before) = scores().await;
    let id = create(
        &app,
        &s,
        json!({"name": "scored", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
    )
    .await;
    let c = cluster(&app, &s, &id).await;
    let node = current_nodes(&c)[0]["id"].as_str().unwrap().to_string();
    let started = agent_report(&app, device, &node, json!({"status": "starting"})).await;
    assert!(started.status.is_success(), "{}", started.text);
    let ready = ready_node(&app, device, &node, json!({"http": "10.0.0.1:8080"})).await;
    assert!(ready.status.is_success(), "{}", ready.text);
    wait_status(&app, &s, &id, "running").await;
    let (device_score, provider_score) = scores().await;
    assert_eq!(
        device_score, 6_000,
        "5,000 moved a fifth of the way to 10,000"
    );
    assert!(
        provider_score > provider_before,
        "the provider's score rose too: {provider_before} -> {provider_score}"
    );
    // The same report again is no news: nothing moves twice.
    let again = agent_report(
        &app,
        device,
        &node,
        json!({"status": "ready", "endpoints": {"http": "10.0.0.1:8080"}}),
    )
    .await;
    assert!(again.status.is_success(), "{}", again.text);
    assert_eq!(scores().await.0, 6_000);

    let failed = agent_report(
        &app,
        device,
        &node,
        json!({"status": "failed", "reason": "the image crashed"}),
    )
    .await;
    assert!(failed.status.is_success(), "{}", failed.text);
    let (device_score, _) = scores().await;
    assert_eq!(device_score, 4_800, "6,000 moved a fifth of the way to 0");
}
