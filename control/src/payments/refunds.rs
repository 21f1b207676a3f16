//! Refunds of unused card credit. What can be refunded is what the organisation paid by card
//! and has neither spent, held, refunded nor had disputed: the smaller of its available USD
//! and its card payments' unrefunded, undisputed remainder. A refund is split over those
//! payments newest first, one Stripe refund each.
//!
//! The money moves in three steps, each a ledger transaction: `available` to
//! `refund_pending` when the refund is asked (with the refund's rows, in one transaction);
//! then per part, out to Stripe's clearing account once Stripe has refunded it, or back to
//! `available` if it fails. A part Stripe never heard of (the server stopped, Stripe was
//! away) is asked again by the missed-webhook pass under the same idempotency key.

use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::stripe::{CardRefund, RefundState, usd_cents};
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, Money, TransactionKind};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, Tx, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MICROS_PER_CENT, Payments, usd};
use crate::{Action, Actor, Error, ErrorCode, Page, PageRequest, Result};

/// A refund to make.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "RefundInput")
)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// US dollars with at most two decimals; all that is refundable when left out.
    #[serde(default)]
    pub amount: Option<String>,
}

/// Where a refund, or one part of it, stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Not yet accepted by Stripe (it was away); asked again shortly.
    Requested,
    /// Accepted by Stripe, on its way to the card.
    Pending,
    Succeeded,
    /// Refused by Stripe: the money is back on the balance.
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Requested => "requested",
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self> {
        [
            RefundStatus::Requested,
            RefundStatus::Pending,
            RefundStatus::Succeeded,
            RefundStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| Error::corrupt("refund_parts.status", text))
    }

    fn from_stripe(state: RefundState) -> Self {
        match state {
            RefundState::Succeeded => RefundStatus::Succeeded,
            RefundState::Pending => RefundStatus::Pending,
            RefundState::Failed => RefundStatus::Failed,
        }
    }

    /// A whole refund's status from its parts': failed only when every part failed, done
    /// when every part is done, else still on its way.
    fn of_parts(parts: &[RefundPart]) -> Self {
        if parts.iter().all(|p| p.status == RefundStatus::Failed) {
            RefundStatus::Failed
        } else if parts
            .iter()
            .all(|p| matches!(p.status, RefundStatus::Succeeded | RefundStatus::Failed))
        {
            RefundStatus::Succeeded
        } else if parts.iter().any(|p| p.status == RefundStatus::Requested) {
            RefundStatus::Requested
        } else {
            RefundStatus::Pending
        }
    }
}

/// One card payment's share of a refund.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "RefundPart")
)]
pub struct RefundPart {
    pub top_up_id: String,
    pub amount: String,
    pub status: RefundStatus,
    /// Stripe's refund (`re_…`), once Stripe accepted it.
    pub stripe_refund_id: Option<String>,
    pub failure_reason: Option<String>,
}

/// A refund of card credit.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Refund")
)]
pub struct Refund {
    /// `rfd_…`.
    pub id: String,
    /// What was asked, in USD.
    pub amount: String,
    pub currency: Currency,
    pub status: RefundStatus,
    pub parts: Vec<RefundPart>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What the organisation could have refunded now.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Refundable")
)]
pub struct Refundable {
    pub amount: String,
    pub currency: Currency,
}

#[derive(sqlx::FromRow)]
struct PartRow {
    refund_id: String,
    top_up_id: String,
    payment_intent_id: String,
    amount: i64,
    status: String,
    stripe_refund_id: Option<String>,
    failure_reason: Option<String>,
}

const PART_COLUMNS: &str =
    "refund_id, top_up_id, payment_intent_id, amount, status, stripe_refund_id, failure_reason";

impl PartRow {
    fn view(&self) -> Result<RefundPart> {
        Ok(RefundPart {
            top_up_id: self.top_up_id.clone(),
            amount: usd(self.amount).to_decimal(),
            status: RefundStatus::parse(&self.status)?,
            stripe_refund_id: self.stripe_refund_id.clone(),
            failure_reason: self.failure_reason.clone(),
        })
    }
}

impl Payments {
    /// What the caller's organisation could refund now.
    pub async fn refundable(&self, actor: &Actor) -> Result<Refundable> {
        actor.authorize(Action::BillingRead)?;
        let mut tx = self.db.begin().await?;
        let (total, _) = refundable_in(&mut tx, &actor.org_id).await?;
        drop(tx);
        Ok(Refundable {
            amount: usd(total).to_decimal(),
            currency: Currency::Usd,
        })
    }

