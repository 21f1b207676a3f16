//! Slashing: a case opened by an operator takes $IO into escrow at once and stops the device
//! earning; appealed and overturned, it all comes back; upheld or unanswered, it is burned once
//! the appeal window has ended and not before; the detectors open one case per breach; another
//! provider's case is not found; the books balance after every step.

use iocloud_billing::{AccountKind, AccountRef, Currency};
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_tests::{
    Backend, Session, TestApp, ledger_balances, micros, on_both_engines, verified_rig,
};
use serde_json::{Value, json};

on_both_engines!(
    a_case_appealed_and_overturned_gives_everything_back,
    an_unanswered_case_is_burned_after_its_window,
    detectors_open_one_case_per_breach,
);

const DAY: i64 = 24 * MICROS_PER_HOUR;

/// A provider with one verified rig and `stake` $IO staked: (provider, device id).
async fn provider(app: &TestApp, stake: &str) -> (Session, String) {
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, stake, "IO").await;
    let staked = app
        .post("/v1/stake", Some(&p.access), json!({"amount": stake}))
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    let (id, _) = verified_rig(app, &p, "rig").await;
    (p, id)
}

async fn balance(app: &TestApp, owner: &str, kind: AccountKind) -> i64 {
    let account = if owner == "platform" {
        AccountRef::platform(kind, Currency::Io)
    } else {
        AccountRef::org(owner, kind, Currency::Io)
    };
    app.server
        .state
        .control
        .ledger
        .balance(&account)
        .await
        .unwrap()
        .micros()
}

fn amount(v: &Value) -> i64 {
    micros(v.as_str().unwrap())
}

async fn a_case_appealed_and_overturned_gives_everything_back(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (p, device) = provider(&app, "20000").await;
    let ops = app.operator().await;
    let open = |amount: &str| {
        json!({"device_id": device, "rule": "operator", "amount": amount,
            "statement": "ran a crypto miner on a customer's GPUs",
            "evidence": [{"kind": "note", "summary": "reported by the customer, ticket 4411"}]})
    };
    // More than the provider holds: refused, nothing moves.
    app.post(
        "/v1/admin/slashing/cases",
        Some(&ops.access),
        open("20000.000001"),
    )
    .await
    .assert_problem(409, "slash_exceeds_holdings");
    // Not an operator, a device of nobody, a bad rule or evidence: refused.
    app.post("/v1/admin/slashing/cases", Some(&p.access), open("400"))
        .await
        .assert_problem(403, "forbidden");
    let mut nobody = open("400");
    nobody["device_id"] = json!("dev_00000000000000000000000000");
    app.post("/v1/admin/slashing/cases", Some(&ops.access), nobody)
        .await
        .assert_problem(404, "not_found");
    let mut bad = open("400");
    bad["rule"] = json!("vibes");
    app.post("/v1/admin/slashing/cases", Some(&ops.access), bad)
        .await
        .assert_problem(422, "validation_failed");
    let mut bad = open("400");
    bad["evidence"] = json!([{"kind": "rumour", "summary": "x"}]);
    app.post("/v1/admin/slashing/cases", Some(&ops.access), bad)
        .await
        .assert_problem(422, "validation_failed");
    assert_eq!(app.count("SELECT COUNT(*) FROM slashing_cases").await, 0);

    let case = app
        .post("/v1/admin/slashing/cases", Some(&ops.access), open("400"))
        .await;
    assert_eq!(case.status, 201, "{}", case.text);
    let id = case.body["id"].as_str().unwrap().to_string();
    assert_eq!(case.body["status"], "open");
    assert_eq!(amount(&case.body["from_stake"]), 400_000_000);
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::SlashEscrow).await,
        400_000_000
    );
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::Stake).await,
        19_600_000_000
    );
    ledger_balances(&app).await;
    // The stake rows say the same as the ledger.
    assert_eq!(
        app.count(&format!(
            "SELECT CAST(SUM(amount) AS BIGINT) FROM stakes WHERE org_id = '{}' AND status = 'active'",
            p.org_id
        ))
        .await,
        19_600_000_000
    );

    // The device earns nothing while the case is open.
    let next = now_micros().div_euclid(MICROS_PER_HOUR) + 1;
    app.server
        .state
        .control
        .rewards
        .run_block(next)
        .await
        .unwrap();
    let hours = app
        .get(&format!("/v1/devices/{device}/blocks"), &p.access)
        .await;
    assert_eq!(
        hours.body["items"][0]["reason"], "slashing_case",
        "{}",
        hours.text
    );
    assert_eq!(
        hours.body["items"][0]["evidence"],
        format!("slashing case {id} was open")
    );

    // The provider sees it with its evidence; another provider does not.
    let mine = app.get("/v1/slashing/cases", &p.access).await;
    assert_eq!(mine.body["items"][0]["id"], id.as_str());
    assert_eq!(
        mine.body["items"][0]["evidence"][0]["summary"],
        "reported by the customer, ticket 4411"
    );
    let other = app.signup("other@example.com", "Other").await;
    app.get(&format!("/v1/slashing/cases/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    app.post(
        &format!("/v1/slashing/cases/{id}/appeal"),
        Some(&other.access),
        json!({"statement": "not us"}),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(
        app.items("/v1/slashing/cases", &other.access).await.len(),
        0
    );

    // Appealed once; a second appeal is refused.
    app.post(
        &format!("/v1/slashing/cases/{id}/appeal"),
        Some(&p.access),
        json!({"statement": ""}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let appealed = app
        .post(
            &format!("/v1/slashing/cases/{id}/appeal"),
            Some(&p.access),
            json!({"statement": "that was our own benchmark, between rentals; logs attached"}),
        )
        .await;
    assert_eq!(appealed.body["status"], "appealed", "{}", appealed.text);
    app.post(
        &format!("/v1/slashing/cases/{id}/appeal"),
        Some(&p.access),
        json!({"statement": "again"}),
    )
    .await
    .assert_problem(409, "invalid_state");

    // Overturned: everything back, at once; deciding again is refused.
    let decided = app
        .post(
            &format!("/v1/admin/slashing/cases/{id}/decide"),
            Some(&ops.access),
            json!({"decision": "overturn", "reason": "the logs show a benchmark"}),
        )
        .await;
    assert_eq!(decided.body["status"], "overturned", "{}", decided.text);
    let kinds: Vec<&str> = decided.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "appealed", "overturned", "returned"]);
    app.post(
        &format!("/v1/admin/slashing/cases/{id}/decide"),
        Some(&ops.access),
        json!({"decision": "uphold", "reason": "changed my mind"}),
    )
    .await
    .assert_problem(409, "invalid_state");
    assert_eq!(balance(&app, &p.org_id, AccountKind::SlashEscrow).await, 0);
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::Stake).await,
        20_000_000_000
    );
    assert_eq!(balance(&app, "platform", AccountKind::Burn).await, 0);
    ledger_balances(&app).await;

    // GraphQL shows the same case.
    let q = app
        .graphql(
            Some(&p.access),
            "{ slashingCases { items { id rule status events { kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        q.body["data"]["slashingCases"]["items"][0]["status"], "overturned",
        "{}",
        q.text
    );
}

