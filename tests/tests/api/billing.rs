//! Balances, postings, holds, the billing preference and operator credits, over REST and GraphQL.

use iocloud_billing::{Currency, Money};
use iocloud_tests::{Session, TestApp, balance, on_both_engines, units};
use serde_json::{Value, json};

on_both_engines!(
    signup_credit_and_operator_grants,
    holds_postings_and_preference
);

fn usd(n: i64) -> Money {
    Money::from_micros(units(n), Currency::Usd)
}

/// The ledger transaction of the first of the organisation's postings `is` picks, as the
/// organisation reads its postings.
async fn transaction_of(app: &TestApp, s: &Session, is: impl Fn(&Value) -> bool) -> String {
    let postings = app.items("/v1/ledger/postings", &s.access).await;
    let found = postings
        .iter()
        .find(|p| is(p))
        .unwrap_or_else(|| panic!("no such posting in {postings:#?}"));
    found["transaction_id"].as_str().unwrap().to_string()
}

async fn signup_credit_and_operator_grants(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.signup_credit_usd = Some("25".into())).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let balances = app.get("/v1/balances", &s.access).await;
    assert_eq!(balances.status, 200, "{}", balances.text);
    let by = |c: &str| {
        balances
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(by("USD")["available"], "25.00");
    assert_eq!(by("USD")["held"], "0.00");
    assert_eq!(by("IO")["available"], "0.00");
    let postings = app.get("/v1/ledger/postings", &s.access).await;
    assert_eq!(
        postings.body["items"][0]["kind"], "credit_grant",
        "{}",
        postings.text
    );
    assert_eq!(postings.body["items"][0]["amount"], "25.00");
    assert_eq!(postings.body["items"][0]["memo"], "sign-up credit");

    // Only platform operators grant credit.
    let grant = json!({"org_id": s.org_id, "amount": "10.50", "currency": "USD", "reason": "SLA credit for an outage"});
    app.post("/v1/admin/credits", Some(&s.access), grant.clone())
        .await
        .assert_problem(403, "forbidden");
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;
    let post_grant = |key: &'static str, body: serde_json::Value| {
        let req = app
            .client
            .post(app.url("/v1/admin/credits"))
            .bearer_auth(&ops.access)
            .header("idempotency-key", key)
            .json(&body);
        async move { TestApp::answer(req.send().await.unwrap()).await }
    };
    let nowhere = json!({"org_id": "org_nope", "amount": "1", "currency": "USD", "reason": "r"});
    post_grant("nowhere", nowhere)
        .await
        .assert_problem(404, "not_found");
    let granted = post_grant("sla-1", grant.clone()).await;
    assert_eq!(granted.status, 200, "{}", granted.text);
    assert_eq!(granted.body["amount"], "10.50");
    let again = post_grant("sla-1", grant.clone()).await;
    assert_eq!(again.body["transaction_id"], granted.body["transaction_id"]);
    let after = app.get("/v1/balances", &s.access).await;
    assert!(
        after.text.contains("\"available\":\"35.50\""),
        "granted once: {}",
        after.text
    );
    // Bad grants are refused and move nothing.
    post_grant(
        "x1",
        json!({"org_id": s.org_id, "amount": "-5", "currency": "USD", "reason": "r"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    post_grant(
        "x2",
        json!({"org_id": s.org_id, "amount": "5", "currency": "EUR", "reason": "r"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    post_grant(
        "x3",
        json!({"org_id": "org_nope", "amount": "5", "currency": "USD", "reason": "r"}),
    )
    .await
    .assert_problem(404, "not_found");
    assert!(
        app.get("/v1/balances", &s.access)
            .await
            .text
            .contains("\"available\":\"35.50\"")
    );
    let ledger = &app.server.state.control.ledger;
    assert!(ledger.verify().await.unwrap().is_balanced());

    // GraphQL reads the same books.
    let g = app
        .graphql(
            Some(&s.access),
            "{ balances { currency available held } }",
            json!({}),
        )
        .await;
    assert!(g.text.contains("\"available\":\"35.50\""), "{}", g.text);
    let refused = app.graphql(Some(&s.access), "mutation { grantCredit(orgId: \"x\", amount: \"1\", currency: \"USD\", reason: \"r\") { amount } }", json!({})).await;
    assert_eq!(refused.body["errors"][0]["extensions"]["code"], "forbidden");
    app.stop().await;
}

async fn holds_postings_and_preference(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.demo = true).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let other = app.signup("bob@example.com", "Bobco").await;
    assert_eq!(
        balance(&app, &s, "USD").await.0,
        units(500),
        "--demo grants 500 USD"
    );
    let ledger = &app.server.state.control.ledger;

    // A cluster's hold, placed as a create places it.
    let hold = ledger
        .place_hold(&s.org_id, usd(120), "clu_demo", "hold-clu_demo")
        .await
        .unwrap();
    ledger
        .capture(&hold.id, usd(20), &other.org_id, 500, "cap-1")
        .await
        .unwrap();
    let listed = app.get("/v1/holds", &s.access).await;
    assert_eq!(
        listed.body["items"][0]["id"],
        hold.id.as_str(),
        "{}",
        listed.text
    );
    assert_eq!(listed.body["items"][0]["remaining"], "100.00");
    let one = app.get(&format!("/v1/holds/{}", hold.id), &s.access).await;
    assert_eq!(one.body["captured"], "20.00");
    app.get(&format!("/v1/holds/{}", hold.id), &other.access)
        .await
        .assert_problem(404, "not_found");
    let balances = app.get("/v1/balances", &s.access).await;
    assert!(
        balances
            .text
            .contains("{\"currency\":\"USD\",\"available\":\"380.00\",\"held\":\"100.00\",\"owed\":\"0.00\",\"refund_pending\":\"0.00\",\"earnings\":\"0.00\",\"payout_pending\":\"0.00\"}"),
        "{}",
        balances.text
    );
    // Another tenant's postings are not ours: bob sees only his credit and his earnings.
    let theirs = app
        .get("/v1/ledger/postings?limit=200", &other.access)
        .await;
    assert!(
        theirs.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["kind"] != "hold"),
        "{}",
        theirs.text
    );
    assert!(theirs.text.contains("\"account\":\"provider_earnings\""));

    // Postings page, filter, refuse a bad currency.
    let first = app.get("/v1/ledger/postings?limit=2", &s.access).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    assert!(first.body["next_cursor"].is_string());
    let usd_only = app.get("/v1/ledger/postings?currency=usd", &s.access).await;
    assert!(
        usd_only.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["currency"] == "USD")
    );
    app.get("/v1/ledger/postings?currency=EUR", &s.access)
        .await
        .assert_problem(422, "validation_failed");

    // How the organisation pays.
    let preference = app.get("/v1/billing/preference", &s.access).await;
    assert_eq!(
        preference.body["currency"], "USD",
        "{}: {}",
        preference.status, preference.text
    );
    let set = app
        .request(
            reqwest::Method::PUT,
            "/v1/billing/preference",
            Some(&s.access),
            Some(json!({"currency": "iosd"})),
        )
        .await;
    assert_eq!(set.body["currency"], "IOSD", "{}", set.text);
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.request(
        reqwest::Method::PUT,
        "/v1/billing/preference",
        Some(&viewer.access),
        Some(json!({"currency": "IO"})),
    )
    .await
    .assert_problem(403, "forbidden");
    app.get("/v1/balances", &viewer.access)
        .await
        .assert_problem(403, "forbidden");
    app.request(
        reqwest::Method::PUT,
        "/v1/billing/preference",
        Some(&s.access),
        Some(json!({"currency": "EUR"})),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(
        app.get("/v1/billing/preference", &s.access).await.body["currency"],
        "IOSD"
    );
    assert!(ledger.verify().await.unwrap().is_balanced());
    app.stop().await;
}

iocloud_tests::on_both_engines!(operators_correct_with_compensating_transactions);

/// A transaction is never edited: an operator posts its reverse, once.
async fn operators_correct_with_compensating_transactions(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let ops = app.signup("ops@example.com", "Platform").await;
    app.exec(
        "UPDATE users SET is_operator = TRUE WHERE email = $1",
        "ops@example.com",
    )
    .await;
    let grant = app
        .post(
            "/v1/admin/credits",
            Some(&ops.access),
            json!({"org_id": s.org_id, "amount": "40.00", "currency": "USD", "reason": "promotion"}),
        )
        .await;
    assert_eq!(grant.status, 200, "{}", grant.text);
    let tx = grant.body["transaction_id"].as_str().unwrap().to_string();
    let body = json!({"transaction_id": tx, "reason": "granted to the wrong organisation"});
    // Only operators.
    app.post("/v1/admin/corrections", Some(&s.access), body.clone())
        .await
        .assert_problem(403, "forbidden");
    let fixed = app
        .post("/v1/admin/corrections", Some(&ops.access), body.clone())
        .await;
    assert_eq!(fixed.status, 200, "{}", fixed.text);
    assert_eq!(fixed.body["corrects"], tx.as_str());
    assert_eq!(fixed.body["corrected_kind"], "credit_grant");
    assert_eq!(fixed.body["replayed"], false);
    let again = app
        .post("/v1/admin/corrections", Some(&ops.access), body)
        .await;
    assert_eq!(again.body["transaction_id"], fixed.body["transaction_id"]);
    assert_eq!(again.body["replayed"], true);
    let balances = app.get("/v1/balances", &s.access).await;
    assert!(
        balances.text.contains("\"available\":\"0.00\""),
        "the grant is undone once: {}",
        balances.text
    );
    let postings = app.get("/v1/ledger/postings", &s.access).await;
    let last = postings.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "correction");
    assert_eq!(last["amount"], "-40.00");
    // A hold cannot be reversed; an unknown transaction is not found; a blank reason is refused.
    app.post(
        "/v1/admin/credits",
        Some(&ops.access),
        json!({"org_id": s.org_id, "amount": "10", "currency": "USD", "reason": "credit"}),
    )
    .await;
    let control = &app.server.state.control;
    let hold = control
        .ledger
        .place_hold(
            &s.org_id,
            iocloud_billing::Money::from_micros(5_000_000, iocloud_billing::Currency::Usd),
            "clu_x",
            "hold-x",
        )
        .await
        .unwrap();
    let hold_tx = transaction_of(&app, &s, |p| p["kind"] == "hold").await;
    app.post(
        "/v1/admin/corrections",
        Some(&ops.access),
        json!({"transaction_id": hold_tx, "reason": "r"}),
    )
    .await
    .assert_problem(409, "not_reversible");
    // Nor can a stake: its record would still list devices on tokens a reversal took away.
    app.post(
        "/v1/admin/credits",
        Some(&ops.access),
        json!({"org_id": s.org_id, "amount": "100", "currency": "IO", "reason": "credit"}),
    )
    .await;
    let staked = app
        .post("/v1/stake", Some(&s.access), json!({"amount": "100"}))
        .await;
    assert_eq!(staked.status, 201, "{}", staked.text);
    let stake_memo = format!("stake {}", staked.body["id"].as_str().unwrap());
    let stake_tx = transaction_of(&app, &s, |p| p["memo"] == stake_memo.as_str()).await;
    app.post(
        "/v1/admin/corrections",
        Some(&ops.access),
        json!({"transaction_id": stake_tx, "reason": "r"}),
    )
    .await
    .assert_problem(409, "not_reversible");
    let summary = app.get("/v1/stake", &s.access).await;
    assert_eq!(
        summary.body["stakes"][0]["status"], "active",
        "{}",
        summary.text
    );
    app.post(
        "/v1/admin/corrections",
        Some(&ops.access),
        json!({"transaction_id": "ltx_nope", "reason": "r"}),
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        "/v1/admin/corrections",
        Some(&ops.access),
        json!({"transaction_id": tx, "reason": " "}),
    )
    .await
    .assert_problem(422, "validation_failed");
    // A capture reversed: the money returns to the available balance, the hold is untouched.
    control
        .ledger
        .capture(
            &hold.id,
            iocloud_billing::Money::from_micros(2_000_000, iocloud_billing::Currency::Usd),
            "org_provider",
            500,
            "cap-1",
        )
        .await
        .unwrap();
    let cap_tx = transaction_of(&app, &s, |p| p["kind"] == "capture").await;
    let r = app
        .post(
            "/v1/admin/corrections",
            Some(&ops.access),
            json!({"transaction_id": cap_tx, "reason": "node never came up"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let balances = app.get("/v1/balances", &s.access).await;
    assert!(
        balances.text.contains("\"available\":\"7.00\"")
            && balances.text.contains("\"held\":\"3.00\""),
        "10 granted, 5 held, 2 captured then refunded: {}",
        balances.text
    );
    // The same over GraphQL, with the code in `extensions`.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation($t: String!) { correctTransaction(transactionId: $t, reason: \"x\") { transactionId } }",
            json!({"t": cap_tx}),
        )
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "forbidden",
        "{}",
        g.text
    );
    let g = app
        .graphql(
            Some(&ops.access),
            "mutation($t: String!) { correctTransaction(transactionId: $t, reason: \"x\") { replayed correctedKind } }",
            json!({"t": cap_tx}),
        )
        .await;
    assert_eq!(
        g.body["data"]["correctTransaction"]["replayed"], true,
        "{}",
        g.text
    );
    assert_eq!(
        g.body["data"]["correctTransaction"]["correctedKind"],
        "capture"
    );
    assert!(control.ledger.verify().await.unwrap().is_balanced());
}
