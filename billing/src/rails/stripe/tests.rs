//! The rail's client without a network: webhook fixtures signed and verified, settings read,
//! failures classified, amounts converted.

use super::*;
use stripe::StripeError;

const SECRET: &str = "whsec_test_fixture_secret";

fn rail() -> StripeRail {
    StripeRail::new(&StripeSettings {
        secret_key: "sk_test_fixture".into(),
        webhook_secret: SECRET.into(),
        publishable_key: None,
        api_base: "http://127.0.0.1:9".into(),
        timeout: Duration::from_secs(1),
    })
    .unwrap()
}

/// A `payment_intent.succeeded` event as Stripe's API of 2026-09-30 renders it, trimmed to
/// the fields async-stripe requires.
fn succeeded_event(created: i64) -> String {
    serde_json::json!({
        "id": "evt_fixture_1",
        "object": "event",
        "api_version": "2026-09-30.endive",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": "topup-1" },
        "type": "payment_intent.succeeded",
        "data": { "object": {
            "id": "pi_fixture_1",
            "object": "payment_intent",
            "amount": 2500,
            "amount_capturable": 0,
            "amount_received": 2500,
            "capture_method": "automatic_async",
            "confirmation_method": "automatic",
            "created": created,
            "currency": "usd",
            "customer": "cus_fixture_1",
            "latest_charge": "ch_fixture_1",
            "livemode": false,
            "metadata": { "org_id": "org_fixture" },
            "payment_method": "pm_fixture_1",
            "payment_method_types": ["card"],
            "status": "succeeded"
        }}
    })
    .to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_signed_fixture_verifies_into_a_typed_event() {
    let payload = succeeded_event(now());
    let header = Webhook::generate_test_header(&payload, SECRET, None);
    let event = rail().verify_webhook(payload.as_bytes(), &header).unwrap();
    assert_eq!(event.type_, EventType::PaymentIntentSucceeded);
    let EventObject::PaymentIntentSucceeded(pi) = event.data.object else {
        panic!("a payment_intent.succeeded event carries its PaymentIntent");
    };
    assert_eq!(pi.id.as_str(), "pi_fixture_1");
    assert_eq!(pi.amount_received, 2500);
    assert_eq!(pi.status, PaymentIntentStatus::Succeeded);
    assert_eq!(
        pi.metadata.get("org_id").map(String::as_str),
        Some("org_fixture")
    );
}

#[test]
fn a_stale_signature_is_refused() {
    let payload = succeeded_event(now());
    let stale = now() - WEBHOOK_TOLERANCE.as_secs() as i64 - 5;
    let header = Webhook::generate_test_header(&payload, SECRET, Some(stale));
    let err = rail()
        .verify_webhook(payload.as_bytes(), &header)
        .unwrap_err();
    assert!(
        matches!(&err, BillingError::WebhookRejected(m) if m.contains("timestamp")),
        "{err}"
    );
    // Inside the tolerance it passes.
    let recent = now() - WEBHOOK_TOLERANCE.as_secs() as i64 + 30;
    let header = Webhook::generate_test_header(&payload, SECRET, Some(recent));
    rail().verify_webhook(payload.as_bytes(), &header).unwrap();
}

#[test]
fn another_secret_or_body_is_refused() {
    let payload = succeeded_event(now());
    let header = Webhook::generate_test_header(&payload, "whsec_someone_else", None);
    let err = rail()
        .verify_webhook(payload.as_bytes(), &header)
        .unwrap_err();
    assert!(matches!(err, BillingError::WebhookRejected(_)), "{err}");

    let header = Webhook::generate_test_header(&payload, SECRET, None);
    let tampered = payload.replace("2500", "250000");
    let err = rail()
        .verify_webhook(tampered.as_bytes(), &header)
        .unwrap_err();
    assert!(matches!(err, BillingError::WebhookRejected(_)), "{err}");

    for garbage in ["", "t=abc,v1=00", "v1=00", "t=1"] {
        let err = rail()
            .verify_webhook(payload.as_bytes(), garbage)
            .unwrap_err();
        assert!(
            matches!(err, BillingError::WebhookRejected(_)),
            "{garbage:?}: {err}"
        );
    }
}

#[test]
fn settings_come_from_the_four_variables_and_never_print_secrets() {
    let env: HashMap<&str, &str> = [
        (SECRET_KEY_VAR, "sk_test_very_secret"),
        (WEBHOOK_SECRET_VAR, "whsec_very_secret"),
        (PUBLISHABLE_KEY_VAR, "pk_test_public"),
        (API_BASE_VAR, "http://127.0.0.1:8420"),
    ]
    .into_iter()
    .collect();
    let settings = StripeSettings::from_lookup(|k| env.get(k).map(|v| v.to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(settings.api_base, "http://127.0.0.1:8420");
    assert_eq!(settings.publishable_key.as_deref(), Some("pk_test_public"));
    let printed = format!("{settings:?} {:?}", StripeRail::new(&settings).unwrap());
    assert!(!printed.contains("very_secret"), "{printed}");
    assert!(printed.contains("pk_test_public"), "{printed}");

    // No secret key: the rail is off.
    assert!(StripeSettings::from_lookup(|_| None).unwrap().is_none());
    // A secret key without the webhook secret would take payments it cannot credit.
    let half = |k: &str| (k == SECRET_KEY_VAR).then(|| "sk_test_x".to_string());
    assert!(StripeSettings::from_lookup(half).is_err());
    // Unset, the API is Stripe's.
    let minimal = |k: &str| match k {
        SECRET_KEY_VAR => Some("sk_test_x".to_string()),
        WEBHOOK_SECRET_VAR => Some("whsec_x".to_string()),
        _ => None,
    };
    let settings = StripeSettings::from_lookup(minimal).unwrap().unwrap();
    assert_eq!(settings.api_base, DEFAULT_API_BASE);
}

#[test]
fn failures_are_classified_by_what_can_be_done() {
    let stripe_error = |status: u16, json: &str| {
        let error: stripe::ApiErrors = miniserde_error(json);
        classify(StripeError::Stripe(Box::new(error), status))
    };
    let declined = stripe_error(
        402,
        r#"{"type":"card_error","code":"card_declined","decline_code":"generic_decline","message":"Your card was declined."}"#,
    );
    assert_eq!(declined.kind, StripeFailureKind::Declined);
    assert_eq!(declined.code.as_deref(), Some("card_declined"));
    assert_eq!(declined.decline_code.as_deref(), Some("generic_decline"));
    assert!(!declined.is_retryable());

    let cases = [
        (
            400,
            "invalid_request_error",
            StripeFailureKind::Refused,
            false,
        ),
        (
            404,
            "invalid_request_error",
            StripeFailureKind::Refused,
            false,
        ),
        (
            401,
            "invalid_request_error",
            StripeFailureKind::Unauthorized,
            false,
        ),
        (
            429,
            "invalid_request_error",
            StripeFailureKind::RateLimited,
            true,
        ),
        (
            409,
            "idempotency_error",
            StripeFailureKind::Unavailable,
            true,
        ),
        (500, "api_error", StripeFailureKind::Unavailable, true),
        (503, "api_error", StripeFailureKind::Unavailable, true),
    ];
    for (status, type_, kind, retryable) in cases {
        let f = stripe_error(status, &format!(r#"{{"type":"{type_}","message":"m"}}"#));
        assert_eq!((f.kind, f.is_retryable()), (kind, retryable), "{status}");
    }
    let timeout = classify(StripeError::Timeout);
    assert!(timeout.is_retryable());
    assert!(BillingError::Stripe(Box::new(timeout)).is_retryable());
    let unreachable = classify(StripeError::ClientError("connection refused".into()));
    assert!(unreachable.is_retryable());
    assert!(!classify(StripeError::JSONDeserialize("x".into())).is_retryable());
}

fn miniserde_error(json: &str) -> stripe::ApiErrors {
    miniserde::json::from_str(json).expect("an ApiErrors")
}

#[test]
fn usd_amounts_become_whole_cents() {
    assert_eq!(
        usd_cents(Money::from_micros(12_340_000, Currency::Usd)).unwrap(),
        1234
    );
    assert!(usd_cents(Money::from_micros(12_345_678, Currency::Usd)).is_err());
    assert!(usd_cents(Money::from_micros(1_000_000, Currency::Io)).is_err());
}

#[tokio::test]
async fn an_unreachable_stripe_is_a_retryable_failure() {
    let err = rail()
        .retrieve_payment_intent("pi_nothing")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(&err, BillingError::Stripe(f) if f.kind == StripeFailureKind::Unavailable));
}

#[tokio::test]
async fn bad_input_is_refused_before_calling_stripe() {
    let payment = NewPayment {
        amount_cents: 0,
        ..Default::default()
    };
    let err = rail()
        .create_payment_intent(&payment, "k")
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::InvalidAmount(_)), "{err}");
    let payment = NewPayment {
        amount_cents: 100,
        ..Default::default()
    };
    let err = rail()
        .create_payment_intent(&payment, "")
        .await
        .unwrap_err();
    assert!(matches!(err, BillingError::Internal(_)), "{err}");
}
