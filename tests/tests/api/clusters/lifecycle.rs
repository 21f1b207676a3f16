//! A cluster's life: created, provisioning, running, extended, expired or deleted (before any
//! agent answered, or while its row keeps moving), with the ledger, quota and the devices' GPUs
//! to match at each end; provisioning that never finishes fails and gives everything back.

use std::time::Duration;

use iocloud_tests::{
    Backend, Fleet, GPU_BOOKS_WRONG, balance, create, fleet, frankfurt, gpus_free, kinds,
    ledger_balances, on_both_engines, provider_devices, units, wait_for, wait_status,
};
use serde_json::json;

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
