//! The fiat rail's client against localstripe (`IOCLOUD_TEST_STRIPE_URL`, started by
//! `infra/scripts/services.sh` through `tests/peers/localstripe_launcher.py`): customers,
//! PaymentIntents that succeed and that are declined, idempotent retries, and the signed
//! webhooks localstripe sends, received on a loopback listener and verified.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use iocloud_billing::BillingError;
use iocloud_billing::rails::stripe::{
    EventObject, EventType, NewCustomer, NewPayment, PaymentIntentQuery, PaymentIntentStatus,
    StripeCurrency, StripeFailureKind, StripeRail, StripeSettings,
};
use tokio::sync::mpsc;

/// One webhook as it arrived: its `Stripe-Signature` header and raw body.
struct Delivery {
    signature: String,
    body: Bytes,
}

/// A loopback endpoint that hands every delivery to the test and answers 200.
async fn webhook_listener() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/stripe/webhook",
            post(
                |State(tx): State<mpsc::UnboundedSender<Delivery>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let signature = headers
                        .get("stripe-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(Delivery { signature, body });
                    StatusCode::OK
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stripe/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Waits for the delivery of `event_type` about PaymentIntent `pi`, verifying each delivery on
/// the way (localstripe sends every event to every endpoint, so others' arrive too).
async fn delivery_about(
    rail: &StripeRail,
    rx: &mut mpsc::UnboundedReceiver<Delivery>,
    event_type: EventType,
    pi: &str,
) -> Delivery {
    let wait = async {
        loop {
            let delivery = rx.recv().await.expect("the listener runs");
            let event = rail
                .verify_webhook(&delivery.body, &delivery.signature)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&delivery.body)));
            let about = match &event.data.object {
                EventObject::PaymentIntentSucceeded(p)
                | EventObject::PaymentIntentPaymentFailed(p) => p.id.as_str() == pi,
                _ => false,
            };
            if event.type_ == event_type && about {
                return delivery;
            }
        }
    };
    // localstripe sends each event once, a second after it happened.
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no {event_type} webhook for {pi} within 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_payments_and_their_signed_webhooks() {
    let Some(base) = iocloud_tests::stripe_url() else {
        return;
    };
    let webhook_secret = unique("whsec");
    let rail = StripeRail::new(&StripeSettings {
        secret_key: "sk_test_iocloud_rail".into(),
        webhook_secret: webhook_secret.clone(),
        publishable_key: None,
        api_base: base.clone(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();

    // A webhook endpoint of this test's own, for the PaymentIntent events.
    let (url, mut deliveries) = webhook_listener().await;
    let endpoint = unique("iocloud-rail");
    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{base}/_config/webhooks/{endpoint}"))
        .form(&[
            ("url", url.as_str()),
            ("secret", webhook_secret.as_str()),
            ("events[0]", "payment_intent.succeeded"),
            ("events[1]", "payment_intent.payment_failed"),
        ])
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success(), "{}", registered.status());

    let org = unique("org");
    let metadata: HashMap<String, String> = [("org_id".to_string(), org.clone())].into();
    let customer = rail
        .create_customer(
            &NewCustomer {
                email: Some("billing@example.com".into()),
                name: Some("Example Ltd".into()),
                metadata: metadata.clone(),
            },
            &unique("customer"),
        )
        .await
        .unwrap();
    assert_eq!(customer.email.as_deref(), Some("billing@example.com"));
    assert_eq!(
        customer.metadata.as_ref().and_then(|m| m.get("org_id")),
        Some(&org)
    );

    // A card that pays.
    let topup = NewPayment {
        amount_cents: 2500,
        customer: Some(customer.id.as_str().to_string()),
        payment_method: Some("pm_card_visa".into()),
        confirm: true,
        metadata: metadata.clone(),
        off_session: false,
        keep_card: false,
    };
    let key = unique("topup");
    let paid = rail.create_payment_intent(&topup, &key).await.unwrap();
    assert_eq!(paid.status, PaymentIntentStatus::Succeeded);
    assert_eq!((paid.amount, paid.amount_received), (2500, 2500));
    assert_eq!(paid.currency, StripeCurrency::USD);
    assert_eq!(paid.metadata.get("org_id"), Some(&org));
    assert!(paid.latest_charge.is_some());
    assert_eq!(
        paid.customer.as_ref().map(|c| c.id().as_str()),
        Some(customer.id.as_str())
    );

    // The same key again answers the same PaymentIntent, and charges nothing more.
    let again = rail.create_payment_intent(&topup, &key).await.unwrap();
    assert_eq!(again.id, paid.id);
    // The same key with another amount is refused.
    let other = NewPayment {
        amount_cents: 2600,
        ..topup.clone()
    };
    let err = rail.create_payment_intent(&other, &key).await.unwrap_err();
    assert!(
        matches!(&err, BillingError::Stripe(f) if f.kind == StripeFailureKind::Refused),
        "{err}"
    );

    let fetched = rail
        .retrieve_payment_intent(paid.id.as_str())
        .await
        .unwrap();
    assert_eq!(fetched.status, PaymentIntentStatus::Succeeded);
    assert_eq!(fetched.amount_received, 2500);

    // A card that is declined: a failure the customer must fix, naming the PaymentIntent left
    // waiting for another payment method.
    let declined = NewPayment {
        amount_cents: 1000,
        payment_method: Some("pm_card_chargeDeclined".into()),
        ..topup.clone()
    };
    let err = rail
        .create_payment_intent(&declined, &unique("topup"))
        .await
        .unwrap_err();
    let BillingError::Stripe(failure) = &err else {
        panic!("a decline is a Stripe failure: {err}");
    };
    assert_eq!(failure.kind, StripeFailureKind::Declined, "{failure}");
    assert_eq!(failure.status, Some(402));
    assert_eq!(failure.code.as_deref(), Some("card_declined"));
    assert_eq!(failure.decline_code.as_deref(), Some("generic_decline"));
    assert!(!err.is_retryable());
    let declined_id = failure
        .payment_intent
        .clone()
        .expect("the decline names its PaymentIntent");
    let left = rail.retrieve_payment_intent(&declined_id).await.unwrap();
    assert_eq!(left.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(left.amount_received, 0);
    assert!(left.last_payment_error.is_some());

    // The customer's PaymentIntents, newest first.
    let listed = rail
        .list_payment_intents(&PaymentIntentQuery {
            customer: Some(customer.id.as_str().to_string()),
            created_since: Some(paid.created - 60),
            limit: Some(10),
            starting_after: None,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = listed.data.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [declined_id.as_str(), paid.id.as_str()]);
    assert!(!listed.has_more);
    let page = rail
        .list_payment_intents(&PaymentIntentQuery {
            customer: Some(customer.id.as_str().to_string()),
            limit: Some(1),
            starting_after: Some(declined_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.data.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [paid.id.as_str()]);

    // The signed webhooks: the success verifies into the PaymentIntent with our metadata.
    let delivery = delivery_about(
        &rail,
        &mut deliveries,
        EventType::PaymentIntentSucceeded,
        paid.id.as_str(),
    )
    .await;
    let event = rail
        .verify_webhook(&delivery.body, &delivery.signature)
        .unwrap();
    let EventObject::PaymentIntentSucceeded(pi) = event.data.object else {
        panic!("payment_intent.succeeded carries its PaymentIntent");
    };
    assert_eq!(pi.amount_received, 2500);
    assert_eq!(pi.metadata.get("org_id"), Some(&org));

    // One changed byte of the body, and the signature no longer holds.
    let body = String::from_utf8(delivery.body.to_vec()).unwrap();
    assert!(body.contains("2500"));
    let tampered = body.replacen("2500", "9500", 1);
    let err = rail
        .verify_webhook(tampered.as_bytes(), &delivery.signature)
        .unwrap_err();
    assert!(matches!(err, BillingError::WebhookRejected(_)), "{err}");
    // Nor does another endpoint's secret.
    let stranger = StripeRail::new(&StripeSettings {
        secret_key: "sk_test_iocloud_rail".into(),
        webhook_secret: unique("whsec"),
        publishable_key: None,
        api_base: base.clone(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let err = stranger
        .verify_webhook(&delivery.body, &delivery.signature)
        .unwrap_err();
    assert!(matches!(err, BillingError::WebhookRejected(_)), "{err}");

    // The decline is announced too.
    delivery_about(
        &rail,
        &mut deliveries,
        EventType::PaymentIntentPaymentFailed,
        &declined_id,
    )
    .await;

    let removed = http
        .delete(format!("{base}/_config/webhooks/{endpoint}"))
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success());
}

#[tokio::test]
async fn a_wrong_secret_key_is_unauthorized_and_not_retried() {
    let Some(base) = iocloud_tests::stripe_url() else {
        return;
    };
    // localstripe accepts any key of Stripe's form, and refuses others as Stripe does.
    let rail = StripeRail::new(&StripeSettings {
        secret_key: "not_a_stripe_key".into(),
        webhook_secret: "whsec_x".into(),
        publishable_key: None,
        api_base: base,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let err = rail
        .retrieve_payment_intent("pi_missing")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BillingError::Stripe(f) if f.kind == StripeFailureKind::Unauthorized && f.status == Some(401)),
        "{err}"
    );
    assert!(!err.is_retryable());
}
