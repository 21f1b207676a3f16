//! The missed-webhook pass: now and then one replica (the holder of a lease) asks Stripe for
//! the recent PaymentIntents and settles each that no webhook settled, by the same step the
//! webhook takes. A lost webhook then costs minutes, never money, and a late one finds the
//! credit made. Top-ups that never got as far as a PaymentIntent (the server stopped between
//! writing the top-up and asking Stripe) are canceled once they are a day old.

use std::time::Duration;

use iocloud_billing::rails::stripe::{PaymentIntentQuery, PaymentState};
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{DbError, db_run};

use super::Payments;
use super::Settled;
use super::top_ups::TopUpStatus;
use crate::Result;

/// The lease's name.
const LEASE: &str = "stripe-missed-webhooks";
/// How long the lease lasts unless renewed: longer than the default interval between passes.
const LEASE_TTL: Duration = Duration::from_secs(600);
/// How far back a pass looks: Stripe retries a webhook for three days, so past that nobody
/// else will bring the news.
const LOOK_BACK: Duration = Duration::from_secs(3 * 86_400);
/// A top-up with no PaymentIntent this old was never sent to Stripe.
const ABANDONED_AFTER: Duration = Duration::from_secs(86_400);
/// PaymentIntents per page asked of Stripe (its largest).
const PAGE: i64 = 100;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissedPass {
    /// False when another replica holds the lease and this one did nothing.
    pub ran: bool,
    /// PaymentIntents read.
    pub seen: usize,
    /// Credits no webhook had made.
    pub credited: usize,
    /// Failures and cancellations written.
    pub recorded: usize,
    /// Top-ups canceled that never reached Stripe.
    pub abandoned: u64,
    /// Refund parts Stripe had not settled, asked again or looked up.
    pub refunds_retried: usize,
}

impl Payments {
    /// One pass (see the module's documentation), if this replica gets the lease.
    pub async fn reconcile_missed(&self) -> Result<MissedPass> {
        let rail = self.rail()?;
        // The replica that holds the lease keeps it by running passes; if it stops, another
        // takes over once the lease lapses.
        if !self.leases.acquire(LEASE, LEASE_TTL).await? {
            return Ok(MissedPass::default());
        }
        let mut pass = MissedPass {
            ran: true,
            ..MissedPass::default()
        };
        let since = (now_micros() / MICROS_PER_SEC) - LOOK_BACK.as_secs() as i64;
        let mut query = PaymentIntentQuery {
            created_since: Some(since),
            limit: Some(PAGE),
            ..PaymentIntentQuery::default()
        };
        loop {
            let (page, more) = rail.payments(&query).await?;
            for payment in &page {
                pass.seen += 1;
                if payment.state == PaymentState::Pending {
                    continue;
                }
                match self.settle(payment).await? {
                    Settled::Credited { top_up_id, .. } => {
                        tracing::warn!(top_up = %top_up_id, payment = %payment.id, "credited a card payment no webhook brought");
                        pass.credited += 1;
                    }
                    Settled::Recorded { .. } => pass.recorded += 1,
                    Settled::AlreadyCredited { .. } | Settled::Ignored(_) => {}
                }
            }
            match page.last() {
                Some(last) if more => query.starting_after = Some(last.id.clone()),
                _ => break,
            }
        }
        pass.abandoned = self.cancel_abandoned().await?;
        pass.refunds_retried = self.retry_refunds().await?;
        Ok(pass)
    }

    async fn cancel_abandoned(&self) -> Result<u64> {
        let now = now_micros();
        let before = now - ABANDONED_AFTER.as_micros() as i64;
        let sql = format!(
            "UPDATE top_ups SET status = 'canceled', failure_message = 'never reached the payment provider', \
             updated_at = $1 WHERE payment_intent_id IS NULL AND created_at < $2 AND status IN ({})",
            TopUpStatus::sources_of(TopUpStatus::Canceled)
        );
        Ok(db_run!(&self.db, |p| sqlx::query(&sql)
            .bind(now)
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?)
    }

    /// Runs a pass every `interval` until the process ends; each replica may run this, the
    /// lease lets one at a time do the work.
    pub fn spawn_missed_pass(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                match this.reconcile_missed().await {
                    Ok(p) if p.credited > 0 || p.abandoned > 0 => tracing::info!(
                        credited = p.credited,
                        recorded = p.recorded,
                        abandoned = p.abandoned,
                        "missed-webhook pass"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "missed-webhook pass failed"),
                }
            }
        })
    }
}
