//! A test app that takes cards through localstripe (`IOCLOUD_TEST_STRIPE_URL`), with its own
//! webhook endpoint registered there, and what a test does as the browser or as Stripe.

use std::time::Duration;

use iocloud_billing::rails::stripe::sign_webhook;
use serde_json::{Value, json};

use crate::{Backend, TestApp};

/// The secret key every card test app uses; localstripe accepts any.
pub const STRIPE_KEY: &str = "sk_test_iocloud";

/// A test app whose card rail talks to localstripe, and the endpoint localstripe sends its
/// webhooks for it to.
pub struct CardApp {
    pub app: TestApp,
    /// localstripe's address.
    pub stripe: String,
    /// This app's webhook signing secret.
    pub webhook_secret: String,
    endpoint: String,
    http: reqwest::Client,
}

impl CardApp {
    /// `None` (the test says it is skipped) when no localstripe is configured.
    pub async fn spawn(backend: Backend) -> Option<CardApp> {
        let stripe = crate::stripe_url()?;
        let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let (base, secret) = (stripe.clone(), webhook_secret.clone());
        let app = TestApp::spawn_with(backend, move |c| take_cards(c, &base, &secret)).await;
        let endpoint = format!("iocloud-{}", uuid::Uuid::new_v4().simple());
        let card = CardApp {
            app,
            stripe,
            webhook_secret,
            endpoint,
            http: reqwest::Client::new(),
        };
        card.listen().await;
        Some(card)
    }

    /// Registers this app's webhook endpoint with localstripe (again, after [`mute`]).
    pub async fn listen(&self) {
        let url = self.app.url("/webhooks/stripe");
        let answer = self
            .http
            .post(format!(
                "{}/_config/webhooks/{}",
                self.stripe, self.endpoint
            ))
            .form(&[
                ("url", url.as_str()),
                ("secret", self.webhook_secret.as_str()),
            ])
            .send()
            .await
            .expect("localstripe answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    /// Stops localstripe sending this app webhooks: what follows is lost, as if Stripe could
    /// not reach us.
    pub async fn mute(&self) {
        let answer = self
            .http
            .delete(format!(
                "{}/_config/webhooks/{}",
                self.stripe, self.endpoint
            ))
            .send()
            .await
            .expect("localstripe answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    /// Ends the test: the webhook endpoint goes, then the app.
    pub async fn stop(self) {
        self.mute().await;
        self.app.stop().await;
    }

    /// What the console's card form does with a top-up's client secret: confirms its
    /// PaymentIntent with a card (`pm_card_visa`, `pm_card_chargeDeclined`).
    pub async fn confirm_in_browser(&self, payment_intent: &str, card: &str) -> Value {
        self.confirm(&format!("payment_intents/{payment_intent}"), card)
            .await
    }

    /// What the card form does to save a card: confirms its SetupIntent (`seti_…`) with one.
    pub async fn confirm_setup_in_browser(&self, setup_intent: &str, card: &str) -> Value {
        self.confirm(&format!("setup_intents/{setup_intent}"), card)
            .await
    }

    /// A new card (`pm_…`) of this number, as Stripe.js makes one from the card form.
    pub async fn new_card(&self, number: &str) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/v1/payment_methods", self.stripe))
            .basic_auth(STRIPE_KEY, Some(""))
            .form(&[
                ("type", "card"),
                ("card[number]", number),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "123"),
            ])
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("JSON");
        answer["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a payment method: {answer}"))
            .to_string()
    }

    async fn confirm(&self, intent: &str, card: &str) -> Value {
        let answer = self
            .http
            .post(format!("{}/v1/{intent}/confirm", self.stripe))
            .basic_auth(STRIPE_KEY, Some(""))
            .form(&[("payment_method", card)])
            .send()
            .await
            .expect("localstripe answers");
        answer.json().await.expect("JSON")
    }

    /// A top-up of `amount` paid in the card form while Stripe cannot reach us: the card is
    /// charged and the webhook lost. Answers the top-up's id and its PaymentIntent's.
    pub async fn paid_unheard(&self, token: &str, amount: &str) -> (String, String) {
        self.mute().await;
        let t = self
            .app
            .post(
                "/v1/billing/top-ups",
                Some(token),
                json!({ "amount": amount }),
            )
            .await;
        assert_eq!(t.status, 201, "{}", t.text);
        let id = t.body["id"].as_str().expect("an id").to_string();
        let pi = t.body["payment_intent_id"]
            .as_str()
            .expect("a PaymentIntent");
        let confirmed = self.confirm_in_browser(pi, "pm_card_visa").await;
        assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
        (id, pi.to_string())
    }

    /// A PaymentIntent as localstripe holds it.
    pub async fn payment_intent(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payment_intents/{id}", self.stripe))
            .basic_auth(STRIPE_KEY, Some(""))
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Sends `event` to this app's webhook, signed with `secret` at `timestamp` (now when
    /// `None`).
    pub async fn send_webhook(
        &self,
        payload: &str,
        secret: &str,
        timestamp: Option<i64>,
    ) -> crate::Answer {
        send_webhook(&self.app, payload, secret, timestamp).await
    }

    /// Waits until the top-up `id` has `status` (webhooks arrive about a second after the
    /// payment), and answers it.
    pub async fn top_up_status(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let t = self
                .app
                .get(&format!("/v1/billing/top-ups/{id}"), token)
                .await;
            if t.body["status"] == status {
                return t.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "top-up {id} is not {status} after 20 s: {}",
                t.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Turns the card rail of a test app's config on, against localstripe at `stripe`, with
/// `webhook_secret` as the endpoint's signing secret.
pub fn take_cards(c: &mut iocloud_api::Config, stripe: &str, webhook_secret: &str) {
    c.stripe_secret_key = Some(STRIPE_KEY.parse().expect("text"));
    c.stripe_webhook_secret = Some(webhook_secret.parse().expect("text"));
    c.stripe_publishable_key = Some("pk_test_iocloud".into());
    c.stripe_api_base = Some(stripe.to_string());
    c.stripe_js_url = format!("{stripe}/js.stripe.com/v3/");
}

/// Sends `payload` to the app's Stripe webhook as Stripe would, signed with `secret` at
/// `timestamp` (now when `None`).
pub async fn send_webhook(
    app: &TestApp,
    payload: &str,
    secret: &str,
    timestamp: Option<i64>,
) -> crate::Answer {
    let signature = sign_webhook(payload, secret, timestamp);
    let res = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload.to_string())
        .send()
        .await
        .expect("request sent");
    TestApp::answer(res).await
}

/// A dispute of PaymentIntent `payment_intent` as Stripe renders it, with every field
/// async-stripe requires.
pub fn dispute(id: &str, payment_intent: &str, amount_cents: i64, status: &str) -> Value {
    json!({
        "id": id,
        "object": "dispute",
        "amount": amount_cents,
        "balance_transactions": [],
        "charge": "ch_disputed",
        "created": now_secs(),
        "currency": "usd",
        "enhanced_eligibility_types": [],
        "evidence": {"enhanced_evidence": {}},
        "evidence_details": {
            "due_by": null, "enhanced_eligibility": {}, "has_evidence": false,
            "past_due": false, "submission_count": 0
        },
        "is_charge_refundable": false,
        "livemode": false,
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": "fraudulent",
        "status": status,
    })
}

/// An event as Stripe's API renders it, about `object`.
pub fn stripe_event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2026-09-30.endive",
        "created": now_secs(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind,
        "data": {"object": object},
    })
    .to_string()
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}
