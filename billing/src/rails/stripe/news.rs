//! What Stripe tells us, read into our own terms: a card payment's state and what a webhook
//! event is about. The rest of the platform never sees async-stripe's types.

use stripe_webhook::{Event, EventObject};

use super::{PaymentIntent, PaymentIntentStatus};

/// Where a card payment stands, as far as crediting goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentState {
    /// The money arrived: credit `received_cents`.
    Succeeded,
    /// The last attempt failed (a declined card); the customer may still try another card
    /// on the same PaymentIntent, so a later success is possible.
    Failed,
    /// Nobody can pay it any more.
    Canceled,
    /// Waiting for the customer (a card form, 3-D Secure) or for the bank.
    Pending,
}

/// A PaymentIntent as the fiat rail reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardPayment {
    /// `pi_…`.
    pub id: String,
    pub state: PaymentState,
    /// What was asked, in the payment's currency's minor unit.
    pub amount_cents: i64,
    /// What arrived, in the same unit (0 until it succeeds).
    pub received_cents: i64,
    /// Lower-case ISO code, `usd` for every payment this platform makes.
    pub currency: String,
    /// `cus_…`, when the payment belongs to a customer.
    pub customer: Option<String>,
    /// `pm_…` of the card used or to be used.
    pub payment_method: Option<String>,
    /// The metadata given at creation (our top-up's id and organisation).
    pub metadata: std::collections::HashMap<String, String>,
    /// For a failed attempt: Stripe's code (`card_declined`, …), the issuer's reason
    /// (`insufficient_funds`, …) when there is one, and the message meant for the customer.
    pub failure: Option<PaymentFailure>,
    /// For a payment still in progress: the secret the browser confirms it with.
    pub client_secret: Option<String>,
    /// Unix seconds.
    pub created: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentFailure {
    pub code: String,
    pub decline_code: Option<String>,
    pub message: String,
}

impl From<&PaymentIntent> for CardPayment {
    fn from(pi: &PaymentIntent) -> Self {
        let failure = pi.last_payment_error.as_ref().map(|e| PaymentFailure {
            code: e
                .code
                .as_ref()
                .map(|c| c.as_str().to_string())
                .unwrap_or_else(|| e.type_.as_str().to_string()),
            decline_code: e.decline_code.clone(),
            message: e.message.clone().unwrap_or_default(),
        });
        let state = match pi.status {
            PaymentIntentStatus::Succeeded => PaymentState::Succeeded,
            PaymentIntentStatus::Canceled => PaymentState::Canceled,
            // Back to asking for a card after an attempt failed.
            PaymentIntentStatus::RequiresPaymentMethod if failure.is_some() => PaymentState::Failed,
            _ => PaymentState::Pending,
        };
        CardPayment {
            id: pi.id.as_str().to_string(),
            state,
            amount_cents: pi.amount,
            received_cents: pi.amount_received,
            currency: pi.currency.to_string(),
            customer: pi.customer.as_ref().map(|c| c.id().as_str().to_string()),
            payment_method: pi
                .payment_method
                .as_ref()
                .map(|m| m.id().as_str().to_string()),
            metadata: pi.metadata.clone(),
            failure,
            client_secret: pi.client_secret.clone(),
            created: pi.created,
        }
    }
}

/// One verified webhook event.
#[derive(Clone, Debug)]
pub struct WebhookNews {
    /// `evt_…`: each is handled once.
    pub id: String,
    /// `payment_intent.succeeded`, …, as Stripe names it.
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// The id of the object the event is about, when it has one.
    pub object_id: Option<String>,
    /// For the PaymentIntent events: the payment as the event shows it.
    pub payment: Option<CardPayment>,
}

impl From<&Event> for WebhookNews {
    fn from(event: &Event) -> Self {
        let payment = match &event.data.object {
            EventObject::PaymentIntentSucceeded(pi)
            | EventObject::PaymentIntentPaymentFailed(pi)
            | EventObject::PaymentIntentCanceled(pi)
            | EventObject::PaymentIntentProcessing(pi)
            | EventObject::PaymentIntentRequiresAction(pi)
            | EventObject::PaymentIntentCreated(pi) => Some(CardPayment::from(pi.as_ref())),
            _ => None,
        };
        WebhookNews {
            id: event.id.as_str().to_string(),
            kind: event.type_.as_str().to_string(),
            created: event.created,
            object_id: payment.as_ref().map(|p| p.id.clone()),
            payment,
        }
    }
}
