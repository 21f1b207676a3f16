//! Card top-ups end to end: the real app, its Stripe client against localstripe, and
//! localstripe's own signed webhooks; on both engines. Each credit happens once whichever
//! way Stripe's word arrives, and the books balance after.

use iocloud_tests::{
    Backend, CardApp, Session, TestApp, balance, ledger_balances, on_both_engines, stripe_event,
    units,
};
use serde_json::{Value, json};

on_both_engines!(
    a_card_charged_at_once_is_credited_once,
    the_card_form_top_up_is_credited_by_its_webhook,
    forged_stale_and_malformed_webhooks_change_nothing,
    a_lost_webhook_is_made_good_by_the_missed_pass,
    a_declined_card_is_recorded_and_credits_nothing,
    bad_top_ups_are_refused_before_stripe,
);

async fn owner(app: &TestApp) -> Session {
    app.signup("owner@example.com", "Card Payers").await
}

/// The stored credits of `org` made by card.
async fn card_credits(app: &TestApp, org: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'deposit' AND org_id = '{org}'"
    ))
    .await
}

async fn a_card_charged_at_once_is_credited_once(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    let t = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "25.00", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(t.body["status"], "succeeded");
    assert_eq!(t.body["received"], "25.00");
    assert!(t.body["id"].as_str().unwrap().starts_with("top_"));
    assert!(
        t.body.get("client_secret").is_none(),
        "nothing left to confirm"
    );
    let pi = t.body["payment_intent_id"].as_str().unwrap().to_string();
    assert!(pi.starts_with("pi_"));
    assert_eq!(balance(app, &s, "USD").await.0, units(25));

    // localstripe's own webhook follows: stored, nothing credited again.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while app
        .count(&format!(
            "SELECT COUNT(*) FROM stripe_events WHERE object_id = '{pi}' AND type = 'payment_intent.succeeded'"
        ))
        .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no webhook within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(balance(app, &s, "USD").await.0, units(25));
    assert_eq!(card_credits(app, &s.org_id).await, 1);

    // Listed, with the same organisation's customer reused for a second top-up.
    let again = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "0.99", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(again.status, 422, "below the minimum: {}", again.text);
    let second = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "1.50", "currency": "usd", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM stripe_customers").await,
        1,
        "one customer per organisation"
    );
    let listed = app.items("/v1/billing/top-ups", &s.access).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(balance(app, &s, "USD").await.0, units(25) + 1_500_000);
    // The credit is the organisation's, from Stripe's clearing account, and audited.
    let audited = app.items("/v1/audit-events", &s.access).await;
    assert!(
        audited
            .iter()
            .any(|e| e["actor_type"] == "stripe" && e["target"] == t.body["id"]),
        "the credit is in the audit log"
    );
    ledger_balances(app).await;
    card.stop().await;
}

