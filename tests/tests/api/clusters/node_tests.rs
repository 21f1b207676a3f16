//! The test every cluster node answers before it is ready: handed with the bootstrap, a wrong,
//! late or badly linked answer failing the node (replaced, never billed, its device's score
//! lowered, the answer kept), a follower's link measured to its leader feeding placement's
//! latency model, bad answers refused, and the simulator's slow nodes failing.

use iocloud_api::simulator::{SimDevice, SimOptions};
use iocloud_tests::{
    Backend, Fleet, Session, TestApp, agent_report, assignment, cluster, create, current_nodes,
    fleet, fleet_run_by, frankfurt, node_test_answer, on_both_engines, post_node_test, ready_node,
    wait_status,
};
use serde_json::{Value, json};

/// The cluster's current node of `role` other than `not` (once its replacement is there), and
/// the simulated device it is on.
async fn replacement<'a>(
    app: &TestApp,
    s: &Session,
    (id, role): (&str, &str),
    not: &str,
    devices: &'a [SimDevice],
) -> (Value, &'a SimDevice) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let node = loop {
        let c = cluster(app, s, id).await;
        if let Some(n) = current_nodes(&c)
            .into_iter()
            .find(|n| n["id"] != not && n["role"] == role && n["status"] != "failed")
        {
            break n.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no replacement: {c:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let device = devices.iter().find(|d| d.id == node["device_id"]).unwrap();
    (node, device)
}

fn id_of(node: &Value) -> String {
    node["id"].as_str().unwrap().to_string()
}

/// Two eight-H100 machines nobody's agent runs, and a one-node container cluster on them: the
/// fleet, the cluster's id, its node's id, and the index of the node's device.
async fn one_node_cluster(b: Backend) -> (Fleet, String, String, usize) {
    let fleet = fleet(b, frankfurt(2), false, |_| {}).await;
    let id = create(
        &fleet.app,
        &fleet.customer,
        json!({"name": "tested", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
    )
    .await;
    let c = cluster(&fleet.app, &fleet.customer, &id).await;
    let first = current_nodes(&c)[0].clone();
    let at = fleet
        .devices
        .iter()
        .position(|d| d.id == first["device_id"])
        .unwrap();
    (fleet, id, id_of(&first), at)
}

on_both_engines!(a_node_that_answers_its_test_wrongly_is_replaced_and_never_billed);

async fn a_node_that_answers_its_test_wrongly_is_replaced_and_never_billed(b: Backend) {
    let (
        Fleet {
            app,
            customer: s,
            provider,
            devices,
        },
        id,
        node,
        at,
    ) = one_node_cluster(b).await;
    let device = &devices[at];
    app.exec(
        "UPDATE devices SET reliability_bps = 5000 WHERE id = $1",
        &device.id,
    )
    .await;

    // Handed with its test: eight H100s, ten lanes each (one per 100 fp16 TFLOPS).
    let handed = assignment(&app, device, &node).await;
    let test = &handed["bootstrap"]["test"];
    assert_eq!(test["kind"], "squarings", "{handed:#}");
    assert_eq!(test["lanes"], 80);
    assert_eq!(test["squarings"], 50);
    assert_eq!(test["limit_ms"], 120_000);
    assert!(test["peer"].is_null(), "a lone node measures no link");
    let started = agent_report(&app, device, &node, json!({"status": "starting"})).await;
    assert!(started.status.is_success(), "{}", started.text);
    // Ready before the test is answered: refused, and nothing moves.
    agent_report(
        &app,
        device,
        &node,
        json!({"status": "ready", "endpoints": {"http": "10.0.0.1:8080"}}),
    )
    .await
    .assert_problem(409, "node_test_pending");
    assert_eq!(cluster(&app, &s, &id).await["status"], "provisioning");

    // A wrong answer, however fast, fails the node.
    let wrong = node_test_answer(&app, &node, true).await;
    let judged = post_node_test(
        &app,
        device,
        &node,
        json!({"answer": wrong, "elapsed_ms": 1}),
    )
    .await;
    assert_eq!(judged.status, 200, "{}", judged.text);
    assert_eq!(judged.body["outcome"], "wrong_answer", "{}", judged.text);
    // The same answer again is told the same; another answer is refused: the first stands.
    let again = post_node_test(
        &app,
        device,
        &node,
        json!({"answer": wrong, "elapsed_ms": 1}),
    )
    .await;
    assert_eq!(again.body["outcome"], "wrong_answer", "{}", again.text);
    let right = node_test_answer(&app, &node, false).await;
    post_node_test(
        &app,
        device,
        &node,
        json!({"answer": right, "elapsed_ms": 1}),
    )
    .await
    .assert_problem(409, "node_test_answered");
    agent_report(
        &app,
        device,
        &node,
        json!({"status": "ready", "endpoints": {"http": "10.0.0.1:8080"}}),
    )
    .await
    .assert_problem(409, "invalid_state");

    // Replaced on the other machine, which answers rightly: the cluster runs.
    let (second, second_device) = replacement(&app, &s, (&id, "container"), &node, &devices).await;
    assert_ne!(second_device.id, device.id);
    let second_id = id_of(&second);
    let ready = ready_node(
        &app,
        second_device,
        &second_id,
        json!({"http": "10.0.0.2:8080"}),
    )
    .await;
    assert!(ready.status.is_success(), "{}", ready.text);
    let running = wait_status(&app, &s, &id, "running").await;
    let failed = running["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == node.as_str())
        .unwrap();
    // Out of the cluster, and handed back to its agent to tear down.
    assert_eq!(failed["current"], false, "{failed}");
    assert_eq!(failed["status"], "releasing", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("failed its node test: the answer is not the test's"),
        "{failed}"
    );

    // Billed for the replacement only.
    let records = |node: &str| {
        let sql = format!("SELECT COUNT(*) FROM usage_records WHERE node_id = '{node}'");
        let app = &app;
        async move { app.count(&sql).await }
    };
    assert_eq!(records(&node).await, 0, "the failed node is never billed");
    assert_eq!(records(&second_id).await, 1);
    // Its device's score fell a fifth of the way to 0; the answer is kept as evidence.
    assert_eq!(
        app.scalar(
            "SELECT CAST(reliability_bps AS TEXT) FROM devices WHERE id = $1",
            &device.id
        )
        .await,
        "4000"
    );
    assert_eq!(
        app.scalar("SELECT outcome FROM node_tests WHERE node_id = $1", &node)
            .await,
        "wrong_answer"
    );
    assert_eq!(
        app.scalar("SELECT answer FROM node_tests WHERE node_id = $1", &node)
            .await,
        wrong
    );

    // Two more failed tests of the device the same day (earlier rentals' nodes), and the
    // detectors open a `failed_proofs` case citing all three.
    let now = iocloud_db::time::now_micros();
    for (i, outcome) in ["wrong_answer", "too_slow"].iter().enumerate() {
        app.exec(
            &format!(
                "INSERT INTO node_tests (node_id, cluster_id, device_id, org_id, key_id, seed, lanes, squarings, limit_ms, issued_at, outcome, reason, answered_at) \
                 SELECT 'nod_earlier{i}', cluster_id, device_id, org_id, key_id, seed, lanes, squarings, limit_ms, issued_at, '{outcome}', NULL, {} \
                 FROM node_tests WHERE node_id = $1",
                now - 3_600_000_000
            ),
            &node,
        )
        .await;
    }
    let slashing = &app.server.state.control.slashing;
    assert_eq!(slashing.detect(now).await.unwrap(), 1);
    let cases = app.items("/v1/slashing/cases", &provider.access).await;
    assert_eq!(cases[0]["rule"], "failed_proofs", "{cases:?}");
    let evidence = cases[0]["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 3);
    assert!(
        evidence.iter().any(|e| e["kind"] == "node_test"
            && e["ref"] == node.as_str()
            && e["summary"]
                .as_str()
                .unwrap()
                .starts_with("node test wrong answer")),
        "{evidence:?}"
    );
}

on_both_engines!(a_follower_measures_its_link_and_placement_learns_the_round_trip);

async fn a_follower_measures_its_link_and_placement_learns_the_round_trip(b: Backend) {
    let Fleet {
        app,
        customer: s,
        devices,
        ..
    } = fleet(b, frankfurt(4), false, |_| {}).await;
    let quote = |gpus: u32| {
        let (app, s) = (&app, &s);
        async move {
            let q = app
                .post(
                    "/v1/quotes",
                    Some(&s.access),
                    json!({"gpu_model": "h100-sxm", "gpu_count": gpus, "gpus_per_node": 8, "duration_hours": 1, "regions": ["eu-central"]}),
                )
                .await;
            assert_eq!(q.status, 201, "{}", q.text);
            q.body["plans"][0]["estimated_rtt_ms"].as_u64().unwrap()
        }
    };
    // Within one metro the distance model says 2 ms.
    assert_eq!(quote(16).await, 2);

    let id = create(
        &app,
        &s,
        json!({"name": "ray", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8, "duration_hours": 1}),
    )
    .await;
    let c = cluster(&app, &s, &id).await;
    let device_of = |n: &Value| devices.iter().find(|d| d.id == n["device_id"]).unwrap();
    let head = current_nodes(&c)
        .into_iter()
        .find(|n| n["role"] == "head")
        .unwrap()
        .clone();
    let head_id = id_of(&head);
    let worker = current_nodes(&c)
        .into_iter()
        .find(|n| n["role"] == "worker")
        .unwrap()
        .clone();
    let worker_id = id_of(&worker);
    let ready = ready_node(
        &app,
        device_of(&head),
        &head_id,
        json!({"ray": "10.0.0.1:6379"}),
    )
    .await;
    assert!(ready.status.is_success(), "{}", ready.text);

    // The worker, started once its head is up, measures its link to the head.
    let handed = assignment(&app, device_of(&worker), &worker_id).await;
    assert_eq!(
        handed["bootstrap"]["test"]["peer"]["node_id"],
        head_id.as_str()
    );
    let answer = node_test_answer(&app, &worker_id, false).await;
    let unmeasured = post_node_test(
        &app,
        device_of(&worker),
        &worker_id,
        json!({"answer": answer, "elapsed_ms": 3}),
    )
    .await;
    unmeasured.assert_problem(422, "validation_failed");
    assert_eq!(unmeasured.body["field"], "link");
    // 100 Mbit/s where both machines claim 10 Gbit/s: the worker fails and is replaced.
    let short = post_node_test(
        &app,
        device_of(&worker),
        &worker_id,
        json!({"answer": answer, "elapsed_ms": 3, "link": {"rtt_ms": 0.9, "bandwidth_mbps": 100}}),
    )
    .await;
    assert_eq!(short.body["outcome"], "bandwidth_short", "{}", short.text);
    assert!(
        short.body["detail"]
            .as_str()
            .unwrap()
            .contains("10000 Mbit/s"),
        "{}",
        short.text
    );
    let (second, second_device) =
        replacement(&app, &s, (&id, "worker"), &worker_id, &devices).await;
    let second_id = id_of(&second);
    let handed = assignment(&app, second_device, &second_id).await;
    assert_eq!(
        handed["bootstrap"]["test"]["peer"]["node_id"],
        head_id.as_str()
    );
    let answer = node_test_answer(&app, &second_id, false).await;
    let passed = post_node_test(
        &app,
        second_device,
        &second_id,
        json!({"answer": answer, "elapsed_ms": 3, "link": {"rtt_ms": 7.4, "bandwidth_mbps": 9400}}),
    )
    .await;
    assert_eq!(passed.body["outcome"], "passed", "{}", passed.text);
    let ready = agent_report(&app, second_device, &second_id, json!({"status": "ready"})).await;
    assert!(ready.status.is_success(), "{}", ready.text);
    wait_status(&app, &s, &id, "running").await;

    // What was measured is what placement now counts within the metro: 7.4 ms, not 2.
    assert_eq!(
        app.scalar(
            "SELECT CAST(rtt_us AS TEXT) FROM region_latency WHERE region_a = $1 AND region_b = 'eu-central'",
            "eu-central"
        )
        .await,
        "7400"
    );
    assert_eq!(quote(8).await, 8);
}

on_both_engines!(node_test_answers_are_checked_before_anything_moves);

async fn node_test_answers_are_checked_before_anything_moves(b: Backend) {
    let (
        Fleet {
            app,
            customer: s,
            devices,
            ..
        },
        id,
        node,
        at,
    ) = one_node_cluster(b).await;
    let (device, other) = (&devices[at], &devices[1 - at]);
    let right = node_test_answer(&app, &node, false).await;
    for (body, field) in [
        (json!({"answer": "xyz", "elapsed_ms": 1}), "answer"),
        (
            json!({"answer": "ab".repeat(33), "elapsed_ms": 1}),
            "answer",
        ),
        (json!({"answer": right, "elapsed_ms": -1}), "elapsed_ms"),
        (
            json!({"answer": right, "elapsed_ms": 1, "link": {"rtt_ms": 0.0, "bandwidth_mbps": 10}}),
            "link.rtt_ms",
        ),
        (
            json!({"answer": right, "elapsed_ms": 1, "link": {"rtt_ms": 1.0, "bandwidth_mbps": 0}}),
            "link.bandwidth_mbps",
        ),
    ] {
        let refused = post_node_test(&app, device, &node, body).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    post_node_test(
        &app,
        device,
        &node,
        json!({"answer": right, "elapsed_ms": 1, "extra": true}),
    )
    .await
    .assert_problem(422, "invalid_body");
    // Another device's agent cannot answer for this node, nor can anyone for a node of nobody.
    post_node_test(
        &app,
        other,
        &node,
        json!({"answer": right, "elapsed_ms": 1}),
    )
    .await
    .assert_problem(404, "not_found");
    post_node_test(
        &app,
        device,
        "nod_nobody",
        json!({"answer": right, "elapsed_ms": 1}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.scalar("SELECT outcome FROM node_tests WHERE node_id = $1", &node)
            .await,
        "pending",
        "nothing refused was kept"
    );

    // Right but after the limit (120 s here): too slow for the hardware claimed.
    let slow = post_node_test(
        &app,
        device,
        &node,
        json!({"answer": right, "elapsed_ms": 121_000}),
    )
    .await;
    assert_eq!(slow.body["outcome"], "too_slow", "{}", slow.text);
    assert!(
        slow.body["detail"]
            .as_str()
            .unwrap()
            .contains("more than the 120.0 s limit"),
        "{}",
        slow.text
    );
    let c = cluster(&app, &s, &id).await;
    let failed = c["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == node.as_str())
        .unwrap();
    assert_eq!(failed["current"], false, "{failed}");
    assert_ne!(failed["status"], "ready", "{failed}");
}

on_both_engines!(the_simulators_slow_nodes_fail_their_tests);

/// The simulator answering every node test too slowly: each node fails its test and is
/// replaced, again and again, until the cluster's provisioning time is up; nothing is billed.
async fn the_simulators_slow_nodes_fail_their_tests(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet_run_by(
        b,
        frankfurt(2),
        Some(SimOptions {
            heartbeat_secs: Some(0.3),
            node_ready_secs: 0.1,
            node_failure_rate: 0.0,
            offline_rate: 0.0,
            start_spread_secs: 0.1,
            node_test_slow_rate: 1.0,
            ..SimOptions::default()
        }),
        |c| c.provisioning_timeout_secs = 4,
    )
    .await;
    let id = create(
        &app,
        &s,
        json!({"name": "slow", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
    )
    .await;
    let failed = wait_status(&app, &s, &id, "failed").await;
    // Every node that got as far as its answer failed on it (the last may not have).
    let reasons: Vec<&str> = failed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["reason"].as_str())
        .filter(|r| r.starts_with("failed its node test"))
        .collect();
    assert!(reasons.len() >= 2, "{failed:#}");
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("failed its node test: answered after")),
        "{reasons:?}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM usage_records").await,
        0,
        "nothing was billed"
    );
    assert!(
        app.count("SELECT COUNT(*) FROM node_tests WHERE outcome = 'too_slow'")
            .await
            >= reasons.len() as i64,
        "each kept as evidence"
    );
}
