//! Paying by card from the console, against localstripe: a new card through the card form's
//! page (the only page whose Content-Security-Policy lets Stripe.js in), followed until it is
//! credited, with its receipt; a saved card charged at once; refusals in words; another
//! organisation's cards out of reach. Without the card rail the page says cards are off.

use super::console_client::{csrf_of, open, sign_in, submit};
use iocloud_tests::{Backend, CardApp, TestApp, on_both_engines};
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION};
use serde_json::json;

on_both_engines!(cards_pay_from_the_console);

async fn cards_pay_from_the_console(b: Backend) {
    // Without the card rail: said on the page, and a payment refused in words.
    let plain = TestApp::spawn(b.clone()).await;
    plain.signup("owner@example.com", "Render Farm").await;
    let jar = sign_in(&plain, "owner@example.com").await;
    let html = open(&plain, &jar, "/app/billing")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Card payments are not configured"), "{html}");
    let csrf = csrf_of(&jar);
    let off = submit(
        &plain,
        &jar,
        "/app/billing/top-ups",
        &[("csrf", &csrf), ("amount", "25.00"), ("card", "new")],
    )
    .await;
    assert_eq!(off.status(), 503);
    plain.stop().await;

    let Some(cards) = CardApp::spawn(b).await else {
        return;
    };
    let app = &cards.app;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    app.signup("other@example.com", "Quiet Neighbours").await;
    let jar = sign_in(app, "owner@example.com").await;
    let csrf = csrf_of(&jar);

    // The Billing page keeps the strict policy: no script from anywhere else.
    let billing = open(app, &jar, "/app/billing").await;
    let csp = billing.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!csp.contains(&cards.stripe), "{csp}");
    assert!(billing.text().await.unwrap().contains("Add funds by card"));

    // Refusals in words, nothing written; a forged form does nothing.
    let forged = submit(
        app,
        &jar,
        "/app/billing/top-ups",
        &[("csrf", "forged"), ("amount", "25.00"), ("card", "new")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let bad = submit(
        app,
        &jar,
        "/app/billing/top-ups",
        &[("csrf", &csrf), ("amount", "lots"), ("card", "new")],
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("role=\"alert\""));
    assert!(
        app.items("/v1/billing/top-ups", &owner.access)
            .await
            .is_empty(),
        "refused payments made no top-up"
    );

    // A new card: the card form's page, with Stripe.js's stand-in allowed there only.
    let form = submit(
        app,
        &jar,
        "/app/billing/top-ups",
        &[("csrf", &csrf), ("amount", "25.00"), ("card", "new")],
    )
    .await;
    assert_eq!(form.status(), 200);
    let csp = form.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("script-src 'self' {}", cards.stripe)),
        "{csp}"
    );
    let html = form.text().await.unwrap();
    assert!(
        html.contains(&format!("src=\"{}/js.stripe.com/v3/\"", cards.stripe)),
        "{html}"
    );
    let secret = html
        .split("data-client-secret=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page carries the card form's secret")
        .to_string();
    let seti = secret.split("_secret_").next().unwrap().to_string();
    assert!(seti.starts_with("seti_"), "{secret}");
    assert!(
        app.items("/v1/billing/top-ups", &owner.access)
            .await
            .is_empty(),
        "nothing is charged before the card is set up"
    );
    // What card.js does: Stripe.js sets the card up, then the form comes back with its id.
    let confirmed = cards.confirm_setup_in_browser(&seti, "pm_card_visa").await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let paid = submit(
        app,
        &jar,
        "/app/billing/cards",
        &[
            ("csrf", &csrf),
            ("amount", "25.00"),
            ("setup_intent", &seti),
        ],
    )
    .await;
    assert_eq!(paid.status(), 303);
    let to = paid.headers()[LOCATION].to_str().unwrap().to_string();
    let id = to
        .strip_prefix("/app/billing/top-ups/")
        .expect("to the top-up's page")
        .to_string();
    cards.top_up_status(&owner.access, &id, "succeeded").await;
    let html = open(app, &jar, &to).await.text().await.unwrap();
    assert!(html.contains("Credited to your balance"), "{html}");
    let listed = app.get("/v1/billing/cards", &owner.access).await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(0),
        "a card not kept is not kept: {}",
        listed.text
    );
    let receipt = open(app, &jar, &format!("/app/billing/top-ups/{id}/receipt")).await;
    assert_eq!(receipt.status(), 200);
    assert!(
        receipt.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(receipt.text().await.unwrap().contains("25.00"));

    // A saved card, charged at once from the page.
    let pm = cards.new_card("4242424242424242").await;
    let saved = app
        .post(
            "/v1/billing/cards",
            Some(&owner.access),
            json!({ "payment_method": pm }),
        )
        .await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let html = open(app, &jar, "/app/billing").await.text().await.unwrap();
    assert!(html.contains("•••• 4242"), "{html}");
    let charged = submit(
        app,
        &jar,
        "/app/billing/top-ups",
        &[("csrf", &csrf), ("amount", "10.00"), ("card", &pm)],
    )
    .await;
    assert_eq!(charged.status(), 303);
    let to = charged.headers()[LOCATION].to_str().unwrap().to_string();
    let html = open(app, &jar, &to).await.text().await.unwrap();
    assert!(html.contains("badge-succeeded"), "{html}");

    // A declined card: refused in the issuer's words, and Home says the last payment failed.
    let declined = submit(
        app,
        &jar,
        "/app/billing/top-ups",
        &[
            ("csrf", &csrf),
            ("amount", "20.00"),
            ("card", "pm_card_chargeDeclined"),
        ],
    )
    .await;
    assert_eq!(declined.status(), 402);
    let home = open(app, &jar, "/app/").await.text().await.unwrap();
    assert!(
        home.contains("data-testid=\"alerts\"") && home.contains("The last card payment failed"),
        "{home}"
    );

    // Auto-reload, set from the page: refused in words when out of range, then on.
    let bad = submit(
        app,
        &jar,
        "/app/billing/auto-reload",
        &[
            ("csrf", &csrf),
            ("enabled", "on"),
            ("threshold", "5.00"),
            ("amount", "0"),
            ("monthly_cap", "100.00"),
        ],
    )
    .await;
    assert_eq!(bad.status(), 422);
    let on = submit(
        app,
        &jar,
        "/app/billing/auto-reload",
        &[
            ("csrf", &csrf),
            ("enabled", "on"),
            ("threshold", "5.00"),
            ("amount", "20.00"),
            ("monthly_cap", "100.00"),
        ],
    )
    .await;
    assert_eq!(on.status(), 303);
    let set = app.get("/v1/billing/auto-reload", &owner.access).await;
    assert_eq!(set.body["enabled"], true, "{}", set.text);
    assert_eq!(set.body["amount"], "20.00", "{}", set.text);
    let html = open(app, &jar, "/app/billing").await.text().await.unwrap();
    assert!(
        html.contains("On: when the USD balance falls under 5.00"),
        "{html}"
    );

    // Another organisation cannot touch the card.
    let theirs = sign_in(app, "other@example.com").await;
    let their_csrf = csrf_of(&theirs);
    let removed = submit(
        app,
        &theirs,
        &format!("/app/billing/cards/{pm}/remove"),
        &[("csrf", &their_csrf)],
    )
    .await;
    assert_eq!(removed.status(), 404);
    assert_eq!(
        open(app, &theirs, &format!("/app/billing/top-ups/{id}"))
            .await
            .status(),
        404
    );
    let listed = app.get("/v1/billing/cards", &owner.access).await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );

    // Removed by its own organisation.
    let removed = submit(
        app,
        &jar,
        &format!("/app/billing/cards/{pm}/remove"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(removed.status(), 303);
    let listed = app.get("/v1/billing/cards", &owner.access).await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(0),
        "{}",
        listed.text
    );
    cards.stop().await;
}
