//! Quotes: ranked plans over REST and GraphQL, `insufficient_capacity` with its reason and the
//! nearest request that fits, bad input refused with nothing written, quotes private to their
//! organisation.

use iocloud_tests::{TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(quotes_rank_plans_and_explain_refusals);

/// An available machine, straight into the database (the device tests cover how one gets there).
async fn machine(
    app: &TestApp,
    id: &str,
    provider: &str,
    model: &str,
    region: &str,
    free: i64,
    price: i64,
) {
    let (lat, lon) = match region {
        "eu-central" => (50.11, 8.68),
        "us-east" => (39.04, -77.49),
        _ => (35.68, 139.69),
    };
    app.exec(
        &format!(
            "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
             bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, created_at, updated_at) \
             VALUES ($1, '{provider}', $1, '{model}', 8, {free}, 64, 512, 2000, '{region}', 'XX', {lat}, {lon}, 10000, 10000, {price}, $1, 'available', 1, 1)"
        ),
        id,
    )
    .await;
}

async fn quotes_rank_plans_and_explain_refusals(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    // Eight H100 machines in Frankfurt at $2.00–$2.70, eight in Virginia at $1.80, and an A100.
    for i in 0..8 {
        machine(
            &app,
            &format!("dev_fra{i}"),
            "org_p1",
            "h100-sxm",
            "eu-central",
            8,
            2_000_000 + i * 100_000,
        )
        .await;
        machine(
            &app,
            &format!("dev_iad{i}"),
            "org_p2",
            "h100-sxm",
            "us-east",
            8,
            1_800_000,
        )
        .await;
    }
    machine(
        &app,
        "dev_a100",
        "org_p1",
        "a100-80gb",
        "eu-central",
        8,
        1_000_000,
    )
    .await;

    // The documented wire shape.
    let q = app
        .post(
            "/v1/quotes",
            Some(&s.access),
            json!({"gpu_model": "h100-sxm", "gpu_count": 32, "duration_hours": 24, "regions": ["eu-central"],
                   "max_price_per_gpu_hour": "3.00", "preference": "balanced"}),
        )
        .await;
    assert_eq!(q.status, 201, "{}", q.body);
    assert!(q.body["id"].as_str().unwrap().starts_with("quo_"));
    assert!(q.body["expires_at"].as_str().is_some());
    let plans = q.body["plans"].as_array().unwrap();
    assert_eq!(plans[0]["label"], "balanced");
    // Without a location every preference agrees: one plan, the four cheapest machines.
    assert_eq!(plans.len(), 1);
    let nodes = plans[0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "fewer, fuller nodes: four of 8");
    assert!(
        nodes
            .iter()
            .all(|n| n["region"] == "eu-central" && n["gpus"] == 8)
    );
    // 8 × (2.00 + 2.10 + 2.20 + 2.30) = $68.80 an hour, $1,651.20 for 24 hours.
    assert_eq!(plans[0]["price_per_hour"], "68.80");
    assert_eq!(plans[0]["total"], "1651.20");
    let id = q.body["id"].as_str().unwrap().to_string();
    let again = app.get(&format!("/v1/quotes/{id}"), &s.access).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["plans"], q.body["plans"]);

    // From New York, anywhere: the cheapest plan is Virginia's; from Berlin with `latency`
    // first, Frankfurt's comes first and the cheapest follows as an alternative.
    let q = app
        .post(
            "/v1/quotes",
            Some(&s.access),
            json!({"gpu_model": "h100-sxm", "gpu_count": 16, "gpus_per_node": 8,
                   "location": {"lat": 52.52, "lon": 13.40}, "preference": "latency"}),
        )
        .await;
    assert_eq!(q.status, 201, "{}", q.body);
    let plans = q.body["plans"].as_array().unwrap();
    assert_eq!(plans[0]["label"], "lowest_latency");
    assert_eq!(plans[0]["nodes"][0]["region"], "eu-central");
    assert!(plans[0]["estimated_rtt_ms"].as_u64().unwrap() < 20);
    let cheapest = plans
        .iter()
        .find(|p| p["label"] == "cheapest")
        .expect("a cheapest plan");
    assert_eq!(cheapest["nodes"][0]["region"], "us-east");
    assert_eq!(cheapest["price_per_hour"], "28.80");

    // Nothing fits: the constraint and the nearest request that would.
    let no = app
        .post(
            "/v1/quotes",
            Some(&s.access),
            json!({"gpu_model": "h100-sxm", "gpu_count": 64, "regions": ["eu-central"], "max_price_per_gpu_hour": "2.35"}),
        )
        .await;
    no.assert_problem(422, "insufficient_capacity");
    assert_eq!(no.body["constraint"], "max_price_per_gpu_hour");
    assert_eq!(no.body["available_gpus"], 32);
    assert_eq!(no.body["nearest"]["value"], "2.70");
    assert_eq!(no.body["nearest"]["available_gpus"], 64);
    let no = app
        .post(
            "/v1/quotes",
            Some(&s.access),
            json!({"gpu_class": "consumer", "gpu_count": 1}),
        )
        .await;
    no.assert_problem(422, "insufficient_capacity");
    assert_eq!(no.body["constraint"], "gpu_model");

    // Bad input: the field at fault, and no quote written.
    let before = app.count("SELECT COUNT(*) FROM placement_quotes").await;
    for (body, field) in [
        (json!({"gpu_count": 0}), "gpu_count"),
        (json!({"gpu_count": 8, "gpu_model": "h900"}), "gpu_model"),
        (json!({"gpu_count": 8, "gpu_class": "quantum"}), "gpu_class"),
        (
            json!({"gpu_count": 8, "gpu_model": "h100-sxm", "gpu_class": "datacenter"}),
            "gpu_class",
        ),
        (
            json!({"gpu_count": 12, "gpus_per_node": 8}),
            "gpus_per_node",
        ),
        (
            json!({"gpu_count": 8, "duration_hours": 0}),
            "duration_hours",
        ),
        (
            json!({"gpu_count": 8, "duration_hours": 721}),
            "duration_hours",
        ),
        (
            json!({"gpu_count": 8, "regions": ["mars-north"]}),
            "regions",
        ),
        (json!({"gpu_count": 8, "regions": []}), "regions"),
        (json!({"gpu_count": 8, "max_rtt_ms": 50}), "max_rtt_ms"),
        (
            json!({"gpu_count": 8, "location": {"lat": 91.0, "lon": 0.0}}),
            "location",
        ),
        (
            json!({"gpu_count": 8, "max_price_per_gpu_hour": "-1"}),
            "max_price_per_gpu_hour",
        ),
        (
            json!({"gpu_count": 8, "max_price_per_gpu_hour": "cheap"}),
            "max_price_per_gpu_hour",
        ),
        (
            json!({"gpu_count": 8, "min_reliability": 1.5}),
            "min_reliability",
        ),
        (
            json!({"gpu_count": 8, "colocation": "same_rack"}),
            "colocation",
        ),
        (
            json!({"gpu_count": 8, "gpus_per_node": 8, "min_providers": 2}),
            "min_providers",
        ),
    ] {
        let a = app.post("/v1/quotes", Some(&s.access), body.clone()).await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], field, "{body}");
    }
    app.post(
        "/v1/quotes",
        Some(&s.access),
        json!({"gpu_count": 8, "speed": "fast"}),
    )
    .await
    .assert_problem(422, "invalid_body");
    app.post("/v1/quotes", None, json!({"gpu_count": 8}))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM placement_quotes").await,
        before
    );

    // Another organisation's quote is not there.
    let eve = app.signup("eve@example.com", "Other").await;
    app.get(&format!("/v1/quotes/{id}"), &eve.access)
        .await
        .assert_problem(404, "not_found");

    // GraphQL: the same service, the same codes.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation($i: QuoteInput!) { quote(input: $i) { id plans { label pricePerHour nodes { deviceId gpus } } } }",
            json!({"i": {"gpuModel": "h100-sxm", "gpuCount": 8, "regions": ["us-east"], "preference": "COST"}}),
        )
        .await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["data"]["quote"]["plans"][0]["label"], "cheapest");
    assert_eq!(g.body["data"]["quote"]["plans"][0]["pricePerHour"], "14.40");
    let g = app
        .graphql(
            Some(&s.access),
            "mutation($i: QuoteInput!) { quote(input: $i) { id } }",
            json!({"i": {"gpuModel": "h100-sxm", "gpuCount": 512}}),
        )
        .await;
    let ext = &g.body["errors"][0]["extensions"];
    assert_eq!(ext["code"], "insufficient_capacity");
    assert_eq!(ext["constraint"], "gpu_model");
    let g = app
        .graphql(
            Some(&eve.access),
            "query($id: String!) { quote(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(g.body["errors"][0]["extensions"]["code"], "not_found");
}
