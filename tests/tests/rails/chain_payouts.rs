//! Payouts on Solana against the LiteSVM peer, on both engines: earnings paid to a proved
//! wallet once, at finalized, whatever the node does (a send that times out, 429s, a transfer
//! seen at confirmed then dropped, a blockhash that expires unseen); a treasury short of tokens
//! queues the payout until it is refilled; one that fails on chain gives the earnings back;
//! limits, approval and bad requests change nothing; a payout a restored database shows as
//! ready again after it was paid is not paid twice.
//! The recipient's token balance shows exactly one payment, and the books balance, after each.

use iocloud_billing::Currency;
use iocloud_tests::{Backend, ChainApp, Session, TestApp, earn, ledger_balances, on_both_engines};
use serde_json::{Value, json};

on_both_engines!(
    a_payout_is_paid_once_at_finalized,
    payouts_ride_out_node_faults,
    a_short_treasury_queues_payouts,
    a_payout_that_fails_on_chain_gives_the_earnings_back,
    payout_limits_and_bad_requests_change_nothing,
    a_payout_restored_to_before_it_was_paid_is_not_paid_again,
);

/// One of the organisation's balances (`earnings`, `payout_pending`, …) in micro-units.
async fn held(app: &TestApp, s: &Session, currency: &str, field: &str) -> i64 {
    let b = app.get("/v1/balances", &s.access).await;
    let row = b
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["currency"] == currency)
        .cloned()
        .unwrap();
    iocloud_tests::micros(row[field].as_str().unwrap())
}

async fn ask(app: &TestApp, s: &Session, body: Value) -> Value {
    let p = app.post("/v1/payouts", Some(&s.access), body).await;
    assert_eq!(p.status, 201, "{}", p.text);
    p.body
}

async fn payout(app: &TestApp, s: &Session, id: &Value) -> Value {
    let p = app
        .get(&format!("/v1/payouts/{}", id.as_str().unwrap()), &s.access)
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    p.body
}

async fn operator(app: &TestApp) -> Session {
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;
    ops
}

/// Passes of the sender, moving the clock on between them, until `id` is paid.
async fn until_paid(chain: &ChainApp, s: &Session, id: &Value) -> Value {
    for _ in 0..20 {
        chain.peer.advance(40).await;
        let _ = chain.app.server.state.control.payouts.send_pass().await;
        let p = payout(&chain.app, s, id).await;
        if p["status"] == "paid" {
            return p;
        }
    }
    panic!("never paid: {}", payout(&chain.app, s, id).await);
}

