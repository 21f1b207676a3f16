//! IO Explorer over REST: public, its answers matching the data under them (devices, a
//! rental, a block), cacheable (ETag, 304), filtered and paged, and never carrying an owner's
//! private data: every field of every answer is listed against the public ones.

use std::collections::BTreeSet;

use iocloud_tests::{
    Backend, Fleet, cluster, create, current_nodes, fleet, machine, on_both_engines, wait_status,
};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::{Value, json};

mod day;
mod economy;

/// Every key path of a JSON value: `a.b`, arrays as `a[]`.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                paths(v, &p, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    paths(v, "", &mut out);
    out
}

const DEVICE_FIELDS: [&str; 13] = [
    "id",
    "gpu_model",
    "gpu_count",
    "gpus_free",
    "cpu_cores",
    "ram_gib",
    "region",
    "country",
    "status",
    "hired",
    "reliability",
    "price_per_gpu_hour",
    "listed_since",
];

/// The public fields of a device, under `prefix`.
fn device_fields(prefix: &str) -> Vec<String> {
    DEVICE_FIELDS
        .iter()
        .map(|f| format!("{prefix}{f}"))
        .collect()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn expect_keys(answer: &Value, allowed: &[String], what: &str) {
    let allowed: BTreeSet<String> = allowed.iter().cloned().collect();
    let extra: Vec<String> = keys(answer).difference(&allowed).cloned().collect();
    assert!(
        extra.is_empty(),
        "{what} carries fields not public: {extra:?}"
    );
}

/// Two H100 machines in Frankfurt and an A100 one in Virginia, whose names and owner must
/// never show, run by simulated agents.
async fn three_machines(b: Backend) -> Fleet {
    fleet(
        b,
        vec![
            machine("fra-secret-0", "h100-sxm", 8, "eu-central", "2.00"),
            machine("fra-secret-1", "h100-sxm", 8, "eu-central", "2.10"),
            machine("iad-secret-2", "a100-80gb", 4, "us-east", "1.20"),
        ],
        true,
        |_| {},
    )
    .await
}

on_both_engines!(the_explorer_shows_the_network_as_its_data_has_it_and_nothing_private);

async fn the_explorer_shows_the_network_as_its_data_has_it_and_nothing_private(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        devices,
    } = three_machines(b).await;
    let id = create(
        &app,
        &s,
        json!({"name": "busy", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
    )
    .await;
    wait_status(&app, &s, &id, "running").await;
    let hired = current_nodes(&cluster(&app, &s, &id).await)[0]["device_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The network now, without logging in.
    let net = app.get_public("/v1/explorer/network").await;
    assert_eq!(net.status, 200, "{}", net.text);
    let n = &net.body;
    assert_eq!(n["devices"], 3);
    assert_eq!(n["devices_hired"], 1);
    assert_eq!(n["gpus"], 20);
    assert_eq!(n["gpus_hired"], 8);
    assert_eq!(n["utilisation_pct"], 40.0);
    assert_eq!(n["countries"], 2);
    let h100 = n["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["gpu_model"] == "h100-sxm")
        .unwrap();
    assert_eq!(
        (&h100["devices"], &h100["gpus"], &h100["gpus_hired"]),
        (&json!(2), &json!(16), &json!(8))
    );
    let iad = n["by_region"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "us-east")
        .unwrap();
    assert_eq!((&iad["devices"], &iad["gpus"]), (&json!(1), &json!(4)));
    assert_eq!(iad["lat"], 39.04, "the region's place, for the map");

    // Cacheable: the same answer again is 304 by its ETag.
    let etag = net.headers[ETAG].to_str().unwrap().to_string();
    assert!(
        net.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    let again = app
        .client
        .get(app.url("/v1/explorer/network"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[ETAG].to_str().unwrap(), etag);

    // The directory: filters and pages.
    let all = app.get_public("/v1/explorer/devices?limit=2").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let cursor = all.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get_public(&format!("/v1/explorer/devices?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 1);
    assert!(rest.body["next_cursor"].is_null());
    let busy = app.get_public("/v1/explorer/devices?hired=true").await;
    let busy = busy.body["items"].as_array().unwrap();
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0]["id"], hired.as_str());
    assert_eq!(busy[0]["gpus_free"], 0);
    let a100 = app
        .get_public("/v1/explorer/devices?gpu_model=a100-80gb&region=us-east&min_reliability=0.5")
        .await;
    assert_eq!(a100.body["items"][0]["country"], "US", "{}", a100.text);
    for (query, field) in [
        ("gpu_model=b200", "gpu_model"),
        ("region=mars", "region"),
        ("status=retired", "status"),
        ("min_reliability=2", "min_reliability"),
        ("limit=0", "limit"),
        ("cursor=@@", "cursor"),
    ] {
        let bad = app
            .get_public(&format!("/v1/explorer/devices?{query}"))
            .await;
        bad.assert_problem(422, "validation_failed");
        assert_eq!(bad.body["field"], field, "{query}: {}", bad.text);
    }
    app.get_public("/v1/explorer/devices?owner=me")
        .await
        .assert_problem(422, "invalid_body");

    // A device's page; a device that is not listed is not found.
    let page = app
        .get_public(&format!("/v1/explorer/devices/{}", devices[0].id))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.body["required_stake"], "16000.00");
    assert_eq!(page.body["co_staked"], "0.00");
    app.get_public("/v1/explorer/devices/dev_nobody")
        .await
        .assert_problem(404, "not_found");

    // A block: its figures are its rows'.
    let control = &app.server.state.control;
    let hour = iocloud_db::time::now_micros().div_euclid(3_600_000_000);
    control.rewards.run_block(hour).await.unwrap();
    let at = iocloud_db::time::to_rfc3339(hour * 3_600_000_000);
    let block = app.get_public(&format!("/v1/explorer/blocks/{at}")).await;
    assert_eq!(block.status, 200, "{}", block.text);
    let judged = app
        .count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE hour = {hour}"
        ))
        .await;
    let b = &block.body["block"];
    assert_eq!(
        b["eligible_devices"].as_i64().unwrap() + b["ineligible_devices"].as_i64().unwrap(),
        judged
    );
    let by_reason: i64 = block.body["ineligible_by_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["devices"].as_i64().unwrap())
        .sum();
    assert_eq!(by_reason, b["ineligible_devices"].as_i64().unwrap());
    let listed = app
        .count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE hour = {hour} AND (reason IS NULL OR reason <> 'not_listed')"
        ))
        .await;
    assert_eq!(b["listed_devices"], listed);
    let list = app.get_public("/v1/explorer/blocks").await;
    assert_eq!(list.body["items"][0]["hour"], at.as_str(), "{}", list.text);
    app.get_public("/v1/explorer/blocks/2026-12-06T14:30:00Z")
        .await
        .assert_problem(422, "validation_failed");
    app.get_public("/v1/explorer/blocks/2020-01-01T00:00:00Z")
        .await
        .assert_problem(404, "not_found");
    let hours = app.get_public("/v1/explorer/network/hours?hours=24").await;
    assert_eq!(hours.status, 200, "{}", hours.text);
    assert_eq!(hours.body.as_array().unwrap().len(), 1);
    app.get_public("/v1/explorer/network/hours?hours=0")
        .await
        .assert_problem(422, "validation_failed");
    let supply = app.get_public("/v1/explorer/supply").await;
    assert_eq!(supply.status, 200, "{}", supply.text);
    // GraphQL answers the same, without a token; a bad argument has its code.
    let gql = app
        .graphql(
            None,
            "query($h: String!) { explorerNetwork { devices gpusHired } \
             explorerDevices(hired: true) { items { id } } explorerBlock(hour: $h) { block { listedDevices } } }",
            json!({"h": at}),
        )
        .await;
    assert!(gql.body["errors"].is_null(), "{}", gql.text);
    assert_eq!(gql.body["data"]["explorerNetwork"]["gpusHired"], 8);
    assert_eq!(
        gql.body["data"]["explorerDevices"]["items"][0]["id"],
        hired.as_str()
    );
    assert_eq!(
        gql.body["data"]["explorerBlock"]["block"]["listedDevices"],
        listed
    );
    let bad = app
        .graphql(
            None,
            "{ explorerNetworkHours(hours: 0) { hour } }",
            json!({}),
        )
        .await;
    assert_eq!(
        bad.body["errors"][0]["extensions"]["code"], "validation_failed",
        "{}",
        bad.text
    );

    // Nothing private anywhere: the fields are the public ones, and no name, organisation,
    // member or token of the owner appears in any answer.
    let model = ["gpu_model", "name", "devices", "gpus", "gpus_hired"];
    let region = [
        "region",
        "name",
        "continent",
        "lat",
        "lon",
        "devices",
        "gpus",
        "gpus_hired",
    ];
    let mut network: Vec<String> = [
        "as_of",
        "devices",
        "devices_hired",
        "gpus",
        "gpus_hired",
        "utilisation_pct",
        "countries",
        "by_model",
        "by_region",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    network.extend(model.iter().map(|f| format!("by_model[].{f}")));
    network.extend(region.iter().map(|f| format!("by_region[].{f}")));
    expect_keys(&net.body, &network, "the network");
    let mut directory = vec!["items".to_string(), "next_cursor".to_string()];
    directory.extend(device_fields("items[]."));
    expect_keys(&all.body, &directory, "the directory");
    let mut detail: Vec<String> = [
        "device",
        "required_stake",
        "co_staked",
        "uptime",
        "proofs",
        "blocks",
        "proofs_30d",
        "proofs_30d.passed",
        "proofs_30d.failed",
        "proofs_30d.unanswered",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    detail.extend(device_fields("device."));
    for list in ["uptime[]", "proofs[]", "blocks[]"] {
        for f in ["day", "minutes", "hour", "outcome", "amount"] {
            detail.push(format!("{list}.{f}"));
        }
    }
    expect_keys(&page.body, &detail, "a device's page");
    let block_fields = [
        "hour",
        "emission",
        "gpu_pool",
        "cpu_pool",
        "paid",
        "eligible_devices",
        "ineligible_devices",
        "listed_devices",
        "listed_gpus",
        "rented_devices",
        "rented_gpus",
    ];
    let mut one_block: Vec<String> = ["block", "ineligible_by_reason", "top_earners"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    one_block.extend(block_fields.iter().map(|f| format!("block.{f}")));
    one_block.extend(
        [
            "ineligible_by_reason[].reason",
            "ineligible_by_reason[].devices",
        ]
        .map(String::from),
    );
    one_block.extend(
        ["device_id", "gpu_model", "region", "amount"].map(|f| format!("top_earners[].{f}")),
    );
    expect_keys(&block.body, &one_block, "a block");
    let hour_fields: Vec<String> = [
        "hour",
        "devices",
        "gpus",
        "rented_devices",
        "rented_gpus",
        "staked",
    ]
    .iter()
    .map(|f| format!("[].{f}"))
    .collect();
    expect_keys(&hours.body, &hour_fields, "the network by hour");
    for answer in [&net, &all, &rest, &page, &block, &list, &hours] {
        for secret in [
            "fra-secret",
            "iad-secret",
            provider.org_id.as_str(),
            s.org_id.as_str(),
            "provider@example.com",
            "GPU Farm",
            "iodt_",
        ] {
            assert!(
                !answer.text.contains(secret),
                "{secret} shown: {}",
                answer.text
            );
        }
    }
}
