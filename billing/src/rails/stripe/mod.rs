//! The fiat rail's client: Stripe through async-stripe (Stripe's API of 2026-09-30).
//!
//! Cards are charged as PaymentIntents in USD cents, each created under an `Idempotency-Key`
//! the caller chooses, so that a retry after a timeout cannot charge twice. A PaymentIntent is
//! credited only from the signed `payment_intent.succeeded` webhook (or a reconciling pass that
//! retrieves it), never from the answer to its creation: [`StripeRail::verify_webhook`] checks
//! the `Stripe-Signature` header (HMAC-SHA256 with the endpoint's secret, at most 300 s old) and
//! parses the event into async-stripe's types.
//!
//! Settings ([`StripeSettings::from_env`]): `IOCLOUD_STRIPE_SECRET_KEY`,
//! `IOCLOUD_STRIPE_WEBHOOK_SECRET`, `IOCLOUD_STRIPE_PUBLISHABLE_KEY` and
//! `IOCLOUD_STRIPE_API_BASE`. The two secrets are never printed: `Debug` shows them redacted.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use stripe::{ClientBuilder, RequestStrategy, StripeRequest};
use stripe_core::customer::CreateCustomer;
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentOffSession, ListPaymentIntent, RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, RetrieveRefund};
use stripe_payment::payment_method::{AttachPaymentMethod, DetachPaymentMethod};
use stripe_types::{RangeBoundsTs, RangeQueryTs};
use stripe_webhook::{Webhook, WebhookError};

use crate::money::{Currency, Money};
use crate::{BillingError, Result};

mod card_setup;
mod failure;
mod news;
mod settings;

pub use card_setup::{CardDetails, CardSetup, CardSetupState};
#[cfg(test)]
use failure::classify;
use failure::failure;
pub use failure::{StripeFailure, StripeFailureKind};
pub use news::{
    CardPayment, CardRefund, DisputeNews, DisputeState, PaymentFailure, PaymentState, RefundState,
    WebhookNews,
};
pub use settings::{
    API_BASE_VAR, DEFAULT_API_BASE, DEFAULT_TIMEOUT, PUBLISHABLE_KEY_VAR, SECRET_KEY_VAR,
    StripeSettings, WEBHOOK_SECRET_VAR, WEBHOOK_TOLERANCE,
};
pub use stripe_core::{
    Customer, CustomerId, PaymentIntent, PaymentIntentAllowedPaymentMethodTypes, PaymentIntentId,
    PaymentIntentSetupFutureUsage, PaymentIntentStatus,
};
pub use stripe_types::{Currency as StripeCurrency, Expandable, List};
pub use stripe_webhook::{Event, EventObject, EventType};

/// A customer to create: who pays, and our ids to find them by in Stripe's dashboard.
#[derive(Clone, Debug, Default)]
pub struct NewCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// A card payment in USD.
#[derive(Clone, Debug, Default)]
pub struct NewPayment {
    /// Whole US cents, at least 1 (Stripe's own minimum is 50).
    pub amount_cents: i64,
    /// `cus_…`, when the payment belongs to a customer.
    pub customer: Option<String>,
    /// `pm_…`: a saved card, or a test card (`pm_card_visa`). Needed to confirm at once.
    pub payment_method: Option<String>,
    /// Confirm on creation (charge a saved card); otherwise the browser confirms it with the
    /// PaymentIntent's client secret.
    pub confirm: bool,
    /// Our ids, given back in every event about this payment.
    pub metadata: HashMap<String, String>,
    /// Charged while the cardholder is away (auto-reload on a saved card): Stripe then fails
    /// it rather than ask the holder to authenticate.
    pub off_session: bool,
    /// The card form's card is to be kept for payments while its holder is away: Stripe
    /// authenticates it for that and attaches it to the customer once paid.
    pub keep_card: bool,
}

/// A card saved under a customer, as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedCard {
    /// `pm_…`.
    pub id: String,
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

