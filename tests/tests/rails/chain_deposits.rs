//! Deposits on Solana against the LiteSVM peer, on both engines: a Solana Pay deposit credited
//! once at finalized and not before, whatever replays; USDC credited as IOSD less the fee;
//! wrong mints, failed transactions and unknown references kept for operators and credited to
//! nobody until one assigns them, once; a short payment; a dropped transaction never credited.

use iocloud_tests::{
    Backend, ChainApp, TestApp, balance, iocloud_with_key, ledger_balances, on_both_engines,
};
use serde_json::{Value, json};

on_both_engines!(
    a_deposit_is_credited_once_at_finalized,
    unmatched_deposits_credit_nobody_until_assigned,
    a_dropped_deposit_is_never_credited,
    the_watcher_rides_out_a_failing_node,
    bad_deposit_requests_are_refused,
);

async fn intent(app: &TestApp, token: &str, body: Value) -> Value {
    let d = app.post("/v1/billing/deposits", Some(token), body).await;
    assert_eq!(d.status, 201, "{}", d.text);
    d.body
}

async fn a_deposit_is_credited_once_at_finalized(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "Chain Payers").await;
    let d = intent(
        app,
        &s.access,
        json!({"currency": "IOSD", "amount": "25.00"}),
    )
    .await;
    assert_eq!(d["status"], "open");
    assert_eq!(d["recipient"], chain.treasury.as_str());
    assert_eq!(d["mint"], chain.iosd.as_str());
    let reference = d["reference"].as_str().unwrap().to_string();
    let url = d["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "solana:{}?amount=25&spl-token={}&reference={reference}",
            chain.treasury, chain.iosd
        )),
        "{url}"
    );
    let qr = app
        .get(
            &format!("/v1/billing/deposits/{}/qr.svg", d["id"].as_str().unwrap()),
            &s.access,
        )
        .await;
    assert_eq!(qr.status, 200);
    assert_eq!(qr.header("content-type"), Some("image/svg+xml"));
    assert!(
        qr.text.starts_with("<?xml") || qr.text.contains("<svg"),
        "{}",
        &qr.text[..80.min(qr.text.len())]
    );

    let paid = chain.pay(&chain.iosd, 25_000_000, Some(&reference)).await;
    assert!(paid["err"].is_null(), "{paid}");
    // Seen, but not finalized: nothing yet. (The peer's clock also moves a slot every 50 ms,
    // so on a loaded machine the payment may be finalized by the time the pass reads it; then
    // crediting it is right.)
    let early = chain.watch().await;
    let finalized = chain
        .peer
        .balance(&chain.treasury, &chain.iosd, "finalized")
        .await
        >= 25_000_000;
    if !finalized {
        assert_eq!(early.credited, 0, "{early:?}");
        assert_eq!(balance(app, &s, "IOSD").await.0, 0);
    }
    chain.peer.advance(40).await;
    let pass = chain.watch().await;
    assert_eq!(early.credited + pass.credited, 1, "{early:?} {pass:?}");
    assert_eq!(balance(app, &s, "IOSD").await.0, 25_000_000);
    let d = app
        .get(
            &format!("/v1/billing/deposits/{}", d["id"].as_str().unwrap()),
            &s.access,
        )
        .await
        .body;
    assert_eq!(d["status"], "paid", "{d}");
    assert_eq!(d["received"], "25");

    // Two replicas at once, a restart that lost its cursors, a replay: credited once.
    let control = &app.server.state.control;
    let (a, b) = tokio::join!(control.deposits.watch(), control.deposits.watch());
    assert_eq!(a.unwrap().credited + b.unwrap().credited, 0);
    app.exec("DELETE FROM chain_cursors WHERE address <> $1", "")
        .await;
    // Even the transfers' rows lost: the ledger's references still hold.
    app.exec("DELETE FROM chain_deposits WHERE status <> $1", "")
        .await;
    app.exec("DELETE FROM leases WHERE name <> $1", "").await;
    let replay = chain.watch().await;
    assert_eq!(replay.credited, 0, "{replay:?}");
    let again = app
        .get(
            &format!("/v1/billing/deposits/{}", d["id"].as_str().unwrap()),
            &s.access,
        )
        .await
        .body;
    assert_eq!(again["received"], "25", "{again}");
    assert!(
        replay.transactions >= 1,
        "the history was read again: {replay:?}"
    );
    assert_eq!(balance(app, &s, "IOSD").await.0, 25_000_000);

    // USDC credits IOSD less 2 %; IO credits IO, nine decimals read as six.
    let usdc = intent(app, &s.access, json!({"currency": "usdc"})).await;
    chain
        .pay(&chain.usdc, 100_000_000, usdc["reference"].as_str())
        .await;
    let io = intent(app, &s.access, json!({"currency": "IO", "amount": "1.5"})).await;
    assert!(io["url"].as_str().unwrap().contains("amount=1.5&"), "{io}");
    chain
        .pay(&chain.io, 1_500_000_000, io["reference"].as_str())
        .await;
    chain.peer.advance(40).await;
    assert_eq!(chain.watch().await.credited, 2);
    assert_eq!(balance(app, &s, "IOSD").await.0, 25_000_000 + 98_000_000);
    assert_eq!(balance(app, &s, "IO").await.0, 1_500_000);
    // $IO that arrived on chain is staked as any other.
    let staked = app
        .post("/v1/stake", Some(&s.access), json!({"amount": "1.5"}))
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    assert_eq!(balance(app, &s, "IO").await.0, 0);
    // The treasury holds exactly what was paid.
    assert_eq!(
        chain
            .peer
            .balance(&chain.treasury, &chain.iosd, "finalized")
            .await,
        25_000_000
    );
    let listed = app.items("/v1/billing/deposits", &s.access).await;
    assert_eq!(listed.len(), 3);

    // The command line and GraphQL ask through the same service.
    let (_, admin) = app.api_key(&s.access, &["admin"]).await;
    let (_, reader) = app.api_key(&s.access, &["read"]).await;
    assert_eq!(
        iocloud_with_key(app, &["billing", "deposit", "IOSD", "5"], &admin).await,
        0
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "deposit", "BTC"], &admin).await,
        4
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "deposit", "IOSD"], &reader).await,
        4
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "deposits"], &reader).await,
        0
    );
    let g = app
        .graphql(
            Some(&s.access),
            "mutation { createDeposit(input: {currency: \"USDC\", amount: \"2\"}) { id currency credits amount url } }",
            json!({}),
        )
        .await;
    let made = &g.body["data"]["createDeposit"];
    assert_eq!(made["currency"], "USDC", "{}", g.text);
    assert_eq!(made["credits"], "IOSD");
    let g = app
        .graphql(
            Some(&s.access),
            "{ deposits { items { id status } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["data"]["deposits"]["items"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "{}",
        g.text
    );
    let g = app
        .graphql(
            Some(&s.access),
            "{ unmatchedDeposits { items { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "forbidden",
        "{}",
        g.text
    );
    ledger_balances(app).await;
    chain.stop().await;
}

