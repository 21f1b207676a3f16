//! The registry's edges: the public catalogs (GPU models and regions), the registrations and
//! updates it refuses, and registration over GraphQL.

use iocloud_tests::{Backend, TestApp, on_both_engines, rig};
use serde_json::{Value, json};

on_both_engines!(
    catalogs_are_public,
    bad_device_input_changes_nothing,
    devices_over_graphql,
);

async fn catalogs_are_public(b: Backend) {
    let app = TestApp::spawn(b).await;
    let models = app.get_public("/v1/gpu-models").await;
    assert_eq!(models.status, 200, "{}", models.text);
    let items = models.body["items"].as_array().unwrap();
    for id in [
        "h200",
        "h100-sxm",
        "h100-pcie",
        "a100-80gb",
        "a100-40gb",
        "l40s",
        "rtx-a6000",
        "rtx-6000-ada",
        "rtx-4090",
        "rtx-3090",
        "a10",
        "t4",
    ] {
        assert!(
            items.iter().any(|m| m["id"] == id),
            "{id} is in the catalog"
        );
    }
    let h100 = items.iter().find(|m| m["id"] == "h100-sxm").unwrap();
    assert_eq!(h100["staking_multiplier"], 10);
    assert_eq!(h100["vram_gib"], 80);
    assert_eq!(h100["class"], "datacenter");
    assert!(h100["price_floor"].is_string() && h100["price_ceiling"].is_string());
    let t4 = items.iter().find(|m| m["id"] == "t4").unwrap();
    assert_eq!(t4["staking_multiplier"], 1);

    let regions = app.get_public("/v1/regions").await;
    let regions = regions.body["items"].as_array().unwrap().clone();
    assert!(regions.len() >= 20);
    let continents: std::collections::BTreeSet<&str> = regions
        .iter()
        .map(|r| r["continent"].as_str().unwrap())
        .collect();
    for c in [
        "north-america",
        "south-america",
        "europe",
        "asia",
        "oceania",
        "africa",
    ] {
        assert!(continents.contains(c), "a region in {c}");
    }
    for code in [
        "us-east",
        "us-west",
        "eu-central",
        "eu-west",
        "ap-northeast",
        "ap-southeast",
    ] {
        assert!(regions.iter().any(|r| r["code"] == code), "{code}");
    }
}