/// Which PaymentIntents to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct PaymentIntentQuery {
    pub customer: Option<String>,
    /// Created at or after this Unix time (seconds).
    pub created_since: Option<i64>,
    /// 1 to 100; Stripe's default is 10.
    pub limit: Option<i64>,
    /// The last id of the page before.
    pub starting_after: Option<String>,
}

/// The client of the fiat rail: cheap to clone, one per process.
#[derive(Clone)]
pub struct StripeRail {
    client: stripe::Client,
    webhook_secret: String,
    api_base: String,
}

impl fmt::Debug for StripeRail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeRail")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StripeRail {
    pub fn new(settings: &StripeSettings) -> Result<StripeRail> {
        // async-stripe appends `v1/…` to the base as written.
        let mut api_base = settings.api_base.trim().to_string();
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        let client = ClientBuilder::new(settings.secret_key.as_str())
            .url(api_base.as_str())
            .timeout(settings.timeout)
            .request_strategy(RequestStrategy::Once)
            .app_info("iocloud", Some(env!("CARGO_PKG_VERSION").to_string()), None)
            .build()
            .map_err(|e| BillingError::Internal(format!("stripe client: {e}")))?;
        Ok(StripeRail {
            client,
            webhook_secret: settings.webhook_secret.clone(),
            api_base,
        })
    }

    /// Creates a customer. With the same `idempotency_key` and fields, a retry answers the
    /// customer the first call made.
    pub async fn create_customer(
        &self,
        customer: &NewCustomer,
        idempotency_key: &str,
    ) -> Result<Customer> {
        let mut request = CreateCustomer::new();
        if let Some(email) = &customer.email {
            request = request.email(email.as_str());
        }
        if let Some(name) = &customer.name {
            request = request.name(name.as_str());
        }
        if !customer.metadata.is_empty() {
            request = request.metadata(customer.metadata.clone());
        }
        request
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(failure)
    }

    /// Creates a card PaymentIntent in USD, confirmed at once when `payment.confirm`. A
    /// declined card answers `BillingError::Stripe` of kind [`StripeFailureKind::Declined`],
    /// naming the PaymentIntent, which stays `requires_payment_method`. With the same
    /// `idempotency_key` and fields, a retry answers what the first call did and charges nothing.
    pub async fn create_payment_intent(
        &self,
        payment: &NewPayment,
        idempotency_key: &str,
    ) -> Result<PaymentIntent> {
        if payment.amount_cents < 1 {
            return Err(BillingError::InvalidAmount(format!(
                "a card payment must be at least 1 cent, not {}",
                payment.amount_cents
            )));
        }
        if payment.confirm && payment.payment_method.is_none() {
            return Err(BillingError::Internal(
                "a payment confirmed at once needs a payment method".into(),
            ));
        }
        // Card only: other methods may redirect the customer, and a server-side confirmation
        // has no page to come back to.
        let mut request = CreatePaymentIntent::new(payment.amount_cents, StripeCurrency::USD)
            .allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card]);
        if let Some(customer) = &payment.customer {
            request = request.customer(customer.as_str());
        }
        if let Some(method) = &payment.payment_method {
            request = request.payment_method(method.as_str());
        }
        if payment.confirm {
            request = request.confirm(true);
        }
        if payment.off_session {
            request = request.off_session(CreatePaymentIntentOffSession::Bool(true));
        }
        if payment.keep_card {
            request = request.setup_future_usage(PaymentIntentSetupFutureUsage::OffSession);
        }
        if !payment.metadata.is_empty() {
            request = request.metadata(payment.metadata.clone());
        }
        request
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(failure)
    }

    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent> {
        RetrievePaymentIntent::new(id)
            .send(&self.client)
            .await
            .map_err(failure)
    }

    /// One page of PaymentIntents, newest first; `has_more` says whether another follows
    /// (ask for it with `starting_after` set to this page's last id).
    pub async fn list_payment_intents(
        &self,
        query: &PaymentIntentQuery,
    ) -> Result<List<PaymentIntent>> {
        let mut request = ListPaymentIntent::new();
        if let Some(customer) = &query.customer {
            request = request.customer(customer.as_str());
        }
        if let Some(since) = query.created_since {
            request = request.created(RangeQueryTs::Bounds(RangeBoundsTs {
                gte: Some(since),
                ..Default::default()
            }));
        }
        if let Some(limit) = query.limit {
            request = request.limit(limit.clamp(1, 100));
        }
        if let Some(after) = &query.starting_after {
            request = request.starting_after(after.as_str());
        }
        request.send(&self.client).await.map_err(failure)
    }

    /// The event a webhook carries, if `signature` (the `Stripe-Signature` header) is Stripe's
    /// for exactly this `payload` (the raw body, unparsed) and at most [`WEBHOOK_TOLERANCE`] old.
    /// Anything else is `BillingError::WebhookRejected`, to be answered 400.
    pub fn verify_webhook(&self, payload: &[u8], signature: &str) -> Result<Event> {
        let payload = std::str::from_utf8(payload)
            .map_err(|_| BillingError::WebhookRejected("the body is not UTF-8".into()))?;
        Webhook::construct_event(payload, signature, &self.webhook_secret).map_err(|e| {
            BillingError::WebhookRejected(match e {
                WebhookError::BadKey => "the webhook secret is unusable".into(),
                WebhookError::BadHeader(_) | WebhookError::BadSignature => {
                    "the signature does not match".into()
                }
                WebhookError::BadTimestamp(t) => {
                    format!("the signature's timestamp {t} is too far from now")
                }
                WebhookError::BadParse(e) => format!("the event does not parse: {e}"),
            })
        })
    }
}

