//! Saving a card through the card form: a SetupIntent the browser confirms with Stripe.js
//! (3-D Secure included), after which the card can be charged while its holder is away. Also
//! what a receipt shows of the card a payment was made with.

use stripe::StripeRequest;
use stripe_core::SetupIntentStatus;
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent};
use stripe_payment::payment_method::RetrievePaymentMethod;

use super::{StripeRail, failure, idempotent, retrying};
use crate::Result;

/// A card form waiting for its card: the browser confirms it with the client secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSetup {
    /// `seti_…`.
    pub id: String,
    pub client_secret: String,
}

/// A SetupIntent as it stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSetupState {
    pub id: String,
    /// `cus_…` it saves the card for.
    pub customer: Option<String>,
    /// True once the card is confirmed and may be charged off-session.
    pub succeeded: bool,
    /// `pm_…`, once the form gave one.
    pub payment_method: Option<String>,
}

/// What identifies a card to people: never its number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardDetails {
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
}

impl StripeRail {
    /// Opens a card form for a customer's card, to be charged later while its holder is away.
    pub async fn start_card_setup(
        &self,
        customer: &str,
        idempotency_key: &str,
    ) -> Result<CardSetup> {
        let setup = retrying(|| async {
            CreateSetupIntent::new()
                .customer(customer)
                .usage(CreateSetupIntentUsage::OffSession)
                .customize()
                .request_strategy(idempotent(idempotency_key)?)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(CardSetup {
            id: setup.id.as_str().to_string(),
            client_secret: setup.client_secret.unwrap_or_default(),
        })
    }

    /// Where a card form stands.
    pub async fn card_setup(&self, id: &str) -> Result<CardSetupState> {
        let setup = retrying(|| async {
            RetrieveSetupIntent::new(id)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(CardSetupState {
            id: setup.id.as_str().to_string(),
            customer: setup.customer.as_ref().map(|c| c.id().as_str().to_string()),
            succeeded: setup.status == SetupIntentStatus::Succeeded,
            payment_method: setup
                .payment_method
                .as_ref()
                .map(|pm| pm.id().as_str().to_string()),
        })
    }

    /// The brand and last four digits of a card (`pm_…`); `None` for a payment method that is
    /// not a card.
    pub async fn card_details(&self, payment_method: &str) -> Result<Option<CardDetails>> {
        let pm = retrying(|| async {
            RetrievePaymentMethod::new(payment_method)
                .send(&self.client)
                .await
                .map_err(failure)
        })
        .await?;
        Ok(pm.card.map(|card| CardDetails {
            brand: card.brand,
            last4: card.last4,
        }))
    }
}
