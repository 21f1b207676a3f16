//! Cards saved through the card form (a SetupIntent confirmed in the browser) and receipts
//! of paid top-ups, against localstripe on both engines; another organisation's forms and
//! receipts read as missing.

use iocloud_tests::{Backend, CardApp, balance, ledger_balances, on_both_engines, units};
use serde_json::{Value, json};

on_both_engines!(
    cards_are_saved_through_the_card_form,
    a_top_up_can_keep_its_card,
    paid_top_ups_have_receipts,
);

/// `save_card` on a top-up: a card charged now is saved first; the card form's card is saved
/// once its payment succeeds, once, however many times Stripe's word arrives.
async fn a_top_up_can_keep_its_card(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Card Keepers").await;
    app.post(
        "/v1/billing/top-ups",
        Some(&s.access),
        json!({"amount": "5.00", "default_card": true, "save_card": true}),
    )
    .await
    .assert_problem(422, "validation_failed");

    let now = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "5.00", "payment_method": "pm_card_visa", "save_card": true}),
        )
        .await;
    assert_eq!(now.body["status"], "succeeded", "{}", now.text);
    let cards = app.get("/v1/billing/cards", &s.access).await.body;
    assert_eq!(cards.as_array().unwrap().len(), 1, "{cards}");
    assert_eq!(cards[0]["is_default"], true);

    // The card form: kept after the webhook credits it, not before.
    let form = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "7.00", "save_card": true}),
        )
        .await;
    assert_eq!(form.status, 201, "{}", form.text);
    let pi = form.body["payment_intent_id"].as_str().unwrap();
    let id = form.body["id"].as_str().unwrap();
    let intent = card.payment_intent(pi).await;
    assert_eq!(intent["setup_future_usage"], "off_session", "{intent}");
    assert_eq!(
        app.get("/v1/billing/cards", &s.access)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let mastercard = card.new_card("5555555555554444").await;
    let paid = card.confirm_in_browser(pi, &mastercard).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    card.top_up_status(&s.access, id, "succeeded").await;
    let mut kept = Value::Null;
    for _ in 0..50 {
        kept = app.get("/v1/billing/cards", &s.access).await.body;
        if kept.as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kept = kept.as_array().unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(
        kept.iter().filter(|c| c["is_default"] == true).count(),
        1,
        "the first card stays the default"
    );
    // The missed-webhook pass finds the same payment: nothing more is saved or credited.
    app.server
        .state
        .control
        .payments
        .reconcile_missed()
        .await
        .unwrap();
    assert_eq!(
        app.get("/v1/billing/cards", &s.access)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(balance(app, &s, "USD").await.0, units(12));
    ledger_balances(app).await;
    card.stop().await;
}

async fn cards_are_saved_through_the_card_form(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Form Fillers").await;
    let other = app.signup("other@example.com", "Onlookers").await;

    let setup = app
        .post("/v1/billing/cards/setup", Some(&s.access), json!({}))
        .await;
    assert_eq!(setup.status, 201, "{}", setup.text);
    let seti = setup.body["setup_intent"].as_str().unwrap().to_string();
    assert!(seti.starts_with("seti_"), "{}", setup.text);
    assert!(
        setup.body["client_secret"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{seti}_secret_"))),
        "{}",
        setup.text
    );

    // Not confirmed yet: nothing to save.
    app.post(
        "/v1/billing/cards",
        Some(&s.access),
        json!({ "setup_intent": seti }),
    )
    .await
    .assert_problem(409, "invalid_state");
    let confirmed = card.confirm_setup_in_browser(&seti, "pm_card_visa").await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");

    // Another organisation's form is no form at all; malformed input says which field.
    app.post(
        "/v1/billing/cards",
        Some(&other.access),
        json!({ "setup_intent": seti }),
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        "/v1/billing/cards",
        Some(&s.access),
        json!({ "setup_intent": "seti_NoSuchForm1234" }),
    )
    .await
    .assert_problem(404, "not_found");
    for (body, field) in [
        (json!({}), "setup_intent"),
        (
            json!({"setup_intent": seti, "payment_method": "pm_card_visa"}),
            "setup_intent",
        ),
        (json!({"setup_intent": "seti_../x"}), "setup_intent"),
        (json!({"setup_intent": "pi_123"}), "setup_intent"),
    ] {
        let bad = app.post("/v1/billing/cards", Some(&s.access), body).await;
        bad.assert_problem(422, "validation_failed");
        assert_eq!(bad.body["field"], field, "{}", bad.text);
    }
    assert_eq!(
        app.get("/v1/billing/cards", &s.access).await.body,
        json!([])
    );

    let saved = app
        .post(
            "/v1/billing/cards",
            Some(&s.access),
            json!({ "setup_intent": seti }),
        )
        .await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    assert_eq!(saved.body["brand"], "visa");
    assert_eq!(saved.body["last4"], "4242");
    assert_eq!(saved.body["is_default"], true);
    // The form's card pays off-session, as auto-reload would charge it.
    let paid = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "9.00", "default_card": true}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);
    assert_eq!(balance(app, &s, "USD").await.0, units(9));

    // GraphQL: a second form, then default and remove, as the console does.
    let g = app
        .graphql(
            Some(&s.access),
            "mutation { startCardSetup { setupIntent clientSecret } }",
            json!({}),
        )
        .await;
    let seti2 = g.body["data"]["startCardSetup"]["setupIntent"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", g.text))
        .to_string();
    let confirmed = card
        .confirm_setup_in_browser(&seti2, "pm_card_chargeCustomerFail")
        .await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let g = app
        .graphql(
            Some(&s.access),
            "mutation($input: CardInput!) { saveCard(input: $input) { id brand isDefault } }",
            json!({"input": {"setupIntent": seti2}}),
        )
        .await;
    let second = &g.body["data"]["saveCard"];
    assert_eq!(second["isDefault"], false, "{}", g.text);
    let second_id = second["id"].as_str().unwrap();
    let set_default = "mutation($id: String!) { setDefaultCard(id: $id) { id isDefault } }";
    let g = app
        .graphql(Some(&s.access), set_default, json!({"id": second_id}))
        .await;
    assert_eq!(
        g.body["data"]["setDefaultCard"]["isDefault"], true,
        "{}",
        g.text
    );
    let g = app
        .graphql(Some(&other.access), set_default, json!({"id": second_id}))
        .await;
    assert_eq!(g.body["errors"][0]["extensions"]["code"], "not_found");
    let remove = "mutation($id: String!) { removeCard(id: $id) }";
    let g = app
        .graphql(Some(&other.access), remove, json!({"id": second_id}))
        .await;
    assert_eq!(g.body["errors"][0]["extensions"]["code"], "not_found");
    let g = app
        .graphql(Some(&s.access), remove, json!({"id": second_id}))
        .await;
    assert_eq!(g.body["data"]["removeCard"], true, "{}", g.text);
    let left = app.get("/v1/billing/cards", &s.access).await;
    let left = left.body.as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0]["is_default"], true,
        "the other card is default again"
    );
    ledger_balances(app).await;
    card.stop().await;
}

