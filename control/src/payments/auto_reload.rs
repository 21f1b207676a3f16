//! Auto-reload: when an organisation's available USD falls under its threshold, one
//! off-session payment of its chosen amount on its default card. At most one is in flight
//! (claimed by a conditional update, so concurrent passes and replicas start one between
//! them), at most the monthly cap a calendar month. A declined card is recorded and the
//! owners are emailed; after three declines in a row auto-reload turns itself off.

use iocloud_billing::rails::stripe::PaymentState;
use iocloud_billing::{AccountKind, AccountRef, Currency, Money};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::{month_bounds, month_of, now_micros};
use iocloud_db::{DbError, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::top_ups::{Charge, TopUpOrigin};
use super::{Payments, usd};
use crate::{Action, Actor, Error, Result};

/// Declines in a row after which auto-reload turns itself off.
pub const MAX_DECLINES: i64 = 3;

/// How long a claimed reload may stay in flight before it counts as abandoned.
const STALE_CLAIM_MICROS: i64 = 15 * 60 * 1_000_000;

/// Auto-reload settings to set.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "AutoReloadInput")
)]
#[serde(deny_unknown_fields)]
pub struct AutoReloadRequest {
    pub enabled: bool,
    /// USD: reload when the available balance falls under this.
    pub threshold: String,
    /// USD charged each time, within the top-up limits.
    pub amount: String,
    /// Most USD auto-reload may charge in a calendar month (UTC).
    pub monthly_cap: String,
}

/// The organisation's auto-reload and how it went lately.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "AutoReload")
)]
pub struct AutoReload {
    pub enabled: bool,
    pub threshold: String,
    pub amount: String,
    pub monthly_cap: String,
    /// Charged by auto-reload this calendar month.
    pub charged_this_month: String,
    /// Declines in a row; at three it turns itself off.
    pub declines: i64,
    /// The top-up being charged now, if one is.
    pub in_flight: Option<String>,
    /// Why the last attempt failed.
    pub last_failure: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    org_id: String,
    enabled: bool,
    threshold: i64,
    amount: i64,
    monthly_cap: i64,
    declines: i64,
    in_flight: Option<String>,
    last_failure: Option<String>,
}

const COLUMNS: &str =
    "org_id, enabled, threshold, amount, monthly_cap, declines, in_flight, last_failure";

impl Payments {
    pub async fn auto_reload(&self, actor: &Actor) -> Result<AutoReload> {
        actor.authorize(Action::BillingRead)?;
        let row = self
            .reload_row(&actor.org_id)
            .await?
            .ok_or(Error::NotFound("auto-reload"))?;
        self.reload_view(&row).await
    }