async fn unmatched_deposits_credit_nobody_until_assigned(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "Chain Payers").await;
    let other = app.signup("other@example.com", "Bystanders").await;
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;

    // No reference; a reference nobody handed out; the wrong mint for the intent; a failed
    // transaction; and a short payment, topped up later.
    chain.pay(&chain.iosd, 5_000_000, None).await;
    let stranger = iocloud_billing::rails::solana::fresh_reference().to_string();
    chain.pay(&chain.iosd, 6_000_000, Some(&stranger)).await;
    let wanted_iosd = intent(app, &s.access, json!({"currency": "IOSD"})).await;
    chain
        .pay(&chain.usdc, 7_000_000, wanted_iosd["reference"].as_str())
        .await;
    // A token this platform does not take at all, carrying a reference of ours.
    let foreign = chain
        .peer
        .control("create_mint", json!({"decimals": 6}))
        .await["mint"]
        .as_str()
        .unwrap()
        .to_string();
    chain
        .peer
        .control(
            "mint_to",
            json!({"mint": foreign, "owner": chain.payer, "amount": "9000000"}),
        )
        .await;
    chain
        .pay(&foreign, 9_000_000, wanted_iosd["reference"].as_str())
        .await;
    let failing = intent(app, &s.access, json!({"currency": "IOSD"})).await;
    let failed = chain
        .peer
        .transfer(json!({
            "from": chain.payer, "mint": chain.iosd, "to": chain.treasury, "amount": "1",
            "references": [failing["reference"]], "fail": true,
        }))
        .await;
    assert!(!failed["err"].is_null(), "{failed}");
    let short = intent(app, &s.access, json!({"currency": "IOSD", "amount": "25"})).await;
    chain
        .pay(&chain.iosd, 10_000_000, short["reference"].as_str())
        .await;
    chain.peer.advance(40).await;
    let pass = chain.watch().await;
    assert_eq!(pass.credited, 1, "only the short payment: {pass:?}");
    assert_eq!(balance(app, &s, "IOSD").await.0, 10_000_000);
    let short_path = format!("/v1/billing/deposits/{}", short["id"].as_str().unwrap());
    let seen = app.get(&short_path, &s.access).await.body;
    assert_eq!(
        (seen["status"].as_str(), seen["received"].as_str()),
        (Some("open"), Some("10"))
    );
    chain
        .pay(&chain.iosd, 15_000_000, short["reference"].as_str())
        .await;
    chain.peer.advance(40).await;
    assert_eq!(chain.watch().await.credited, 1);
    assert_eq!(app.get(&short_path, &s.access).await.body["status"], "paid");

    // Operators see what nobody's reference matched; members of an organisation may not.
    app.get("/v1/admin/chain-deposits", &s.access)
        .await
        .assert_problem(403, "forbidden");
    let kept = app.items("/v1/admin/chain-deposits", &ops.access).await;
    let reasons: Vec<(&str, &str)> = kept
        .iter()
        .map(|d| {
            (
                d["status"].as_str().unwrap(),
                d["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
    let first = app
        .get("/v1/admin/chain-deposits?limit=2", &ops.access)
        .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/v1/admin/chain-deposits?limit=2&cursor={cursor}"),
            &ops.access,
        )
        .await;
    assert_eq!(second.body["items"][0], kept[2], "{}", second.text);
    for expected in [
        ("unmatched", "no reference"),
        ("unmatched", "unknown reference"),
        ("unmatched", "wrong mint"),
        ("failed", "failed on chain"),
    ] {
        assert!(reasons.contains(&expected), "{expected:?} in {reasons:?}");
    }
    let by_reason = |why: &str| {
        // Of the two wrong mints, the one a token taken here paid.
        kept.iter()
            .find(|d| d["reason"] == why && !d["currency"].is_null())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Assigned once: the unknown reference's 6 IOSD to the other organisation.
    let assign = |id: String, org: String| {
        let ops = ops.access.clone();
        async move {
            app.post(
                &format!("/v1/admin/chain-deposits/{id}/assign"),
                Some(&ops),
                json!({ "org_id": org }),
            )
            .await
        }
    };
    let unknown = by_reason("unknown reference");
    app.post(
        &format!("/v1/admin/chain-deposits/{unknown}/assign"),
        Some(&s.access),
        json!({ "org_id": s.org_id }),
    )
    .await
    .assert_problem(403, "forbidden");
    let done = assign(unknown.clone(), other.org_id.clone()).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["status"], "assigned");
    assign(unknown.clone(), s.org_id.clone())
        .await
        .assert_problem(409, "invalid_state");
    assert_eq!(balance(app, &other, "IOSD").await.0, 6_000_000);
    // USDC paid for an IOSD intent reached the treasury's USDC account: assignable, as USDC.
    let usdc = assign(by_reason("wrong mint"), s.org_id.clone()).await;
    assert_eq!(usdc.status, 200, "{} in {kept:?}", usdc.text);
    // Nothing arrived in a failed transaction, and a token nobody takes here has no currency.
    assign(by_reason("failed on chain"), s.org_id.clone())
        .await
        .assert_problem(409, "invalid_state");
    let untaken = kept.iter().find(|d| d["currency"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assign(untaken, s.org_id.clone())
        .await
        .assert_problem(409, "invalid_state");
    assign(by_reason("no reference"), "org_nobody".into())
        .await
        .assert_problem(404, "not_found");
    assign("cdp_nothing".into(), s.org_id.clone())
        .await
        .assert_problem(404, "not_found");
    assert_eq!(balance(app, &s, "IOSD").await.0, 25_000_000 + 6_860_000);
    // Another organisation's intent reads as missing.
    app.get(&short_path, &other.access)
        .await
        .assert_problem(404, "not_found");
    ledger_balances(app).await;
    chain.stop().await;
}

async fn a_dropped_deposit_is_never_credited(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "Chain Payers").await;
    let d = intent(app, &s.access, json!({"currency": "IOSD", "amount": "3"})).await;
    let dropped = chain
        .peer
        .transfer(json!({
            "from": chain.payer, "mint": chain.iosd, "to": chain.treasury, "amount": "3000000",
            "references": [d["reference"]], "drop": true,
        }))
        .await;
    assert_eq!(dropped["dropped"], true, "{dropped}");
    // Seen at confirmed, then gone: never finalized, never credited.
    for _ in 0..3 {
        chain.peer.advance(20).await;
        assert_eq!(chain.watch().await.credited, 0);
    }
    assert_eq!(balance(app, &s, "IOSD").await.0, 0);
    let d = app
        .get(
            &format!("/v1/billing/deposits/{}", d["id"].as_str().unwrap()),
            &s.access,
        )
        .await
        .body;
    assert_eq!(d["status"], "open");
    ledger_balances(app).await;
    chain.stop().await;
}

/// The node failing mid-catch-up (a 5xx on one transaction, an unhealthy node, 429s): the pass
/// ends, what was read before the failure is applied, and the next pass resumes from the
/// cursor; each deposit credited once.
async fn the_watcher_rides_out_a_failing_node(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "Chain Payers").await;
    let mut signatures = Vec::new();
    for _ in 0..3 {
        let d = intent(app, &s.access, json!({"currency": "IOSD", "amount": "2"})).await;
        let paid = chain
            .pay(&chain.iosd, 2_000_000, d["reference"].as_str())
            .await;
        signatures.push(paid["signature"].as_str().unwrap().to_string());
    }
    chain.peer.advance(40).await;
    // The second transaction cannot be read: the first is applied, the pass fails.
    chain
        .peer
        .control("faults", json!({"kind": "http_503", "method": "getTransaction", "match": signatures[1], "count": 1}))
        .await;
    let control = &app.server.state.control;
    assert!(control.deposits.watch().await.is_err());
    assert_eq!(balance(app, &s, "IOSD").await.0, 2_000_000);
    // The node says it is behind while listing the treasury's account: nothing moves.
    let treasury_account = chain
        .peer
        .control(
            "token_account",
            json!({"mint": chain.iosd, "owner": chain.treasury}),
        )
        .await["tokenAccount"]
        .as_str()
        .unwrap()
        .to_string();
    chain
        .peer
        .control("faults", json!({"kind": "unhealthy", "method": "getSignaturesForAddress", "match": treasury_account, "count": 1}))
        .await;
    assert!(control.deposits.watch().await.is_err());
    assert_eq!(balance(app, &s, "IOSD").await.0, 2_000_000);
    // Too many requests: the client waits as told and carries on within the pass.
    chain
        .peer
        .control("faults", json!({"kind": "http_429", "method": "getTransaction", "match": signatures[2], "count": 2, "retry_after": 0}))
        .await;
    let pass = chain.watch().await;
    assert_eq!(pass.credited, 2, "{pass:?}");
    assert_eq!(balance(app, &s, "IOSD").await.0, 6_000_000);
    assert_eq!(chain.watch().await.credited, 0);
    ledger_balances(app).await;
    chain.stop().await;
}

async fn bad_deposit_requests_are_refused(b: Backend) {
    let Some(chain) = ChainApp::spawn(b.clone()).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "Chain Payers").await;
    for (body, field) in [
        (json!({"currency": "BTC"}), "currency"),
        (json!({"currency": "USD"}), "currency"),
        (json!({"currency": "IOSD", "amount": "-1"}), "amount"),
        (json!({"currency": "IOSD", "amount": "0"}), "amount"),
        (json!({"currency": "IOSD", "amount": "1.0000001"}), "amount"),
        (json!({"currency": "IOSD", "amount": "lots"}), "amount"),
    ] {
        let bad = app
            .post("/v1/billing/deposits", Some(&s.access), body)
            .await;
        bad.assert_problem(422, "validation_failed");
        assert_eq!(bad.body["field"], field, "{}", bad.text);
    }
    let member = app.add_member(&s, "member@example.com", "member").await;
    app.post(
        "/v1/billing/deposits",
        Some(&member.access),
        json!({"currency": "IOSD"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.get("/v1/billing/deposits/dep_nothing", &s.access)
        .await
        .assert_problem(404, "not_found");
    chain.stop().await;

    // Without Solana's settings the rail is off, and says so.
    let off = TestApp::spawn(b).await;
    let s = off.signup("owner@example.com", "Off Chain").await;
    off.post(
        "/v1/billing/deposits",
        Some(&s.access),
        json!({"currency": "IOSD"}),
    )
    .await
    .assert_problem(503, "rail_not_configured");
    off.stop().await;
}
