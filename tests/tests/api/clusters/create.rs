//! What a create refuses before it writes anything (bad input, no capacity, no money, a name
//! taken, another tenant's cluster), and the billing currency it prices in.

use iocloud_tests::{
    Backend, Fleet, clusters, fleet, frankfurt, gpus_free, ledger_balances, on_both_engines,
};
use serde_json::{Value, json};

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
    // It says how much is missing and how to add it, and names no internal account.
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("600.00 USD more") && detail.contains("top up"),
        "{detail}"
    );
    assert!(!detail.contains("acc_"), "{detail}");
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
