//! Declarative applies (`PUT /v1/clusters/{name}`): plans, in-place updates, replacements and
//! repeats that change nothing, and applies without a version that race.

use iocloud_tests::{
    Backend, Fleet, balance, cluster, clusters, fleet, frankfurt, ledger_balances, on_both_engines,
    units, wait_status,
};
use serde_json::{Value, json};

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
    // Where the node would go, not only the price.
    let nodes = plan.body["placement"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{}", plan.text);
    assert_eq!(nodes[0]["gpus"], 8);
    assert_eq!(nodes[0]["region"], "eu-central");
    assert_eq!(nodes[0]["price_per_gpu_hour"], "2.00");
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
    // The nodes stay where they are.
    assert!(plan.body["placement"].is_null(), "{}", plan.text);
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