async fn bad_device_input_changes_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "vram_gib",
            json!({"vram_gib": 24}),
            "VRAM that is not the model's",
        ),
        (
            "gpu_count",
            json!({"gpu_count": 9}),
            "more GPUs than a node holds",
        ),
        (
            "gpu_count",
            json!({"gpu_count": 0}),
            "no GPUs of a GPU model",
        ),
        (
            "gpu_model",
            json!({"gpu_model": "h900"}),
            "an unknown model",
        ),
        (
            "gpu_model",
            json!({"gpu_model": null}),
            "GPUs without a model",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "0.10"}),
            "under the floor",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "99"}),
            "over the ceiling",
        ),
        (
            "price_per_gpu_hour",
            json!({"price_per_gpu_hour": "two"}),
            "not a number",
        ),
        (
            "region",
            json!({"region": "mars-north"}),
            "an unknown region",
        ),
        (
            "location.lat",
            json!({"location": {"lat": 91.0, "lon": 0.0}}),
            "off the globe",
        ),
        (
            "location.lon",
            json!({"location": {"lat": 0.0, "lon": -180.5}}),
            "off the globe",
        ),
        ("country", json!({"country": "de"}), "not ISO alpha-2"),
        ("cpu_cores", json!({"cpu_cores": 0}), "no CPU"),
        (
            "bandwidth_mbps.up",
            json!({"bandwidth_mbps": {"up": 0, "down": 10}}),
            "no uplink",
        ),
        ("name", json!({"name": "  "}), "a blank name"),
    ];
    for (field, change, why) in cases {
        let mut body = rig("rig-x");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = app.post("/v1/devices", Some(&s.access), body).await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], field, "{why}: {}", a.text);
    }
    let mut unknown = rig("rig-x");
    unknown["gpu_colour"] = json!("green");
    app.post("/v1/devices", Some(&s.access), unknown)
        .await
        .assert_problem(422, "invalid_body");
    // A CPU-only machine is fine, priced per node-hour, and needs one unit of stake.
    let mut cpu = rig("cpu-1");
    cpu["gpu_model"] = Value::Null;
    cpu["gpu_count"] = json!(0);
    cpu["price_per_gpu_hour"] = json!("0.08");
    let c = app.post("/v1/devices", Some(&s.access), cpu).await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(c.body["required_stake"], "200.00");
    assert_eq!(app.items("/v1/devices", &s.access).await.len(), 1);
    // The history of a refused device would have no device to be read through.
    assert_eq!(app.count("SELECT COUNT(*) FROM device_events").await, 1);
    // A viewer cannot register.
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.post("/v1/devices", Some(&viewer.access), rig("rig-v"))
        .await
        .assert_problem(403, "forbidden");
    // Bad price updates change nothing.
    let id = c.body["id"].as_str().unwrap();
    app.patch(
        &format!("/v1/devices/{id}"),
        &s.access,
        json!({"price_per_gpu_hour": "5"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.get("/v1/devices?status=flying", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    let still = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(still.body["price_per_gpu_hour"], "0.08");
    // Another organisation's device, a missing one and text shaped like no device id all
    // read alike, and none of them changes anything.
    let other = app.signup("other@example.com", "Other Farm").await;
    let missing = app
        .get("/v1/devices/dev_00000000000000000000000000", &s.access)
        .await;
    missing.assert_problem(404, "not_found");
    for path in [
        format!("/v1/devices/{id}"),
        "/v1/devices/not-a-device".to_string(),
        "/v1/devices/clu_00000000000000000000000000".to_string(),
    ] {
        let read = app.get(&path, &other.access).await;
        assert_eq!(
            read.body, missing.body,
            "{path} reads like a missing device"
        );
        app.delete(&path, &other.access)
            .await
            .assert_problem(404, "not_found");
        app.post(&format!("{path}/token"), Some(&other.access), json!({}))
            .await
            .assert_problem(404, "not_found");
    }
    let still = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(still.body["status"], c.body["status"]);
}

async fn devices_over_graphql(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "GPU Farm").await;
    let q = "mutation($input: DeviceInput!) { registerDevice(input: $input) { token device { id status gpuModel requiredStake } } }";
    let input = json!({"name": "rig-g", "gpuModel": "rtx-4090", "gpuCount": 2, "cpuCores": 16, "ramGib": 64,
        "diskGib": 1000, "region": "us-west", "country": "US", "lat": 37.3, "lon": -121.9,
        "bandwidthUpMbps": 500, "bandwidthDownMbps": 1000, "pricePerGpuHour": "0.40"});
    let r = app
        .graphql(Some(&s.access), q, json!({"input": input}))
        .await;
    let created = &r.body["data"]["registerDevice"];
    assert!(
        created["token"].as_str().unwrap().starts_with("iodt_"),
        "{}",
        r.text
    );
    assert_eq!(created["device"]["status"], "pending_verification");
    assert_eq!(created["device"]["requiredStake"], "400.00");
    let list = app
        .graphql(
            Some(&s.access),
            "{ devices { items { name gpuModel pricePerGpuHour } } gpuModels { id } regions { code } }",
            json!({}),
        )
        .await;
    assert_eq!(list.body["data"]["devices"]["items"][0]["name"], "rig-g");
    assert!(list.body["data"]["gpuModels"].as_array().unwrap().len() >= 12);
    let mut bad = input.clone();
    bad["pricePerGpuHour"] = json!("9.99");
    bad["name"] = json!("rig-h");
    let e = app.graphql(Some(&s.access), q, json!({"input": bad})).await;
    assert_eq!(
        e.body["errors"][0]["extensions"]["code"], "validation_failed",
        "{}",
        e.text
    );
    assert_eq!(
        e.body["errors"][0]["extensions"]["field"],
        "price_per_gpu_hour"
    );
    assert_eq!(app.items("/v1/devices", &s.access).await.len(), 1);
}
