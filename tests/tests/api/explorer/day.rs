//! IO Explorer after a simulated day: a staked provider's three H100 rigs and a CPU-only box
//! heard every minute for 24 future hours (one rig silent for three hours in the middle), their
//! hourly proofs (one rig failing three in a row), one rig serving a customer's rental all day,
//! the day's 24 blocks and then the slashing pass. Every answer of the explorer about that day
//! (blocks, one block, the supply, the network by hour and by day, the devices' pages and
//! proofs, the slashing case, the rental) is checked against the rows under it, and those rows
//! against what the day put in; no answer carries an owner's name, organisation or email.
//!
//! One file, though a long one: it is one day, set up once (a day of heartbeats is the slow
//! part) and read through every explorer answer; split, each part would simulate the day again.

use std::collections::BTreeMap;

use iocloud_api::simulator::SimDevice;
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::{now_micros, to_rfc3339};
use iocloud_tests::{
    Answer, Backend, TestApp, agent_report, cluster, cpu_box, create, current_nodes, heartbeat,
    micros, on_both_engines, proof, ready_node, verified_device, verified_rig, wait_status,
};
use serde_json::{Value, json};

on_both_engines!(the_explorer_answers_a_simulated_day_as_its_data_has_it);

const H: i64 = MICROS_PER_HOUR;
const MINUTE: i64 = 60_000_000;
/// Hours in the day.
const DAY: i64 = 24;
/// The hours of the day (0 to 23) in which the silent rig's agent says nothing.
const SILENT: std::ops::Range<i64> = 10..13;
/// The hours in which the failing rig answers its proof wrongly.
const FAILED: std::ops::Range<i64> = 14..17;
/// $IO the provider stakes.
const STAKE: i64 = 100_000_000_000;

/// What each device of the day does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Serves the rental all day.
    Rented,
    /// Silent in [`SILENT`].
    Silent,
    /// Fails its proof in [`FAILED`].
    Failing,
    /// The CPU-only box, alone in the CPU pool.
    Cpu,
}

/// Why the block of the day's hour `k` pays a device of `role` nothing (`None`: it earns).
fn expected_reason(role: Role, k: i64) -> Option<&'static str> {
    // Heard from a minute before the day: five hours of streak before anyone earns.
    if k < 5 {
        return Some("short_uptime");
    }
    match role {
        // Not heard in the silent hours, nor in the hour the silence ends in (its gap is
        // longer than the timeout); then heard again since that hour's start, five more hours
        // of streak.
        Role::Silent if (SILENT.start..=SILENT.end).contains(&k) => Some("not_heard"),
        Role::Silent if (SILENT.end + 1..=SILENT.end + 5).contains(&k) => Some("short_uptime"),
        Role::Failing if FAILED.contains(&k) => Some("proof_failed"),
        _ => None,
    }
}

/// Rows of `$sql` from the test database, as `$t`.
macro_rules! rows {
    ($app:expr, $t:ty, $sql:expr) => {
        iocloud_db::db_run!(&$app.server.state.control.db, |p| sqlx::query_as::<_, $t>(
            $sql
        )
        .fetch_all(p)
        .await)
        .expect("query")
    };
}

/// An amount the explorer shows, in micro-units.
fn amount(v: &Value) -> i64 {
    micros(v.as_str().unwrap_or_else(|| panic!("not an amount: {v}")))
}

/// A block's row as written.
struct Block {
    hour: i64,
    emission: i64,
    gpu_pool: i64,
    cpu_pool: i64,
    paid: i64,
    eligible: i64,
    ineligible: i64,
    listed_devices: i64,
    listed_gpus: i64,
    rented_devices: i64,
    rented_gpus: i64,
    staked: i64,
}

/// A device's row in a block: (hour, device, reason, amount, rented).
type Judged = (i64, String, Option<String>, i64, bool);

