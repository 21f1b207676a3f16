//! Clusters end to end, with the simulator's agents running the nodes over the real agent API:
//! create → provisioning → running → terminated with the ledger to match; a node lost and
//! replaced, or the cluster degraded; provisioning that times out; expiry and extension; bad
//! input, quota and money refusals that write nothing; other tenants' clusters answering 404.
//!
//! One file per surface is this suite's convention; the fleet set-up and the cluster reads
//! these tests share with other files are in the harness (`iocloud_tests`).

use std::time::{Duration, Instant};

use iocloud_api::simulator::SimDevice;
use iocloud_tests::{
    Backend, Fleet, GPU_BOOKS_WRONG, Session, TestApp, agent_report, balance, cluster,
    current_nodes, fleet, follow, frankfurt, gpus_free, kinds, ledger_balances, machine, micros,
    on_both_engines, provider_devices, units, wait_for, wait_status,
};
use serde_json::{Value, json};

/// Creates a cluster that must be accepted; its id.
async fn create(app: &TestApp, s: &Session, spec: Value) -> String {
    let created = app.post("/v1/clusters", Some(&s.access), spec).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().unwrap().to_string()
}

/// The organisation's clusters, as its customer lists them.
async fn clusters(app: &TestApp, s: &Session) -> Vec<Value> {
    app.items("/v1/clusters", &s.access).await
}

/// The organisation's holds (`GET /v1/holds`) that are not settled, or whose captured and
/// released amounts do not add up to what they held, to the micro-unit.
async fn holds_unsettled(app: &TestApp, s: &Session) -> Vec<Value> {
    app.items("/v1/holds", &s.access)
        .await
        .into_iter()
        .filter(|h| {
            let m = |k: &str| micros(h[k].as_str().unwrap());
            h["status"] != "settled" || m("captured") + m("released") != m("amount")
        })
        .collect()
}

on_both_engines!(a_ray_cluster_runs_and_terminates);

async fn a_ray_cluster_runs_and_terminates(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        ..
    } = fleet(b, frankfurt(3), true, |_| {}).await;
    // The documented wire shape.
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "train-1", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8,
                   "duration_hours": 4, "regions": ["eu-central"], "max_price_per_gpu_hour": "3.00",
                   "billing_currency": "USD", "labels": {"team": "ml"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = &created.body;
    let id = c["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("clu_"));
    assert_eq!(c["status"], "provisioning");
    assert_eq!(c["resource_version"], 4);
    assert_eq!(c["price_per_hour"], "32.00");
    assert_eq!(c["spec"]["labels"]["team"], "ml");
    assert_eq!(kinds(c), ["created", "placing", "reserved", "provisioning"]);
    let nodes = c["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["role"], "head");
    assert_eq!(nodes[1]["role"], "worker");
    assert_eq!(nodes[1]["status"], "waiting", "workers wait for the head");
    // 16 GPUs × 2.00 × 4 hours are held at once.
    assert_eq!(balance(&app, &s, "USD").await, (units(872), units(128)));
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["gpus_in_use"], 16);
    assert_eq!(quota.body["clusters_in_use"], 1);
    assert_eq!(quota.body["spend_per_hour"], "32.00");

    let running = wait_status(&app, &s, &id, "running").await;
    let events = kinds(&running);
    assert!(
        events.ends_with(&["joining".into(), "running".into()]),
        "{events:?}"
    );
    let conn = &running["connection"];
    assert!(
        conn["ray_address"].as_str().unwrap().starts_with("ray://"),
        "{conn}"
    );
    assert!(conn["dashboard_url"].as_str().unwrap().ends_with(":8265"));
    assert!(running["expires_at"].is_string());
    for n in running["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "ready");
    }
    let worker = &running["nodes"][1];
    let bootstrap = app
        .scalar(
            "SELECT bootstrap FROM node_assignments WHERE id = $1",
            worker["id"].as_str().unwrap(),
        )
        .await;
    assert!(
        bootstrap.contains("\"leader_address\""),
        "the worker was pointed at the head: {bootstrap}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM usage_records WHERE cluster_id = '{id}'"
        ))
        .await,
        2,
        "each node metered"
    );

    // Listed, and readable over GraphQL.
    let list = app.get("/v1/clusters?status=running", &s.access).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let g = app
        .graphql(
            Some(&s.access),
            "query($id: String!) { cluster(id: $id) { name status nodes { role status } connection } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(g.body["data"]["cluster"]["status"], "RUNNING", "{}", g.text);

    // Terminate: billing settles to the second, the rest comes back, quota is free again.
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.body["status"], "terminated");
    let events = kinds(&gone.body);
    assert!(
        events.ends_with(&["terminating".into(), "terminated".into()]),
        "{events:?}"
    );
    // Ended and settled in one go: both steps numbered, the last at the row's version, and
    // every node's metering stopped where it was charged to.
    let seqs: Vec<i64> = gone.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let version = gone.body["resource_version"].as_i64().unwrap();
    assert!(seqs.ends_with(&[version - 1, version]), "{seqs:?}");
    // The history read with the row the delete was decided on, then what the delete wrote:
    // every step, none twice, none missing.
    assert_eq!(seqs, (1..=version).collect::<Vec<_>>());
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM usage_records WHERE cluster_id = '{id}' \
             AND (ended_at IS NULL OR NOT settled OR accrued_until < ended_at)"
        ))
        .await,
        0,
        "every record stopped and charged to its end"
    );
    let (available, held) = balance(&app, &s, "USD").await;
    assert_eq!(held, 0);
    let charged = units(1000) - available;
    assert!(
        charged > 0 && charged < units(1),
        "a few seconds of 32 USD/h: {charged} micro-units"
    );
    let hold = app
        .get(
            &format!("/v1/holds/{}", gone.body["hold_id"].as_str().unwrap()),
            &s.access,
        )
        .await;
    assert_eq!(hold.body["status"], "settled", "{}", hold.text);
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["gpus_in_use"], 0);
    assert_eq!(quota.body["clusters_in_use"], 0);
    // The agents tear the nodes down and the GPUs come back.
    wait_for("GPUs given back", || async {
        gpus_free(&app, &provider).await == 24
    })
    .await;
    // Deleting again changes nothing; the name is free for a new cluster.
    let again = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(
        again.body["resource_version"],
        gone.body["resource_version"]
    );
    ledger_balances(&app).await;
}