async fn an_unanswered_case_is_burned_after_its_window(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (p, device) = provider(&app, "20000").await;
    let ops = app.operator().await;
    let slashing = &app.server.state.control.slashing;
    let open = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": device, "rule": "hardware_mismatch", "amount": "800",
                "statement": "four of its eight GPUs are 40 GB cards"}),
        )
        .await;
    let id = open.body["id"].as_str().unwrap().to_string();
    // Upheld at once, still not burned before the window ends.
    let upheld = app
        .post(
            &format!("/v1/admin/slashing/cases/{id}/decide"),
            Some(&ops.access),
            json!({"decision": "uphold", "reason": "confirmed on site"}),
        )
        .await;
    assert_eq!(upheld.body["status"], "upheld", "{}", upheld.text);
    let now = now_micros();
    assert_eq!(slashing.settle_due(now).await.unwrap(), 0);
    assert_eq!(slashing.settle_due(now + 29 * DAY).await.unwrap(), 0);
    assert_eq!(balance(&app, "platform", AccountKind::Burn).await, 0);
    // A second case left unanswered, and a third appealed and never decided.
    app.post(
        "/v1/admin/slashing/cases",
        Some(&ops.access),
        json!({"device_id": device, "rule": "idle_rule", "amount": "100",
                "statement": "mining while listed"}),
    )
    .await;
    let third = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": device, "rule": "operator", "amount": "50",
                "statement": "abusive traffic"}),
        )
        .await;
    let third = third.body["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/v1/slashing/cases/{third}/appeal"),
        Some(&p.access),
        json!({"statement": "a customer's job, not ours"}),
    )
    .await;
    // Past the window: the first two burn, once; the appealed one waits for its decision.
    let later = now + 31 * DAY;
    assert_eq!(slashing.settle_due(later).await.unwrap(), 2);
    assert_eq!(slashing.settle_due(later).await.unwrap(), 0);
    assert_eq!(
        balance(&app, "platform", AccountKind::Burn).await,
        900_000_000
    );
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::SlashEscrow).await,
        50_000_000
    );
    let burned = app
        .get(&format!("/v1/slashing/cases/{id}"), &p.access)
        .await;
    assert_eq!(burned.body["status"], "burned");
    assert_eq!(
        burned.body["events"].as_array().unwrap().last().unwrap()["kind"],
        "burned"
    );
    let waiting = app
        .get(&format!("/v1/slashing/cases/{third}"), &p.access)
        .await;
    assert_eq!(waiting.body["status"], "appealed");
    // The supply, public, says the same: 900 burned, 50 in escrow, the rest staked.
    let supply = app.get_public("/v1/supply").await;
    assert_eq!(supply.status, 200, "{}", supply.text);
    assert_eq!(amount(&supply.body["burned"]), 900_000_000);
    assert_eq!(amount(&supply.body["in_escrow"]), 50_000_000);
    assert_eq!(amount(&supply.body["staked"]), 19_050_000_000);
    assert_eq!(
        amount(&supply.body["total"]),
        500_000_000_000_000 - 900_000_000,
        "nothing minted here, 900 burned"
    );
    // Before the burn, the supply was whole.
    let before = app
        .get_public(&format!(
            "/v1/supply?at={}",
            iocloud_db::time::to_rfc3339(now - 1)
        ))
        .await;
    assert_eq!(amount(&before.body["burned"]), 0);
    app.get_public("/v1/supply?at=tomorrow")
        .await
        .assert_problem(422, "validation_failed");
    ledger_balances(&app).await;

    // An appeal after the window is refused, and changes nothing.
    let late = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": device, "rule": "operator", "amount": "1", "statement": "late one"}),
        )
        .await;
    let late = late.body["id"].as_str().unwrap().to_string();
    app.exec(
        &format!(
            "UPDATE slashing_cases SET appeal_deadline = {} WHERE id = $1",
            now - 1
        ),
        &late,
    )
    .await;
    app.post(
        &format!("/v1/slashing/cases/{late}/appeal"),
        Some(&p.access),
        json!({"statement": "we were on holiday"}),
    )
    .await
    .assert_problem(409, "appeal_window_closed");
    let unchanged = app
        .get(&format!("/v1/slashing/cases/{late}"), &p.access)
        .await;
    assert_eq!(unchanged.body["status"], "open");
}

