//! Saved cards and auto-reload against localstripe, on both engines: cards saved, defaulted,
//! removed and kept from other organisations; auto-reload firing once under concurrent
//! passes, within its monthly cap, and turning itself off after three declines.

use iocloud_tests::{
    Backend, CardApp, Session, TestApp, balance, ledger_balances, on_both_engines, units,
};
use serde_json::{Value, json};

on_both_engines!(
    saved_cards_are_the_organisations_own,
    auto_reload_fires_once_within_its_cap,
    auto_reload_turns_itself_off_after_three_declines,
);

async fn save(app: &TestApp, s: &Session, pm: &str) -> Value {
    let c = app
        .post(
            "/v1/billing/cards",
            Some(&s.access),
            json!({ "payment_method": pm }),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    c.body
}

/// The audit log's auto-reload entries.
async fn auto_reload_audit(app: &TestApp, s: &Session) -> Vec<Value> {
    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    assert_eq!(events.status, 200, "{}", events.text);
    events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_type"] == "auto_reload")
        .cloned()
        .collect()
}

async fn saved_cards_are_the_organisations_own(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Card Keepers").await;
    // No card yet: asking for the default one says so.
    app.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00", "default_card": true}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let first = save(app, &s, "pm_card_visa").await;
    assert_eq!(first["brand"], "visa");
    assert_eq!(first["last4"], "4242");
    assert_eq!(first["is_default"], true);
    let id = first["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("pm_"));
    // Saving the same card again is one card.
    let again = save(app, &s, "pm_card_visa").await;
    assert_eq!(again["id"], first["id"]);
    let second = save(app, &s, "pm_card_chargeCustomerFail").await;
    assert_eq!(second["is_default"], false);
    let second_id = second["id"].as_str().unwrap().to_string();
    let made = app
        .post(
            &format!("/v1/billing/cards/{second_id}/default"),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(made.body["is_default"], true, "{}", made.text);
    let listed = app.get("/v1/billing/cards", &s.access).await;
    let defaults: Vec<&Value> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["is_default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["id"], second_id.as_str());
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    app.post(
        &format!("/v1/billing/cards/{id}/default"),
        Some(&s.access),
        json!({}),
    )
    .await;

    // The default card pays when asked for.
    let paid = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "12.00", "default_card": true}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(balance(app, &s, "USD").await.0, units(12));

    // Another organisation cannot see, charge, default or remove them.
    let other = app.signup("other@example.com", "Others").await;
    assert_eq!(
        app.get("/v1/billing/cards", &other.access).await.body,
        json!([])
    );
    app.post(
        "/v1/billing/top-ups",
        Some(&other.access),
        json!({"amount": "5.00", "payment_method": id}),
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        "/v1/billing/cards",
        Some(&other.access),
        json!({ "payment_method": id }),
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        &format!("/v1/billing/cards/{id}/default"),
        Some(&other.access),
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
    app.delete(&format!("/v1/billing/cards/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(balance(app, &other, "USD").await.0, 0);

    // Removing the default makes the other one the default.
    let removed = app
        .delete(&format!("/v1/billing/cards/{id}"), &s.access)
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let left = app.get("/v1/billing/cards", &s.access).await;
    assert_eq!(left.body.as_array().unwrap().len(), 1);
    assert_eq!(left.body[0]["id"], second_id.as_str());
    assert_eq!(left.body[0]["is_default"], true);
    card.stop().await;
}

async fn auto_reload_fires_once_within_its_cap(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Reloaders").await;
    let settings =
        json!({"enabled": true, "threshold": "10.00", "amount": "25.00", "monthly_cap": "60.00"});
    // Turning it on needs a card to charge.
    app.put("/v1/billing/auto-reload", &s.access, settings.clone())
        .await
        .assert_problem(422, "validation_failed");
    save(app, &s, "pm_card_visa").await;
    for (change, field) in [
        (json!({"amount": "0.50"}), "amount"),
        (json!({"monthly_cap": "20.00"}), "monthly_cap"),
        (json!({"threshold": "-1"}), "threshold"),
    ] {
        let mut body = settings.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let a = app.put("/v1/billing/auto-reload", &s.access, body).await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], field);
    }
    let set = app
        .put("/v1/billing/auto-reload", &s.access, settings.clone())
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["enabled"], true);

    // Five passes at once (replicas, say): one payment.
    let payments = &app.server.state.control.payments;
    let started: usize = futures::future::join_all((0..5).map(|_| payments.check_auto_reloads()))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(started, 1);
    assert_eq!(balance(app, &s, "USD").await.0, units(25));
    assert_eq!(
        payments.check_auto_reloads().await.unwrap(),
        0,
        "over the threshold"
    );

    // Spent down (a refund stands in for spending): reloaded again, then the cap stops it.
    let r = app
        .post(
            "/v1/billing/refunds",
            Some(&s.access),
            json!({"amount": "20.00"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(payments.check_auto_reloads().await.unwrap(), 1);
    assert_eq!(balance(app, &s, "USD").await.0, units(30));
    let r = app
        .post(
            "/v1/billing/refunds",
            Some(&s.access),
            json!({"amount": "25.00"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        payments.check_auto_reloads().await.unwrap(),
        0,
        "50 charged this month; 25 more would pass the cap of 60"
    );
    let state = app.get("/v1/billing/auto-reload", &s.access).await;
    assert_eq!(state.body["charged_this_month"], "50.00", "{}", state.text);
    let reloads = app.items("/v1/billing/top-ups", &s.access).await;
    assert!(reloads.iter().all(|t| t["origin"] == "auto_reload"));
    assert_eq!(reloads.len(), 2);
    // Nobody asked for these charges, so the pass itself writes them to the audit log.
    let charged = auto_reload_audit(app, &s).await;
    assert_eq!(charged.len(), 2, "{charged:?}");
    assert!(
        charged
            .iter()
            .all(|e| e["status"] == 200 && reloads.iter().any(|t| t["id"] == e["target"]))
    );
    ledger_balances(app).await;
    card.stop().await;
}

async fn auto_reload_turns_itself_off_after_three_declines(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Declined Reloaders").await;
    // Stripe's card that saves but declines every charge.
    save(app, &s, "pm_card_chargeCustomerFail").await;
    let set = app
        .put(
            "/v1/billing/auto-reload",
            &s.access,
            json!({"enabled": true, "threshold": "10.00", "amount": "25.00", "monthly_cap": "500.00"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let payments = &app.server.state.control.payments;
    for declines in 1..=3 {
        assert_eq!(payments.check_auto_reloads().await.unwrap(), 1);
        let state = app.get("/v1/billing/auto-reload", &s.access).await;
        assert_eq!(state.body["declines"], declines, "{}", state.text);
        assert_eq!(state.body["enabled"], declines < 3);
        assert!(state.body["last_failure"].is_string());
    }
    assert_eq!(
        payments.check_auto_reloads().await.unwrap(),
        0,
        "off after three"
    );
    assert_eq!(balance(app, &s, "USD").await.0, 0);
    app.server.state.control.outbox.deliver().await.unwrap();
    let mail = app
        .server
        .state
        .control
        .outbox
        .mailbox()
        .latest_to("owner@example.com")
        .expect("the owner is told");
    assert!(mail.body.contains("now off"), "{}", mail.body);
    let failed = app.items("/v1/billing/top-ups", &s.access).await;
    assert_eq!(failed.len(), 3);
    assert!(failed.iter().all(|t| t["status"] == "failed"));
    let declined = auto_reload_audit(app, &s).await;
    assert_eq!(declined.len(), 3, "{declined:?}");
    assert!(declined.iter().all(|e| e["status"] == 402));
    ledger_balances(app).await;
    card.stop().await;
}