on_both_engines!(bad_cluster_requests_change_nothing);

async fn bad_cluster_requests_change_nothing(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        ..
    } = fleet(b, frankfurt(2), false, |_| {}).await;
    let good = json!({"name": "ok", "kind": "container", "image": "ghcr.io/acme/app:1", "gpu_model": "h100-sxm",
                      "gpu_count": 8, "duration_hours": 1});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("name", json!("Bad Name")), "name"),
        (with("kind", json!("slurm")), ""),
        (with("image", json!("has space")), "image"),
        (with("gpu_count", json!(0)), "gpu_count"),
        (with("gpus_per_node", json!(3)), "gpus_per_node"),
        (with("gpu_model", json!("tpu-v5")), "gpu_model"),
        (with("duration_hours", json!(0)), "duration_hours"),
        (with("duration_hours", json!(721)), "duration_hours"),
        (with("regions", json!(["atlantis"])), "regions"),
        (
            with("max_price_per_gpu_hour", json!("-1")),
            "max_price_per_gpu_hour",
        ),
        (with("billing_currency", json!("EUR")), "billing_currency"),
        (with("connectivity", json!("warp")), ""),
        (with("labels", json!({"bad key": "x"})), "labels"),
        (with("unknown_field", json!(1)), ""),
    ];
    for (body, field) in cases {
        let r = app
            .post("/v1/clusters", Some(&s.access), body.clone())
            .await;
        assert_eq!(r.status, 422, "{body} → {}", r.text);
        if !field.is_empty() {
            assert_eq!(r.body["field"], field, "{}", r.text);
        }
    }
    let mut container = good.clone();
    container.as_object_mut().unwrap().remove("image");
    app.post("/v1/clusters", Some(&s.access), container)
        .await
        .assert_problem(422, "validation_failed");
    // Nothing fits: more H100s than exist, or too cheap.
    let r = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            with("gpu_count", json!(24)),
        )
        .await;
    r.assert_problem(422, "insufficient_capacity");
    let r = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            with("max_price_per_gpu_hour", json!("1.00")),
        )
        .await;
    r.assert_problem(422, "insufficient_capacity");
    assert_eq!(r.body["constraint"], "max_price_per_gpu_hour");
    // More than the balance covers: 8 GPUs × 2.00 × 100 hours is 1,600 USD of 1,000.
    let r = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            with("duration_hours", json!(100)),
        )
        .await;
    r.assert_problem(402, "insufficient_funds");
    assert_eq!(clusters(&app, &s).await, Vec::<Value>::new());
    // Nodes have no list of their own: a node without a cluster would show nowhere else.
    assert_eq!(app.count("SELECT COUNT(*) FROM node_assignments").await, 0);
    assert_eq!(app.items("/v1/holds", &s.access).await, Vec::<Value>::new());
    assert_eq!(gpus_free(&app, &provider).await, 16);
    assert_eq!(app.get("/v1/quota", &s.access).await.body["gpus_in_use"], 0);

    let big = json!({"name": "big", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8, "gpus_per_node": 8, "duration_hours": 1});
    let first = app.post("/v1/clusters", Some(&s.access), big.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // The name is taken by a live cluster.
    let r = app
        .post("/v1/clusters", Some(&s.access), with("name", json!("big")))
        .await;
    r.assert_problem(409, "name_taken");
    // Also when it would not fit besides: the name is what the customer hears about.
    let mut huge = with("name", json!("big"));
    huge["gpu_count"] = json!(16);
    app.post("/v1/clusters", Some(&s.access), huge)
        .await
        .assert_problem(409, "name_taken");
    assert_eq!(clusters(&app, &s).await.len(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM node_assignments").await, 1);

    // Another organisation sees none of it.
    let id = first.body["id"].as_str().unwrap();
    let eve = app.signup("eve@example.com", "Evil").await;
    for path in [
        format!("/v1/clusters/{id}"),
        format!("/v1/clusters/{id}/events"),
        // Following is authorised by the events' organisation, or by name.
        format!("/v1/clusters/{id}/events?follow=true"),
        "/v1/clusters/big/events?follow=true".to_string(),
    ] {
        app.get(&path, &eve.access)
            .await
            .assert_problem(404, "not_found");
    }
    app.delete(&format!("/v1/clusters/{id}"), &eve.access)
        .await
        .assert_problem(404, "not_found");
    app.post(
        &format!("/v1/clusters/{id}/extend"),
        Some(&eve.access),
        json!({"hours": 1}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.get("/v1/clusters", &eve.access).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    ledger_balances(&app).await;
}

on_both_engines!(quota_is_enforced_and_reported);

async fn quota_is_enforced_and_reported(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(2), false, |c| {
        c.quota_max_gpus = 8;
    })
    .await;
    let spec = |name: &str| json!({"name": name, "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1});
    let first = app.post("/v1/clusters", Some(&s.access), spec("a")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let r = app.post("/v1/clusters", Some(&s.access), spec("b")).await;
    r.assert_problem(403, "quota_exceeded");
    assert_eq!(r.body["limit"], "max_gpus");
    assert_eq!(r.body["allowed"], "8");
    assert_eq!(r.body["in_use"], "8");
    assert_eq!(r.body["requested"], "8");
    // GraphQL says the same, in its extensions.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation { createCluster(input: {name: \"g\", kind: CONTAINER, image: \"busybox\", gpuModel: \"h100-sxm\", gpuCount: 8, durationHours: 1}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "quota_exceeded",
        "{}",
        g.text
    );
    assert_eq!(g.body["errors"][0]["extensions"]["limit"], "max_gpus");
    // An operator raises the limit; only operators may.
    app.put(
        &format!("/v1/admin/orgs/{}/quota", s.org_id),
        &s.access,
        json!({"max_gpus": 16}),
    )
    .await
    .assert_problem(403, "forbidden");
    let ops = app.signup("ops2@example.com", "Ops").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops2@example.com",
    )
    .await;
    let ops = app.login("ops2@example.com", Some(&ops.org_id)).await;
    let q = app
        .put(
            &format!("/v1/admin/orgs/{}/quota", s.org_id),
            &ops.access,
            json!({"max_gpus": 16, "max_spend_per_hour": "100.00"}),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    assert_eq!(q.body["max_gpus"], 16);
    assert_eq!(q.body["gpus_in_use"], 8);
    let second = app.post("/v1/clusters", Some(&s.access), spec("b")).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let seen = app.get("/v1/quota", &s.access).await;
    assert_eq!(seen.body["gpus_in_use"], 16);
    assert_eq!(seen.body["clusters_in_use"], 2);
    assert_eq!(seen.body["max_spend_per_hour"], "100.00");
}

on_both_engines!(a_lost_node_is_replaced_or_the_cluster_degrades);

/// A cluster of `kind` with 16 GPUs on two 8-GPU nodes, running, on `machines` machines.
async fn running_cluster(b: Backend, machines: usize, kind: &str) -> (Fleet, String, Value) {
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

on_both_engines!(provisioning_that_never_finishes_fails_and_releases_everything);

async fn provisioning_that_never_finishes_fails_and_releases_everything(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        ..
    } = fleet(b, frankfurt(2), false, |c| {
        c.provisioning_timeout_secs = 1;
    })
    .await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "slow", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8, "duration_hours": 3}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let c = wait_status(&app, &s, id, "failed").await;
    assert!(
        c["status_reason"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{c}"
    );
    wait_for("the hold released", || async {
        balance(&app, &s, "USD").await == (units(1000), 0)
    })
    .await;
    // No agent ever took the nodes: their GPUs are back at once, and quota is free.
    assert_eq!(gpus_free(&app, &provider).await, 16);
    assert_eq!(app.get("/v1/quota", &s.access).await.body["gpus_in_use"], 0);
    ledger_balances(&app).await;
}

on_both_engines!(clusters_are_extended_and_expire);

async fn clusters_are_extended_and_expire(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "c", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 4, "duration_hours": 1}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let running = wait_status(&app, &s, &id, "running").await;
    let version = running["resource_version"].as_i64().unwrap();
    // A stale version is refused; the current one extends by 2 hours and holds 16 USD more.
    app.post(
        &format!("/v1/clusters/{id}/extend"),
        Some(&s.access),
        json!({"hours": 2, "resource_version": version - 1}),
    )
    .await
    .assert_problem(409, "stale_resource_version");
    app.post(
        &format!("/v1/clusters/{id}/extend"),
        Some(&s.access),
        json!({"hours": 0}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post(
        &format!("/v1/clusters/{id}/extend"),
        Some(&s.access),
        json!({"hours": 720}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let (_, held_before) = balance(&app, &s, "USD").await;
    let ext = app
        .post(
            &format!("/v1/clusters/{id}/extend"),
            Some(&s.access),
            json!({"hours": 2, "resource_version": version}),
        )
        .await;
    assert_eq!(ext.status, 200, "{}", ext.text);
    assert_eq!(ext.body["spec"]["duration_hours"], 3);
    assert_eq!(ext.body["generation"], 2);
    assert_eq!(ext.body["resource_version"], version + 1);
    let (_, held_after) = balance(&app, &s, "USD").await;
    // Metering may charge the running cluster a few micro-units from its hold in between.
    let more = held_after - held_before;
    assert!(
        (more - units(16)).abs() < 10_000,
        "{held_before} → {held_after} micro-units"
    );
    // Its time is up: the reconciler ends it.
    app.exec(
        "UPDATE clusters SET expires_at = 1, reconcile_at = 1 WHERE id = $1",
        &id,
    )
    .await;
    let c = wait_status(&app, &s, &id, "terminated").await;
    let k = kinds(&c);
    assert!(k.contains(&"expired".to_string()), "{k:?}");
    assert_eq!(balance(&app, &s, "USD").await.1, 0);
    ledger_balances(&app).await;
}

on_both_engines!(declarative_apply_plans_and_is_idempotent);

async fn declarative_apply_plans_and_is_idempotent(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(3), true, |_| {}).await;
    let spec = json!({"name": "web", "kind": "container", "image": "ghcr.io/acme/web:1", "gpu_model": "h100-sxm",
                      "gpu_count": 8, "gpus_per_node": 8, "duration_hours": 2});
    // The plan of a new cluster: its price, what would be held; nothing written.
    let plan = app
        .put("/v1/clusters/web?dry_run=true", &s.access, spec.clone())
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    assert_eq!(plan.body["action"], "create");
    assert_eq!(plan.body["price_per_hour"], "16.00");
    assert_eq!(plan.body["hold"], "32.00");
    assert_eq!(clusters(&app, &s).await, Vec::<Value>::new());

    let made = app.put("/v1/clusters/web", &s.access, spec.clone()).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["plan"]["action"], "create");
    let id = made.body["cluster"]["id"].as_str().unwrap().to_string();
    let running = wait_status(&app, &s, &id, "running").await;
    let version = running["resource_version"].as_i64().unwrap();

    // The same spec again changes nothing.
    let again = app.put("/v1/clusters/web", &s.access, spec.clone()).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["plan"]["action"], "none");
    assert_eq!(again.body["cluster"]["resource_version"], version);
    assert_eq!(clusters(&app, &s).await.len(), 1);

    // Labels and an hour more: in place, with 16 USD more held.
    let mut longer = spec.clone();
    longer["duration_hours"] = json!(3);
    longer["labels"] = json!({"tier": "prod"});
    let plan = app
        .put("/v1/clusters/web?dry_run=true", &s.access, longer.clone())
        .await;
    assert_eq!(plan.body["action"], "update", "{}", plan.text);
    assert_eq!(plan.body["needs_replace"], false);
    assert_eq!(plan.body["hold"], "16.00");
    let fields: Vec<&str> = plan.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["duration_hours", "labels"]);
    // A stale version is refused.
    app.put(
        &format!("/v1/clusters/web?resource_version={}", version - 1),
        &s.access,
        longer.clone(),
    )
    .await
    .assert_problem(409, "stale_resource_version");
    let (_, held) = balance(&app, &s, "USD").await;
    let updated = app.put("/v1/clusters/web", &s.access, longer.clone()).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["cluster"]["id"], id.as_str());
    assert_eq!(updated.body["cluster"]["generation"], 2);
    assert_eq!(updated.body["cluster"]["spec"]["labels"]["tier"], "prod");
    // 16.00 more held, less what metering may have charged the running cluster meanwhile.
    let more = balance(&app, &s, "USD").await.1 - held;
    assert!((more - units(16)).abs() < 10_000, "{more} micro-units");

    // Twice the GPUs: the plan says replace, and applying it does.
    let mut bigger = longer.clone();
    bigger["gpu_count"] = json!(16);
    let plan = app
        .put("/v1/clusters/web?dry_run=true", &s.access, bigger.clone())
        .await;
    assert_eq!(plan.body["action"], "replace", "{}", plan.text);
    assert_eq!(plan.body["needs_replace"], true);
    let gpu_change = plan.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "gpu_count")
        .unwrap()
        .clone();
    assert_eq!(gpu_change["in_place"], false);
    assert_eq!(
        (gpu_change["from"].clone(), gpu_change["to"].clone()),
        (json!(8), json!(16))
    );
    let replaced = app.put("/v1/clusters/web", &s.access, bigger.clone()).await;
    assert_eq!(replaced.status, 201, "{}", replaced.text);
    let new_id = replaced.body["cluster"]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(cluster(&app, &s, &id).await["status"], "terminated");
    // By name, the live one.
    let by_name = app.get("/v1/clusters/web", &s.access).await;
    assert_eq!(by_name.body["id"], new_id.as_str());

    // The name in the body must be the path's.
    app.put("/v1/clusters/other", &s.access, bigger.clone())
        .await
        .assert_problem(422, "validation_failed");
    // Delete by name, twice: the second changes nothing.
    let gone = app.delete("/v1/clusters/web", &s.access).await;
    assert_eq!(gone.body["status"], "terminated", "{}", gone.text);
    let again = app.delete("/v1/clusters/web", &s.access).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body["resource_version"],
        gone.body["resource_version"]
    );
    // GraphQL plans the same way.
    let g = app
        .graphql(
            Some(&s.access),
            "query { planCluster(input: {name: \"web\", kind: CONTAINER, image: \"busybox\", gpuModel: \"h100-sxm\", gpuCount: 8, durationHours: 1}) { action pricePerHour needsReplace } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["data"]["planCluster"]["action"], "create",
        "{}",
        g.text
    );
    ledger_balances(&app).await;
}

on_both_engines!(clusters_ended_together_settle_together);

/// Many clusters created and terminated at once: a new organisation's first creates all count
/// against its quota, and settlements that arrive together (done in batches, one posting per
/// account) account for every micro-unit: each hold captured plus released is what it held,
/// providers' earnings and the platform's fees are what the usage lines say, and every
/// record is settled.
async fn clusters_ended_together_settle_together(b: Backend) {
    use futures::future::join_all;
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(4), true, |_| {}).await;
    let creates = (0..12).map(|i| {
        app.post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": format!("batch-{i}"), "kind": "container", "image": "busybox",
                   "gpu_model": "h100-sxm", "gpu_count": 2, "duration_hours": 1}),
        )
    });
    let created = join_all(creates).await;
    assert!(
        created.iter().all(|c| c.status == 201),
        "{:?}",
        created.iter().map(|c| &c.text).collect::<Vec<_>>()
    );
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["clusters_in_use"], 12, "{}", quota.text);
    assert_eq!(quota.body["gpus_in_use"], 24);
    let ids: Vec<String> = created
        .iter()
        .map(|c| c.body["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        wait_status(&app, &s, id, "running").await;
    }
    // Let them run a moment, so there is something to charge.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/clusters/{id}")).collect();
    let deletes = paths.iter().map(|path| app.delete(path, &s.access));
    let gone = join_all(deletes).await;
    for g in &gone {
        assert_eq!(g.status, 200, "{}", g.text);
        assert_eq!(g.body["status"], "terminated", "{}", g.text);
        assert!(kinds(&g.body).ends_with(&["terminated".to_string()]));
    }
    let sum = |sql: String| {
        let app = &app;
        async move { app.count(&sql).await }
    };
    assert_eq!(
        holds_unsettled(&app, &s).await,
        Vec::<Value>::new(),
        "every hold settled, to the micro-unit"
    );
    assert_eq!(
        sum("SELECT COUNT(*) FROM usage_records WHERE NOT settled OR ended_at IS NULL OR accrued_until <> ended_at".into()).await,
        0,
        "every record charged to its end"
    );
    let captured: i64 = app
        .items("/v1/holds", &s.access)
        .await
        .iter()
        .map(|h| micros(h["captured"].as_str().unwrap()))
        .sum();
    let billed =
        sum("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM usage_lines".into()).await;
    let earned =
        sum("SELECT CAST(COALESCE(SUM(earned), 0) AS BIGINT) FROM usage_lines".into()).await;
    assert!(captured > 0, "twelve clusters ran a little");
    assert_eq!(captured, billed, "the lines say what was captured");
    let account = |kind: &str| {
        format!(
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts WHERE kind = '{kind}' AND currency = 'USD'"
        )
    };
    assert_eq!(sum(account("provider_earnings")).await, earned);
    assert_eq!(sum(account("platform_revenue")).await, captured - earned);
    let (available, held) = balance(&app, &s, "USD").await;
    assert_eq!(held, 0);
    assert_eq!(units(1000) - available, captured);
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["clusters_in_use"], 0);
    ledger_balances(&app).await;
}

