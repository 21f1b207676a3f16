//! IO Explorer's economy: staking (staked, bonded by model, open co-staking offers), slashing
//! cases redacted, the rentals of the bookings ledger, the network by day and month, the
//! emission schedule and a device's verification history; each matching its data, each
//! refusing bad filters by field, none carrying a private field or an owner's words.

use iocloud_tests::{
    Backend, Fleet, cluster, create, current_nodes, micros, on_both_engines, wait_status,
};
use serde_json::json;

use super::{expect_keys, strings, three_machines};

on_both_engines!(the_explorer_shows_stake_slashing_and_rentals_without_their_owners);

const SECRETS: [&str; 4] = [
    "fra-secret",
    "a miner SECRET",
    "ticket SECRET-4411",
    "provider@example.com",
];

async fn the_explorer_shows_stake_slashing_and_rentals_without_their_owners(b: Backend) {
    let Fleet {
        app,
        provider,
        customer: s,
        devices,
    } = three_machines(b).await;
    let control = &app.server.state.control;

    // A rental that ran and ended: the ledger shows its device, GPU-hours and amount.
    let id = create(
        &app,
        &s,
        json!({"name": "secret-rental", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
    )
    .await;
    wait_status(&app, &s, &id, "running").await;
    let hired = current_nodes(&cluster(&app, &s, &id).await)[0]["device_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert!(gone.status.is_success(), "{}", gone.text);
    wait_status(&app, &s, &id, "terminated").await;

    // A co-staking offer on the A100 machine, and an operator's case against an H100 one.
    let a100 = devices.iter().find(|d| d.gpus == 4).unwrap().id.clone();
    let offer = app
        .post(
            "/v1/costaking/offers",
            Some(&provider.access),
            json!({"device_id": a100, "amount": "500", "reward_share_bps": 2500, "term_days": 30}),
        )
        .await;
    assert_eq!(offer.status, 201, "{}", offer.text);
    let ops = app.operator().await;
    let slashed = devices
        .iter()
        .find(|d| d.id != hired && d.gpus == 8)
        .unwrap()
        .id
        .clone();
    let case = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": slashed, "rule": "operator", "amount": "400",
                "statement": "ran a miner SECRET on a customer's GPUs",
                "evidence": [{"kind": "note", "summary": "ticket SECRET-4411"},
                    {"kind": "note", "summary": "a second report"}]}),
        )
        .await;
    assert_eq!(case.status, 201, "{}", case.text);
    let hour = iocloud_db::time::now_micros().div_euclid(3_600_000_000);
    control.rewards.run_block(hour).await.unwrap();

    // Staking now.
    let staking = app.get_public("/v1/explorer/staking").await;
    assert_eq!(staking.status, 200, "{}", staking.text);
    let st = &staking.body;
    let active = app
        .count(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM stakes WHERE status = 'active'",
        )
        .await;
    assert_eq!(micros(st["staked"].as_str().unwrap()), active);
    assert_eq!(st["co_staked"], "0.00");
    assert_eq!(st["open_offers"], 1);
    assert_eq!(st["open_offers_amount"], "500.00");
    assert_eq!(st["in_escrow"], "400.00");
    assert_eq!(
        st["cases"],
        json!([{"status": "open", "cases": 1, "amount": "400.00"}])
    );
    // Bonded by model: what the listed devices' pages say they need (the slashed machine is
    // suspended, so off the market).
    let mut needed = std::collections::BTreeMap::<String, i64>::new();
    for d in &devices {
        let page = app
            .get_public(&format!("/v1/explorer/devices/{}", d.id))
            .await;
        if page.body["device"]["status"] == "available" || page.body["device"]["status"] == "busy" {
            let model = page.body["device"]["gpu_model"]
                .as_str()
                .unwrap()
                .to_string();
            *needed.entry(model).or_default() +=
                micros(page.body["required_stake"].as_str().unwrap());
        }
    }
    let bonded: std::collections::BTreeMap<String, i64> = st["bonded_by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["gpu_model"].as_str().unwrap().to_string(),
                micros(m["bonded"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(bonded, needed, "{}", staking.text);

    // The hour's block kept the stake behind the network.
    let hours = app.get_public("/v1/explorer/network/hours?hours=2").await;
    assert_eq!(
        micros(hours.body[0]["staked"].as_str().unwrap()),
        active,
        "{}",
        hours.text
    );

    // The case, redacted; its filters; bad filters by field.
    let cases = app.get_public("/v1/explorer/slashing").await;
    assert_eq!(cases.status, 200, "{}", cases.text);
    let c = &cases.body["items"][0];
    assert_eq!(c["device_id"], slashed.as_str());
    assert_eq!(
        (&c["rule"], &c["status"], &c["amount"]),
        (&json!("operator"), &json!("open"), &json!("400.00"))
    );
    assert_eq!(c["by_detector"], false);
    assert_eq!(c["evidence"], json!([{"kind": "note", "count": 2}]));
    assert_eq!(c["gpu_model"], "h100-sxm");
    for (query, n) in [
        ("status=open", 1),
        ("status=burned", 0),
        ("rule=idle_rule", 0),
        (&format!("device_id={hired}") as &str, 0),
    ] {
        let found = app
            .get_public(&format!("/v1/explorer/slashing?{query}"))
            .await;
        assert_eq!(
            found.body["items"].as_array().unwrap().len(),
            n,
            "{query}: {}",
            found.text
        );
    }
    for (query, field) in [
        ("status=closed", "status"),
        ("rule=greed", "rule"),
        ("cursor=@@", "cursor"),
        ("limit=500", "limit"),
    ] {
        let bad = app
            .get_public(&format!("/v1/explorer/slashing?{query}"))
            .await;
        bad.assert_problem(422, "validation_failed");
        assert_eq!(bad.body["field"], field, "{query}: {}", bad.text);
    }

    // The open offer, without its provider.
    let offers = app.get_public("/v1/explorer/costaking/offers").await;
    assert_eq!(offers.status, 200, "{}", offers.text);
    assert_eq!(offers.body["items"][0]["device_id"], a100.as_str());
    assert_eq!(offers.body["items"][0]["reward_share_bps"], 2500);
    app.get_public("/v1/explorer/costaking/offers?model=b200")
        .await
        .assert_problem(422, "validation_failed");

    // The rental: one per node, its amount the sum of its usage lines.
    let rentals = app.get_public("/v1/explorer/rentals").await;
    assert_eq!(rentals.status, 200, "{}", rentals.text);
    let items = rentals.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", rentals.text);
    let r = &items[0];
    assert_eq!(r["device_id"], hired.as_str());
    assert_eq!(
        (&r["gpu_model"], &r["region"], &r["gpus"], &r["currency"]),
        (
            &json!("h100-sxm"),
            &json!("eu-central"),
            &json!(8),
            &json!("USD")
        )
    );
    assert!(r["ended_at"].is_string(), "{r}");
    let charged = app
        .count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM usage_lines")
        .await;
    assert_eq!(micros(r["amount"].as_str().unwrap()), charged);
    let billable = app
        .count("SELECT CAST(COALESCE(SUM(billable_micros), 0) AS BIGINT) FROM usage_lines")
        .await;
    let milli = i128::from(billable) * 8 * 1000 / 3_600_000_000;
    assert_eq!(
        r["gpu_hours"],
        format!("{}.{:03}", milli / 1000, milli % 1000)
    );
    app.get_public("/v1/explorer/rentals?cursor=@@")
        .await
        .assert_problem(422, "validation_failed");
    let payments = app.get_public("/v1/explorer/payments").await;
    assert_eq!(payments.status, 200, "{}", payments.text);

    // The network by day and month: the block's figures.
    let block = app.get_public("/v1/explorer/blocks?limit=1").await;
    let listed_gpus = block.body["items"][0]["listed_gpus"].as_i64().unwrap();
    let emission = block.body["items"][0]["emission"].clone();
    for period in ["day", "month"] {
        let h = app
            .get_public(&format!(
                "/v1/explorer/network/history?period={period}&count=1"
            ))
            .await;
        assert_eq!(h.status, 200, "{}", h.text);
        let p = &h.body[0];
        assert_eq!(p["blocks"], 1, "{}", h.text);
        assert_eq!(p["gpus"], listed_gpus);
        assert_eq!(p["emission"], emission);
        assert_eq!(micros(p["staked"].as_str().unwrap()), active);
    }
    for (query, field) in [
        ("period=week", "period"),
        ("count=0", "count"),
        ("period=month&count=61", "count"),
    ] {
        let bad = app
            .get_public(&format!("/v1/explorer/network/history?{query}"))
            .await;
        bad.assert_problem(422, "validation_failed");
        assert_eq!(bad.body["field"], field, "{query}: {}", bad.text);
    }

    // The emission schedule adds up to the cap.
    let schedule = app.get_public("/v1/explorer/emission").await;
    assert_eq!(schedule.status, 200, "{}", schedule.text);
    let years = schedule.body["years"].as_array().unwrap();
    assert_eq!(years.len(), 20);
    let minted: i64 = years
        .iter()
        .map(|y| micros(y["emitted"].as_str().unwrap()))
        .sum();
    assert_eq!(minted, 300_000_000_000_000);
    assert_eq!(years[19]["supply_at_end"], schedule.body["cap"]);
    assert!(schedule.body["current_year"].as_i64().unwrap() >= 3);

    // A device's verification history: its proofs as stored, newest first.
    let proofs = app
        .get_public(&format!("/v1/explorer/devices/{hired}/proofs"))
        .await;
    assert_eq!(proofs.status, 200, "{}", proofs.text);
    let stored = app
        .count(&format!(
            "SELECT COUNT(*) FROM device_proofs WHERE device_id = '{hired}'"
        ))
        .await;
    assert_eq!(
        proofs.body["items"].as_array().unwrap().len() as i64,
        stored.min(50)
    );
    app.get_public("/v1/explorer/devices/dev_nobody/proofs")
        .await
        .assert_problem(404, "not_found");
    let page = app
        .get_public(&format!("/v1/explorer/devices/{hired}"))
        .await;
    let counted = &page.body["proofs_30d"];
    assert_eq!(
        counted["passed"].as_i64().unwrap()
            + counted["failed"].as_i64().unwrap()
            + counted["unanswered"].as_i64().unwrap(),
        stored
    );

    // GraphQL answers the same, without a token.
    let gql = app
        .graphql(
            None,
            "{ explorerStaking { inEscrow openOffers } explorerSlashing(limit: 5) { items { rule evidence { kind count } } } \
             explorerRentals(limit: 5) { items { deviceId gpuHours } } explorerPayments(limit: 5) { items { id } } }",
            json!({}),
        )
        .await;
    assert!(gql.body["errors"].is_null(), "{}", gql.text);
    let more = app
        .graphql(
            None,
            "{ explorerEmission { years { year } } explorerNetworkHistory(period: \"month\", count: 1) { blocks } \
             explorerCostakeOffers(limit: 5) { items { deviceId } } }",
            json!({}),
        )
        .await;
    assert!(more.body["errors"].is_null(), "{}", more.text);
    let d = &gql.body["data"];
    let m = &more.body["data"];
    assert_eq!(d["explorerStaking"]["inEscrow"], "400.00");
    assert_eq!(d["explorerSlashing"]["items"][0]["evidence"][0]["count"], 2);
    assert_eq!(d["explorerRentals"]["items"][0]["deviceId"], hired.as_str());
    assert_eq!(m["explorerEmission"]["years"].as_array().unwrap().len(), 20);
    assert_eq!(m["explorerNetworkHistory"][0]["blocks"], 1);
    assert_eq!(
        m["explorerCostakeOffers"]["items"][0]["deviceId"],
        a100.as_str()
    );
    let bad = app
        .graphql(
            None,
            "{ explorerNetworkHistory(period: \"week\") { blocks } }",
            json!({}),
        )
        .await;
    assert_eq!(
        bad.body["errors"][0]["extensions"]["code"], "validation_failed",
        "{}",
        bad.text
    );

    // The pages say the same, in words.
    let staking_page = app.get_public("/explorer/staking").await;
    assert_eq!(staking_page.status, 200, "{}", staking_page.text);
    assert!(staking_page.text.contains("Bonded by model"));
    assert!(staking_page.text.contains(&slashed));
    assert!(staking_page.text.contains("2 note"));
    let bookings_page = app.get_public("/explorer/bookings").await;
    assert_eq!(bookings_page.status, 200);
    assert!(bookings_page.text.contains(&hired));
    let blocks_page = app.get_public("/explorer/blocks").await;
    assert!(blocks_page.text.contains("The emission schedule"));
    let proofs_page = app
        .get_public(&format!("/explorer/devices/{hired}/proofs"))
        .await;
    assert_eq!(proofs_page.status, 200);
    assert_eq!(
        app.get_public("/explorer/staking?cursor=@@").await.status,
        422
    );

    // Nothing private: every field is a public one, and no owner's name or words appear.
    let case_fields = [
        "id",
        "device_id",
        "gpu_model",
        "region",
        "rule",
        "by_detector",
        "status",
        "amount",
        "evidence",
        "evidence[].kind",
        "evidence[].count",
        "appealed",
        "opened_at",
        "appeal_deadline",
        "decided_at",
        "closed_at",
    ];
    let mut case_list = strings(&["items", "next_cursor"]);
    case_list.extend(case_fields.iter().map(|f| format!("items[].{f}")));
    expect_keys(&cases.body, &case_list, "the slashing cases");
    let mut staking_fields = strings(&[
        "as_of",
        "staked",
        "unbonding",
        "co_staked",
        "open_offers",
        "open_offers_amount",
        "bonded_by_model",
        "cases",
        "in_escrow",
        "burned",
    ]);
    for f in ["gpu_model", "name", "devices", "gpus", "bonded"] {
        staking_fields.push(format!("bonded_by_model[].{f}"));
    }
    for f in ["status", "cases", "amount"] {
        staking_fields.push(format!("cases[].{f}"));
    }
    expect_keys(&staking.body, &staking_fields, "staking");
    let mut offer_list = strings(&["items", "next_cursor"]);
    for f in [
        "id",
        "device_id",
        "gpu_model",
        "gpu_count",
        "region",
        "reliability",
        "amount",
        "reward_share_bps",
        "term_days",
        "status",
        "created_at",
    ] {
        offer_list.push(format!("items[].{f}"));
    }
    expect_keys(&offers.body, &offer_list, "the open offers");
    let mut rental_list = strings(&["items", "next_cursor"]);
    for f in [
        "id",
        "started_at",
        "ended_at",
        "device_id",
        "gpu_model",
        "region",
        "gpus",
        "gpu_hours",
        "amount",
        "currency",
    ] {
        rental_list.push(format!("items[].{f}"));
    }
    expect_keys(&rentals.body, &rental_list, "the rentals");
    let period_fields: Vec<String> = [
        "period",
        "blocks",
        "devices",
        "gpus",
        "rented_gpu_hours",
        "utilisation_pct",
        "emission",
        "paid",
        "staked",
    ]
    .iter()
    .map(|f| format!("[].{f}"))
    .collect();
    let history = app.get_public("/v1/explorer/network/history").await;
    expect_keys(&history.body, &period_fields, "the network by day");
    let mut emission_fields = strings(&[
        "launch_supply",
        "cap",
        "monthly_decay_ppm",
        "current_year",
        "years",
    ]);
    for f in ["year", "starts_at", "emitted", "supply_at_end"] {
        emission_fields.push(format!("years[].{f}"));
    }
    expect_keys(&schedule.body, &emission_fields, "the emission schedule");
    let proof_list = strings(&[
        "items",
        "next_cursor",
        "items[].hour",
        "items[].outcome",
        "items[].amount",
    ]);
    expect_keys(&proofs.body, &proof_list, "a device's proofs");
    let answers: [&iocloud_tests::Answer; 10] = [
        &staking,
        &cases,
        &offers,
        &rentals,
        &payments,
        &history,
        &proofs,
        &gql,
        &staking_page,
        &bookings_page,
    ];
    for answer in answers {
        for secret in SECRETS.iter().copied().chain([
            provider.org_id.as_str(),
            s.org_id.as_str(),
            "GPU Farm",
            "secret-rental",
        ]) {
            assert!(
                !answer.text.contains(secret),
                "{secret} shown: {}",
                answer.text
            );
        }
    }
}
