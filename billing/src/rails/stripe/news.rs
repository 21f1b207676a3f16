//! What Stripe tells us, read into our own terms: a card payment's state and what a webhook
//! event is about. The rest of the platform never sees async-stripe's types.

use stripe_core::{Dispute, DisputeStatus, Refund};
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

/// Where a refund stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundState {
    /// The money went back to the card.
    Succeeded,
    /// Stripe is still on it; `refund.updated` or `refund.failed` follows.
    Pending,
    /// It will not happen (`failed`, `canceled`): the money stays with the organisation.
    Failed,
}

/// A refund as the fiat rail reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRefund {
    /// `re_…`.
    pub id: String,
    pub state: RefundState,
    pub amount_cents: i64,
    pub payment_intent: Option<String>,
    pub failure_reason: Option<String>,
    pub metadata: std::collections::HashMap<String, String>,
}

impl From<&Refund> for CardRefund {
    fn from(r: &Refund) -> Self {
        let state = match r.status.as_deref() {
            Some("succeeded") => RefundState::Succeeded,
            Some("failed" | "canceled") => RefundState::Failed,
            _ => RefundState::Pending,
        };
        CardRefund {
            id: r.id.as_str().to_string(),
            state,
            amount_cents: r.amount,
            payment_intent: r
                .payment_intent
                .as_ref()
                .map(|p| p.id().as_str().to_string()),
            failure_reason: r.failure_reason.clone(),
            metadata: r.metadata.clone().unwrap_or_default(),
        }
    }
}

/// Where a dispute stands, as far as the money goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisputeState {
    /// Opened (or still argued): the amount is taken back.
    Open,
    /// Closed in the organisation's favour: the amount returns.
    Won,
    /// Closed against it: the amount stays gone.
    Lost,
    /// Closed without money moving (an inquiry that was only a warning).
    Closed,
}

/// A dispute (chargeback) of a card payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeNews {
    /// `dp_…`.
    pub id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub payment_intent: Option<String>,
    pub state: DisputeState,
    /// The cardholder's stated reason (`fraudulent`, `duplicate`, …).
    pub reason: String,
}

impl From<&Dispute> for DisputeNews {
    fn from(d: &Dispute) -> Self {
        let state = match &d.status {
            DisputeStatus::Won => DisputeState::Won,
            DisputeStatus::Lost => DisputeState::Lost,
            DisputeStatus::WarningClosed => DisputeState::Closed,
            _ => DisputeState::Open,
        };
        DisputeNews {
            id: d.id.as_str().to_string(),
            amount_cents: d.amount,
            currency: d.currency.to_string(),
            payment_intent: d
                .payment_intent
                .as_ref()
                .map(|p| p.id().as_str().to_string()),
            state,
            reason: d.reason.clone(),
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
    /// For `charge.dispute.created` and `charge.dispute.closed`.
    pub dispute: Option<DisputeNews>,
    /// For the refund events.
    pub refund: Option<CardRefund>,
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
        let dispute = match &event.data.object {
            EventObject::ChargeDisputeCreated(d) | EventObject::ChargeDisputeClosed(d) => {
                Some(DisputeNews::from(d.as_ref()))
            }
            _ => None,
        };
        let refund = match &event.data.object {
            EventObject::RefundUpdated(r)
            | EventObject::RefundFailed(r)
            | EventObject::ChargeRefundUpdated(r) => Some(CardRefund::from(r.as_ref())),
            _ => None,
        };
        let object_id = payment
            .as_ref()
            .map(|p| p.id.clone())
            .or_else(|| dispute.as_ref().map(|d| d.id.clone()))
            .or_else(|| refund.as_ref().map(|r| r.id.clone()));
        WebhookNews {
            id: event.id.as_str().to_string(),
            kind: event.type_.as_str().to_string(),
            created: event.created,
            object_id,
            payment,
            dispute,
            refund,
        }
    }
}