on_both_engines!(a_cluster_settled_by_its_delete_and_the_reconciler_at_once_settles_once);

/// Each delete races reconcile passes over the same cluster: both settle it from the row they
/// read, often in one batch, where the one that loses rolls the batch back and the rest go
/// again. Every cluster is settled once: one `terminated` event, its hold captured plus
/// released to the micro-unit, the ledger balanced.
async fn a_cluster_settled_by_its_delete_and_the_reconciler_at_once_settles_once(b: Backend) {
    use futures::future::join_all;
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(4), true, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let spec = json!({"name": format!("raced-{i}"), "kind": "container", "image": "busybox",
                          "gpu_model": "h100-sxm", "gpu_count": 2, "duration_hours": 1});
        ids.push(create(&app, &s, spec).await);
    }
    for id in &ids {
        wait_status(&app, &s, id, "running").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (app, s, control) = (&app, &s, &app.server.state.control);
    let races = ids.iter().map(|id| async move {
        let path = format!("/v1/clusters/{id}");
        let delete = app.delete(&path, &s.access);
        let reconciles = async {
            for _ in 0..20 {
                let _ = join_all((0..3).map(|_| control.clusters.reconcile(id))).await;
            }
        };
        let (gone, ()) = tokio::join!(delete, reconciles);
        gone
    });
    for gone in join_all(races).await {
        assert_eq!(gone.status, 200, "{}", gone.text);
    }
    for id in &ids {
        let c = wait_status(app, s, id, "terminated").await;
        let terminated = kinds(&c).iter().filter(|k| *k == "terminated").count();
        assert_eq!(terminated, 1, "{}", c);
    }
    assert_eq!(
        holds_unsettled(app, s).await,
        Vec::<Value>::new(),
        "every hold settled once, to the micro-unit"
    );
    let (_, held) = balance(app, s, "USD").await;
    assert_eq!(held, 0);
    ledger_balances(app).await;
}