    /// Refunds card credit (all that is refundable when no amount is given): see the
    /// module's documentation. More than is refundable is refused and changes nothing.
    pub async fn refund(&self, actor: &Actor, request: &RefundRequest) -> Result<Refund> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let asked = match request.amount.as_deref() {
            Some(text) => {
                let m = Money::parse(text.trim(), Currency::Usd)
                    .map_err(|e| Error::validation("amount", e.to_string()))?;
                if usd_cents(m).is_err() {
                    return Err(Error::validation(
                        "amount",
                        "use at most two decimals (whole cents)",
                    ));
                }
                if !m.is_positive() {
                    return Err(Error::validation("amount", "must be more than zero"));
                }
                Some(m.micros())
            }
            None => None,
        };
        let id = new_id("rfd");
        let (_, created_by) = actor.audit_identity();
        let mut tx = self.db.begin().await?;
        let (refundable, payments) = refundable_in(&mut tx, &actor.org_id).await?;
        let amount = asked.unwrap_or(refundable);
        if amount <= 0 || amount > refundable {
            return Err(Error::Validation {
                field: "amount",
                message: format!(
                    "{} USD is refundable now (card payments not spent, held, refunded or disputed)",
                    usd(refundable).to_decimal()
                ),
                code: ErrorCode::RefundExceedsRefundable,
            });
        }
        let now = now_micros();
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO refunds (id, org_id, amount, created_by, created_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(amount)
        .bind(created_by)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let mut left = amount;
        for (top_up_id, payment_intent, remaining) in payments {
            if left == 0 {
                break;
            }
            // Whole cents per part: Stripe refunds cents.
            let part = left.min(remaining) / MICROS_PER_CENT * MICROS_PER_CENT;
            if part == 0 {
                continue;
            }
            left -= part;
            tx_run!(&mut tx, |c| sqlx::query(
                "INSERT INTO refund_parts (refund_id, top_up_id, payment_intent_id, amount, status, updated_at) \
                 VALUES ($1, $2, $3, $4, 'requested', $5)"
            )
            .bind(&id)
            .bind(&top_up_id)
            .bind(&payment_intent)
            .bind(part)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
            tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE top_ups SET refunded = refunded + $1, updated_at = $2 WHERE id = $3"
            )
            .bind(part)
            .bind(now)
            .bind(&top_up_id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
        }
        let moved = amount - left;
        post_in(
            &mut tx,
            &NewTransaction {
                external_ref: format!("refund:{id}"),
                kind: TransactionKind::Refund,
                org_id: Some(actor.org_id.to_string()),
                memo: format!("card refund {id} asked"),
                postings: Posting::transfer(
                    AccountRef::org(&actor.org_id, AccountKind::Available, Currency::Usd),
                    AccountRef::org(&actor.org_id, AccountKind::RefundPending, Currency::Usd),
                    usd(moved),
                )?
                .to_vec(),
            },
        )
        .await?;
        tx.commit().await?;
        let parts = self.parts(&id).await?;
        for part in parts.iter().filter(|p| p.status == "requested") {
            self.ask_stripe(rail, part).await;
        }
        self.read_refund(&actor.org_id, &id).await
    }

    /// Asks Stripe for one part, and settles what it answers. Stripe being away leaves the
    /// part `requested` for the next pass; any other failure returns its money.
    async fn ask_stripe(&self, rail: &iocloud_billing::rails::stripe::StripeRail, part: &PartRow) {
        let metadata = [
            ("refund_id".to_string(), part.refund_id.clone()),
            ("top_up_id".to_string(), part.top_up_id.clone()),
        ]
        .into();
        let key = format!("iocloud-{}-{}", part.refund_id, part.top_up_id);
        let cents = part.amount / MICROS_PER_CENT;
        let outcome = match rail
            .refund(&part.payment_intent_id, cents, &metadata, &key)
            .await
        {
            Ok(refund) => self.settle_part(part, &refund).await,
            Err(iocloud_billing::BillingError::Stripe(f)) if !f.is_retryable() => {
                let failed = CardRefund {
                    id: String::new(),
                    state: RefundState::Failed,
                    amount_cents: cents,
                    payment_intent: Some(part.payment_intent_id.clone()),
                    failure_reason: Some(f.message.clone()),
                    metadata: Default::default(),
                };
                self.settle_part(part, &failed).await
            }
            Err(e) => {
                tracing::warn!(error = %e, refund = %part.refund_id, "stripe did not take a refund; the next pass asks again");
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, refund = %part.refund_id, "could not settle a refund part; the next pass does");
        }
    }

    /// Applies Stripe's word on a part: out of the ledger when refunded, back to the balance
    /// when it failed, nothing yet while pending. Once per part: a part already settled
    /// changes nothing.
    async fn settle_part(&self, part: &PartRow, refund: &CardRefund) -> Result<()> {
        let mut tx = self.db.begin().await?;
        self.settle_part_in(&mut tx, part, refund).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn settle_part_in(&self, tx: &mut Tx, part: &PartRow, refund: &CardRefund) -> Result<()> {
        let to = RefundStatus::from_stripe(refund.state);
        let stripe_id = (!refund.id.is_empty()).then(|| refund.id.clone());
        // Only from an unsettled status: a replayed or late answer finds nothing to do.
        let moved = tx_run!(tx, |c| sqlx::query(
            "UPDATE refund_parts SET status = $1, stripe_refund_id = COALESCE($2, stripe_refund_id), \
             failure_reason = $3, updated_at = $4 \
             WHERE refund_id = $5 AND top_up_id = $6 AND status IN ('requested', 'pending')"
        )
        .bind(to.as_str())
        .bind(&stripe_id)
        .bind(&refund.failure_reason)
        .bind(now_micros())
        .bind(&part.refund_id)
        .bind(&part.top_up_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if moved == 0 || to == RefundStatus::Pending {
            return Ok(());
        }
        let org: String = tx_run!(tx, |c| sqlx::query_scalar(
            "SELECT org_id FROM refunds WHERE id = $1"
        )
        .bind(&part.refund_id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        let org = OrgId::trusted(org);
        let pending = AccountRef::org(&org, AccountKind::RefundPending, Currency::Usd);
        let (to_account, step) = if to == RefundStatus::Succeeded {
            (
                AccountRef::platform(AccountKind::ExternalStripe, Currency::Usd),
                "paid",
            )
        } else {
            tx_run!(tx, |c| sqlx::query(
                "UPDATE top_ups SET refunded = refunded - $1 WHERE id = $2"
            )
            .bind(part.amount)
            .bind(&part.top_up_id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
            (
                AccountRef::org(&org, AccountKind::Available, Currency::Usd),
                "returned",
            )
        };
        post_in(
            tx,
            &NewTransaction {
                external_ref: format!("refund:{}:{}:{step}", part.refund_id, part.top_up_id),
                kind: TransactionKind::Refund,
                org_id: Some(org.to_string()),
                memo: format!("card refund {} {step}", part.refund_id),
                postings: Posting::transfer(pending, to_account, usd(part.amount))?.to_vec(),
            },
        )
        .await?;
        Ok(())
    }

    /// A refund event from Stripe (`refund.updated`, `refund.failed`): settles the part it is.
    pub(super) async fn refund_news_in(&self, tx: &mut Tx, refund: &CardRefund) -> Result<bool> {
        let sql = format!(
            "SELECT {PART_COLUMNS} FROM refund_parts WHERE stripe_refund_id = $1 \
             OR (refund_id = $2 AND top_up_id = $3)"
        );
        let meta = |k: &str| refund.metadata.get(k).cloned().unwrap_or_default();
        let part: Option<PartRow> = tx_run!(tx, |c| sqlx::query_as(&sql)
            .bind(&refund.id)
            .bind(meta("refund_id"))
            .bind(meta("top_up_id"))
            .fetch_optional(c)
            .await)
        .map_err(DbError::from)?;
        match part {
            Some(part) => {
                self.settle_part_in(tx, &part, refund).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Parts Stripe has not settled: asked again (requested) or looked up (pending). Part of
    /// the missed-webhook pass.
    pub(super) async fn retry_refunds(&self) -> Result<usize> {
        let rail = self.rail()?;
        let before = now_micros() - 30 * iocloud_db::time::MICROS_PER_SEC;
        let sql = format!(
            "SELECT {PART_COLUMNS} FROM refund_parts WHERE status IN ('requested', 'pending') \
             AND updated_at < $1 ORDER BY updated_at LIMIT 500"
        );
        let parts: Vec<PartRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(before)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        for part in &parts {
            match &part.stripe_refund_id {
                None => self.ask_stripe(rail, part).await,
                Some(id) => match rail.refund_status(id).await {
                    Ok(refund) => self.settle_part(part, &refund).await?,
                    Err(e) => tracing::warn!(error = %e, refund = id, "could not look up a refund"),
                },
            }
        }
        Ok(parts.len())
    }

    pub async fn get_refund(&self, actor: &Actor, id: &str) -> Result<Refund> {
        actor.authorize(Action::BillingRead)?;
        self.read_refund(&actor.org_id, id).await
    }

    /// The organisation's refunds, oldest first: the page, then all its parts in one query.
    pub async fn refunds(&self, actor: &Actor, page: &PageRequest) -> Result<Page<Refund>> {
        actor.authorize(Action::BillingRead)?;
        let rows: Vec<(String, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT id, amount, created_at FROM refunds WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        )
        .bind(&actor.org_id)
        .bind(page.after_id())
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let Some(last) = rows.last().map(|(id, _, _)| id.clone()) else {
            return Ok(Page::from_rows(Vec::new(), page, |r: &Refund| &r.id));
        };
        let sql = format!(
            "SELECT {} FROM refund_parts p JOIN refunds r ON r.id = p.refund_id \
             WHERE r.org_id = $1 AND r.id > $2 AND r.id <= $3 ORDER BY p.refund_id, p.top_up_id DESC",
            PART_COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let parts: Vec<PartRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(&last)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let mut by_refund: std::collections::HashMap<&str, Vec<RefundPart>> = Default::default();
        for part in &parts {
            by_refund
                .entry(part.refund_id.as_str())
                .or_default()
                .push(part.view()?);
        }
        let refunds = rows
            .iter()
            .map(|(id, amount, created_at)| {
                refund_view(
                    id,
                    *amount,
                    *created_at,
                    by_refund.remove(id.as_str()).unwrap_or_default(),
                )
            })
            .collect();
        Ok(Page::from_rows(refunds, page, |r| &r.id))
    }

    async fn read_refund(&self, org_id: &OrgId, id: &str) -> Result<Refund> {
        let row: Option<(i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT amount, created_at FROM refunds WHERE id = $1 AND org_id = $2"
        )
        .bind(id)
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let (amount, created_at) = row.ok_or(Error::NotFound("refund"))?;
        let parts = self
            .parts(id)
            .await?
            .iter()
            .map(PartRow::view)
            .collect::<Result<Vec<_>>>()?;
        Ok(refund_view(id, amount, created_at, parts))
    }

    async fn parts(&self, refund_id: &str) -> Result<Vec<PartRow>> {
        let sql = format!(
            "SELECT {PART_COLUMNS} FROM refund_parts WHERE refund_id = $1 ORDER BY top_up_id DESC"
        );
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(refund_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?)
    }
}

fn refund_view(id: &str, amount: i64, created_at: i64, parts: Vec<RefundPart>) -> Refund {
    Refund {
        id: id.to_string(),
        amount: usd(amount).to_decimal(),
        currency: Currency::Usd,
        status: RefundStatus::of_parts(&parts),
        parts,
        created_at: created_at.into(),
    }
}

/// The refundable amount (micro-units) and the card payments it may come from, newest first
/// with what each has left; the payments' rows locked for the transaction.
async fn refundable_in(tx: &mut Tx, org_id: &OrgId) -> Result<(i64, Vec<(String, String, i64)>)> {
    let sql = format!(
        "SELECT id, payment_intent_id, received - refunded - disputed FROM top_ups \
         WHERE org_id = $1 AND status = 'succeeded' AND received - refunded - disputed > 0 \
         ORDER BY succeeded_at DESC, id DESC{}",
        tx.engine().for_update()
    );
    let payments: Vec<(String, String, i64)> =
        tx_run!(tx, |c| sqlx::query_as(&sql).bind(org_id).fetch_all(c).await)
            .map_err(DbError::from)?;
    let by_card: i64 = payments.iter().map(|(_, _, left)| left).sum();
    let available = Ledger::balance_in(
        tx,
        &AccountRef::org(org_id, AccountKind::Available, Currency::Usd),
    )
    .await?;
    // Whole cents: Stripe refunds cents.
    let refundable = by_card.min(available.micros()).max(0) / MICROS_PER_CENT * MICROS_PER_CENT;
    Ok((refundable, payments))
}