async fn detectors_open_one_case_per_breach(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (p, device) = provider(&app, "16000").await;
    let slashing = &app.server.state.control.slashing;
    let now = now_micros();
    let this_hour = now.div_euclid(MICROS_PER_HOUR);
    // Three proofs answered wrongly and two with short VRAM in the last hours.
    for (back, outcome) in [
        (1, "wrong_answer"),
        (2, "late"),
        (3, "wrong_answer"),
        (4, "vram_short"),
        (5, "vram_short"),
    ] {
        let hour = this_hour - back;
        let at = hour * MICROS_PER_HOUR;
        app.exec(
            &format!(
                "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline, answered_at, outcome, detail) \
                 VALUES ($1, {hour}, '{}', 'n', 18, 80, {at}, {}, {}, '{outcome}', 'seen in test')",
                p.org_id,
                at + 30_000_000,
                at + 1_000_000
            ),
            &device,
        )
        .await;
    }
    // The device went silent while serving a rental.
    app.exec(
        &format!(
            "INSERT INTO device_events (id, device_id, org_id, from_status, to_status, reason, created_at) \
             VALUES ('dev_evt_test', $1, '{}', 'busy', 'offline', 'no heartbeat for 90 s', {})",
            p.org_id,
            now - MICROS_PER_HOUR
        ),
        &device,
    )
    .await;
    assert_eq!(slashing.detect(now).await.unwrap(), 3);
    assert_eq!(
        slashing.detect(now).await.unwrap(),
        0,
        "one case per breach"
    );
    let cases = app.items("/v1/slashing/cases", &p.access).await;
    let by_rule = |rule: &str| cases.iter().find(|c| c["rule"] == rule).unwrap().clone();
    let failed = by_rule("failed_proofs");
    assert_eq!(failed["evidence"].as_array().unwrap().len(), 3);
    assert_eq!(failed["opened_by"], "detector");
    // 5 % of the 16000 the rig needs; 50 % for the hardware; 20 % for the abandoned rental,
    // capped at what is left.
    assert_eq!(amount(&failed["amount"]), 800_000_000);
    assert_eq!(
        amount(&by_rule("hardware_mismatch")["amount"]),
        8_000_000_000
    );
    let abandoned = by_rule("abandoned_rental");
    assert_eq!(amount(&abandoned["amount"]), 3_200_000_000);
    assert!(
        abandoned["evidence"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("while serving a rental"),
        "{abandoned}"
    );
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::SlashEscrow).await,
        12_000_000_000
    );
    assert_eq!(
        balance(&app, &p.org_id, AccountKind::Stake).await,
        4_000_000_000
    );
    // The provider's audit log says so.
    let audit = app.items("/v1/audit-events", &p.access).await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "slashing case opened (failed_proofs)"),
        "{audit:?}"
    );
    ledger_balances(&app).await;
}