on_both_engines!(a_follower_sees_every_event_once_through_terminated);

/// A follower from the start gets the stored events as one page, then only what the channel
/// brings: every event exactly once, in order, and the stream ends at `terminated` without
/// waiting for the five-second look at the database.
async fn a_follower_sees_every_event_once_through_terminated(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(2), true, |_| {}).await;
    let spec = json!({"name": "watched", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16,
                      "gpus_per_node": 8, "duration_hours": 1});
    let id = create(&app, &s, spec).await;
    let running = wait_status(&app, &s, &id, "running").await;
    let stored = running["resource_version"].as_i64().unwrap();
    let mut events = follow(&app.client, &app.base, &s.access, &id, "0").await;
    let mut seqs = Vec::new();
    while (seqs.len() as i64) < stored {
        let e = tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("the stored events come at once")
            .expect("the stream is open");
        seqs.push(e["seq"].as_i64().unwrap());
    }
    let asked = Instant::now();
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let mut last = String::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
        seqs.push(e["seq"].as_i64().unwrap());
        last = e["kind"].as_str().unwrap().to_string();
    }
    assert_eq!(last, "terminated");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the stream ended {:?} after the delete",
        asked.elapsed()
    );
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "each event once, in order, none missing");

    // Following an ended cluster from its last event (by id or by name) ends at once
    // instead of waiting for news that will never come.
    let final_seq = seqs.len().to_string();
    for key in [id.as_str(), "watched"] {
        let mut events = follow(&app.client, &app.base, &s.access, key, &final_seq).await;
        let end = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
        assert!(
            matches!(end, Ok(None)),
            "following {key} after its last event: {end:?}"
        );
    }
}

