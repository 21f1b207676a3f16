//! Co-staking: a provider offers the stake its device needs; another organisation takes it and
//! the device is listed on both stakes; each block's reward for the device is split by the
//! share; a slash takes from both stakes in proportion and an overturn gives both back;
//! unstaking waits for the term, the notice and the cooldown. Bad offers and takes change
//! nothing; the books balance throughout.

use iocloud_billing::{AccountKind, AccountRef, Currency};
use iocloud_control::providers::agent::Heartbeat;
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_tests::{Backend, TestApp, ledger_balances, micros, on_both_engines, verified_rig};
use serde_json::{Value, json};

on_both_engines!(a_co_stake_from_offer_to_withdrawal);

async fn io(app: &TestApp, owner: &str, kind: AccountKind) -> i64 {
    app.server
        .state
        .control
        .ledger
        .balance(&AccountRef::org(owner, kind, Currency::Io))
        .await
        .unwrap()
        .micros()
}

fn amount(v: &Value) -> i64 {
    micros(v.as_str().unwrap())
}

async fn a_co_stake_from_offer_to_withdrawal(b: Backend) {
    let app = TestApp::spawn(b).await;
    let control = &app.server.state.control;
    // The provider stakes half of the 16000 $IO its H100 rig needs: the rig waits for stake.
    let p = app.signup("farm@example.com", "GPU Farm").await;
    app.grant_credit(&p.org_id, "8000", "IO").await;
    app.post("/v1/stake", Some(&p.access), json!({"amount": "8000"}))
        .await;
    let (device, token) = verified_rig(&app, &p, "rig").await;
    let d = app.get(&format!("/v1/devices/{device}"), &p.access).await;
    assert_eq!(d.body["status"], "pending_stake", "{}", d.text);

    // Bad offers are refused and change nothing.
    let offer = |amount: &str, share: i64, term: i64| json!({"device_id": device, "amount": amount, "reward_share_bps": share, "term_days": term});
    for (body, field) in [
        (offer("16000.000001", 5000, 30), "amount"),
        (offer("0", 5000, 30), "amount"),
        (offer("8000", 0, 30), "reward_share_bps"),
        (offer("8000", 5000, 366), "term_days"),
    ] {
        let refused = app
            .post("/v1/costaking/offers", Some(&p.access), body)
            .await;
        refused.assert_problem(422, "validation_failed");
        assert!(refused.text.contains(field), "{}", refused.text);
    }
    let other = app.signup("other@example.com", "Other").await;
    app.post(
        "/v1/costaking/offers",
        Some(&other.access),
        offer("8000", 5000, 30),
    )
    .await
    .assert_problem(404, "not_found");
    let made = app
        .post(
            "/v1/costaking/offers",
            Some(&p.access),
            offer("8000", 5000, 30),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let offer_id = made.body["id"].as_str().unwrap().to_string();
    app.post(
        "/v1/costaking/offers",
        Some(&p.access),
        offer("8000", 5000, 30),
    )
    .await
    .assert_problem(409, "invalid_state");

    // The market: filtered by model and reliability, never naming the provider.
    let c = app.signup("staker@example.com", "Staker").await;
    app.grant_credit(&c.org_id, "10000", "IO").await;
    let market = app
        .get("/v1/costaking/offers?model=h100-sxm", &c.access)
        .await;
    assert_eq!(
        market.body["items"][0]["id"],
        offer_id.as_str(),
        "{}",
        market.text
    );
    assert!(!market.text.contains(p.org_id.as_str()), "{}", market.text);
    assert_eq!(
        app.items("/v1/costaking/offers?min_reliability=0.95", &c.access)
            .await
            .len(),
        0
    );
    app.get("/v1/costaking/offers?model=abacus", &c.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/costaking/offers?min_reliability=2", &c.access)
        .await
        .assert_problem(422, "validation_failed");

    // Takes that cannot be: the provider's own, more than offered, without the $IO.
    let take = |amount: &str| json!({"amount": amount});
    let take_path = format!("/v1/costaking/offers/{offer_id}/take");
    app.post(&take_path, Some(&p.access), take("8000"))
        .await
        .assert_problem(409, "invalid_state");
    app.post(&take_path, Some(&c.access), take("8000.000001"))
        .await
        .assert_problem(422, "validation_failed");
    app.post(&take_path, Some(&other.access), take("8000"))
        .await
        .assert_problem(402, "insufficient_funds");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM costake_positions").await,
        0,
        "nothing kept from a refused take"
    );
    // Taken: the co-staker's $IO backs the device, which is listed.
    let taken = app.post(&take_path, Some(&c.access), take("8000")).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    let position = taken.body["id"].as_str().unwrap().to_string();
    assert_eq!(taken.body["state"], "active");
    app.post(&take_path, Some(&other.access), take("1"))
        .await
        .assert_problem(409, "offer_taken");
    let d = app.get(&format!("/v1/devices/{device}"), &p.access).await;
    assert_eq!(d.body["status"], "available", "{}", d.text);
    let stake = app.get("/v1/stake", &p.access).await;
    assert_eq!(
        amount(&stake.body["co_staked"]),
        8_000_000_000,
        "{}",
        stake.text
    );
    assert_eq!(io(&app, &c.org_id, AccountKind::Stake).await, 8_000_000_000);
    assert_eq!(
        io(&app, &c.org_id, AccountKind::Available).await,
        2_000_000_000
    );
    ledger_balances(&app).await;

    // Six hours heard, the last one earns; its reward is split half and half.
    let first = now_micros().div_euclid(MICROS_PER_HOUR) + 1;
    for minute in -1..6 * 60 {
        let at = first * MICROS_PER_HOUR + minute * 60_000_000 + 1_000_000;
        let beat: Heartbeat = serde_json::from_value(json!({"free_gpus": 8, "utilization_pct": 1,
            "cpu_utilization_pct": 4, "running_nodes": 0, "temperature_c": 50, "agent_version": "1.4.2"}))
        .unwrap();
        control.devices.heartbeats().push(&device, beat, at);
        control.devices.flush_heartbeats().await.unwrap();
    }
    for hour in first..first + 6 {
        let at = hour * MICROS_PER_HOUR;
        app.exec(
            &format!(
                "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline, answered_at, outcome) \
                 VALUES ($1, {hour}, '{}', 'n', 18, 80, {at}, {}, {}, 'passed')",
                p.org_id,
                at + 30_000_000,
                at + 1_000_000
            ),
            &device,
        )
        .await;
        control.rewards.run_block(hour).await.unwrap();
    }
    let _ = token;
    let hours = app
        .get(&format!("/v1/devices/{device}/blocks?limit=1"), &p.access)
        .await;
    let row = &hours.body["items"][0];
    assert_eq!(row["eligible"], true, "{}", hours.text);
    let reward = amount(&row["amount"]);
    let part = amount(&row["costaker_amount"]);
    assert!(reward > 0);
    assert_eq!(part, reward / 2);
    assert_eq!(
        io(&app, &p.org_id, AccountKind::ProviderEarnings).await,
        reward - part
    );
    assert_eq!(
        io(&app, &c.org_id, AccountKind::ProviderEarnings).await,
        part
    );
    let mine = app
        .get(&format!("/v1/costaking/positions/{position}"), &c.access)
        .await;
    assert_eq!(amount(&mine.body["earned"]), part, "{}", mine.text);
    let summary = app.get("/v1/rewards", &c.access).await;
    assert_eq!(amount(&summary.body["total"]), part);
    ledger_balances(&app).await;

    // A slash takes from both stakes in proportion; the co-staker reads the case but does not
    // appeal it; overturned, both get theirs back.
    let ops = app.operator().await;
    let case = app
        .post(
            "/v1/admin/slashing/cases",
            Some(&ops.access),
            json!({"device_id": device, "rule": "operator", "amount": "1600", "statement": "test of a shared slash"}),
        )
        .await;
    assert_eq!(case.status, 201, "{}", case.text);
    let case_id = case.body["id"].as_str().unwrap().to_string();
    assert_eq!(amount(&case.body["from_stake"]), 800_000_000);
    assert_eq!(amount(&case.body["from_costake"]), 800_000_000);
    assert_eq!(
        io(&app, &c.org_id, AccountKind::SlashEscrow).await,
        800_000_000
    );
    let mine = app
        .get(&format!("/v1/costaking/positions/{position}"), &c.access)
        .await;
    assert_eq!(amount(&mine.body["amount"]), 7_200_000_000);
    let seen = app
        .get(&format!("/v1/slashing/cases/{case_id}"), &c.access)
        .await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    app.post(
        &format!("/v1/slashing/cases/{case_id}/appeal"),
        Some(&c.access),
        json!({"statement": "not my device"}),
    )
    .await
    .assert_problem(403, "forbidden");
    ledger_balances(&app).await;
    app.post(
        &format!("/v1/admin/slashing/cases/{case_id}/decide"),
        Some(&ops.access),
        json!({"decision": "overturn", "reason": "a test"}),
    )
    .await;
    assert_eq!(io(&app, &c.org_id, AccountKind::SlashEscrow).await, 0);
    assert_eq!(io(&app, &c.org_id, AccountKind::Stake).await, 8_000_000_000);
    let mine = app
        .get(&format!("/v1/costaking/positions/{position}"), &c.access)
        .await;
    assert_eq!(amount(&mine.body["amount"]), 8_000_000_000);
    ledger_balances(&app).await;

    // Unstaking: not in the term; then the notice (still backing), then the cooldown.
    let unstake = format!("/v1/costaking/positions/{position}/unstake");
    let withdraw = format!("/v1/costaking/positions/{position}/withdraw");
    app.post(&unstake, Some(&c.access), json!({}))
        .await
        .assert_problem(409, "costake_in_term");
    app.exec(
        &format!(
            "UPDATE costake_positions SET term_ends_at = {} WHERE id = $1",
            now_micros() - 1
        ),
        &position,
    )
    .await;
    let notice = app.post(&unstake, Some(&c.access), json!({})).await;
    assert_eq!(notice.body["state"], "notice", "{}", notice.text);
    let stake = app.get("/v1/stake", &p.access).await;
    assert_eq!(
        amount(&stake.body["co_staked"]),
        8_000_000_000,
        "still backing"
    );
    app.post(&withdraw, Some(&c.access), json!({}))
        .await
        .assert_problem(409, "stake_locked");
    // The provider may look for new stake at once.
    let again = app
        .post(
            "/v1/costaking/offers",
            Some(&p.access),
            offer("8000", 4000, 10),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    app.exec(
        &format!(
            "UPDATE costake_positions SET unstake_at = {0}, available_at = {0} WHERE id = $1",
            now_micros() - 1
        ),
        &position,
    )
    .await;
    let stake = app.get("/v1/stake", &p.access).await;
    assert_eq!(amount(&stake.body["co_staked"]), 0, "the notice is over");
    let done = app.post(&withdraw, Some(&c.access), json!({})).await;
    assert_eq!(done.body["state"], "withdrawn", "{}", done.text);
    let twice = app.post(&withdraw, Some(&c.access), json!({})).await;
    assert_eq!(twice.body["state"], "withdrawn");
    assert_eq!(io(&app, &c.org_id, AccountKind::Stake).await, 0);
    assert_eq!(
        io(&app, &c.org_id, AccountKind::Available).await,
        10_000_000_000
    );
    // Another organisation's co-stake is not found.
    app.get(
        &format!("/v1/costaking/positions/{position}"),
        &other.access,
    )
    .await
    .assert_problem(404, "not_found");
    ledger_balances(&app).await;
}