async fn the_card_form_top_up_is_credited_by_its_webhook(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    // Sent with an Idempotency-Key: the kept answer must not keep the card form's secret.
    let res = app
        .client
        .post(app.url("/v1/billing/top-ups"))
        .bearer_auth(&s.access)
        .header("idempotency-key", "card-form-1")
        .json(&json!({"amount": "40.00"}))
        .send()
        .await
        .unwrap();
    let t = TestApp::answer(res).await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(t.body["status"], "pending");
    let kept = app
        .scalar(
            "SELECT body FROM idempotency_keys WHERE key = $1",
            "card-form-1",
        )
        .await;
    let handed = t.body["client_secret"].as_str().unwrap();
    assert!(
        !kept.contains(handed),
        "a client secret is handed out once and kept nowhere: {kept}"
    );
    let secret = t.body["client_secret"].as_str().unwrap();
    let pi = t.body["payment_intent_id"].as_str().unwrap();
    assert!(secret.starts_with(pi), "the PaymentIntent's own secret");
    let id = t.body["id"].as_str().unwrap();
    // Read back later, the secret is not shown again.
    let read = app
        .get(&format!("/v1/billing/top-ups/{id}"), &s.access)
        .await;
    assert!(read.body.get("client_secret").is_none(), "{}", read.text);
    assert_eq!(
        balance(app, &s, "USD").await.0,
        0,
        "nothing before the card"
    );

    let confirmed = card.confirm_in_browser(pi, "pm_card_visa").await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let done = card.top_up_status(&s.access, id, "succeeded").await;
    assert_eq!(done["received"], "40.00");
    assert_eq!(balance(app, &s, "USD").await.0, units(40));

    // The webhook as it was stored, replayed (Stripe retries): answered, nothing changes.
    let stored = app
        .scalar(
            "SELECT payload FROM stripe_events WHERE object_id = $1 AND type = 'payment_intent.succeeded'",
            pi,
        )
        .await;
    // localstripe sends every event to every endpoint it knows (other tests' among them), so
    // rows are counted by this payment, not in all.
    let about_it = format!("SELECT COUNT(*) FROM stripe_events WHERE object_id = '{pi}'");
    let events = app.count(&about_it).await;
    let replay = card.send_webhook(&stored, &card.webhook_secret, None).await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    assert_eq!(replay.body["outcome"], "replayed");
    // The same news under a new event id (a second delivery path): credited already.
    let object: Value = serde_json::from_str::<Value>(&stored).unwrap()["data"]["object"].clone();
    let twin = stripe_event("evt_twin_delivery", "payment_intent.succeeded", object);
    let again = card.send_webhook(&twin, &card.webhook_secret, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["outcome"], "recorded");
    assert_eq!(balance(app, &s, "USD").await.0, units(40));
    assert_eq!(card_credits(app, &s.org_id).await, 1);
    assert_eq!(
        app.count(&about_it).await,
        events + 1,
        "the twin is new, the replay not"
    );
    ledger_balances(app).await;
    card.stop().await;
}

async fn forged_stale_and_malformed_webhooks_change_nothing(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    let (_, pi) = card.paid_unheard(&s.access, "12.00").await;
    let object = card.payment_intent(&pi).await;
    let event = stripe_event("evt_attack_1", "payment_intent.succeeded", object);

    let forged = card.send_webhook(&event, "whsec_not_ours", None).await;
    forged.assert_problem(400, "webhook_rejected");
    let stale = card
        .send_webhook(
            &event,
            &card.webhook_secret,
            Some(iocloud_tests::now_secs() - 3600),
        )
        .await;
    stale.assert_problem(400, "webhook_rejected");
    let garbage = card
        .send_webhook("{\"id\": 3, \"type\": [", &card.webhook_secret, None)
        .await;
    garbage.assert_problem(400, "webhook_rejected");
    let unsigned = app
        .post_raw("/webhooks/stripe", None, "application/json", event.clone())
        .await;
    unsigned.assert_problem(400, "webhook_rejected");
    // A signature over other bytes: the body was changed on the way.
    let signature =
        iocloud_billing::rails::stripe::sign_webhook(&event, &card.webhook_secret, None);
    let tampered = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", signature)
        .body(event.replace("1200", "120000"))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 400);
    // Nothing of the attacks is stored (other tests' genuine events may be: localstripe sends
    // every event to every endpoint it knows).
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM stripe_events WHERE id = 'evt_attack_1' OR object_id = '{pi}'"
        ))
        .await,
        0
    );
    assert_eq!(balance(app, &s, "USD").await.0, 0);

    // An unknown event type, or a payment no top-up of ours made: stored and acknowledged.
    let unknown = stripe_event(
        "evt_unknown_kind",
        "customer.created",
        json!({"id": "cus_x", "object": "customer", "created": 1, "livemode": false}),
    );
    let stored = card
        .send_webhook(&unknown, &card.webhook_secret, None)
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.body["outcome"], "ignored");

    // The genuine event, signed: credited once.
    let real = card.send_webhook(&event, &card.webhook_secret, None).await;
    assert_eq!(real.body["outcome"], "credited", "{}", real.text);
    assert_eq!(balance(app, &s, "USD").await.0, units(12));
    ledger_balances(app).await;
    card.stop().await;
}