impl StripeRail {
    /// A verified webhook event ([`verify_webhook`](Self::verify_webhook)) in the rail's terms.
    pub fn webhook_news(&self, payload: &[u8], signature: &str) -> Result<WebhookNews> {
        Ok(WebhookNews::from(&self.verify_webhook(payload, signature)?))
    }

    /// [`create_customer`](Self::create_customer), retried while Stripe is away; answers the
    /// customer's id.
    pub async fn ensure_customer(
        &self,
        customer: &NewCustomer,
        idempotency_key: &str,
    ) -> Result<String> {
        let made = retrying(|| self.create_customer(customer, idempotency_key)).await?;
        Ok(made.id.as_str().to_string())
    }

    /// [`create_payment_intent`](Self::create_payment_intent), retried with the same
    /// idempotency key while Stripe is away, read as a [`CardPayment`]. A declined card is
    /// not an error here: it answers the payment in state `Failed`, with the reason.
    pub async fn charge(&self, payment: &NewPayment, idempotency_key: &str) -> Result<CardPayment> {
        match retrying(|| self.create_payment_intent(payment, idempotency_key)).await {
            Ok(pi) => Ok(CardPayment::from(&pi)),
            Err(BillingError::Stripe(f))
                if f.kind == StripeFailureKind::Declined && f.payment_intent.is_some() =>
            {
                let id = f.payment_intent.clone().unwrap_or_default();
                self.payment(&id).await
            }
            Err(e) => Err(e),
        }
    }

    /// A PaymentIntent as it stands now, retried while Stripe is away.
    pub async fn payment(&self, id: &str) -> Result<CardPayment> {
        let pi = retrying(|| self.retrieve_payment_intent(id)).await?;
        Ok(CardPayment::from(&pi))
    }

