//! Low-balance alerts. An organisation sets, per currency, the available balance under which
//! it wants to know; a pass now and then (every replica may run it: each crossing is claimed
//! by a conditional update) notices a balance that crossed under it, emails the owners and
//! billing members once, and shows the alert as `below` until the balance rises over it
//! again, which arms it for the next time.

use iocloud_billing::{AccountKind, AccountRef, Currency, Money};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Billing, parse_currency, stored_currency};
use crate::{Action, Actor, Error, Result};

/// A low-balance alert to set.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "BalanceAlertInput")
)]
#[serde(deny_unknown_fields)]
pub struct BalanceAlertRequest {
    /// USD, IOSD or IO.
    pub currency: String,
    /// The available balance under which to be told, as a decimal string; more than zero.
    pub threshold: String,
}

/// A low-balance alert and whether the balance is under it now.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "BalanceAlert")
)]
pub struct BalanceAlert {
    pub currency: Currency,
    pub threshold: String,
    /// The available balance now.
    pub available: String,
    /// True from the pass that saw the balance cross under the threshold until it rises
    /// over it again: what the console's banner shows.
    pub below: bool,
    /// When the owners were last told.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub notified_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    org_id: String,
    currency: String,
    threshold: i64,
    below: bool,
    notified_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AlertWithBalance {
    org_id: String,
    currency: String,
    threshold: i64,
    below: bool,
    notified_at: Option<i64>,
    available: i64,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertPass {
    /// Alerts that crossed under their threshold now (each notified once).
    pub crossed: usize,
    /// Alerts whose balance rose back over the threshold, armed again.
    pub rearmed: usize,
}

impl Billing {
    /// The organisation's low-balance alerts.
    pub async fn balance_alerts(&self, actor: &Actor) -> Result<Vec<BalanceAlert>> {
        actor.authorize(Action::BillingRead)?;
        let rows: Vec<AlertRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT org_id, currency, threshold, below, notified_at FROM balance_alerts \
             WHERE org_id = $1 ORDER BY currency"
        )
        .bind(&actor.org_id)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut alerts = Vec::with_capacity(rows.len());
        for row in rows {
            let currency = stored_currency("balance_alerts.currency", &row.currency)?;
            let available = self
                .ledger
                .balance(&AccountRef::org(
                    &actor.org_id,
                    AccountKind::Available,
                    currency,
                ))
                .await?;
            alerts.push(BalanceAlert {
                currency,
                threshold: Money::from_micros(row.threshold, currency).to_decimal(),
                available: available.to_decimal(),
                below: row.below,
                notified_at: row.notified_at.map(Timestamp::from),
            });
        }
        Ok(alerts)
    }

    /// Sets (or changes) the alert of a currency. A changed threshold is armed again: the
    /// next pass tells the owners if the balance is already under it.
    pub async fn set_balance_alert(
        &self,
        actor: &Actor,
        request: &BalanceAlertRequest,
    ) -> Result<BalanceAlert> {
        actor.authorize(Action::BillingManage)?;
        let currency = parse_currency("currency", &request.currency)?;
        let threshold = Money::parse(request.threshold.trim(), currency)
            .map_err(|e| Error::validation("threshold", e.to_string()))?;
        if !threshold.is_positive() {
            return Err(Error::validation("threshold", "must be more than zero"));
        }
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO balance_alerts (org_id, currency, threshold, below, updated_at) VALUES ($1, $2, $3, FALSE, $4) \
             ON CONFLICT (org_id, currency) DO UPDATE SET threshold = excluded.threshold, below = FALSE, \
             updated_at = excluded.updated_at"
        )
        .bind(&actor.org_id)
        .bind(currency.code())
        .bind(threshold.micros())
        .bind(now_micros())
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        self.balance_alerts(actor)
            .await?
            .into_iter()
            .find(|a| a.currency == currency)
            .ok_or(Error::NotFound("balance alert"))
    }

    /// Removes the alert of a currency.
    pub async fn remove_balance_alert(&self, actor: &Actor, currency: &str) -> Result<()> {
        actor.authorize(Action::BillingManage)?;
        let currency = Currency::parse(currency).ok_or(Error::NotFound("balance alert"))?;
        let removed = db_run!(&self.db, |p| sqlx::query(
            "DELETE FROM balance_alerts WHERE org_id = $1 AND currency = $2"
        )
        .bind(&actor.org_id)
        .bind(currency.code())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if removed == 0 {
            return Err(Error::NotFound("balance alert"));
        }
        Ok(())
    }

    /// One pass over every alert (see the module's documentation).
    pub async fn check_balance_alerts(&self) -> Result<AlertPass> {
        // Each alert beside its available balance, in one read (the account's id is derived
        // from its owner, kind and currency, as `AccountRef::id` writes it).
        let rows: Vec<(AlertRow, i64)> = db_run!(&self.db, |p| sqlx::query_as::<_, AlertWithBalance>(
            "SELECT a.org_id, a.currency, a.threshold, a.below, a.notified_at, COALESCE(l.balance, 0) AS available \
             FROM balance_alerts a LEFT JOIN ledger_accounts l \
             ON l.id = 'acc_' || a.org_id || '_available_' || lower(a.currency)"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?
        .into_iter()
        .map(|r| (AlertRow { org_id: r.org_id, currency: r.currency, threshold: r.threshold, below: r.below, notified_at: r.notified_at }, r.available))
        .collect();
        let mut pass = AlertPass::default();
        for (row, available) in rows {
            let Some(currency) = Currency::parse(&row.currency) else {
                Error::corrupt("balance_alerts.currency", &row.currency);
                continue;
            };
            let under = available < row.threshold;
            if under == row.below {
                continue;
            }
            let mut tx = self.db.begin().await?;
            // Claimed by the flip itself: a replica that got here first leaves nothing.
            let flipped = tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE balance_alerts SET below = $1, notified_at = CASE WHEN $1 THEN $2 ELSE notified_at END, \
                 updated_at = $2 WHERE org_id = $3 AND currency = $4 AND below = $5 AND threshold = $6"
            )
            .bind(under)
            .bind(now_micros())
            .bind(&row.org_id)
            .bind(&row.currency)
            .bind(row.below)
            .bind(row.threshold)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if flipped == 0 {
                continue;
            }
            if under {
                let to = crate::mail::billing_contacts_in(&mut tx, &row.org_id).await?;
                let money = |m| Money::from_micros(m, currency).to_decimal();
                let body = format!(
                    "Your organisation's available {code} balance is {} {code}, under the {} {code} you asked to hear about. \
                     Top up to keep your clusters running.",
                    money(available),
                    money(row.threshold),
                    code = currency.code(),
                );
                for email in &to {
                    crate::mail::queue_in(
                        &mut tx,
                        email,
                        &format!("Low {} balance", currency.code()),
                        &body,
                        None,
                    )
                    .await?;
                }
                pass.crossed += 1;
            } else {
                pass.rearmed += 1;
            }
            tx.commit().await?;
        }
        Ok(pass)
    }
}

impl Billing {
    /// Runs a pass every `interval` until the process ends, then delivers the email it queued.
    pub fn spawn_balance_alerts(
        &self,
        interval: std::time::Duration,
        outbox: crate::mail::Outbox,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let (this, outbox) = (this.clone(), outbox.clone());
            async move {
                match this.check_balance_alerts().await {
                    Ok(pass) if pass.crossed > 0 => {
                        if let Err(e) = outbox.deliver().await {
                            tracing::warn!(error = %e, "could not deliver low-balance email");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "low-balance pass failed"),
                }
            }
        })
    }
}