    /// Sets auto-reload. Turning it on needs a saved card, and starts the decline count
    /// again.
    pub async fn set_auto_reload(
        &self,
        actor: &Actor,
        request: &AutoReloadRequest,
    ) -> Result<AutoReload> {
        actor.authorize(Action::BillingManage)?;
        self.rail()?;
        let parse = |field: &'static str, text: &str| {
            Money::parse(text.trim(), Currency::Usd)
                .map_err(|e| Error::validation(field, e.to_string()))
                .and_then(|m| {
                    if m.is_positive() {
                        Ok(m.micros())
                    } else {
                        Err(Error::validation(field, "must be more than zero"))
                    }
                })
        };
        let threshold = parse("threshold", &request.threshold)?;
        let amount = parse("amount", &request.amount)?;
        let cap = parse("monthly_cap", &request.monthly_cap)?;
        let (min, max) = (self.limits.min.micros(), self.limits.max.micros());
        if amount < min || amount > max || amount % super::MICROS_PER_CENT != 0 {
            return Err(Error::validation(
                "amount",
                format!(
                    "whole cents from {} to {} USD",
                    usd(min).to_decimal(),
                    usd(max).to_decimal()
                ),
            ));
        }
        if cap < amount {
            return Err(Error::validation(
                "monthly_cap",
                "must allow at least one reload",
            ));
        }
        if request.enabled && self.default_card(&actor.org_id).await?.is_none() {
            return Err(Error::validation(
                "enabled",
                "save a card first: auto-reload charges the default card",
            ));
        }
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO auto_reloads (org_id, enabled, threshold, amount, monthly_cap, declines, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (org_id) DO UPDATE SET enabled = excluded.enabled, \
             threshold = excluded.threshold, amount = excluded.amount, monthly_cap = excluded.monthly_cap, \
             declines = 0, last_failure = NULL, updated_at = excluded.updated_at"
        )
        .bind(&actor.org_id)
        .bind(request.enabled)
        .bind(threshold)
        .bind(amount)
        .bind(cap)
        .bind(now_micros())
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        self.auto_reload(actor).await
    }

    /// One pass over every enabled auto-reload (see the module's documentation); answers how
    /// many payments it started.
    pub async fn check_auto_reloads(&self) -> Result<usize> {
        let Ok(rail) = self.rail() else {
            return Ok(0);
        };
        // A claim left by a replica that stopped mid-charge: its payment has been settled by
        // now (the missed-webhook pass), so the balance tells whether another is due.
        let stale = now_micros() - STALE_CLAIM_MICROS;
        db_run!(&self.db, |p| sqlx::query(
            "UPDATE auto_reloads SET in_flight = NULL WHERE in_flight IS NOT NULL AND updated_at < $1"
        )
        .bind(stale)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM auto_reloads WHERE enabled AND in_flight IS NULL ORDER BY org_id"
        );
        let rows: Vec<Row> = db_run!(&self.db, |p| sqlx::query_as(&sql).fetch_all(p).await)
            .map_err(DbError::from)?;
        let mut started = 0;
        for row in rows {
            let org = OrgId::trusted(row.org_id.clone());
            let available = self.ledger_balance(&org).await?;
            if available >= row.threshold
                || self.charged_this_month(&org).await? + row.amount > row.monthly_cap
            {
                continue;
            }
            let Some(card) = self.default_card(&org).await? else {
                continue;
            };
            // The claim: whoever sets `in_flight` first charges; everyone else moves on.
            let claim = new_id("arl");
            let claimed = db_run!(&self.db, |p| sqlx::query(
                "UPDATE auto_reloads SET in_flight = $1, updated_at = $2 \
                 WHERE org_id = $3 AND enabled AND in_flight IS NULL"
            )
            .bind(&claim)
            .bind(now_micros())
            .bind(&org)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if claimed == 0 {
                continue;
            }
            // Another pass may have charged and let go of its claim between our reading and
            // our claim: what is due is decided again, now that the claim is ours.
            if self.ledger_balance(&org).await? >= row.threshold
                || self.charged_this_month(&org).await? + row.amount > row.monthly_cap
            {
                db_run!(&self.db, |p| sqlx::query(
                    "UPDATE auto_reloads SET in_flight = NULL WHERE org_id = $1 AND in_flight = $2"
                )
                .bind(&org)
                .bind(&claim)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
                .map_err(DbError::from)?;
                continue;
            }
            started += 1;
            let charge = Charge {
                org_id: &org,
                amount: usd(row.amount),
                payment_method: Some(card),
                origin: TopUpOrigin::AutoReload,
                created_by: None,
                off_session: true,
                keep_card: false,
            };
            let (top_up, outcome) = match rail_charge(self, rail, &charge).await {
                Ok((top_up, PaymentState::Failed)) => {
                    (Some(top_up), Some("the card was declined".to_string()))
                }
                Ok((top_up, _)) => (Some(top_up), None),
                Err(e) => (None, Some(e.to_string())),
            };
            self.reload_done(&org, &claim, outcome.as_deref()).await?;
            self.audit_reload(&org, top_up, outcome.is_none()).await;
        }
        Ok(started)
    }

    /// Writes the charge to the audit log: nobody asked for it, so no request audits it.
    async fn audit_reload(&self, org: &OrgId, top_up: Option<String>, charged: bool) {
        let action = if charged {
            "auto-reload charged the default card"
        } else {
            "auto-reload could not charge the default card"
        };
        self.audit
            .record_background(
                "auto_reload",
                org.as_str(),
                action,
                top_up,
                if charged { 200 } else { 402 },
            )
            .await;
    }

    /// Ends a claimed reload: success starts the decline count again; a failure counts, is
    /// written down and emailed to the owners, and the third in a row turns it off.
    async fn reload_done(&self, org: &OrgId, claim: &str, failure: Option<&str>) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let Some(why) = failure else {
            tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE auto_reloads SET in_flight = NULL, declines = 0, last_failure = NULL, updated_at = $1 \
                 WHERE org_id = $2 AND in_flight = $3"
            )
            .bind(now_micros())
            .bind(org)
            .bind(claim)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
            tx.commit().await?;
            return Ok(());
        };
        let declines: Option<i64> = tx_run!(&mut tx, |c| sqlx::query_scalar(
            "UPDATE auto_reloads SET in_flight = NULL, declines = declines + 1, last_failure = $1, \
             enabled = (declines + 1 < $2), updated_at = $3 WHERE org_id = $4 AND in_flight = $5 RETURNING declines"
        )
        .bind(why)
        .bind(MAX_DECLINES)
        .bind(now_micros())
        .bind(org)
        .bind(claim)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        if let Some(declines) = declines {
            let off = declines >= MAX_DECLINES;
            let body = format!(
                "Auto-reload could not charge your default card: {why}.{}",
                if off {
                    " It failed three times in a row and is now off; check the card and turn it on again."
                } else {
                    " It will try again when the balance is checked next."
                }
            );
            let to = crate::mail::billing_contacts_in(&mut tx, org).await?;
            for email in &to {
                crate::mail::queue_in(&mut tx, email, "Auto-reload failed", &body, None).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reload_row(&self, org: &OrgId) -> Result<Option<Row>> {
        let sql = format!("SELECT {COLUMNS} FROM auto_reloads WHERE org_id = $1");
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?)
    }

    async fn reload_view(&self, row: &Row) -> Result<AutoReload> {
        let org = OrgId::trusted(row.org_id.clone());
        Ok(AutoReload {
            enabled: row.enabled,
            threshold: usd(row.threshold).to_decimal(),
            amount: usd(row.amount).to_decimal(),
            monthly_cap: usd(row.monthly_cap).to_decimal(),
            charged_this_month: usd(self.charged_this_month(&org).await?).to_decimal(),
            declines: row.declines,
            in_flight: row.in_flight.clone(),
            last_failure: row.last_failure.clone(),
        })
    }

    /// Micro-units auto-reload charged (or is charging) this calendar month.
    async fn charged_this_month(&self, org: &OrgId) -> Result<i64> {
        let (start, _) = month_bounds(&month_of(now_micros()))
            .ok_or_else(|| Error::Internal("this month has no bounds".into()))?;
        let sum: Option<i64> = db_run!(&self.db, |p| {
            sqlx::query_scalar(
            "SELECT CAST(SUM(COALESCE(received, amount)) AS BIGINT) FROM top_ups WHERE org_id = $1 \
             AND origin = 'auto_reload' AND status IN ('succeeded', 'pending') AND created_at >= $2"
        )
        .bind(org)
        .bind(start)
        .fetch_one(p)
        .await
        })
        .map_err(DbError::from)?;
        Ok(sum.unwrap_or(0))
    }

    async fn ledger_balance(&self, org: &OrgId) -> Result<i64> {
        let id = AccountRef::org(org, AccountKind::Available, Currency::Usd).id();
        let micros: Option<i64> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT balance FROM ledger_accounts WHERE id = $1"
        )
        .bind(&id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        Ok(micros.unwrap_or(0))
    }
}

/// Charges and answers the top-up and its payment's state (a decline is a state here, not
/// an error).
async fn rail_charge(
    payments: &Payments,
    rail: &iocloud_billing::rails::stripe::StripeRail,
    charge: &Charge<'_>,
) -> Result<(String, PaymentState)> {
    let (top_up, charged) = payments.charge(rail, charge).await?;
    Ok((top_up.id, charged.state))
}

impl Payments {
    /// Runs an auto-reload pass every `interval` until the process ends, then delivers the
    /// email a failure queued.
    pub fn spawn_auto_reload(
        &self,
        interval: std::time::Duration,
        outbox: crate::mail::Outbox,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let (this, outbox) = (this.clone(), outbox.clone());
            async move {
                match this.check_auto_reloads().await {
                    Ok(0) => {}
                    Ok(_) => {
                        if let Err(e) = outbox.deliver().await {
                            tracing::warn!(error = %e, "could not deliver auto-reload email");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "auto-reload pass failed"),
                }
            }
        })
    }
}
