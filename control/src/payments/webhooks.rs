//! Stripe's webhooks: each event is verified (signature, age, form), then handled once by its
//! id, in one transaction with what it does: the row that says it was seen commits with the
//! credit, or neither does and Stripe's retry finds it new.

use iocloud_billing::rails::stripe::{PaymentState, WebhookNews};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Engine, Tx, tx_run};
use serde::Serialize;
use utoipa::ToSchema;

use super::settle::Step;
use super::{Payments, Settled};
use crate::{Error, Result};

/// What a webhook did: what Stripe is answered (200, with this body) once it is stored.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// `evt_…`.
    pub event_id: String,
    /// `credited`, `recorded`, `ignored`, or `replayed` for an event handled before.
    pub outcome: &'static str,
}

impl Payments {
    /// Handles one webhook: `payload` is the raw body, `signature` its `Stripe-Signature`
    /// header. Anything not Stripe's, too old or malformed is `webhook_rejected` and changes
    /// nothing; an event seen before answers `replayed` and changes nothing.
    pub async fn webhook(&self, payload: &[u8], signature: Option<&str>) -> Result<WebhookReceipt> {
        let rail = self.rail()?;
        let signature = signature.ok_or_else(|| {
            Error::Billing(iocloud_billing::BillingError::WebhookRejected(
                "no Stripe-Signature header".into(),
            ))
        })?;
        let news = rail.webhook_news(payload, signature)?;
        // Verified, so the body is UTF-8 and Stripe's: kept as sent.
        let body = String::from_utf8_lossy(payload);
        self.handle(&news, &body).await
    }

    async fn handle(&self, news: &WebhookNews, body: &str) -> Result<WebhookReceipt> {
        // Claimed with the outcome its kind usually has, corrected below when it has another:
        // one statement fewer for nearly every event.
        let expected = match news.payment.as_ref().map(|p| p.state) {
            Some(PaymentState::Succeeded) => "credited",
            Some(_) => "recorded",
            None => "ignored",
        };
        let mut tx = self.db.begin().await?;
        let claimed = tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO stripe_events (id, type, object_id, outcome, payload, created, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
        )
        .bind(&news.id)
        .bind(&news.kind)
        .bind(&news.object_id)
        .bind(expected)
        .bind(body)
        .bind(news.created)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if claimed == 0 {
            return Ok(WebhookReceipt {
                event_id: news.id.clone(),
                outcome: "replayed",
            });
        }
        let step = if let Some(payment) = &news.payment {
            self.step_in(&mut tx, payment).await?
        } else if let Some(dispute) = &news.dispute {
            Step::Done(self.dispute_in(&mut tx, dispute).await?)
        } else if let Some(refund) = &news.refund {
            Step::Done(match self.refund_news_in(&mut tx, refund).await? {
                true => Settled::Recorded {
                    top_up_id: refund
                        .metadata
                        .get("top_up_id")
                        .cloned()
                        .unwrap_or_default(),
                },
                false => Settled::Ignored("a refund that is no part of ours"),
            })
        } else {
            Step::Done(Settled::Ignored(
                "an event type the platform does not act on",
            ))
        };
        if let Step::Done(Settled::Ignored(why)) = &step {
            tracing::info!(event = %news.id, kind = %news.kind, why, "stripe event stored, nothing to do");
        }
        if step.outcome() != expected {
            tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE stripe_events SET outcome = $1 WHERE id = $2"
            )
            .bind(step.outcome())
            .bind(&news.id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
        }
        let settled = match step {
            Step::Done(settled) => {
                tx.commit().await?;
                settled
            }
            Step::Credit(credit) => {
                commit_without_waiting(&mut tx).await?;
                let _turn = self
                    .crediting
                    .acquire()
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let settled = credit.post_in(&mut tx).await?;
                tx.commit().await?;
                settled
            }
        };
        self.after_credit(&settled).await;
        Ok(WebhookReceipt {
            event_id: news.id.clone(),
            outcome: settled.outcome(),
        })
    }
}

/// Postgres: this transaction's commit returns before its log is flushed. A credit moves the
/// Stripe clearing account, one row for every credit, and a commit that waits for its flush
/// keeps that row locked until the disk answers, so each credit would wait for the flush of
/// the one before. Stripe is still answered only once the credit is on disk: the credit's
/// audit row is written next, in a commit that does wait, and the log is flushed in order, so
/// that flush covers the credit too. Should the database stop before it, no answer went out,
/// and Stripe sends the event again, which finds it new (its row went with the credit); the
/// missed-webhook pass, besides, asks Stripe about every payment not credited.
async fn commit_without_waiting(tx: &mut Tx) -> Result<()> {
    if tx.engine() == Engine::Postgres {
        tx_run!(tx, |c| sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(c)
            .await
            .map(|_| ()))
        .map_err(DbError::from)?;
    }
    Ok(())
}