async fn a_payout_is_paid_once_at_finalized(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (wallet, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100.00", Currency::Usd).await;
    chain.fund_treasury(&chain.iosd, 1_000_000_000).await;
    chain.fund_treasury(&chain.io, 1_000_000_000_000).await;

    let p = ask(
        app,
        &s,
        json!({"amount": "25.00", "currency": "USD", "token": "IOSD"}),
    )
    .await;
    assert_eq!(p["status"], "ready");
    assert_eq!(p["wallet_id"], wallet.as_str());
    assert_eq!(p["address"], address.as_str());
    assert_eq!(p["token_amount"], "25");
    assert_eq!(held(app, &s, "USD", "earnings").await, 75_000_000);
    assert_eq!(held(app, &s, "USD", "payout_pending").await, 25_000_000);

    // Signed, kept and sent: the tokens move at once, but the payout is paid only once the
    // transfer is finalized; passes before that send the same bytes and pay nothing more.
    let pass = chain.send().await;
    assert_eq!((pass.signed, pass.paid), (1, 0), "{pass:?}");
    let sent = payout(app, &s, &p["id"]).await;
    assert_eq!(sent["status"], "sent");
    assert_eq!(sent["attempts"], 1);
    let signature = sent["signature"].as_str().unwrap().to_string();
    chain.peer.advance(2).await;
    assert_eq!(
        chain.peer.balance(&address, &chain.iosd, "confirmed").await,
        25_000_000
    );
    // The peer's clock also runs on its own (a slot each 50 ms), so on a slow machine the
    // transfer may be final by this pass: then, and only then, is it paid.
    let pass = chain.send().await;
    if pass.paid == 1 {
        assert_eq!(
            chain.peer.balance(&address, &chain.iosd, "finalized").await,
            25_000_000,
            "paid only once final"
        );
    } else {
        assert_eq!(payout(app, &s, &p["id"]).await["status"], "sent");
    }

    let paid = until_paid(&chain, &s, &p["id"]).await;
    assert_eq!(paid["signature"], signature.as_str());
    assert!(paid["paid_at"].is_string());
    assert_eq!(
        chain.peer.balance(&address, &chain.iosd, "finalized").await,
        25_000_000,
        "exactly one payment"
    );
    assert_eq!(held(app, &s, "USD", "payout_pending").await, 0);
    assert_eq!(held(app, &s, "USD", "earnings").await, 75_000_000);
    // Nothing more happens to a paid payout.
    let pass = chain.send().await;
    assert_eq!((pass.signed, pass.resent, pass.paid), (0, 0, 0));
    ledger_balances(app).await;

    // USD earnings paid in IO at the feed's rate (0.50 USD per IO): 20 USD is 40 IO, nine
    // decimals on chain.
    let io = ask(
        app,
        &s,
        json!({"amount": "20", "currency": "USD", "token": "IO"}),
    )
    .await;
    assert_eq!(io["token_amount"], "40");
    assert!(io["rate_id"].is_string());
    chain.send().await;
    until_paid(&chain, &s, &io["id"]).await;
    assert_eq!(
        chain.peer.balance(&address, &chain.io, "finalized").await,
        40_000_000_000
    );
    assert_eq!(held(app, &s, "USD", "earnings").await, 55_000_000);

    // The payouts went out of the treasury's account: the deposit watcher, reading its
    // history, credits nobody and keeps nothing unmatched for them.
    chain.watch().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM chain_deposits").await, 0);

    let list = app.get("/v1/payouts", &s.access).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    // The sender's steps are in the audit log.
    let audit = app.get("/v1/audit-events?limit=100", &s.access).await;
    assert!(audit.text.contains("payout paid"), "{}", audit.text);
    ledger_balances(app).await;
    chain.stop().await;
}

async fn payouts_ride_out_node_faults(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "500.00", Currency::Iosd).await;
    chain.fund_treasury(&chain.usdc, 1_000_000_000).await;
    let peer = &chain.peer;
    let body = |amount: &str| json!({"amount": amount, "currency": "IOSD", "token": "USDC"});

    // Sent; then the node times out and fails while it is followed: the passes fail, nothing
    // moves, the next ones carry on (429s the client waits out within the pass).
    let first = ask(app, &s, body("10")).await;
    chain.send().await;
    let sent = payout(app, &s, &first["id"]).await;
    let signature = sent["signature"].as_str().unwrap().to_string();
    let sender = &app.server.state.control.payouts;
    for fault in [
        json!({"kind": "timeout", "seconds": 0.5}),
        json!({"kind": "http_503"}),
        json!({"kind": "unhealthy"}),
    ] {
        let mut fault = fault;
        fault["method"] = json!("getSignatureStatuses");
        fault["match"] = json!(signature);
        peer.control("faults", fault).await;
        assert!(sender.send_pass().await.is_err());
        assert_eq!(payout(app, &s, &first["id"]).await["status"], "sent");
    }
    peer.control(
        "faults",
        json!({"kind": "http_429", "method": "getSignatureStatuses", "match": signature, "count": 2, "retry_after": 0}),
    )
    .await;
    assert!(sender.send_pass().await.is_ok());
    until_paid(&chain, &s, &first["id"]).await;
    assert_eq!(
        peer.balance(&address, &chain.usdc, "finalized").await,
        10_000_000
    );

    // Seen at confirmed, then dropped by a fork: sent again while its blockhash lives.
    let second = ask(app, &s, body("20")).await;
    chain.drop_payout_once(second["id"].as_str().unwrap(), 4);
    chain.send().await;
    peer.advance(2).await;
    // Seen, not final: sent again (or, when other tests moved the shared clock past its
    // blockhash meanwhile, signed anew), and not paid.
    let pass = chain.send().await;
    assert_eq!(
        (pass.resent + pass.signed, pass.paid),
        (1, 0),
        "seen, not final: {pass:?}"
    );
    peer.advance(10).await;
    // The fork was abandoned: nothing of it is final. (Other tests move the shared clock too,
    // so the bytes sent again may already be final here: once, never twice.)
    let so_far = peer.balance(&address, &chain.usdc, "finalized").await;
    assert!([10_000_000, 30_000_000].contains(&so_far), "{so_far}");
    let paid = until_paid(&chain, &s, &second["id"]).await;
    // The same bytes landed (signed again only if, on a busy peer whose clock other tests
    // move too, they expired first).
    assert!(
        (1..=2).contains(&paid["attempts"].as_i64().unwrap()),
        "{paid}"
    );

    // Dropped, and its blockhash expires before anything sends it again: signed anew once the
    // old bytes can no longer land, and paid once.
    let third = ask(app, &s, body("40")).await;
    chain.drop_payout_once(third["id"].as_str().unwrap(), 2);
    chain.send().await;
    peer.advance(5).await;
    peer.control("expire_blockhashes", json!({})).await;
    peer.advance(40).await;
    let pass = chain.send().await;
    assert_eq!(pass.signed, 1, "signed anew: {pass:?}");
    let paid = until_paid(&chain, &s, &third["id"]).await;
    assert!(paid["attempts"].as_i64().unwrap() >= 2, "{paid}");
    assert_eq!(
        peer.balance(&address, &chain.usdc, "finalized").await,
        70_000_000,
        "10 + 20 + 40, each once"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payout_attempts").await,
        app.count("SELECT COALESCE(SUM(attempts), 0) FROM payouts")
            .await,
        "every signing kept"
    );
    assert_eq!(held(app, &s, "IOSD", "payout_pending").await, 0);
    assert_eq!(held(app, &s, "IOSD", "earnings").await, 430_000_000);
    ledger_balances(app).await;
    chain.stop().await;
}