    /// Refunds `amount_cents` of a succeeded PaymentIntent to its card, retried with the same
    /// idempotency key while Stripe is away.
    pub async fn refund(
        &self,
        payment_intent: &str,
        amount_cents: i64,
        metadata: &HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<CardRefund> {
        let refund = retrying(|| async {
            CreateRefund::new()
                .payment_intent(payment_intent)
                .amount(amount_cents)
                .metadata(metadata.clone())
                .customize()
                .request_strategy(idempotent(idempotency_key)?)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(CardRefund::from(&refund))
    }

    /// Attaches a card (`pm_…`, made by the card form) to a customer: answers the card as
    /// saved (Stripe may give a copy a new id). A card of another customer is refused.
    pub async fn save_card(
        &self,
        payment_method: &str,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<SavedCard> {
        let attached = retrying(|| async {
            AttachPaymentMethod::new(payment_method)
                .customer(customer)
                .customize()
                .request_strategy(idempotent(idempotency_key)?)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        let card = attached.card.as_ref().ok_or_else(|| {
            BillingError::InvalidAmount(format!("{payment_method} is not a card"))
        })?;
        Ok(SavedCard {
            id: attached.id.as_str().to_string(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
        })
    }

    /// Detaches a saved card from its customer: it can be charged no more.
    pub async fn forget_card(&self, payment_method: &str) -> Result<()> {
        retrying(|| async {
            DetachPaymentMethod::new(payment_method)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(())
    }

    /// A refund as it stands now, retried while Stripe is away.
    pub async fn refund_status(&self, id: &str) -> Result<CardRefund> {
        let refund = retrying(|| async {
            RetrieveRefund::new(id)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(CardRefund::from(&refund))
    }

    /// One page of PaymentIntents (newest first) and whether more follow, retried while
    /// Stripe is away.
    pub async fn payments(&self, query: &PaymentIntentQuery) -> Result<(Vec<CardPayment>, bool)> {
        let page = retrying(|| self.list_payment_intents(query)).await?;
        Ok((
            page.data.iter().map(CardPayment::from).collect(),
            page.has_more,
        ))
    }
}

/// How many times a call Stripe could not answer is tried in all, and the pause before the
/// second try (doubled before each next one): a hiccup costs well under a second, and an
/// outage fails the request in about one, not the whole request timeout.
const ATTEMPTS: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(150);

/// Runs `call` again while its failure is one a retry can cure (Stripe's 5xx, 429, a
/// timeout, no connection). Every call given here carries its own idempotency key or reads
/// only, so a retry never charges twice.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = FIRST_PAUSE;
    for _ in 1..ATTEMPTS {
        match call().await {
            Err(BillingError::Stripe(f)) if f.is_retryable() => {
                tracing::warn!(failure = %f, "stripe did not answer; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            done => return done,
        }
    }
    call().await
}

/// `payload` signed with `secret` as Stripe signs a webhook, at `timestamp` (Unix seconds,
/// now when `None`): what benchmarks and tests send as their own Stripe.
pub fn sign_webhook(payload: &str, secret: &str, timestamp: Option<i64>) -> String {
    Webhook::generate_test_header(payload, secret, timestamp)
}

/// Whole US cents of a USD amount: Stripe charges cents, the ledger counts micro-units.
pub fn usd_cents(amount: Money) -> Result<i64> {
    const MICROS_PER_CENT: i64 = 10_000;
    if amount.currency() != Currency::Usd {
        return Err(BillingError::CurrencyMismatch(
            amount.currency(),
            Currency::Usd,
        ));
    }
    if amount.micros() % MICROS_PER_CENT != 0 {
        return Err(BillingError::InvalidAmount(format!(
            "{} USD is not a whole number of cents",
            amount.to_decimal()
        )));
    }
    Ok(amount.micros() / MICROS_PER_CENT)
}

fn idempotent(key: &str) -> Result<RequestStrategy> {
    let key = stripe::IdempotencyKey::new(key)
        .map_err(|e| BillingError::Internal(format!("idempotency key: {e}")))?;
    Ok(RequestStrategy::Idempotent(key))
}

#[cfg(test)]
mod tests;
