//! Hourly block rewards over a simulated stretch of hours: devices heard, silent, failing their
//! proofs, breaking the idle rule, rented, CPU-only; each block's shares checked against a
//! reference worked out here; the ledger balanced and the earnings equal to the rows; a block
//! written twice written once; blocks caught up once across replicas; and what a provider can
//! read (another organisation's devices not found).

use std::collections::HashMap;

use iocloud_billing::{AccountKind, AccountRef, Currency};
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::{now_micros, to_rfc3339};
use iocloud_tests::{
    Backend, TestApp, agent, cpu_box, heartbeat, ledger_balances, on_both_engines, proof,
    verified_device, verified_rig,
};
use serde_json::{Value, json};

on_both_engines!(
    a_stretch_of_hours_pays_the_devices_that_earned_it,
    blocks_catch_up_once_across_replicas,
    a_block_that_fails_midway_leaves_nothing,
);

const H: i64 = MICROS_PER_HOUR;
const MINUTE: i64 = 60_000_000;

fn micros(v: &Value) -> i64 {
    iocloud_tests::micros(v.as_str().unwrap())
}

async fn a_stretch_of_hours_pays_the_devices_that_earned_it(b: Backend) {
    let app = TestApp::spawn(b).await;
    let control = &app.server.state.control;
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, "100000", "IO").await;
    app.post("/v1/stake", Some(&p.access), json!({"amount": "100000"}))
        .await;
    let mut ids = HashMap::new();
    let mut e_token = String::new();
    for name in ["a", "b", "c", "d", "e"] {
        let (id, token) = verified_rig(&app, &p, name).await;
        ids.insert(name, id);
        e_token = token;
    }
    let (f, _, _) = verified_device(&app, &p, cpu_box("f")).await;
    ids.insert("f", f);
    for id in ids.values() {
        let d = app.get(&format!("/v1/devices/{id}"), &p.access).await;
        assert_eq!(d.body["status"], "available", "{}", d.text);
    }
    // E serves a rental: a node that came up on it.
    let node = control
        .agents
        .assign_node(
            &ids["e"],
            "clu_rented",
            "org_customer",
            8,
            &json!({"kind": "container", "image": "busybox"}),
        )
        .await
        .unwrap();
    let ready = agent(
        &app,
        &e_token,
        "POST",
        &format!("/agent/v1/devices/{}/nodes/{node}/status", ids["e"]),
        json!({"status": "ready"}),
    )
    .await;
    assert_eq!(ready.status, 204, "{}", ready.text);

    // Eight hours after this one, heard every minute from just before them: five hours of
    // streak, then three judged.
    let first = now_micros().div_euclid(H) + 1;
    let (h6, h7, h8) = (first + 5, first + 6, first + 7);
    for minute in -1..8 * 60 {
        let at = first * H + minute * MINUTE + 1_000_000;
        let hour = at.div_euclid(H);
        let in_hour = minute % 60;
        for (name, id) in &ids {
            let beat = match *name {
                // B is silent for three minutes in the seventh hour.
                "b" if hour == h7 && (10..13).contains(&in_hour) => continue,
                // D runs something of its own while listed and idle in the sixth hour.
                "d" if hour == h6 && in_hour == 30 => heartbeat(8, 50, 5, 0),
                "e" => heartbeat(0, 95, 40, 1),
                "f" => heartbeat(0, 10, 10, 0),
                _ => heartbeat(8, 1, 5, 0),
            };
            control.devices.heartbeats().push(id, beat, at);
        }
        control.devices.flush_heartbeats().await.unwrap();
    }
    for hour in first..first + 8 {
        for name in ["a", "b", "d", "f"] {
            proof(&app, &ids[name], &p.org_id, hour, Some("passed")).await;
        }
        match hour {
            h if h == h6 => proof(&app, &ids["c"], &p.org_id, h, Some("wrong_answer")).await,
            // Asked for and never answered.
            h if h == h7 => proof(&app, &ids["c"], &p.org_id, h, None).await,
            h => proof(&app, &ids["c"], &p.org_id, h, Some("passed")).await,
        }
    }

    let mut minted = 0;
    for hour in first..first + 8 {
        let r = control.rewards.run_block(hour).await.unwrap();
        assert!(r.written);
        assert_eq!(r.devices, 6);
        minted += r.emission;
    }
    assert!(minted > 0, "the schedule mints in this decade");
    // The explorer's top earners of the last block are its rows' highest amounts.
    let last = first + 7;
    let shown = app
        .get_public(&format!(
            "/v1/explorer/blocks/{}",
            iocloud_db::time::to_rfc3339(last * 3_600_000_000)
        ))
        .await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let top: Vec<&str> = shown.body["top_earners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["device_id"].as_str().unwrap())
        .collect();
    let earners = app
        .count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE hour = {last} AND amount > 0"
        ))
        .await;
    assert_eq!(top.len() as i64, earners.min(10), "{}", shown.text);
    let best = app
        .scalar(
            &format!(
                "SELECT device_id FROM block_rewards WHERE hour = {last} AND amount > 0 AND device_id <> $1 \
                 ORDER BY amount DESC, device_id LIMIT 1"
            ),
            "",
        )
        .await;
    assert_eq!(top[0], best, "{}", shown.text);

    // The reasons, hour by hour, as the provider reads them.
    let expected: [(&str, [Option<&str>; 3]); 6] = [
        ("a", [None, None, None]),
        ("b", [None, Some("not_heard"), Some("short_uptime")]),
        ("c", [Some("proof_failed"), Some("no_proof"), None]),
        ("d", [Some("idle_rule"), None, None]),
        ("e", [None, None, None]),
        ("f", [None, None, None]),
    ];
    for (name, reasons) in expected {
        let page = app
            .get(
                &format!("/v1/devices/{}/blocks?limit=8", ids[name]),
                &p.access,
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 8, "one row a block");
        // Newest first: h8, h7, h6, then the five hours of streak.
        let got: Vec<Option<&str>> = items[..3].iter().map(|r| r["reason"].as_str()).collect();
        assert_eq!(
            got,
            vec![reasons[2], reasons[1], reasons[0]],
            "{name}: {}",
            page.text
        );
        for early in &items[3..] {
            assert_eq!(early["reason"], "short_uptime", "{name}: {early}");
            assert_eq!(micros(&early["amount"]), 0);
        }
    }
    // The evidence says what happened, with the figures.
    let c = app
        .get(
            &format!("/v1/devices/{}/blocks?limit=3", ids["c"]),
            &p.access,
        )
        .await;
    assert_eq!(
        c.body["items"][2]["evidence"],
        "wrong answer: the proof of work's answer was wrong"
    );
    let b7 = app
        .get(
            &format!("/v1/devices/{}/blocks?limit=2", ids["b"]),
            &p.access,
        )
        .await;
    let silence = b7.body["items"][1]["evidence"].as_str().unwrap();
    assert!(
        silence.starts_with("silent for 2") || silence.starts_with("silent for 1"),
        "{silence}"
    );
    let d6 = app
        .get(
            &format!("/v1/devices/{}/blocks?limit=3", ids["d"]),
            &p.access,
        )
        .await;
    assert_eq!(
        d6.body["items"][2]["evidence"],
        "GPU at 50 % while listed and not rented (the limit for datacenter GPUs is 5 %)"
    );

    // Each judged block's shares against a reference: H100 ×8 at 1 Gbps scores 10 × 8 × 1000,
    // the rented one a quarter more; the CPU box 32 cores × 1000, alone in its pool.
    let gpu_score = 10 * 8 * 1_000;
    for (hour, gpu_earners) in [
        (
            h6,
            vec![("a", gpu_score), ("b", gpu_score), ("e", gpu_score * 5 / 4)],
        ),
        (
            h7,
            vec![("a", gpu_score), ("d", gpu_score), ("e", gpu_score * 5 / 4)],
        ),
        (
            h8,
            vec![
                ("a", gpu_score),
                ("c", gpu_score),
                ("d", gpu_score),
                ("e", gpu_score * 5 / 4),
            ],
        ),
    ] {
        let detail = app
            .get(
                &format!("/v1/rewards/blocks/{}", to_rfc3339(hour * H)),
                &p.access,
            )
            .await;
        assert_eq!(detail.status, 200, "{}", detail.text);
        let emission = control.rewards.emission_of(hour);
        assert_eq!(micros(&detail.body["block"]["emission"]), emission);
        let gpu_pool = emission * 8_000 / 10_000;
        let cpu_pool = emission - gpu_pool;
        let rows: HashMap<String, &Value> = detail.body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["device_id"].as_str().unwrap().to_string(), r))
            .collect();
        let total: i64 = gpu_earners.iter().map(|(_, s)| s).sum();
        let mut paid = 0;
        for (name, score) in &gpu_earners {
            let row = rows[&ids[name]];
            assert_eq!(row["score"], *score, "{name} in {hour}");
            assert_eq!(row["pool"], "gpu");
            let amount = micros(&row["amount"]);
            let exact = i128::from(gpu_pool) * i128::from(*score) / i128::from(total);
            assert!(
                (i128::from(amount) - exact) <= 1 && i128::from(amount) >= exact,
                "{name}: {amount} against {exact}"
            );
            paid += amount;
        }
        assert_eq!(paid, gpu_pool, "the GPU pool is paid out exactly");
        assert_eq!(
            micros(&rows[&ids["f"]]["amount"]),
            cpu_pool,
            "F alone in the CPU pool"
        );
        assert_eq!(rows[&ids["f"]]["pool"], "cpu");
        assert_eq!(rows[&ids["f"]]["score"], 32 * 1_000);
        assert_eq!(micros(&detail.body["block"]["earned"]), emission);
    }

    // The ledger: every block minted, the provider's earnings equal to its rows, what nobody
    // earned kept in the rewards pool, the books balanced.
    let earned: i64 = app
        .count(&format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM block_rewards WHERE org_id = '{}'",
            p.org_id
        ))
        .await;
    let ledger = &control.ledger;
    let earnings = ledger
        .balance(&AccountRef::org(
            &p.org_id,
            AccountKind::ProviderEarnings,
            Currency::Io,
        ))
        .await
        .unwrap()
        .micros();
    assert_eq!(earnings, earned);
    let emitted = -ledger
        .balance(&AccountRef::platform(AccountKind::Emission, Currency::Io))
        .await
        .unwrap()
        .micros();
    assert_eq!(emitted, minted);
    let pool = ledger
        .balance(&AccountRef::platform(
            AccountKind::RewardsPool,
            Currency::Io,
        ))
        .await
        .unwrap()
        .micros();
    assert_eq!(
        pool + earned,
        minted,
        "what nobody earned stays in the pool"
    );
    ledger_balances(&app).await;
    let supply = app.get_public("/v1/supply").await;
    assert_eq!(micros(&supply.body["emitted"]), minted, "{}", supply.text);
    assert_eq!(micros(&supply.body["undistributed"]), pool);

    // Written twice, written once.
    let again = control.rewards.run_block(h6).await.unwrap();
    assert!(!again.written);
    assert_eq!(
        ledger
            .balance(&AccountRef::org(
                &p.org_id,
                AccountKind::ProviderEarnings,
                Currency::Io
            ))
            .await
            .unwrap()
            .micros(),
        earnings
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE hour = {h6}"
        ))
        .await,
        6
    );

    // The summary and the list of blocks.
    let summary = app.get("/v1/rewards", &p.access).await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    assert_eq!(micros(&summary.body["total"]), earned);
    let blocks = app.get("/v1/rewards/blocks?limit=3", &p.access).await;
    let items = blocks.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["hour"], to_rfc3339(h8 * H));
    let next = app
        .get(
            &format!(
                "/v1/rewards/blocks?limit=3&cursor={}",
                blocks.body["next_cursor"].as_str().unwrap()
            ),
            &p.access,
        )
        .await;
    assert_eq!(next.body["items"][0]["hour"], to_rfc3339((h8 - 3) * H));

    // GraphQL says the same, with the same codes.
    let q = app
        .graphql(
            Some(&p.access),
            "query($id: String!) { deviceBlocks(deviceId: $id, limit: 3) { items { reason evidence amount } } }",
            json!({"id": ids["d"]}),
        )
        .await;
    assert_eq!(
        q.body["data"]["deviceBlocks"]["items"][2]["reason"], "idle_rule",
        "{}",
        q.text
    );

    // Another organisation sees the block but none of these devices, and no device's hours.
    let other = app.signup("other@example.com", "Other").await;
    let theirs = app
        .get(
            &format!("/v1/rewards/blocks/{}", to_rfc3339(h6 * H)),
            &other.access,
        )
        .await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body["devices"], json!([]));
    assert_eq!(micros(&theirs.body["block"]["earned"]), 0);
    app.get(&format!("/v1/devices/{}/blocks", ids["a"]), &other.access)
        .await
        .assert_problem(404, "not_found");

    // Bad hours are refused clearly; an hour without a block is not found.
    app.get("/v1/rewards/blocks/yesterday", &p.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get(
        &format!("/v1/rewards/blocks/{}", to_rfc3339(h6 * H + 30 * MINUTE)),
        &p.access,
    )
    .await
    .assert_problem(422, "validation_failed");
    app.get(
        &format!("/v1/rewards/blocks/{}", to_rfc3339((first - 100) * H)),
        &p.access,
    )
    .await
    .assert_problem(404, "not_found");
    app.get("/v1/rewards/blocks?cursor=bad!", &p.access)
        .await
        .assert_problem(422, "validation_failed");
}

