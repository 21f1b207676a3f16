//! A change of the fee, the stake per GPU and a model's multiplier, on both engines: it takes
//! effect on the hour; an accrual pass across that hour charges each side under its own
//! version and every usage line records it; quotes record the version they were priced under;
//! the stake a device needs follows the version in force; bad multipliers are refused.

use iocloud_billing::metering::NewUsage;
use iocloud_billing::{Currency, Money};
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_tests::{Backend, TestApp, iocloud, iocloud_with_key, on_both_engines, rig};
use serde_json::json;

use super::super::console_client::{csrf_of, open, page, post_form, sign_in};
use super::{staker, ts};

on_both_engines!(a_change_of_fee_and_stake_applies_from_its_hour);

async fn a_change_of_fee_and_stake_applies_from_its_hour(b: Backend) {
    let app = TestApp::spawn(b).await;
    let gov = &app.server.state.control.governance;
    let big = staker(&app, "big@example.com", "Big Stake", "1000000").await;
    let customer = app.signup("ada@example.com", "Acme").await;
    let provider = app.signup("gpus@example.com", "GPU Farm").await;

    // Multipliers must name catalog models, once each, within their range.
    let before = app.count("SELECT COUNT(*) FROM proposals").await;
    for multipliers in [
        json!([{"gpu_model": "abacus", "multiplier": 2}]),
        json!([{"gpu_model": "h100-sxm", "multiplier": 0}]),
        json!([{"gpu_model": "h100-sxm", "multiplier": 2}, {"gpu_model": "h100-sxm", "multiplier": 3}]),
        json!([]),
    ] {
        let refused = app
            .post(
                "/v1/governance/proposals",
                Some(&big.access),
                json!({"title": "t", "body": "b", "change": {"model_multipliers": multipliers}}),
            )
            .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(
            refused.body["field"], "model_multipliers",
            "{}",
            refused.text
        );
    }
    let refused = app
        .post(
            "/v1/governance/proposals",
            Some(&big.access),
            json!({"title": "t", "body": "b", "change": {"stake_per_gpu_io": 5}}),
        )
        .await;
    refused.assert_problem(422, "validation_failed");
    assert_eq!(refused.body["field"], "stake_per_gpu_io");
    assert_eq!(app.count("SELECT COUNT(*) FROM proposals").await, before);

    // Proposed and voted from the command line; read back without a key.
    let (_, key) = app.api_key(&big.access, &["read", "write", "admin"]).await;
    let propose = [
        "governance",
        "propose",
        "--title",
        "Cheaper H100 listings",
        "--body",
        "Lower the bar for datacenter GPUs.",
        "--set",
        "platform_fee_bps=1000",
        "--set",
        "stake_per_gpu_io=100",
        "--multiplier",
        "h100-sxm=5",
    ];
    assert_eq!(iocloud_with_key(&app, &propose, &key).await, 0);
    let id = app
        .scalar(
            "SELECT id FROM proposals WHERE title = $1",
            "Cheaper H100 listings",
        )
        .await;
    let made = app
        .get_public(&format!("/v1/governance/proposals/{id}"))
        .await;
    assert_eq!(
        made.body["change"]["model_multipliers"],
        json!([{"gpu_model": "h100-sxm", "multiplier": 5}]),
        "{}",
        made.text
    );
    assert_eq!(made.body["change"]["platform_fee_bps"], 1_000);
    assert_eq!(
        iocloud_with_key(&app, &["governance", "vote", &id, "yes"], &key).await,
        0
    );
    let public = ["--server", app.base.as_str()];
    for args in [
        &["governance", "proposals", "--status", "voting"][..],
        &["governance", "show", &id],
        &["governance", "params"],
        &["explorer", "network"],
        &["explorer", "devices", "--model", "h100-sxm"],
        &["explorer", "blocks"],
        &["explorer", "supply"],
    ] {
        let all: Vec<&str> = args.iter().chain(public.iter()).copied().collect();
        assert_eq!(iocloud(&all).await, 0, "{args:?}");
    }
    let refused: Vec<&str> = ["explorer", "devices", "--model", "abacus"]
        .iter()
        .chain(public.iter())
        .copied()
        .collect();
    assert_ne!(iocloud(&refused).await, 0);
    let bad_set = [
        "governance",
        "propose",
        "--title",
        "t",
        "--body",
        "b",
        "--set",
        "fee",
    ];
    assert_ne!(iocloud_with_key(&app, &bad_set, &key).await, 0);

    // The console's vote form on the explorer's page: the way to sign in for anyone, the form
    // for a signed-in owner, never kept by a shared cache; a vote replaced; refusals shown.
    let path = format!("/explorer/governance/{id}");
    let anonymous = app.get_public(&path).await;
    assert!(anonymous.text.contains("/app/login"), "{}", anonymous.text);
    assert!(!anonymous.text.contains("name=\"choice\""));
    assert_eq!(anonymous.header("vary"), Some("Cookie"));
    let jar = sign_in(&app, "big@example.com").await;
    let res = open(&app, &jar, &path).await;
    assert_eq!(
        res.headers()["cache-control"].to_str().unwrap(),
        "private, no-store"
    );
    let html = res.text().await.unwrap();
    assert!(html.contains("Its vote: <strong>yes</strong>"), "{html}");
    let vote_path = format!("{path}/vote");
    let csrf = csrf_of(&jar);
    let (status, to, _) =
        post_form(&app, &jar, &vote_path, &[("csrf", &csrf), ("choice", "no")]).await;
    assert_eq!(status, 303);
    assert_eq!(
        to.as_deref(),
        Some(format!("{path}?voted=1#vote-h").as_str())
    );
    let (_, html) = page(&app, &jar, &format!("{path}?voted=1")).await;
    assert!(html.contains("Its vote: <strong>no</strong>"), "{html}");
    let (status, _, _) = post_form(
        &app,
        &jar,
        &vote_path,
        &[("csrf", "forged"), ("choice", "yes")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, html) = post_form(
        &app,
        &jar,
        &vote_path,
        &[("csrf", &csrf), ("choice", "maybe")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    let (status, to, _) = post_form(
        &app,
        &jar,
        &vote_path,
        &[("csrf", &csrf), ("choice", "yes")],
    )
    .await;
    assert_eq!((status, to.is_some()), (303, true));
    let unstaked = sign_in(&app, "ada@example.com").await;
    let (status, _, html) = post_form(
        &app,
        &unstaked,
        &vote_path,
        &[("csrf", &csrf_of(&unstaked)), ("choice", "yes")],
    )
    .await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM proposal_votes WHERE proposal_id = '{id}'"
        ))
        .await,
        1
    );
    gov.run_pass(ts(&made.body["ends_at"])).await.unwrap();
    let queued = app
        .get_public(&format!("/v1/governance/proposals/{id}"))
        .await;
    let executes_at = ts(&queued.body["executes_at"]);
    assert_eq!(gov.run_pass(executes_at).await.unwrap().executed, 1);
    let params = app.get_public("/v1/governance/params").await;
    let next = &params.body["next"];
    assert_eq!(next["params"]["stake_per_gpu_io"], 100, "{}", params.text);
    assert_eq!(
        next["params"]["model_multipliers"],
        json!([{"gpu_model": "h100-sxm", "multiplier": 5}])
    );
    let effective = ts(&next["effective_at"]);

    // A node that ran from an hour before the change to half an hour after it, charged by one
    // pass that crosses the change's hour: each hour under its own version and fee.
    app.grant_credit(&customer.org_id, "100", "USD").await;
    let ledger = &app.server.state.control.ledger;
    let hold = ledger
        .place_hold(
            &customer.org_id,
            Money::from_micros(100_000_000, Currency::Usd),
            "clu_h100",
            "hold-clu_h100",
        )
        .await
        .unwrap();
    ledger
        .start_usage(NewUsage {
            org_id: &customer.org_id,
            cluster_id: "clu_h100",
            node_id: "nod_1",
            device_id: "dev_rig1",
            provider_org_id: &provider.org_id,
            hold_id: &hold.id,
            gpus: 8,
            rate_per_hour: Money::from_micros(8 * 2_100_000, Currency::Usd),
            started_at: effective - MICROS_PER_HOUR,
        })
        .await
        .unwrap();
    let billing = &app.server.state.control.billing;
    billing
        .accrue(effective + MICROS_PER_HOUR / 2, 60_000_000)
        .await
        .unwrap();
    // Passes after it find nothing left before the change to charge under the old version.
    billing
        .accrue(effective + MICROS_PER_HOUR / 2 + 60_000_000, 60_000_000)
        .await
        .unwrap();
    for (hour, version, fee_bps) in [(effective - MICROS_PER_HOUR, 1, 500), (effective, 2, 1_000)] {
        let line = |column: &str| {
            format!(
                "SELECT {column} FROM usage_lines WHERE cluster_id = 'clu_h100' AND hour_start = {hour}"
            )
        };
        assert_eq!(
            app.count(&line("params_version")).await,
            version,
            "hour {hour}"
        );
        let amount = app.count(&line("amount")).await;
        let earned = app.count(&line("earned")).await;
        assert!(amount > 0, "hour {hour}");
        assert_eq!(earned, amount - amount * fee_bps / 10_000, "hour {hour}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM usage_lines WHERE cluster_id = 'clu_h100' AND period_end > period_start")
            .await,
        2
    );
    let csv = app
        .get(
            &format!(
                "/v1/usage/export?month={}",
                &iocloud_db::time::to_rfc3339(effective)[..7]
            ),
            &customer.access,
        )
        .await
        .text;
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().ends_with(",params_version"), "{csv}");
    let versions: Vec<&str> = rows.map(|r| r.rsplit(',').next().unwrap()).collect();
    assert_eq!(versions, ["1", "2"], "{csv}");

    // Until it takes effect, quotes and stake are the launch version's.
    app.exec(
        "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
         bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, created_at, updated_at) \
         VALUES ($1, 'org_elsewhere', $1, 'h100-sxm', 8, 8, 64, 512, 2000, 'eu-central', 'DE', 50.1, 8.7, 10000, 10000, 2000000, $1, 'available', 1, 1)",
        "dev_for_quotes",
    )
    .await;
    let quote = app
        .post(
            "/v1/quotes",
            Some(&customer.access),
            json!({"gpu_count": 1}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.text);
    assert_eq!(quote.body["params_version"], 1);
    let first = app
        .post("/v1/devices", Some(&provider.access), rig("rig-1"))
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["required_stake"], "16000.00", "200 × 8 × 10");

    // Once in force (its hour brought to the present here), they follow it.
    app.exec(
        "UPDATE protocol_params SET effective_at = CAST($1 AS BIGINT)",
        &(now_micros() - MICROS_PER_HOUR).to_string(),
    )
    .await;
    gov.refresh().await.unwrap();
    assert_eq!(gov.in_force().version, 2);
    let second = app
        .post("/v1/devices", Some(&provider.access), rig("rig-2"))
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(second.body["required_stake"], "4000.00", "100 × 8 × 5");
    let listed = app
        .get(
            &format!("/v1/devices/{}", first.body["id"].as_str().unwrap()),
            &provider.access,
        )
        .await;
    assert_eq!(listed.body["required_stake"], "4000.00", "{}", listed.text);
    let quote = app
        .post(
            "/v1/quotes",
            Some(&customer.access),
            json!({"gpu_count": 1}),
        )
        .await;
    assert_eq!(quote.body["params_version"], 2, "{}", quote.text);
    let page = app.get_public("/explorer/governance").await;
    assert!(page.text.contains("h100-sxm ×5"), "{}", page.text);
}
