//! Card payments, the fiat rail: an organisation tops up its USD balance by card through
//! Stripe, and the money lands on the ledger exactly once.
//!
//! A top-up is written first (`top_…`, pending), then a PaymentIntent is made for it under an
//! idempotency key derived from its id, with the top-up's id in its metadata. The credit is
//! one ledger transaction whose external reference is the PaymentIntent's id (Dr the Stripe
//! clearing account, Cr the organisation's available USD), so whichever way Stripe's word
//! arrives first ([`settle`]): the answer to a card charged at once, the signed webhook
//! ([`webhooks`]), or the pass that asks Stripe for payments no webhook brought ([`missed`]),
//! the others find it done and change nothing.
//!
//! Without Stripe's settings the rail is off: its calls answer `rail_not_configured`, and the
//! rest of the platform works as before.

pub mod auto_reload;
pub mod cards;
mod customers;
mod disputes;
pub mod missed;
pub mod receipts;
pub mod refunds;
mod settle;
pub mod top_ups;
pub mod webhooks;

use std::sync::Arc;

use iocloud_billing::rails::stripe::{StripeRail, StripeSettings};
use iocloud_billing::{Currency, Money};
use iocloud_db::Db;

use crate::audit::Audit;
use crate::directory::Directory;
use crate::leases::Leases;
use crate::{Error, Result};

pub use auto_reload::{AutoReload, AutoReloadRequest};
pub use cards::{Card, CardRequest, CardSetup};
pub use missed::MissedPass;
pub use receipts::{Receipt, ReceiptCard, ReceiptRefund};
pub use refunds::{Refund, RefundPart, RefundRequest, RefundStatus, Refundable};
pub use settle::Settled;
pub use top_ups::{TopUp, TopUpOrigin, TopUpRequest, TopUpStatus};
pub use webhooks::WebhookReceipt;

/// Micro-units (the ledger's unit) in one US cent (Stripe's).
const MICROS_PER_CENT: i64 = 10_000;

/// `micros` of USD.
fn usd(micros: i64) -> Money {
    Money::from_micros(micros, Currency::Usd)
}

/// How much one card top-up may be, in USD.
#[derive(Clone, Copy, Debug)]
pub struct TopUpLimits {
    pub min: Money,
    pub max: Money,
}

impl Default for TopUpLimits {
    fn default() -> Self {
        TopUpLimits {
            min: Money::from_micros(1_000_000, Currency::Usd),
            max: Money::from_micros(10_000_000_000, Currency::Usd),
        }
    }
}

/// The card rail's service (see the module's documentation).
#[derive(Clone)]
pub struct Payments {
    db: Db,
    audit: Audit,
    directory: Directory,
    leases: Leases,
    /// `None` when the deployment has no Stripe settings: the rail is off.
    rail: Option<Arc<StripeRail>>,
    publishable_key: Option<String>,
    limits: TopUpLimits,
    /// Webhook credits of this replica post two at a time, in the order they came. Every credit
    /// moves the clearing account's one row, which one transaction at a time holds until its
    /// commit; queued in the database for it instead, each commit wakes every waiter and all but
    /// one wait again, which slows the holder and leaves the unlucky waiting longest. The second
    /// in turn claims its ledger transaction while the first holds the row.
    crediting: Arc<tokio::sync::Semaphore>,
}

impl Payments {
    pub(crate) fn new(
        db: Db,
        audit: Audit,
        directory: Directory,
        leases: Leases,
        stripe: Option<&StripeSettings>,
        limits: TopUpLimits,
    ) -> Result<Self> {
        let rail = match stripe {
            Some(s) => Some(Arc::new(StripeRail::new(s)?)),
            None => None,
        };
        Ok(Payments {
            db,
            audit,
            directory,
            leases,
            rail,
            publishable_key: stripe.and_then(|s| s.publishable_key.clone()),
            limits,
            crediting: Arc::new(tokio::sync::Semaphore::new(2)),
        })
    }

    /// True when card payments are configured on this deployment.
    pub fn is_on(&self) -> bool {
        self.rail.is_some()
    }

    /// The key the console's card form gives Stripe.js (public by design).
    pub fn publishable_key(&self) -> Option<&str> {
        self.publishable_key.as_deref()
    }

    fn rail(&self) -> Result<&StripeRail> {
        self.rail
            .as_deref()
            .ok_or(Error::RailNotConfigured("card payments"))
    }
}