async fn blocks_catch_up_once_across_replicas(b: Backend) {
    let app = TestApp::spawn(b).await;
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, "16000", "IO").await;
    app.post("/v1/stake", Some(&p.access), json!({"amount": "16000"}))
        .await;
    let (id, _) = verified_rig(&app, &p, "rig").await;
    let second = app.replica(|_| {}).await;
    let verified_hour = now_micros().div_euclid(H);
    // The first pass starts the chain at the last hour due: nothing before it is minted.
    let first_pass = (verified_hour + 1) * H + 181_000_000;
    let started = app
        .server
        .state
        .control
        .rewards
        .run_due(first_pass)
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].hour, verified_hour);
    // Three hours and the delay later, both replicas run the pass at once: the missed hours
    // are caught up, each once.
    let later = (verified_hour + 4) * H + 181_000_000;
    let (one, two) = tokio::join!(
        app.server.state.control.rewards.run_due(later),
        second.server.state.control.rewards.run_due(later)
    );
    let written: usize = [one.unwrap(), two.unwrap()]
        .iter()
        .flatten()
        .filter(|r| r.written)
        .count();
    assert_eq!(
        written, 3,
        "the three hours after the first block, each once"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM reward_blocks").await, 4);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE device_id = '{id}'"
        ))
        .await,
        4
    );
    // Nothing more is due until the next hour ends.
    let again = app
        .server
        .state
        .control
        .rewards
        .run_due(later)
        .await
        .unwrap();
    assert!(again.iter().all(|r| !r.written), "{again:?}");
    // Never heard, the device earned nothing and the minting stayed in the pool.
    let hours = app
        .items(&format!("/v1/devices/{id}/blocks"), &p.access)
        .await;
    assert!(
        hours
            .iter()
            .all(|h| h["reason"] == "not_listed" || h["reason"] == "not_heard"),
        "{hours:?}"
    );
    // Its stake withdrawn from under it, the next hour says so first.
    app.exec(
        "UPDATE stakes SET status = 'unbonding' WHERE org_id = $1",
        &p.org_id,
    )
    .await;
    let report = app
        .server
        .state
        .control
        .rewards
        .run_block(verified_hour + 4)
        .await
        .unwrap();
    assert!(report.written);
    let latest = app
        .get(&format!("/v1/devices/{id}/blocks?limit=1"), &p.access)
        .await;
    assert_eq!(
        latest.body["items"][0]["reason"], "stake_short",
        "{}",
        latest.text
    );
    assert!(
        latest.body["items"][0]["evidence"]
            .as_str()
            .unwrap()
            .contains("short of the 16000"),
        "{}",
        latest.text
    );
    ledger_balances(&app).await;
    second.server.stop().await;
}