on_both_engines!(a_delete_ends_a_cluster_whose_row_keeps_moving);

/// A DELETE without a version ends the cluster even while other changes move its row (here,
/// extensions racing it); with a version that is no longer current it answers 409 and
/// changes nothing. Either way quota, GPUs and the ledger come out right.
async fn a_delete_ends_a_cluster_whose_row_keeps_moving(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let spec = json!({"name": "busy", "kind": "container", "image": "busybox",
                      "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1});
    let id = create(&app, &s, spec).await;
    let running = wait_status(&app, &s, &id, "running").await;
    let seen = running["resource_version"].as_i64().unwrap();

    // The version the customer saw, then one extension: the old version is refused.
    let extended = app
        .post(
            &format!("/v1/clusters/{id}/extend"),
            Some(&s.access),
            json!({"hours": 1}),
        )
        .await;
    assert_eq!(extended.status, 200, "{}", extended.text);
    let refused = app
        .delete(
            &format!("/v1/clusters/{id}?resource_version={seen}"),
            &s.access,
        )
        .await;
    refused.assert_problem(409, "stale_resource_version");
    let now = extended.body["resource_version"].as_i64().unwrap();
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("is at resource_version {now}, not {seen}")),
        "{}",
        refused.text
    );
    assert_eq!(
        app.get(&format!("/v1/clusters/{id}"), &s.access).await.body["status"],
        "running"
    );

    // Extensions racing a DELETE without a version: the cluster ends all the same.
    let extend = |n: u64| {
        let (client, base, token, id) = (
            app.client.clone(),
            app.base.clone(),
            s.access.clone(),
            id.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n)).await;
            let r = client
                .post(format!("{base}/v1/clusters/{id}/extend"))
                .bearer_auth(token)
                .json(&json!({"hours": 1}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    let racing: Vec<_> = (0..8).map(extend).collect();
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.body["status"], "terminated");
    for r in racing {
        let (status, text) = r.await.unwrap();
        assert!(
            status == 200 || status == 409,
            "an extension answered {status}: {text}"
        );
    }
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["gpus_in_use"], 0);
    assert_eq!(quota.body["clusters_in_use"], 0);
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    ledger_balances(&app).await;
}