async fn the_explorer_answers_a_simulated_day_as_its_data_has_it(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.signup_credit_usd = Some("1000".into())).await;
    let control = &app.server.state.control;

    // The provider: staked, three H100 rigs and a CPU-only box, verified.
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, "100000", "IO").await;
    let staked = app
        .post("/v1/stake", Some(&p.access), json!({"amount": "100000"}))
        .await;
    assert!(staked.status.is_success(), "{}", staked.text);
    let mut rigs = Vec::new();
    for name in ["fra-secret-1", "fra-secret-2", "fra-secret-3"] {
        rigs.push(verified_rig(&app, &p, name).await);
    }
    let (cpu, _, _) = verified_device(&app, &p, cpu_box("fra-secret-cpu")).await;

    // A customer rents eight H100s for the day; the rig's agent brings the node up.
    let s = app.signup("ada@example.com", "Acme Labs").await;
    let cluster_id = create(
        &app,
        &s,
        json!({"name": "secret-rental", "kind": "container", "image": "busybox",
            "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 24}),
    )
    .await;
    let node = current_nodes(&cluster(&app, &s, &cluster_id).await)[0].clone();
    let node_id = node["id"].as_str().unwrap().to_string();
    let rented = node["device_id"].as_str().unwrap().to_string();
    let sim = SimDevice {
        id: rented.clone(),
        token: rigs.iter().find(|(id, _)| *id == rented).unwrap().1.clone(),
        gpus: 8,
    };
    let starting = agent_report(&app, &sim, &node_id, json!({"status": "starting"})).await;
    assert!(starting.status.is_success(), "{}", starting.text);
    let ready = ready_node(&app, &sim, &node_id, json!({"http": "10.0.0.1:8080"})).await;
    assert!(ready.status.is_success(), "{}", ready.text);
    wait_status(&app, &s, &cluster_id, "running").await;
    let others: Vec<String> = rigs
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| *id != rented)
        .collect();
    let (silent, failing) = (others[0].clone(), others[1].clone());
    let roles: Vec<(String, Role)> = vec![
        (rented.clone(), Role::Rented),
        (silent.clone(), Role::Silent),
        (failing.clone(), Role::Failing),
        (cpu.clone(), Role::Cpu),
    ];
    let role_of = |id: &str| roles.iter().find(|(d, _)| d == id).unwrap().1;

    // The day: 24 hours from the next one, every device heard every minute from a minute
    // before it, except the silent rig in its silent hours.
    let first = now_micros().div_euclid(H) + 1;
    let hours: Vec<i64> = (first..first + DAY).collect();
    for minute in -1..DAY * 60 {
        let at = first * H + minute * MINUTE + 1_000_000;
        let k = minute.div_euclid(60);
        for (id, role) in &roles {
            let beat = match role {
                Role::Silent if SILENT.contains(&k) => continue,
                Role::Rented => heartbeat(0, 95, 40, 1),
                Role::Cpu => heartbeat(0, 10, 10, 0),
                _ => heartbeat(8, 1, 5, 0),
            };
            control.devices.heartbeats().push(id, beat, at);
        }
        control.devices.flush_heartbeats().await.unwrap();
    }
    // The hourly proofs: passed, but the failing rig's in its failing hours; the rented rig
    // is not asked while it serves, and a silent agent asks for none.
    for k in 0..DAY {
        for (id, role) in &roles {
            let outcome = match role {
                Role::Rented => continue,
                Role::Silent if SILENT.contains(&k) => continue,
                Role::Failing if FAILED.contains(&k) => "wrong_answer",
                _ => "passed",
            };
            proof(&app, id, &p.org_id, first + k, Some(outcome)).await;
        }
    }
    // The day's blocks, then the slashing pass in the day's last hour.
    for k in 0..DAY {
        let r = control.rewards.run_block(first + k).await.unwrap();
        assert!(r.written);
        assert_eq!(r.devices, 4);
        let eligible = roles
            .iter()
            .filter(|(_, role)| expected_reason(*role, k).is_none())
            .count() as i64;
        assert_eq!(r.eligible, eligible, "hour {k}");
    }
    let pass_at = (first + DAY - 1) * H + 59 * MINUTE;
    let pass = control.slashing.run_pass(pass_at).await.unwrap();
    assert_eq!((pass.opened, pass.burned), (1, 0), "{pass:?}");

    // The rows under the explorer, against what the day put in.
    let judged: Vec<Judged> = rows!(
        app,
        Judged,
        "SELECT hour, device_id, reason, amount, rented FROM block_rewards ORDER BY hour, device_id"
    );
    assert_eq!(judged.len() as i64, DAY * 4);
    for (hour, device, reason, paid, was_rented) in &judged {
        let role = role_of(device);
        let k = hour - first;
        assert!((0..DAY).contains(&k), "a block of the day: {hour}");
        assert_eq!(
            reason.as_deref(),
            expected_reason(role, k),
            "{role:?} in hour {k}"
        );
        assert_eq!(*was_rented, role == Role::Rented, "{role:?} in hour {k}");
        assert_eq!(*paid > 0, reason.is_none(), "{role:?} in hour {k}: {paid}");
    }
    type BlockRow = (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    );
    let blocks: Vec<Block> = rows!(
        app,
        BlockRow,
        "SELECT hour, emission, gpu_pool, cpu_pool, gpu_paid, cpu_paid, eligible_devices, ineligible_devices, \
         listed_devices, listed_gpus, rented_devices, rented_gpus, staked FROM reward_blocks ORDER BY hour"
    )
    .into_iter()
    .map(|r| Block {
        hour: r.0,
        emission: r.1,
        gpu_pool: r.2,
        cpu_pool: r.3,
        paid: r.4 + r.5,
        eligible: r.6,
        ineligible: r.7,
        listed_devices: r.8,
        listed_gpus: r.9,
        rented_devices: r.10,
        rented_gpus: r.11,
        staked: r.12,
    })
    .collect();
    assert_eq!(
        blocks.iter().map(|b| b.hour).collect::<Vec<_>>(),
        hours,
        "the day's blocks and no other"
    );
    let of_hour = |hour: i64| judged.iter().filter(move |j| j.0 == hour);
    for b in &blocks {
        assert_eq!(b.emission, control.rewards.emission_of(b.hour));
        assert_eq!(b.gpu_pool + b.cpu_pool, b.emission);
        assert_eq!(b.paid, of_hour(b.hour).map(|j| j.3).sum::<i64>());
        assert_eq!(
            b.eligible,
            of_hour(b.hour).filter(|j| j.2.is_none()).count() as i64
        );
        assert_eq!(b.ineligible, 4 - b.eligible);
        assert_eq!((b.listed_devices, b.listed_gpus), (4, 24));
        assert_eq!((b.rented_devices, b.rented_gpus), (1, 8));
        assert_eq!(b.staked, STAKE);
    }
    let minted: i64 = blocks.iter().map(|b| b.emission).sum();
    let paid_out: i64 = blocks.iter().map(|b| b.paid).sum();
    assert!(minted > 0, "the schedule mints in this decade");

    let mut answers: Vec<(String, Answer)> = Vec::new();

    // The blocks, newest first, ten to a page: the day's 24, each its row's figures.
    let mut listed: Vec<Value> = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/v1/explorer/blocks?limit=10".to_string();
    loop {
        let page = app.get_public(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let items = page.body["items"].as_array().unwrap().clone();
        sizes.push(items.len());
        listed.extend(items);
        let next = page.body["next_cursor"].as_str().map(String::from);
        answers.push((path.clone(), page));
        match next {
            Some(c) => path = format!("/v1/explorer/blocks?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 4]);
    assert_eq!(listed.len() as i64, DAY);
    for (item, b) in listed.iter().zip(blocks.iter().rev()) {
        let k = b.hour - first;
        assert_eq!(item["hour"], to_rfc3339(b.hour * H), "newest first");
        assert_eq!(amount(&item["emission"]), b.emission, "hour {k}");
        assert_eq!(amount(&item["gpu_pool"]), b.gpu_pool, "hour {k}");
        assert_eq!(amount(&item["cpu_pool"]), b.cpu_pool, "hour {k}");
        assert_eq!(amount(&item["paid"]), b.paid, "hour {k}");
        assert_eq!(item["eligible_devices"], b.eligible, "hour {k}");
        assert_eq!(item["ineligible_devices"], b.ineligible, "hour {k}");
        assert_eq!(item["listed_devices"], b.listed_devices, "hour {k}");
        assert_eq!(item["listed_gpus"], b.listed_gpus, "hour {k}");
        assert_eq!(item["rented_devices"], b.rented_devices, "hour {k}");
        assert_eq!(item["rented_gpus"], b.rented_gpus, "hour {k}");
    }

    // Each block's page: its figures as listed, its ineligible devices by reason as its rows
    // have them (most first), its top earners its rows' highest amounts.
    let model_of = |id: &str| {
        if role_of(id) == Role::Cpu {
            "cpu"
        } else {
            "h100-sxm"
        }
    };
    for (item, b) in listed.iter().zip(blocks.iter().rev()) {
        let k = b.hour - first;
        let path = format!("/v1/explorer/blocks/{}", to_rfc3339(b.hour * H));
        let page = app.get_public(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert_eq!(&page.body["block"], item, "hour {k}");
        let mut by_reason: BTreeMap<String, i64> = BTreeMap::new();
        for j in of_hour(b.hour) {
            if let Some(r) = &j.2 {
                *by_reason.entry(r.clone()).or_default() += 1;
            }
        }
        let mut expected: Vec<(String, i64)> = by_reason.into_iter().collect();
        expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let expected: Vec<Value> = expected
            .iter()
            .map(|(reason, n)| json!({"reason": reason, "devices": n}))
            .collect();
        assert_eq!(
            page.body["ineligible_by_reason"],
            Value::Array(expected),
            "hour {k}"
        );
        let mut earners: Vec<&Judged> = of_hour(b.hour).filter(|j| j.3 > 0).collect();
        earners.sort_by(|a, b| b.3.cmp(&a.3).then(a.1.cmp(&b.1)));
        let top: Vec<(String, String, String, i64)> = page.body["top_earners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["device_id"].as_str().unwrap().to_string(),
                    e["gpu_model"].as_str().unwrap().to_string(),
                    e["region"].as_str().unwrap().to_string(),
                    amount(&e["amount"]),
                )
            })
            .collect();
        let expected: Vec<(String, String, String, i64)> = earners
            .iter()
            .map(|j| {
                (
                    j.1.clone(),
                    model_of(&j.1).to_string(),
                    "eu-central".to_string(),
                    j.3,
                )
            })
            .collect();
        assert_eq!(top, expected, "hour {k}: {}", page.text);
        answers.push((path, page));
    }
    // A silent hour in words: the silent rig not heard; the rented rig (a quarter more score)
    // first, then the other rig, then the CPU box alone in its pool.
    let silent_hour = first + SILENT.start + 1;
    let path = format!("/v1/explorer/blocks/{}", to_rfc3339(silent_hour * H));
    let page = app.get_public(&path).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.body["ineligible_by_reason"],
        json!([{"reason": "not_heard", "devices": 1}]),
        "{}",
        page.text
    );
    let top: Vec<&str> = page.body["top_earners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        vec![rented.as_str(), failing.as_str(), cpu.as_str()],
        "{}",
        page.text
    );
    assert_eq!(page.body["top_earners"][2]["gpu_model"], "cpu");
    answers.push((path, page));

    // The supply: minted by the day's blocks, what nobody earned kept back, the case's $IO in
    // escrow and out of the stake, nothing burned.
    let supply = app.get_public("/v1/explorer/supply").await;
    assert_eq!(supply.status, 200, "{}", supply.text);
    let sp = &supply.body;
    assert_eq!(amount(&sp["emitted"]), minted, "{}", supply.text);
    assert_eq!(amount(&sp["undistributed"]), minted - paid_out);
    assert_eq!(amount(&sp["burned"]), 0);
    let escrow = app
        .count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM slashing_cases WHERE status = 'open'")
        .await;
    assert_eq!(amount(&sp["in_escrow"]), escrow);
    let still_staked = app
        .count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM stakes WHERE status IN ('active', 'unbonding')")
        .await;
    assert_eq!(still_staked + escrow, STAKE);
    assert_eq!(amount(&sp["staked"]), still_staked);
    assert_eq!(amount(&sp["total"]), amount(&sp["launch_supply"]) + minted);
    assert_eq!(
        amount(&sp["circulating"]),
        amount(&sp["total"]) - still_staked - escrow - (minted - paid_out)
    );
    answers.push(("supply".into(), supply));

    // The network hour by hour: the day's 24 hours, oldest first, as the blocks saw them.
    let by_hour = app.get_public("/v1/explorer/network/hours?hours=24").await;
    assert_eq!(by_hour.status, 200, "{}", by_hour.text);
    let points = by_hour.body.as_array().unwrap();
    assert_eq!(points.len() as i64, DAY, "{}", by_hour.text);
    for (point, b) in points.iter().zip(&blocks) {
        assert_eq!(point["hour"], to_rfc3339(b.hour * H));
        assert_eq!(
            (
                &point["devices"],
                &point["gpus"],
                &point["rented_devices"],
                &point["rented_gpus"]
            ),
            (
                &json!(b.listed_devices),
                &json!(b.listed_gpus),
                &json!(b.rented_devices),
                &json!(b.rented_gpus)
            )
        );
        assert_eq!(amount(&point["staked"]), b.staked);
    }
    answers.push(("network/hours".into(), by_hour));

    // The network by day: the day's hours in the one or two UTC days they fall in.
    let by_day = app
        .get_public("/v1/explorer/network/history?period=day&count=3")
        .await;
    assert_eq!(by_day.status, 200, "{}", by_day.text);
    let days = by_day.body.as_array().unwrap();
    let sum = |f: &dyn Fn(&Value) -> i64| days.iter().map(f).sum::<i64>();
    assert_eq!(
        sum(&|d| d["blocks"].as_i64().unwrap()),
        DAY,
        "{}",
        by_day.text
    );
    assert_eq!(sum(&|d| d["rented_gpu_hours"].as_i64().unwrap()), DAY * 8);
    assert_eq!(sum(&|d| amount(&d["emission"])), minted);
    assert_eq!(sum(&|d| amount(&d["paid"])), paid_out);
    for d in days {
        assert_eq!((&d["devices"], &d["gpus"]), (&json!(4), &json!(24)), "{d}");
        assert_eq!(d["utilisation_pct"], 33.3, "8 of 24 GPUs rented: {d}");
        assert_eq!(amount(&d["staked"]), STAKE);
    }
    answers.push(("network/history".into(), by_day));

    // The failing rig's page: its proofs over 30 days and 48 hours as stored.
    let page = app
        .get_public(&format!("/v1/explorer/devices/{failing}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let mut counted = Vec::new();
    for outcome in [
        "outcome = 'passed'",
        "outcome <> 'passed'",
        "outcome IS NULL",
    ] {
        counted.push(
            app.count(&format!(
                "SELECT COUNT(*) FROM device_proofs WHERE device_id = '{failing}' AND {outcome}"
            ))
            .await,
        );
    }
    let (passed, failed, unanswered) = (counted[0], counted[1], counted[2]);
    assert_eq!(
        (passed, failed, unanswered),
        (DAY - FAILED.count() as i64, FAILED.count() as i64, 0)
    );
    assert_eq!(
        page.body["proofs_30d"],
        json!({"passed": passed, "failed": failed, "unanswered": unanswered}),
        "{}",
        page.text
    );
    let stored: Vec<(i64, Option<String>)> = rows!(
        app,
        (i64, Option<String>),
        &format!(
            "SELECT hour, outcome FROM device_proofs WHERE device_id = '{failing}' ORDER BY hour DESC"
        )
    );
    let shown: Vec<(String, String)> = page.body["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["amount"].is_null(), "{p}");
            (
                p["hour"].as_str().unwrap().to_string(),
                p["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = stored
        .iter()
        .map(|(h, o)| (to_rfc3339(h * H), o.clone().unwrap_or("unanswered".into())))
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(
        shown
            .iter()
            .filter(|(_, o)| o == "wrong_answer")
            .map(|(h, _)| h.clone())
            .collect::<Vec<_>>(),
        FAILED
            .rev()
            .map(|k| to_rfc3339((first + k) * H))
            .collect::<Vec<_>>()
    );
    answers.push(("failing device".into(), page));
    let history = app
        .get_public(&format!("/v1/explorer/devices/{failing}/proofs?limit=10"))
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let first_ten: Vec<(String, String)> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["hour"].as_str().unwrap().to_string(),
                p["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(first_ten, expected[..10].to_vec());
    assert!(history.body["next_cursor"].is_string());
    answers.push(("failing device's proofs".into(), history));

    // The silent rig's page: each of its blocks as its row has it, not heard in the silent
    // hours; its minutes heard by day as the uptime rows have them.
    let page = app
        .get_public(&format!("/v1/explorer/devices/{silent}"))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let shown: Vec<(String, String, i64)> = page.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["hour"].as_str().unwrap().to_string(),
                b["outcome"].as_str().unwrap().to_string(),
                amount(&b["amount"]),
            )
        })
        .collect();
    let expected: Vec<(String, String, i64)> = judged
        .iter()
        .rev()
        .filter(|j| j.1 == silent)
        .map(|j| {
            (
                to_rfc3339(j.0 * H),
                j.2.clone().unwrap_or("earned".into()),
                j.3,
            )
        })
        .collect();
    assert_eq!(shown, expected, "{}", page.text);
    for (hour, outcome, _) in &shown {
        let k = hours
            .iter()
            .position(|h| to_rfc3339(h * H) == *hour)
            .unwrap() as i64;
        if SILENT.contains(&k) {
            assert_eq!(outcome, "not_heard", "hour {k}");
        }
    }
    let by_day: Vec<(i64, i64)> = rows!(
        app,
        (i64, i64),
        &format!(
            "SELECT hour / 24, CAST(SUM(minutes) AS BIGINT) FROM device_uptime WHERE device_id = '{silent}' \
             GROUP BY hour / 24 ORDER BY hour / 24"
        )
    );
    let uptime: Vec<Value> = by_day
        .iter()
        .map(|(day, minutes)| {
            json!({"day": to_rfc3339(day * 24 * H)[..10].to_string(), "minutes": (*minutes).min(1440)})
        })
        .collect();
    assert_eq!(page.body["uptime"], Value::Array(uptime), "{}", page.text);
    let heard_in_day = app
        .count(&format!(
            "SELECT CAST(COALESCE(SUM(minutes), 0) AS BIGINT) FROM device_uptime \
             WHERE device_id = '{silent}' AND hour >= {first} AND hour < {}",
            first + DAY
        ))
        .await;
    assert_eq!(heard_in_day, (DAY - SILENT.count() as i64) * 60);
    answers.push(("silent device".into(), page));

    // The slashing case the pass opened against the failing rig: its rule, its $IO, its
    // evidence by kind only, its dates.
    let case_row: Vec<(String, String, String, i64, i64, i64)> = rows!(
        app,
        (String, String, String, i64, i64, i64),
        "SELECT id, device_id, rule, amount, created_at, appeal_deadline FROM slashing_cases"
    );
    assert_eq!(case_row.len(), 1);
    let (case_id, case_device, rule, case_amount, opened_at, deadline) = case_row[0].clone();
    assert_eq!(
        (case_device.as_str(), rule.as_str()),
        (failing.as_str(), "failed_proofs")
    );
    assert_eq!(opened_at, pass_at);
    assert_eq!(case_amount, escrow);
    let cases = app.get_public("/v1/explorer/slashing").await;
    assert_eq!(cases.status, 200, "{}", cases.text);
    assert_eq!(
        cases.body,
        json!({"items": [{
            "id": case_id,
            "device_id": failing,
            "gpu_model": "h100-sxm",
            "region": "eu-central",
            "rule": "failed_proofs",
            "by_detector": true,
            "status": "open",
            "amount": iocloud_billing::Money::from_micros(case_amount, iocloud_billing::Currency::Io).to_decimal(),
            "evidence": [{"kind": "proof", "count": FAILED.count()}],
            "appealed": false,
            "opened_at": to_rfc3339(opened_at),
            "appeal_deadline": to_rfc3339(deadline),
            "decided_at": null,
            "closed_at": null,
        }], "next_cursor": null}),
        "{}",
        cases.text
    );
    for (query, n) in [
        (format!("device_id={failing}"), 1),
        (format!("device_id={silent}"), 0),
        ("rule=failed_proofs&status=open".to_string(), 1),
        ("rule=idle_rule".to_string(), 0),
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
    // What the case says and cites stays with the case.
    for words in ["answer was wrong", "answered wrongly", "record(s)"] {
        assert!(!cases.text.contains(words), "{words} shown: {}", cases.text);
    }
    answers.push(("slashing".into(), cases));
    let staking = app.get_public("/v1/explorer/staking").await;
    assert_eq!(staking.status, 200, "{}", staking.text);
    assert_eq!(amount(&staking.body["in_escrow"]), escrow);
    assert_eq!(amount(&staking.body["staked"]), still_staked);
    assert_eq!(staking.body["cases"][0]["status"], "open");
    assert_eq!(staking.body["cases"][0]["cases"], 1);
    answers.push(("staking".into(), staking));

    // The day's rental: the rented rig, its model, region and GPUs, running, its amount its
    // usage lines'.
    let records: Vec<(String, String, i64, String, i64, Option<i64>)> = rows!(
        app,
        (String, String, i64, String, i64, Option<i64>),
        "SELECT id, device_id, gpus, currency, started_at, ended_at FROM usage_records"
    );
    assert_eq!(records.len(), 1);
    let (record_id, record_device, gpus, currency, started_at, ended_at) = records[0].clone();
    assert_eq!(
        (record_device.as_str(), gpus, ended_at),
        (rented.as_str(), 8, None)
    );
    let (charged, billable): (i64, i64) = rows!(
        app,
        (i64, i64),
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), CAST(COALESCE(SUM(billable_micros), 0) AS BIGINT) FROM usage_lines"
    )[0];
    let milli = i128::from(billable) * 8 * 1000 / i128::from(H);
    let rentals = app.get_public("/v1/explorer/rentals").await;
    assert_eq!(rentals.status, 200, "{}", rentals.text);
    let currency_of = iocloud_billing::Currency::parse(&currency).unwrap();
    assert_eq!(
        rentals.body,
        json!({"items": [{
            "id": record_id,
            "started_at": to_rfc3339(started_at),
            "ended_at": null,
            "device_id": rented,
            "gpu_model": "h100-sxm",
            "region": "eu-central",
            "gpus": 8,
            "gpu_hours": format!("{}.{:03}", milli / 1000, milli % 1000),
            "amount": iocloud_billing::Money::from_micros(charged, currency_of).to_decimal(),
            "currency": currency,
        }], "next_cursor": null}),
        "{}",
        rentals.text
    );
    answers.push(("rentals".into(), rentals));

    // The network now and the directory: four devices, the rented rig hired.
    let net = app.get_public("/v1/explorer/network").await;
    assert_eq!(net.status, 200, "{}", net.text);
    let listed_now = app
        .count("SELECT COUNT(*) FROM devices WHERE status IN ('available', 'busy')")
        .await;
    assert_eq!(listed_now, 4);
    assert_eq!(
        (
            &net.body["devices"],
            &net.body["devices_hired"],
            &net.body["gpus"],
            &net.body["gpus_hired"]
        ),
        (&json!(4), &json!(1), &json!(24), &json!(8)),
        "{}",
        net.text
    );
    answers.push(("network".into(), net));
    let directory = app.get_public("/v1/explorer/devices").await;
    assert_eq!(directory.status, 200, "{}", directory.text);
    let hired: Vec<&str> = directory.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["hired"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(hired, vec![rented.as_str()], "{}", directory.text);
    assert_eq!(directory.body["items"].as_array().unwrap().len(), 4);
    answers.push(("directory".into(), directory));

    // Nothing private in any answer: no organisation, member, email, name or cluster.
    for (what, answer) in &answers {
        for secret in [
            p.org_id.as_str(),
            s.org_id.as_str(),
            p.user_id.as_str(),
            s.user_id.as_str(),
            "@example.com",
            "secret",
            "GPU Farm",
            "Acme Labs",
            cluster_id.as_str(),
            "iodt_",
        ] {
            assert!(
                !answer.text.contains(secret),
                "{what}: {secret} shown: {}",
                answer.text
            );
        }
    }
}