async fn a_lost_webhook_is_made_good_by_the_missed_pass(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    let (id, pi) = card.paid_unheard(&s.access, "30.00").await;
    // The webhook is lost: the server never hears of the payment.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let read = app
        .get(&format!("/v1/billing/top-ups/{id}"), &s.access)
        .await;
    assert_eq!(read.body["status"], "pending");
    assert_eq!(balance(app, &s, "USD").await.0, 0);

    let payments = &app.server.state.control.payments;
    let pass = payments.reconcile_missed().await.unwrap();
    assert!(pass.ran);
    assert_eq!(pass.credited, 1, "{pass:?}");
    assert_eq!(balance(app, &s, "USD").await.0, units(30));
    let again = payments.reconcile_missed().await.unwrap();
    assert_eq!(again.credited, 0, "a second pass finds it done: {again:?}");

    // The webhook arrives late after all: nothing more.
    let late = stripe_event(
        "evt_late_1",
        "payment_intent.succeeded",
        card.payment_intent(&pi).await,
    );
    let answer = card.send_webhook(&late, &card.webhook_secret, None).await;
    assert_eq!(answer.body["outcome"], "recorded", "{}", answer.text);
    assert_eq!(balance(app, &s, "USD").await.0, units(30));
    assert_eq!(card_credits(app, &s.org_id).await, 1);
    let done = app
        .get(&format!("/v1/billing/top-ups/{id}"), &s.access)
        .await;
    assert_eq!(done.body["status"], "succeeded");
    ledger_balances(app).await;
    card.stop().await;
}

async fn a_declined_card_is_recorded_and_credits_nothing(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    let declined = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "20.00", "payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    declined.assert_problem(402, "card_declined");
    let listed = app.items("/v1/billing/top-ups", &s.access).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "failed");
    assert!(listed[0]["failure_code"].is_string(), "{}", listed[0]);
    assert_eq!(balance(app, &s, "USD").await.0, 0);

    // In the card form: the first card declined, a second one succeeds on the same payment.
    let t = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "15.00"}),
        )
        .await;
    let id = t.body["id"].as_str().unwrap();
    let pi = t.body["payment_intent_id"].as_str().unwrap();
    card.confirm_in_browser(pi, "pm_card_chargeDeclined").await;
    let failed = card.top_up_status(&s.access, id, "failed").await;
    assert!(failed["failure_message"].is_string(), "{failed}");
    card.confirm_in_browser(pi, "pm_card_visa").await;
    card.top_up_status(&s.access, id, "succeeded").await;
    assert_eq!(balance(app, &s, "USD").await.0, units(15));
    ledger_balances(app).await;
    card.stop().await;
}

