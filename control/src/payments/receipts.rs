//! Receipts: proof of a card payment, one per top-up that succeeded, printable beside the
//! monthly invoices. A receipt says what was paid, when, with which card (brand and last
//! four digits, read from Stripe the first time and kept) and under which Stripe reference,
//! and what of it was refunded since.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;
use utoipa::ToSchema;

use super::Payments;
use super::refunds::RefundStatus;
use super::top_ups::TopUpOrigin;
use crate::{Action, Actor, Error, ErrorCode, Result};

/// A paid top-up, as its receipt shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Receipt")
)]
pub struct Receipt {
    /// The receipt's number: the top-up's id (`top_…`).
    pub number: String,
    pub organization: String,
    pub org_id: String,
    /// What was paid and credited.
    pub amount: String,
    pub currency: Currency,
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: Timestamp,
    /// The card, when Stripe could say (a payment by another method has none).
    pub card: Option<ReceiptCard>,
    /// Stripe's reference for the payment (`pi_…`).
    pub payment_reference: String,
    pub origin: TopUpOrigin,
    /// Refunded to the card since, in `currency`.
    pub refunded: String,
    pub refunds: Vec<ReceiptRefund>,
    /// The ledger transaction that credited it.
    pub transaction_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ReceiptCard")
)]
pub struct ReceiptCard {
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
}

/// This payment's share of a refund.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ReceiptRefund")
)]
pub struct ReceiptRefund {
    /// `ref_…`.
    pub refund_id: String,
    pub amount: String,
    pub status: RefundStatus,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct PaidRow {
    status: String,
    received: Option<i64>,
    refunded: i64,
    payment_intent_id: Option<String>,
    payment_method: Option<String>,
    origin: String,
    transaction_id: Option<String>,
    succeeded_at: Option<i64>,
    card_brand: Option<String>,
    card_last4: Option<String>,
}

impl Payments {
    /// The receipt of a paid top-up. One still pending or failed has none yet (409); another
    /// organisation's reads as missing.
    pub async fn receipt(&self, actor: &Actor, top_up_id: &str) -> Result<Receipt> {
        actor.authorize(Action::BillingRead)?;
        let row: Option<PaidRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT status, received, refunded, payment_intent_id, payment_method, origin, \
             transaction_id, succeeded_at, card_brand, card_last4 FROM top_ups WHERE id = $1 AND org_id = $2"
        )
        .bind(top_up_id)
        .bind(&actor.org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let row = row.ok_or(Error::NotFound("top-up"))?;
        let (Some(received), Some(paid_at), Some(reference)) = (
            row.received,
            row.succeeded_at,
            row.payment_intent_id.clone(),
        ) else {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!(
                    "top-up {top_up_id} is {}: a receipt comes once it is paid",
                    row.status
                ),
            ));
        };
        let card = self.card_of(top_up_id, &row).await;
        let org = self.directory.organization(&actor.org_id).await?;
        let usd = |micros| Money::from_micros(micros, Currency::Usd).to_decimal();
        Ok(Receipt {
            number: top_up_id.to_string(),
            organization: org.name,
            org_id: actor.org_id.to_string(),
            amount: usd(received),
            currency: Currency::Usd,
            paid_at: Timestamp::from_micros(paid_at),
            card,
            payment_reference: reference,
            origin: TopUpOrigin::parse(&row.origin)
                .ok_or_else(|| Error::corrupt("top_ups.origin", &row.origin))?,
            refunded: usd(row.refunded),
            refunds: self.refunds_of_top_up(&actor.org_id, top_up_id).await?,
            transaction_id: row.transaction_id,
        })
    }

    /// The card a top-up was paid with: kept on the top-up, else a saved card's, else asked
    /// of Stripe once and kept. Stripe away leaves the receipt without it rather than failing.
    async fn card_of(&self, top_up_id: &str, row: &PaidRow) -> Option<ReceiptCard> {
        if let (Some(brand), Some(last4)) = (&row.card_brand, &row.card_last4) {
            return Some(ReceiptCard {
                brand: brand.clone(),
                last4: last4.clone(),
            });
        }
        let pm = row.payment_method.as_deref()?;
        let saved: Option<(String, String)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT brand, last4 FROM saved_cards WHERE id = $1"
        )
        .bind(pm)
        .fetch_optional(p)
        .await)
        .ok()
        .flatten();
        let card = match saved {
            Some((brand, last4)) => ReceiptCard { brand, last4 },
            None => {
                let details = match self.rail.as_ref()?.card_details(pm).await {
                    Ok(details) => details?,
                    Err(e) => {
                        tracing::warn!(error = %e, top_up = top_up_id, "could not read a receipt's card");
                        return None;
                    }
                };
                ReceiptCard {
                    brand: details.brand,
                    last4: details.last4,
                }
            }
        };
        let kept = db_run!(&self.db, |p| sqlx::query(
            "UPDATE top_ups SET card_brand = $1, card_last4 = $2 WHERE id = $3"
        )
        .bind(&card.brand)
        .bind(&card.last4)
        .bind(top_up_id)
        .execute(p)
        .await
        .map(|_| ()));
        if let Err(e) = kept {
            tracing::warn!(error = %e, top_up = top_up_id, "could not keep a receipt's card");
        }
        Some(card)
    }

    async fn refunds_of_top_up(
        &self,
        org_id: &OrgId,
        top_up_id: &str,
    ) -> Result<Vec<ReceiptRefund>> {
        let rows: Vec<(String, i64, String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT r.id, p.amount, p.status, r.created_at FROM refund_parts p \
             JOIN refunds r ON r.id = p.refund_id \
             WHERE p.top_up_id = $1 AND r.org_id = $2 ORDER BY r.created_at, r.id"
        )
        .bind(top_up_id)
        .bind(org_id)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        rows.into_iter()
            .map(|(refund_id, amount, status, created_at)| {
                Ok(ReceiptRefund {
                    refund_id,
                    amount: Money::from_micros(amount, Currency::Usd).to_decimal(),
                    status: RefundStatus::parse(&status)?,
                    created_at: Timestamp::from_micros(created_at),
                })
            })
            .collect()
    }
}