on_both_engines!(applies_racing_without_a_version_all_go_through);

/// Declarative applies without a version, racing on one cluster: each that loses the race
/// plans again from what the others left and goes through, none answers 409; the cluster
/// ends with one of their labels.
async fn applies_racing_without_a_version_all_go_through(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let spec = json!({"name": "web", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm",
                      "gpu_count": 1, "duration_hours": 2});
    let made = app.put("/v1/clusters/web", &s.access, spec.clone()).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.body["cluster"]["id"].as_str().unwrap().to_string();
    wait_status(&app, &s, &id, "running").await;
    let racing: Vec<_> = (0..6)
        .map(|n| {
            let mut labelled = spec.clone();
            labelled["labels"] = json!({"run": n.to_string()});
            let (client, base, token) = (app.client.clone(), app.base.clone(), s.access.clone());
            tokio::spawn(async move {
                let r = client
                    .put(format!("{base}/v1/clusters/web"))
                    .bearer_auth(token)
                    .json(&labelled)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            })
        })
        .collect();
    for r in racing {
        let (status, text) = r.await.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let now = app.get(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(now.body["status"], "running");
    let run: i64 = now.body["spec"]["labels"]["run"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0..6).contains(&run));
    assert_eq!(clusters(&app, &s).await.len(), 1);
    ledger_balances(&app).await;
}

on_both_engines!(the_billing_preference_prices_the_next_create);

/// Creates price in the organisation's billing currency, which the server keeps a copy of:
/// a change of preference is seen by the very next create and plan.
async fn the_billing_preference_prices_the_next_create(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), false, |_| {}).await;
    let spec = |name: &str| {
        json!({"name": name, "kind": "container", "image": "ghcr.io/acme/app:1",
               "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1})
    };
    let first = app.post("/v1/clusters", Some(&s.access), spec("a")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["currency"], "USD");

    let set = app
        .put(
            "/v1/billing/preference",
            &s.access,
            json!({"currency": "IOSD"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let plan = app
        .put("/v1/clusters/b?dry_run=true", &s.access, spec("b"))
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    assert_eq!(plan.body["currency"], "IOSD", "{}", plan.text);
    // The customer has no IOSD to hold: refused, and nothing written.
    app.post("/v1/clusters", Some(&s.access), spec("b"))
        .await
        .assert_problem(402, "insufficient_funds");
    assert_eq!(clusters(&app, &s).await.len(), 1);

    app.put(
        "/v1/billing/preference",
        &s.access,
        json!({"currency": "USD"}),
    )
    .await;
    let second = app.post("/v1/clusters", Some(&s.access), spec("b")).await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(second.body["currency"], "USD");
    ledger_balances(&app).await;
}

on_both_engines!(a_delete_before_any_agent_answered_gives_every_gpu_back_at_once);

/// A cluster deleted while no agent has taken its nodes up (the head assigned, its worker
/// waiting for it): the nodes are released in the delete's own transaction, their GPUs come
/// back, and each device, busy no more, is available again with the event that says which
/// node's release did it.
async fn a_delete_before_any_agent_answered_gives_every_gpu_back_at_once(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        ..
    } = fleet(b, frankfurt(2), false, |_| {}).await;
    let devices_where = |status: &'static str, free: i64| {
        let (app, provider) = (&app, &provider);
        async move {
            provider_devices(app, provider)
                .await
                .iter()
                .filter(|d| d["status"] == status && d["gpus_free"] == free)
                .count()
        }
    };
    let id = create(
        &app,
        &s,
        json!({"name": "never-up", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16,
               "gpus_per_node": 8, "duration_hours": 2}),
    )
    .await;
    assert_eq!(devices_where("busy", 0).await, 2);
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    assert_eq!(gone.body["status"], "terminated", "{}", gone.text);
    let nodes = gone.body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{}", gone.text);
    for n in nodes {
        assert_eq!(n["status"], "released", "{n}");
        assert_eq!(n["current"], false, "{n}");
    }
    assert_eq!(
        devices_where("available", 8).await,
        2,
        "every GPU back, every device available"
    );
    for n in nodes {
        let (node, device) = (n["id"].as_str().unwrap(), n["device_id"].as_str().unwrap());
        let history = app
            .items(&format!("/v1/devices/{device}/events"), &provider.access)
            .await;
        let reason = format!("node {node} released");
        assert_eq!(
            history
                .iter()
                .filter(|e| e["from_status"] == "busy"
                    && e["to_status"] == "available"
                    && e["reason"] == reason.as_str())
                .count(),
            1,
            "{device} made available by {node}'s release, once"
        );
    }
    assert_eq!(app.get("/v1/quota", &s.access).await.body["gpus_in_use"], 0);
    assert_eq!(balance(&app, &s, "USD").await, (units(1000), 0));
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
    for body in [
        json!({"status": "starting"}),
        json!({"status": "ready", "endpoints": {"http": "10.0.0.1:8080"}}),
    ] {
        let report = agent_report(&app, device, &node, body).await;
        assert!(report.status.is_success(), "{}", report.text);
    }
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

on_both_engines!(credentials_need_write_rights_and_every_read_is_audited);

/// Reading a cluster shows how to reach it, never its admin credential; the kubeconfig is
/// served apart to those who may change clusters, REST and GraphQL alike, and every read (and
/// refused attempt) is in the audit log.
async fn credentials_need_write_rights_and_every_read_is_audited(b: Backend) {
    let (fleet, id, running) = running_cluster(b, 2, "kubernetes").await;
    let (app, s) = (&fleet.app, &fleet.customer);
    let path = format!("/v1/clusters/{id}/credentials");
    let owner_read = app.get(&path, &s.access).await;
    assert_eq!(owner_read.status, 200, "{}", owner_read.text);
    assert_eq!(owner_read.header("cache-control"), Some("no-store"));
    let token = owner_read.body["token"].as_str().unwrap().to_string();
    let server = running["connection"]["api_server"].as_str().unwrap();
    let kubeconfig = owner_read.body["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains(&format!("server: {server}")),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&format!("token: {token}")),
        "{kubeconfig}"
    );
    assert_eq!(owner_read.body["api_server"], server);

    let viewer = app.add_member(s, "viewer@example.com", "viewer").await;
    let (_, read_key) = app.api_key(&s.access, &["read"]).await;
    let (_, write_key) = app.api_key(&s.access, &["write"]).await;
    for who in [&s.access, &viewer.access, &read_key] {
        let plain = app.get(&format!("/v1/clusters/{id}"), who).await;
        assert_eq!(plain.status, 200, "{}", plain.text);
        assert!(!plain.text.contains(&token), "{}", plain.text);
        assert!(plain.body["connection"].get("kubeconfig").is_none());
        assert_eq!(plain.body["connection"]["api_server"], server);
        let listed = app.get("/v1/clusters", who).await;
        assert!(!listed.text.contains(&token), "{}", listed.text);
    }
    for who in [&viewer.access, &read_key] {
        app.get(&path, who).await.assert_problem(403, "forbidden");
    }
    let by_key = app.get(&path, &write_key).await;
    assert_eq!(by_key.body["token"], token.as_str(), "{}", by_key.text);

    let query = "query($id: String!) { clusterCredentials(id: $id) { clusterId apiServer token kubeconfig } }";
    let g = app.graphql(Some(&s.access), query, json!({"id": id})).await;
    assert_eq!(
        g.body["data"]["clusterCredentials"]["token"],
        token.as_str(),
        "{}",
        g.text
    );
    let g = app
        .graphql(Some(&viewer.access), query, json!({"id": id}))
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "forbidden",
        "{}",
        g.text
    );
    let g = app
        .graphql(
            Some(&s.access),
            "query($id: String!) { cluster(id: $id) { connection } }",
            json!({"id": id}),
        )
        .await;
    assert!(!g.text.contains(&token), "{}", g.text);

    // Another organisation's cluster is not found; it has nothing to audit in this one.
    let stranger = app.signup("stranger@example.com", "Elsewhere").await;
    app.get(&path, &stranger.access)
        .await
        .assert_problem(404, "not_found");

    let log = app.items("/v1/audit-events", &s.access).await;
    let audited = |status: i64| {
        log.iter()
            .filter(|e| {
                e["action"] == "read cluster credentials"
                    && e["target"] == id.as_str()
                    && e["status"] == status
            })
            .count()
    };
    assert_eq!(audited(200), 3, "owner, write key, GraphQL");
    assert_eq!(audited(403), 3, "viewer, read key, GraphQL viewer");
    // The new read is documented: its path parameter, its answer and each refusal.
    let doc = app.get_public("/openapi.json").await.body;
    let op = &doc["paths"]["/v1/clusters/{id}/credentials"]["get"];
    assert!(
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "id" && p["in"] == "path")),
        "{op}"
    );
    for status in ["200", "401", "403", "404", "409"] {
        assert!(op["responses"].get(status).is_some(), "{status}: {op}");
    }
    assert!(doc["components"]["schemas"]["ClusterCredentials"].is_object());

    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    assert!(
        events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "read cluster credentials" && e["request_id"] != ""),
        "{}",
        events.text
    );
}