async fn bad_top_ups_are_refused_before_stripe(b: Backend) {
    let Some(card) = CardApp::spawn(b.clone()).await else {
        return;
    };
    let app = &card.app;
    let s = owner(app).await;
    for (body, code, why) in [
        (
            json!({"amount": "0.50"}),
            "validation_failed",
            "below the minimum",
        ),
        (
            json!({"amount": "10000.01"}),
            "validation_failed",
            "over the maximum",
        ),
        (
            json!({"amount": "1.001"}),
            "validation_failed",
            "a fraction of a cent",
        ),
        (json!({"amount": "-5.00"}), "validation_failed", "negative"),
        (
            json!({"amount": "lots"}),
            "validation_failed",
            "not a number",
        ),
        (
            json!({"amount": "5.00", "currency": "EUR"}),
            "currency_mismatch",
            "another currency",
        ),
        (
            json!({"amount": "5.00", "currency": "IO"}),
            "currency_mismatch",
            "a token",
        ),
        (
            json!({"amount": "5.00", "payment_method": "card_visa"}),
            "validation_failed",
            "not a payment method id",
        ),
    ] {
        let a = app.post("/v1/billing/top-ups", Some(&s.access), body).await;
        a.assert_problem(422, code);
        assert!(!a.text.contains("sk_test"), "{why}");
    }
    app.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00", "tip": "1.00"}),
    )
    .await
    .assert_problem(422, "invalid_body");
    // Paying is for owners and the billing role.
    let member = app.add_member(&s, "member@example.com", "member").await;
    app.post(
        "/v1/billing/top-ups",
        Some(&member.access),
        json!({"amount": "5.00"}),
    )
    .await
    .assert_problem(403, "forbidden");
    let biller = app.add_member(&s, "biller@example.com", "billing").await;
    let paid = app
        .post(
            "/v1/billing/top-ups",
            Some(&biller.access),
            json!({"amount": "5.00"}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    // Another organisation's top-up reads as a missing one.
    let other = app.signup("other@example.com", "Others").await;
    let id = paid.body["id"].as_str().unwrap();
    app.get(&format!("/v1/billing/top-ups/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    assert!(
        app.items("/v1/billing/top-ups", &other.access)
            .await
            .is_empty()
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM top_ups").await, 1);
    // Top-ups waiting for their card are limited: a script cannot make them without end.
    for n in 1..iocloud_control::payments::top_ups::MAX_PENDING {
        app.exec(
            &format!(
                "INSERT INTO top_ups (id, org_id, amount, status, origin, created_at, updated_at) \
                 SELECT $1, org_id, amount, 'pending', origin, created_at, updated_at FROM top_ups WHERE id = '{id}'"
            ),
            &format!("top_waiting{n:04}"),
        )
        .await;
    }
    app.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00"}),
    )
    .await
    .assert_problem(409, "too_many_pending_top_ups");
    app.exec("DELETE FROM top_ups WHERE id <> $1", id).await;
    // GraphQL: the same service.
    let q =
        "mutation($input: TopUpInput!) { topUp(input: $input) { id status amount clientSecret } }";
    let g = app
        .graphql(Some(&s.access), q, json!({"input": {"amount": "7.00"}}))
        .await;
    assert_eq!(g.body["data"]["topUp"]["status"], "PENDING", "{}", g.text);
    let bad = app
        .graphql(Some(&s.access), q, json!({"input": {"amount": "7.005"}}))
        .await;
    assert_eq!(
        bad.body["errors"][0]["extensions"]["code"],
        "validation_failed"
    );
    let listed = app
        .graphql(
            Some(&s.access),
            "{ topUps { items { id status } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.body["data"]["topUps"]["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    card.stop().await;

    // Without Stripe's settings the rail is off, and says so.
    let off = TestApp::spawn(b).await;
    let s = owner(&off).await;
    off.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00"}),
    )
    .await
    .assert_problem(503, "rail_not_configured");
    off.post_raw("/webhooks/stripe", None, "application/json", "{}")
        .await
        .assert_problem(503, "rail_not_configured");
    let settings = off.get("/v1/billing/card-settings", &s.access).await;
    assert_eq!(settings.body["enabled"], false);

    // Stripe away: a clear, retryable error and nothing written.
    let away = TestApp::spawn_with(iocloud_tests::Backend::Sqlite, |c| {
        c.stripe_secret_key = Some("sk_test_away".parse().unwrap());
        c.stripe_webhook_secret = Some("whsec_away".parse().unwrap());
        c.stripe_api_base = Some("http://127.0.0.1:9".into());
    })
    .await;
    let s = owner(&away).await;
    away.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00"}),
    )
    .await
    .assert_problem(503, "rail_unavailable");
    assert_eq!(away.count("SELECT COUNT(*) FROM top_ups").await, 0);
}