async fn a_short_treasury_queues_payouts(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100", Currency::Io).await;
    chain.fund_treasury(&chain.io, 30_000_000_000).await;

    // 50 IO out of a treasury holding 30: queued, and operators alerted.
    let p = ask(app, &s, json!({"amount": "50", "currency": "IO"})).await;
    assert_eq!(p["token"], "IO");
    let pass = chain.send().await;
    assert_eq!((pass.signed, pass.queued), (0, 1), "{pass:?}");
    let queued = payout(app, &s, &p["id"]).await;
    assert_eq!(queued["status"], "queued");
    assert!(
        queued["reason"].as_str().unwrap().contains("treasury"),
        "{queued}"
    );
    let audit = app.get("/v1/audit-events?limit=100", &s.access).await;
    assert!(
        audit.text.contains("payout queued: treasury short"),
        "{}",
        audit.text
    );
    let ops = operator(app).await;
    let waiting = app
        .get("/v1/admin/payouts?status=queued", &ops.access)
        .await;
    assert_eq!(waiting.status, 200, "{}", waiting.text);
    assert_eq!(waiting.body["items"][0]["id"], p["id"]);
    // Still short on the next pass: nothing signed.
    assert_eq!(chain.send().await.signed, 0);

    // Refilled: paid.
    chain.fund_treasury(&chain.io, 30_000_000_000).await;
    chain.peer.advance(2).await;
    assert_eq!(chain.send().await.signed, 1);
    until_paid(&chain, &s, &p["id"]).await;
    assert_eq!(
        chain.peer.balance(&address, &chain.io, "finalized").await,
        50_000_000_000
    );
    assert_eq!(held(app, &s, "IO", "earnings").await, 50_000_000);
    ledger_balances(app).await;
    chain.stop().await;
}

