//! Top-ups: an organisation pays USD onto its balance by card.

use iocloud_billing::rails::stripe::{CardPayment, NewPayment, PaymentState, usd_cents};
use iocloud_billing::{Currency, Money};
use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Payments;
use crate::{Action, Actor, Error, ErrorCode, Page, PageRequest, Result};

/// One card payment to start (see [`Payments::charge`]).
pub(super) struct Charge<'a> {
    pub org_id: &'a iocloud_db::ids::OrgId,
    pub amount: Money,
    /// The card to charge now; `None` leaves the payment to the card form.
    pub payment_method: Option<String>,
    pub origin: TopUpOrigin,
    pub created_by: Option<&'a str>,
    pub off_session: bool,
    /// Save the card form's card once the payment succeeds.
    pub keep_card: bool,
}

/// The error a declined card answers: the top-up stays, failed, with the issuer's reason.
pub(super) fn declined(top_up_id: &str, charged: &CardPayment) -> Error {
    let why = charged.failure.as_ref();
    Error::CardDeclined {
        top_up_id: top_up_id.to_string(),
        reason: why
            .map(|f| f.decline_code.clone().unwrap_or_else(|| f.code.clone()))
            .unwrap_or_else(|| "declined".into()),
        message: why.map(|f| f.message.clone()).unwrap_or_default(),
    }
}

/// Top-ups an organisation may have waiting for their card at once.
pub const MAX_PENDING: i64 = 20;

/// Where a top-up stands. `failed` is not final: the customer may try another card on the
/// same payment, which may then succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum TopUpStatus {
    /// Waiting for the card: the console's card form, 3-D Secure, or the bank.
    Pending,
    /// Paid and credited.
    Succeeded,
    /// The last attempt was declined; `failure_message` says why.
    Failed,
    /// Nobody can pay it any more.
    Canceled,
}

impl TopUpStatus {
    pub const ALL: [TopUpStatus; 4] = [
        TopUpStatus::Pending,
        TopUpStatus::Succeeded,
        TopUpStatus::Failed,
        TopUpStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopUpStatus::Pending => "pending",
            TopUpStatus::Succeeded => "succeeded",
            TopUpStatus::Failed => "failed",
            TopUpStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The statuses a top-up may be in for a step to `to` to apply: succeeded and canceled
    /// are final; a failed one may still succeed (another card) or be canceled.
    pub fn can_become(self, to: TopUpStatus) -> bool {
        use TopUpStatus::*;
        matches!(
            (self, to),
            (Pending, Succeeded | Failed | Canceled) | (Failed, Succeeded | Failed | Canceled)
        )
    }

    /// The statuses `to` may be reached from, as SQL text for an `IN (…)` list.
    pub(super) fn sources_of(to: TopUpStatus) -> String {
        Self::ALL
            .into_iter()
            .filter(|from| from.can_become(to))
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Who started a top-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum TopUpOrigin {
    /// A member or an API key asked for it.
    Api,
    /// The organisation's auto-reload, when its balance fell below the threshold.
    AutoReload,
}

impl TopUpOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TopUpOrigin::Api => "api",
            TopUpOrigin::AutoReload => "auto_reload",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        [TopUpOrigin::Api, TopUpOrigin::AutoReload]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// A top-up to make.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "TopUpInput")
)]
#[serde(deny_unknown_fields)]
pub struct TopUpRequest {
    /// US dollars as a decimal string with at most two decimals, e.g. `"25.00"`.
    pub amount: String,
    /// `USD`, the only currency cards pay in; the default.
    #[serde(default)]
    pub currency: Option<String>,
    /// A card to charge now (`pm_…`). Without one the answer carries a `client_secret` for
    /// the console's card form (Stripe.js) to confirm the payment with.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Charge the organisation's default saved card now (instead of naming one).
    #[serde(default)]
    #[cfg_attr(feature = "graphql", graphql(default))]
    pub default_card: bool,
    /// Keep the card for later payments: `payment_method` is saved before it is charged; the
    /// card form's card is saved once its payment succeeds.
    #[serde(default)]
    #[cfg_attr(feature = "graphql", graphql(default))]
    pub save_card: bool,
}

/// A top-up and where it stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "TopUp")
)]
pub struct TopUp {
    /// `top_…`.
    pub id: String,
    pub status: TopUpStatus,
    /// What was asked, in `currency`.
    pub amount: String,
    pub currency: Currency,
    /// What arrived and was credited, once it succeeded.
    pub received: Option<String>,
    pub origin: TopUpOrigin,
    /// Stripe's PaymentIntent (`pi_…`), once it exists.
    pub payment_intent_id: Option<String>,
    /// Only in the answer that creates a top-up still waiting for its card: Stripe.js confirms
    /// the payment with it. Never stored, never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Stripe's code for the last failure (`card_declined`, …) and the issuer's reason.
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    /// The ledger transaction that credited it.
    pub transaction_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub succeeded_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
pub(super) struct TopUpRow {
    pub id: String,
    pub org_id: String,
    pub amount: i64,
    pub received: Option<i64>,
    pub status: String,
    pub payment_intent_id: Option<String>,
    pub origin: String,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub transaction_id: Option<String>,
    pub created_at: i64,
    pub succeeded_at: Option<i64>,
}

pub(super) const TOP_UP_COLUMNS: &str = "id, org_id, amount, received, status, payment_intent_id, origin, \
     failure_code, failure_message, transaction_id, created_at, succeeded_at";

impl TopUpRow {
    pub(super) fn status(&self) -> Result<TopUpStatus> {
        TopUpStatus::parse(&self.status)
            .ok_or_else(|| Error::corrupt("top_ups.status", &self.status))
    }

