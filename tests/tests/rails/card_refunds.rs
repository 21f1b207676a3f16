//! Refunds of unused card credit and disputes of card payments, through the real app against
//! localstripe (refunds) and signed dispute fixtures (localstripe sends no dispute events); on
//! both engines. Nobody refunds more than was paid by card, nor credit that is held or
//! disputed, and every step leaves the books balanced.

use iocloud_tests::{
    Backend, CardApp, Session, TestApp, balance, dispute, fleet, frankfurt, iocloud_with_key,
    ledger_balances, on_both_engines, send_webhook, stripe_event, stripe_url, take_cards, units,
};
use serde_json::{Value, json};

on_both_engines!(
    refunds_partial_full_and_beyond,
    a_dispute_takes_back_leaves_debt_and_is_won,
    the_cli_pays_refunds_and_watches_the_balance,
);

async fn pay(app: &TestApp, s: &Session, amount: &str) -> Value {
    let t = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": amount, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(t.body["status"], "succeeded");
    t.body
}

async fn refundable(app: &TestApp, s: &Session) -> Value {
    app.get("/v1/billing/refundable", &s.access).await.body["amount"].clone()
}

async fn refunds_partial_full_and_beyond(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Refunders").await;
    // Credit that did not come by card is not refundable.
    app.grant_credit(&s.org_id, "100", "USD").await;
    assert_eq!(refundable(app, &s).await, "0.00");
    app.post("/v1/billing/refunds", Some(&s.access), json!({}))
        .await
        .assert_problem(422, "refund_exceeds_refundable");

    let older = pay(app, &s, "30.00").await;
    let newer = pay(app, &s, "20.00").await;
    assert_eq!(refundable(app, &s).await, "50.00");
    assert_eq!(balance(app, &s, "USD").await.0, units(150));

    // Beyond what was paid by card, or malformed: refused, nothing moves.
    for (body, code) in [
        (json!({"amount": "50.01"}), "refund_exceeds_refundable"),
        (json!({"amount": "0"}), "validation_failed"),
        (json!({"amount": "-3"}), "validation_failed"),
        (json!({"amount": "1.005"}), "validation_failed"),
    ] {
        app.post("/v1/billing/refunds", Some(&s.access), body)
            .await
            .assert_problem(422, code);
    }
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.post(
        "/v1/billing/refunds",
        Some(&viewer.access),
        json!({"amount": "1.00"}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(balance(app, &s, "USD").await.0, units(150));

    // Partial: 25 comes from the newer payment (20) first, then 5 from the older.
    let partial = app
        .post(
            "/v1/billing/refunds",
            Some(&s.access),
            json!({"amount": "25.00"}),
        )
        .await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    assert_eq!(partial.body["status"], "succeeded", "{}", partial.text);
    let parts = partial.body["parts"].as_array().unwrap();
    let share = |top: &Value| {
        parts
            .iter()
            .find(|p| p["top_up_id"] == top["id"])
            .map(|p| p["amount"].clone())
    };
    assert_eq!(share(&newer), Some(json!("20.00")));
    assert_eq!(share(&older), Some(json!("5.00")));
    assert!(parts.iter().all(|p| {
        p["stripe_refund_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("re_"))
    }));
    assert_eq!(balance(app, &s, "USD").await.0, units(125));
    assert_eq!(refundable(app, &s).await, "25.00");
    // Stripe holds the refunds against the payments.
    let pi = card
        .payment_intent(newer["payment_intent_id"].as_str().unwrap())
        .await;
    assert_eq!(pi["status"], "succeeded");

    // Full: the rest, with no amount given.
    let full = app
        .post("/v1/billing/refunds", Some(&s.access), json!({}))
        .await;
    assert_eq!(full.status, 201, "{}", full.text);
    assert_eq!(full.body["amount"], "25.00");
    assert_eq!(
        balance(app, &s, "USD").await.0,
        units(100),
        "the granted credit stays"
    );
    assert_eq!(refundable(app, &s).await, "0.00");
    app.post(
        "/v1/billing/refunds",
        Some(&s.access),
        json!({"amount": "0.01"}),
    )
    .await
    .assert_problem(422, "refund_exceeds_refundable");
    let listed = app.items("/v1/billing/refunds", &s.access).await;
    assert_eq!(listed.len(), 2);
    // The list reads parts in one query; each item is what its own route answers.
    for item in &listed {
        let one = app
            .get(
                &format!("/v1/billing/refunds/{}", item["id"].as_str().unwrap()),
                &s.access,
            )
            .await;
        assert_eq!(&one.body, item);
        assert!(!item["parts"].as_array().unwrap().is_empty());
    }
    // One item a page: the cursor walks both.
    let first = app.get("/v1/billing/refunds?limit=1", &s.access).await;
    assert_eq!(first.body["items"][0], listed[0]);
    assert!(first.body["next_cursor"].is_string());
    let balances = app.get("/v1/balances", &s.access).await;
    let usd = balances
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "USD")
        .unwrap()
        .clone();
    assert_eq!(usd["refund_pending"], "0.00", "{usd}");
    // Another organisation sees none of it.
    let other = app.signup("other@example.com", "Others").await;
    let id = partial.body["id"].as_str().unwrap();
    app.get(&format!("/v1/billing/refunds/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    ledger_balances(app).await;
    card.stop().await;
}

async fn a_dispute_takes_back_leaves_debt_and_is_won(b: Backend) {
    let Some(stripe) = stripe_url() else {
        return;
    };
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    // A provider's machines listed without an agent: a cluster on one holds its funds.
    let f = fleet(b, frankfurt(2), false, |c| {
        c.signup_credit_usd = None;
        take_cards(c, &stripe, &secret);
    })
    .await;
    let (app, s) = (&f.app, &f.customer);
    let paid = pay(app, s, "50.00").await;
    let pi = paid["payment_intent_id"].as_str().unwrap();
    let spec = json!({"name": "train", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8,
        "gpus_per_node": 8, "duration_hours": 2});
    let created = app
        .post("/v1/clusters", Some(&s.access), spec.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let (available, held) = balance(app, s, "USD").await;
    assert!(
        held > 0 && available + held == units(50),
        "{available} + {held}"
    );
    // Held credit is not refundable.
    assert_eq!(
        refundable(app, s).await,
        iocloud_billing::Money::from_micros(available, iocloud_billing::Currency::Usd).to_decimal()
    );

    // The cardholder disputes the whole 50: what is available goes, the rest is owed.
    let opened = stripe_event(
        "evt_dispute_open",
        "charge.dispute.created",
        dispute("dp_test_1", pi, 5000, "needs_response"),
    );
    let answer = send_webhook(app, &opened, &secret, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["outcome"], "recorded");
    // Sent again under another event id (Stripe's `charge.dispute.updated` and friends carry
    // the same dispute): taken once.
    let again = stripe_event(
        "evt_dispute_open_2",
        "charge.dispute.created",
        dispute("dp_test_1", pi, 5000, "needs_response"),
    );
    send_webhook(app, &again, &secret, None).await;
    assert_eq!(balance(app, s, "USD").await.0, 0);
    let owed = |b: &Value| {
        b.as_array()
            .unwrap()
            .iter()
            .find(|r| r["currency"] == "USD")
            .unwrap()["owed"]
            .clone()
    };
    let b1 = app.get("/v1/balances", &s.access).await.body;
    let debt = iocloud_tests::micros(owed(&b1).as_str().unwrap());
    assert_eq!(debt, held, "the spent (held) part is owed: {b1}");
    assert_eq!(
        refundable(app, s).await,
        "0.00",
        "a disputed payment is not refundable"
    );
    // Owing, the organisation rents nothing more.
    let blocked = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "more", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8,
                "gpus_per_node": 8, "duration_hours": 1}),
        )
        .await;
    blocked.assert_problem(402, "debt_outstanding");

    // New money pays the debt first.
    pay(app, s, "40.00").await;
    let b2 = app.get("/v1/balances", &s.access).await.body;
    assert_eq!(owed(&b2), "0.00", "{b2}");
    assert_eq!(balance(app, s, "USD").await.0, units(40) - debt);

    // Won: what it took comes back (the debt being paid, all of it to the balance); a second
    // closing changes nothing.
    let won = stripe_event(
        "evt_dispute_won",
        "charge.dispute.closed",
        dispute("dp_test_1", pi, 5000, "won"),
    );
    let answer = send_webhook(app, &won, &secret, None).await;
    assert_eq!(answer.body["outcome"], "recorded", "{}", answer.text);
    let won_again = stripe_event(
        "evt_dispute_won_2",
        "charge.dispute.closed",
        dispute("dp_test_1", pi, 5000, "won"),
    );
    let answer = send_webhook(app, &won_again, &secret, None).await;
    assert_eq!(answer.body["outcome"], "ignored", "{}", answer.text);
    assert_eq!(balance(app, s, "USD").await.0, units(40) - debt + units(50));
    // A dispute of a payment that is no top-up of ours: stored, nothing moves.
    let stranger = stripe_event(
        "evt_dispute_stranger",
        "charge.dispute.created",
        dispute("dp_test_2", "pi_not_ours", 999, "needs_response"),
    );
    let answer = send_webhook(app, &stranger, &secret, None).await;
    assert_eq!(answer.body["outcome"], "ignored", "{}", answer.text);
    ledger_balances(app).await;

    // A lost dispute leaves the money gone.
    let second = pay(app, s, "10.00").await;
    let pi2 = second["payment_intent_id"].as_str().unwrap();
    let before = balance(app, s, "USD").await.0;
    for (evt, status, kind) in [
        ("evt_d3_open", "needs_response", "charge.dispute.created"),
        ("evt_d3_lost", "lost", "charge.dispute.closed"),
    ] {
        let e = stripe_event(evt, kind, dispute("dp_test_3", pi2, 1000, status));
        let a = send_webhook(app, &e, &secret, None).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    assert_eq!(balance(app, s, "USD").await.0, before - units(10));
    ledger_balances(app).await;
}

async fn the_cli_pays_refunds_and_watches_the_balance(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Terminal Payers").await;
    let (_, admin) = app.api_key(&s.access, &["admin"]).await;
    let (_, reader) = app.api_key(&s.access, &["read"]).await;
    // No saved card: the default one cannot be charged.
    assert_eq!(
        iocloud_with_key(app, &["billing", "top-up", "20"], &admin).await,
        4
    );
    let saved = app
        .post(
            "/v1/billing/cards",
            Some(&s.access),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    assert_eq!(
        iocloud_with_key(app, &["billing", "cards"], &reader).await,
        0
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "top-up", "20"], &admin).await,
        0
    );
    assert_eq!(balance(app, &s, "USD").await.0, units(20));
    // A read-only key may look, not pay; a declined card and a refused amount say so.
    assert_eq!(
        iocloud_with_key(app, &["billing", "top-ups"], &reader).await,
        0
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "balance", "-o", "json"], &reader).await,
        0
    );
    let paid = app.items("/v1/billing/top-ups", &s.access).await;
    let paid = paid[0]["id"].as_str().unwrap();
    assert_eq!(
        iocloud_with_key(app, &["billing", "receipt", paid], &reader).await,
        0
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "receipt", "top_nothing"], &reader).await,
        4
    );
    assert_eq!(
        iocloud_with_key(
            app,
            &["billing", "top-up", "5", "--card", "pm_card_visa"],
            &reader
        )
        .await,
        4
    );
    assert_eq!(
        iocloud_with_key(
            app,
            &["billing", "top-up", "5", "--card", "pm_card_chargeDeclined"],
            &admin
        )
        .await,
        4
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "refund", "500"], &admin).await,
        4
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "refund", "5"], &admin).await,
        0
    );
    assert_eq!(balance(app, &s, "USD").await.0, units(15));
    assert_eq!(
        iocloud_with_key(
            app,
            &["billing", "low-balance", "--threshold", "10"],
            &admin
        )
        .await,
        0
    );
    assert_eq!(
        iocloud_with_key(app, &["billing", "low-balance"], &reader).await,
        0
    );
    let alerts = app.get("/v1/billing/low-balance", &s.access).await;
    assert_eq!(alerts.body[0]["threshold"], "10.00", "{}", alerts.text);
    ledger_balances(app).await;
    card.stop().await;
}