async fn a_payout_that_fails_on_chain_gives_the_earnings_back(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100", Currency::Iosd).await;
    chain.fund_treasury(&chain.iosd, 1_000_000_000).await;
    // The wallet's token account is frozen: no transfer into it can succeed.
    chain
        .peer
        .control("freeze", json!({"mint": chain.iosd, "owner": address}))
        .await;
    chain.peer.advance(2).await;

    let p = ask(app, &s, json!({"amount": "15", "currency": "IOSD"})).await;
    // The node's preflight refuses it; sent again without, it lands failed, and once that is
    // final the payout fails and the earnings come back.
    chain.send().await;
    let mut failed = None;
    for _ in 0..10 {
        chain.peer.advance(40).await;
        let pass = chain.send().await;
        let now = payout(app, &s, &p["id"]).await;
        if now["status"] == "failed" {
            assert_eq!(pass.failed, 1, "{pass:?}");
            failed = Some(now);
            break;
        }
    }
    let failed = failed.expect("the payout failed");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("failed on chain"),
        "{failed}"
    );
    assert!(failed["attempts"].as_i64().unwrap() >= 1, "{failed}");
    assert_eq!(
        chain.peer.balance(&address, &chain.iosd, "finalized").await,
        0
    );
    assert_eq!(held(app, &s, "IOSD", "earnings").await, 100_000_000);
    assert_eq!(held(app, &s, "IOSD", "payout_pending").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payout_days WHERE usd_total <> 0")
            .await,
        0,
        "the day's room is back"
    );
    let audit = app.get("/v1/audit-events?limit=100", &s.access).await;
    assert!(audit.text.contains("payout failed"), "{}", audit.text);
    // Nothing more happens to it.
    let pass = chain.send().await;
    assert_eq!((pass.signed, pass.resent), (0, 0));
    ledger_balances(app).await;
    chain.stop().await;
}