    pub(super) fn view(&self) -> Result<TopUp> {
        let usd = |micros| Money::from_micros(micros, Currency::Usd).to_decimal();
        Ok(TopUp {
            id: self.id.clone(),
            status: self.status()?,
            amount: usd(self.amount),
            currency: Currency::Usd,
            received: self.received.map(usd),
            origin: TopUpOrigin::parse(&self.origin)
                .ok_or_else(|| Error::corrupt("top_ups.origin", &self.origin))?,
            payment_intent_id: self.payment_intent_id.clone(),
            client_secret: None,
            failure_code: self.failure_code.clone(),
            failure_message: self.failure_message.clone(),
            transaction_id: self.transaction_id.clone(),
            created_at: self.created_at.into(),
            succeeded_at: self.succeeded_at.map(Timestamp::from),
        })
    }
}

impl Payments {
    /// Tops up the caller's organisation by card. With a `payment_method` the card is charged
    /// now: the answer is the top-up succeeded and credited, or `card_declined` (the top-up
    /// stays, failed, with the reason). Without one the top-up waits (`pending`) for the card
    /// form to confirm it with the answer's `client_secret`, and the webhook credits it.
    pub async fn top_up(&self, actor: &Actor, request: &TopUpRequest) -> Result<TopUp> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let amount = self.top_up_amount(request)?;
        let payment_method = match request.payment_method.as_deref().map(str::trim) {
            Some(_) if request.default_card => {
                return Err(Error::validation(
                    "payment_method",
                    "name a card or ask for the default one, not both",
                ));
            }
            Some(pm) if !is_payment_method_id(pm) => {
                return Err(Error::validation(
                    "payment_method",
                    "a payment method id looks like pm_…",
                ));
            }
            Some(pm) if request.save_card => {
                let saved = self
                    .save_card(
                        actor,
                        &super::CardRequest {
                            payment_method: Some(pm.to_string()),
                            setup_intent: None,
                        },
                    )
                    .await?;
                Some(saved.id)
            }
            Some(pm) => {
                self.not_anothers_card(&actor.org_id, pm).await?;
                Some(pm.to_string())
            }
            None if request.default_card && request.save_card => {
                return Err(Error::validation(
                    "save_card",
                    "the default card is saved already",
                ));
            }
            None if request.default_card => Some(
                self.default_card(&actor.org_id)
                    .await?
                    .ok_or_else(|| Error::validation("default_card", "no card is saved"))?,
            ),
            None => None,
        };
        self.within_pending_limit(&actor.org_id).await?;
        let (_, created_by) = actor.audit_identity();
        let charge = Charge {
            org_id: &actor.org_id,
            amount,
            payment_method,
            origin: TopUpOrigin::Api,
            created_by: Some(created_by),
            off_session: false,
            keep_card: request.save_card && request.payment_method.is_none(),
        };
        let (mut top_up, charged) = self.charge(rail, &charge).await?;
        match charged.state {
            PaymentState::Failed => return Err(declined(&top_up.id, &charged)),
            PaymentState::Pending => top_up.client_secret = charged.client_secret,
            PaymentState::Succeeded | PaymentState::Canceled => {}
        }
        Ok(top_up)
    }