/// A block that fails after writing part of itself (here: one device's row is in the way, as
/// a crash between statements would leave the database) leaves no trace: no block, no rows,
/// no minting. Run again once the way is clear, it is written once.
async fn a_block_that_fails_midway_leaves_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, "32000", "IO").await;
    app.post("/v1/stake", Some(&p.access), json!({"amount": "32000"}))
        .await;
    let (first, _) = verified_rig(&app, &p, "one").await;
    let (second, _) = verified_rig(&app, &p, "two").await;
    let rewards = &app.server.state.control.rewards;
    let hour = now_micros().div_euclid(H) + 1;
    // The second device's row is there before the block's: its insert fails after the block's
    // header and the first rows went in.
    app.exec(
        &format!(
            "INSERT INTO block_rewards (hour, device_id, org_id, pool, score, amount, rented) \
             VALUES ({hour}, $1, 'org_x', 'gpu', 0, 0, FALSE)"
        ),
        &second,
    )
    .await;
    assert!(rewards.run_block(hour).await.is_err());
    assert_eq!(app.count("SELECT COUNT(*) FROM reward_blocks").await, 0);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE device_id = '{first}'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'reward'")
            .await,
        0,
        "nothing minted"
    );
    ledger_balances(&app).await;
    app.exec("DELETE FROM block_rewards WHERE device_id = $1", &second)
        .await;
    assert!(rewards.run_block(hour).await.unwrap().written);
    assert!(!rewards.run_block(hour).await.unwrap().written);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'reward'")
            .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM block_rewards WHERE hour = {hour}"
        ))
        .await,
        2
    );
    ledger_balances(&app).await;
}