async fn payout_limits_and_bad_requests_change_nothing(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let other = app.signup("other@example.com", "Another Provider").await;
    let ops = operator(app).await;
    let usd = |amount: &str| json!({"amount": amount, "currency": "USD"});

    // No wallet yet.
    app.post("/v1/payouts", Some(&s.access), usd("20"))
        .await
        .assert_problem(409, "invalid_state");
    let (wallet, _) = chain.prove_wallet(&s).await;
    let (their_wallet, _) = chain.prove_wallet(&other).await;
    earn(app, &s.org_id, "20000", Currency::Usd).await;
    earn(app, &other.org_id, "50", Currency::Usd).await;

    for (body, status, code) in [
        (
            json!({"amount": "20", "currency": "EUR"}),
            422,
            "validation_failed",
        ),
        (
            json!({"amount": "-5", "currency": "USD"}),
            422,
            "validation_failed",
        ),
        (
            json!({"amount": "1.0000001", "currency": "USD"}),
            422,
            "validation_failed",
        ),
        (
            json!({"amount": "20", "currency": "USD", "token": "BTC"}),
            422,
            "validation_failed",
        ),
        (
            json!({"amount": "9.99", "currency": "USD"}),
            422,
            "payout_below_minimum",
        ),
        (
            json!({"amount": "10001", "currency": "USD"}),
            409,
            "payout_limit_exceeded",
        ),
        (
            json!({"amount": "20", "currency": "USD", "wallet_id": their_wallet}),
            404,
            "not_found",
        ),
        (
            json!({"amount": "20", "currency": "IOSD"}),
            402,
            "insufficient_funds",
        ),
        (
            json!({"amount": "20", "currency": "USD", "extra": 1}),
            422,
            "invalid_body",
        ),
    ] {
        app.post("/v1/payouts", Some(&s.access), body.clone())
            .await
            .assert_problem(status, code);
    }
    // Another organisation's earnings are not these.
    app.post("/v1/payouts", Some(&other.access), usd("60"))
        .await
        .assert_problem(402, "insufficient_funds");
    // Roles: a member without billing rights cannot ask.
    let dev = app.add_member(&s, "dev@example.com", "member").await;
    assert_eq!(
        app.post("/v1/payouts", Some(&dev.access), usd("20"))
            .await
            .status,
        403
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM payouts").await, 0);
    assert_eq!(held(app, &s, "USD", "earnings").await, 20_000_000_000);

    // Above the approval threshold: waits for an operator. The day's limit counts it.
    let big = ask(app, &s, usd("6000")).await;
    assert_eq!(big["status"], "awaiting_approval");
    app.post("/v1/payouts", Some(&s.access), usd("4500"))
        .await
        .assert_problem(409, "payout_limit_exceeded");
    let small = ask(
        app,
        &s,
        json!({"amount": "3000", "currency": "USD", "wallet_id": wallet}),
    )
    .await;
    assert_eq!(small["status"], "ready");
    assert_eq!(held(app, &s, "USD", "payout_pending").await, 9_000_000_000);

    // Another organisation sees none of it.
    app.get(
        &format!("/v1/payouts/{}", big["id"].as_str().unwrap()),
        &other.access,
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        &format!("/v1/payouts/{}/cancel", big["id"].as_str().unwrap()),
        Some(&other.access),
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
    // Providers do not approve their own.
    app.post(
        &format!("/v1/admin/payouts/{}/approve", big["id"].as_str().unwrap()),
        Some(&s.access),
        json!({}),
    )
    .await
    .assert_problem(403, "forbidden");

    // A rejection needs a reason, and gives the earnings and the day's room back.
    app.post(
        &format!("/v1/admin/payouts/{}/reject", big["id"].as_str().unwrap()),
        Some(&ops.access),
        json!({}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let rejected = app
        .post(
            &format!("/v1/admin/payouts/{}/reject", big["id"].as_str().unwrap()),
            Some(&ops.access),
            json!({"reason": "unusual for this provider"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    assert_eq!(rejected.body["status"], "rejected");
    app.post(
        &format!("/v1/admin/payouts/{}/approve", big["id"].as_str().unwrap()),
        Some(&ops.access),
        json!({}),
    )
    .await
    .assert_problem(409, "invalid_state");
    let again = ask(app, &s, usd("5500")).await;
    assert_eq!(again["status"], "awaiting_approval");
    let approved = app
        .post(
            &format!(
                "/v1/admin/payouts/{}/approve",
                again["id"].as_str().unwrap()
            ),
            Some(&ops.access),
            json!({}),
        )
        .await;
    assert_eq!(approved.body["status"], "ready", "{}", approved.text);

    // The provider takes one back before it is signed; not once it is.
    let canceled = app
        .post(
            &format!("/v1/payouts/{}/cancel", small["id"].as_str().unwrap()),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(canceled.body["status"], "canceled", "{}", canceled.text);
    chain.fund_treasury(&chain.iosd, 10_000_000_000).await;
    chain.send().await;
    app.post(
        &format!("/v1/payouts/{}/cancel", again["id"].as_str().unwrap()),
        Some(&s.access),
        json!({}),
    )
    .await
    .assert_problem(409, "invalid_state");
    assert_eq!(held(app, &s, "USD", "earnings").await, 14_500_000_000);
    assert_eq!(held(app, &s, "USD", "payout_pending").await, 5_500_000_000);

    // GraphQL: the same service, the same codes.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation { requestPayout(input: {amount: \"5\", currency: \"USD\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "payout_below_minimum",
        "{}",
        g.text
    );
    let g = app
        .graphql(
            Some(&s.access),
            "{ payouts { items { id status tokenAmount } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["data"]["payouts"]["items"].as_array().unwrap().len(),
        3,
        "{}",
        g.text
    );
    ledger_balances(app).await;
    chain.stop().await;
}

async fn a_payout_restored_to_before_it_was_paid_is_not_paid_again(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100.00", Currency::Usd).await;
    chain.fund_treasury(&chain.iosd, 1_000_000_000).await;
    let p = ask(
        app,
        &s,
        json!({"amount": "25.00", "currency": "USD", "token": "IOSD"}),
    )
    .await;
    chain.send().await;
    let paid = until_paid(&chain, &s, &p["id"]).await;
    let signature = paid["signature"].as_str().unwrap().to_string();

    // The database as a backup taken before the payout was signed holds it.
    app.exec(
        "UPDATE payouts SET status = 'ready', signature = NULL, signed_tx = NULL, \
         last_valid_height = NULL, attempts = 0, sent_at = NULL, paid_at = NULL WHERE id = $1",
        p["id"].as_str().unwrap(),
    )
    .await;
    for _ in 0..3 {
        chain.peer.advance(40).await;
        let pass = chain.send().await;
        assert_eq!(pass.signed, 0, "signed again: {pass:?}");
    }
    assert_eq!(
        chain.peer.balance(&address, &chain.iosd, "finalized").await,
        25_000_000,
        "exactly one payment"
    );
    let held = payout(app, &s, &p["id"]).await;
    assert_eq!(held["status"], "ready", "left for a person");
    let error = app
        .scalar(
            "SELECT last_error FROM payouts WHERE id = $1",
            p["id"].as_str().unwrap(),
        )
        .await;
    assert!(error.contains(&signature), "{error}");
    chain.stop().await;
}