    /// Writes a top-up, asks Stripe for its PaymentIntent (charging the card at once when
    /// one is given) and settles what Stripe answered. A refusal is recorded on the top-up
    /// and answered as the error it is.
    pub(super) async fn charge(
        &self,
        rail: &iocloud_billing::rails::stripe::StripeRail,
        charge: &Charge<'_>,
    ) -> Result<(TopUp, CardPayment)> {
        let org_name = self.directory.organization(charge.org_id).await?.name;
        let customer = self.customer_of(charge.org_id, &org_name).await?;
        let id = new_id("top");
        let now = now_micros();
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO top_ups (id, org_id, amount, status, origin, created_by, payment_method, save_card, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $8)"
        )
        .bind(&id)
        .bind(charge.org_id)
        .bind(charge.amount.micros())
        .bind(charge.origin.as_str())
        .bind(charge.created_by)
        .bind(&charge.payment_method)
        .bind(charge.keep_card)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let payment = NewPayment {
            amount_cents: usd_cents(charge.amount)?,
            customer: Some(customer),
            confirm: charge.payment_method.is_some(),
            off_session: charge.off_session,
            keep_card: charge.keep_card,
            payment_method: charge.payment_method.clone(),
            metadata: [
                ("top_up_id".to_string(), id.clone()),
                ("org_id".to_string(), charge.org_id.to_string()),
            ]
            .into(),
        };
        // Stripe's idempotency key is the top-up's: a retry of this call (ours, after a
        // timeout) finds the PaymentIntent the first made, and never charges twice.
        let charged = match rail.charge(&payment, &format!("iocloud-{id}")).await {
            Ok(charged) => charged,
            Err(e) => {
                self.note_refusal(&id, &e).await;
                return Err(e.into());
            }
        };
        self.settle(&charged).await?;
        Ok((self.read(charge.org_id, &id).await?, charged))
    }

    /// Refuses a top-up while the organisation has [`MAX_PENDING`] waiting for their card
    /// from the last day: each makes a PaymentIntent at Stripe, and a script (or a stolen
    /// key) must not be able to make them without end.
    async fn within_pending_limit(&self, org_id: &iocloud_db::ids::OrgId) -> Result<()> {
        let since = now_micros() - 86_400 * iocloud_db::time::MICROS_PER_SEC;
        let pending: i64 = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM top_ups WHERE org_id = $1 AND status = 'pending' AND created_at > $2"
        )
        .bind(org_id)
        .bind(since)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        if pending >= MAX_PENDING {
            return Err(Error::conflict(
                ErrorCode::TooManyPendingTopUps,
                format!(
                    "{pending} top-ups are waiting for their card; finish or wait for those first"
                ),
            ));
        }
        Ok(())
    }

    /// The amount asked, checked: USD, positive, whole cents, within the limits.
    fn top_up_amount(&self, request: &TopUpRequest) -> Result<Money> {
        if let Some(code) = request.currency.as_deref()
            && Currency::parse(code) != Some(Currency::Usd)
        {
            return Err(Error::Validation {
                field: "currency",
                message: "cards pay in USD only".into(),
                code: ErrorCode::CurrencyMismatch,
            });
        }
        let amount = Money::parse(request.amount.trim(), Currency::Usd)
            .map_err(|e| Error::validation("amount", e.to_string()))?;
        if usd_cents(amount).is_err() {
            return Err(Error::validation(
                "amount",
                "use at most two decimals (whole cents)",
            ));
        }
        let (min, max) = (self.limits.min, self.limits.max);
        if amount.micros() < min.micros() || amount.micros() > max.micros() {
            return Err(Error::validation(
                "amount",
                format!(
                    "a top-up is from {} to {} USD",
                    min.to_decimal(),
                    max.to_decimal()
                ),
            ));
        }
        Ok(amount)
    }

    /// Records why Stripe refused a top-up outright. A failure a retry could cure (Stripe
    /// away) leaves it pending: the PaymentIntent may exist, and the missed-webhook pass
    /// settles it either way.
    async fn note_refusal(&self, id: &str, e: &iocloud_billing::BillingError) {
        let iocloud_billing::BillingError::Stripe(f) = e else {
            return;
        };
        if f.is_retryable() {
            return;
        }
        let sql = format!(
            "UPDATE top_ups SET status = 'failed', failure_code = $1, failure_message = $2, updated_at = $3 \
             WHERE id = $4 AND status IN ({})",
            TopUpStatus::sources_of(TopUpStatus::Failed)
        );
        let code = f.code.clone().unwrap_or_else(|| "refused".into());
        let stored = db_run!(&self.db, |p| sqlx::query(&sql)
            .bind(&code)
            .bind(&f.message)
            .bind(now_micros())
            .bind(id)
            .execute(p)
            .await
            .map(|_| ()));
        if let Err(e) = stored {
            tracing::warn!(error = %e, top_up = id, "could not record a refused top-up");
        }
    }

    pub async fn get_top_up(&self, actor: &Actor, id: &str) -> Result<TopUp> {
        actor.authorize(Action::BillingRead)?;
        self.read(&actor.org_id, id).await
    }

    /// The organisation's top-ups, oldest first, as every list pages.
    pub async fn top_ups(&self, actor: &Actor, page: &PageRequest) -> Result<Page<TopUp>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {TOP_UP_COLUMNS} FROM top_ups WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<TopUpRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let views = rows
            .iter()
            .map(TopUpRow::view)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(views, page, |t| &t.id))
    }

    /// The organisation's latest top-ups, newest first, at most `limit` (1 to 100).
    pub async fn recent_top_ups(&self, actor: &Actor, limit: i64) -> Result<Vec<TopUp>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {TOP_UP_COLUMNS} FROM top_ups WHERE org_id = $1 ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<TopUpRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(limit.clamp(1, 100))
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        rows.iter().map(TopUpRow::view).collect()
    }

    async fn read(&self, org_id: &iocloud_db::ids::OrgId, id: &str) -> Result<TopUp> {
        let sql = format!("SELECT {TOP_UP_COLUMNS} FROM top_ups WHERE id = $1 AND org_id = $2");
        let row: Option<TopUpRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        row.ok_or(Error::NotFound("top-up"))?.view()
    }
}

/// `pm_` and Stripe's id alphabet, at most 255 characters: anything else never reaches Stripe.
pub(super) fn is_payment_method_id(text: &str) -> bool {
    text.len() <= 255
        && text.strip_prefix("pm_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table() {
        use TopUpStatus::*;
        for from in TopUpStatus::ALL {
            for to in TopUpStatus::ALL {
                let allowed = from.can_become(to);
                let expected = matches!(from, Pending | Failed) && to != Pending;
                assert_eq!(allowed, expected, "{from:?} -> {to:?}");
            }
        }
        assert_eq!(TopUpStatus::sources_of(Succeeded), "'pending', 'failed'");
        for s in TopUpStatus::ALL {
            assert_eq!(TopUpStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn payment_method_ids() {
        assert!(is_payment_method_id("pm_card_visa"));
        assert!(is_payment_method_id("pm_1Q2w3E4r"));
        for bad in [
            "",
            "pm_",
            "card_visa",
            "pm_a b",
            "pm_x/../y",
            &"pm_x".repeat(80),
        ] {
            assert!(!is_payment_method_id(bad), "{bad}");
        }
    }
}