async fn paid_top_ups_have_receipts(b: Backend) {
    let Some(card) = CardApp::spawn(b).await else {
        return;
    };
    let app = &card.app;
    let s = app.signup("owner@example.com", "Receipt Keepers").await;
    let other = app.signup("other@example.com", "Snoopers").await;

    let paid = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "25.00", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let id = paid.body["id"].as_str().unwrap().to_string();
    let receipt_path = format!("/v1/billing/top-ups/{id}/receipt");
    let receipt = app.get(&receipt_path, &s.access).await;
    assert_eq!(receipt.status, 200, "{}", receipt.text);
    let r = &receipt.body;
    assert_eq!(r["number"], id.as_str());
    assert_eq!(r["organization"], "Receipt Keepers");
    assert_eq!(r["amount"], "25.00");
    assert_eq!(r["currency"], "USD");
    assert_eq!(r["card"], json!({"brand": "visa", "last4": "4242"}));
    assert_eq!(r["payment_reference"], paid.body["payment_intent_id"]);
    assert_eq!(r["refunded"], "0.00");
    assert_eq!(r["refunds"], json!([]));
    assert!(r["paid_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // A refund shows on the receipt of the payment it went back to.
    let refund = app
        .post(
            "/v1/billing/refunds",
            Some(&s.access),
            json!({"amount": "5.00"}),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text);
    let r = app.get(&receipt_path, &s.access).await.body;
    assert_eq!(r["refunded"], "5.00", "{r}");
    let refunds = r["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["refund_id"], refund.body["id"]);
    assert_eq!(refunds[0]["amount"], "5.00");

    // Printable, with every value escaped.
    let page = app
        .get(&format!("{receipt_path}?format=html"), &s.access)
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(page.text.contains("Visa ending 4242"), "{}", page.text);
    assert!(page.text.contains("25.00 USD"));
    app.get(&format!("{receipt_path}?format=pdf"), &s.access)
        .await
        .assert_problem(422, "validation_failed");

    // Not paid yet: no receipt. Another organisation's: none at all.
    let pending = app
        .post(
            "/v1/billing/top-ups",
            Some(&s.access),
            json!({"amount": "5.00"}),
        )
        .await;
    let pending_id = pending.body["id"].as_str().unwrap();
    app.get(
        &format!("/v1/billing/top-ups/{pending_id}/receipt"),
        &s.access,
    )
    .await
    .assert_problem(409, "invalid_state");
    app.get(&receipt_path, &other.access)
        .await
        .assert_problem(404, "not_found");
    app.get("/v1/billing/top-ups/top_nothing/receipt", &s.access)
        .await
        .assert_problem(404, "not_found");

    // GraphQL: the same receipt.
    let q = "query($id: String!) { receipt(topUpId: $id) { number amount card { brand last4 } refunds { amount } } }";
    let g = app.graphql(Some(&s.access), q, json!({"id": id})).await;
    let gr: &Value = &g.body["data"]["receipt"];
    assert_eq!(gr["amount"], "25.00", "{}", g.text);
    assert_eq!(gr["card"]["last4"], "4242");
    assert_eq!(gr["refunds"][0]["amount"], "5.00");
    let g = app.graphql(Some(&other.access), q, json!({"id": id})).await;
    assert_eq!(g.body["errors"][0]["extensions"]["code"], "not_found");
    ledger_balances(app).await;
    card.stop().await;
}
