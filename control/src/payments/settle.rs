//! Stripe's word on a PaymentIntent, applied to its top-up: a success credits the
//! organisation once, a failure records its reason, a cancellation ends it. The same step
//! serves the answer to a card charged at once, the webhook and the missed-webhook pass.

use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::stripe::{CardPayment, PaymentState};
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, TransactionKind};
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, tx_run};

use super::top_ups::{TOP_UP_COLUMNS, TopUpRow, TopUpStatus};
use super::{MICROS_PER_CENT, Payments};
use crate::Result;

/// What settling a payment did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The organisation was credited now (`transaction_id`).
    Credited {
        top_up_id: String,
        org_id: String,
        transaction_id: String,
    },
    /// It had been credited before: nothing changed.
    AlreadyCredited { top_up_id: String },
    /// A failure, a cancellation or progress was written on the top-up.
    Recorded { top_up_id: String },
    /// Nothing to do: not one of our top-ups, or news older than what is known.
    Ignored(&'static str),
}

impl Settled {
    /// How a webhook event's row names what it did.
    pub fn outcome(&self) -> &'static str {
        match self {
            Settled::Credited { .. } => "credited",
            Settled::AlreadyCredited { .. } | Settled::Recorded { .. } => "recorded",
            Settled::Ignored(_) => "ignored",
        }
    }
}

/// A payment's settlement decided, its top-up locked: done, or a credit still to post. A
/// credit moves the Stripe clearing account, one row for every credit, locked from then until
/// the commit; so a caller writes what else it has to before posting it, and after it only
/// the top-up's row is written (it names the ledger transaction).
pub(super) enum Step {
    Done(Settled),
    Credit(Credit),
}

/// A top-up to credit with what its payment brought.
pub(super) struct Credit {
    top_up_id: String,
    org_id: String,
    payment_intent: String,
    payment_method: Option<String>,
    received: Money,
    /// The organisation owes money (a dispute): the credit pays it first.
    owes: bool,
}

impl Step {
    /// What the step will have done: [`Settled::outcome`] of its result.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Step::Done(settled) => settled.outcome(),
            Step::Credit(_) => "credited",
        }
    }
}

impl Payments {
    /// [`settle_in`](Self::settle_in) in a transaction of its own.
    pub(super) async fn settle(&self, payment: &CardPayment) -> Result<Settled> {
        let mut tx = self.db.begin().await?;
        let settled = self.settle_in(&mut tx, payment).await?;
        tx.commit().await?;
        self.after_credit(&settled).await;
        Ok(settled)
    }

    /// Applies `payment` to the top-up its metadata names (else the one that holds its id).
    pub(super) async fn settle_in(&self, tx: &mut Tx, payment: &CardPayment) -> Result<Settled> {
        match self.step_in(tx, payment).await? {
            Step::Done(settled) => Ok(settled),
            Step::Credit(credit) => credit.post_in(tx).await,
        }
    }

    /// Decides what `payment` does to its top-up and does all of it but a credit. The
    /// top-up's row is locked first, so two callers settling the same payment take turns, and
    /// the second finds the credit made.
    pub(super) async fn step_in(&self, tx: &mut Tx, payment: &CardPayment) -> Result<Step> {
        let Some(row) = locked_top_up(tx, payment).await? else {
            return Ok(Step::Done(Settled::Ignored("no top-up of this platform")));
        };
        if row
            .payment_intent_id
            .as_deref()
            .is_some_and(|pi| pi != payment.id)
            || payment
                .metadata
                .get("org_id")
                .is_some_and(|org| org != &row.org_id)
        {
            tracing::error!(top_up = %row.id, payment = %payment.id, "a payment's metadata does not match its top-up");
            return Ok(Step::Done(Settled::Ignored(
                "the payment does not match its top-up",
            )));
        }
        let status = row.status()?;
        let top_up_id = row.id.clone();
        let now = now_micros();
        let done = match payment.state {
            PaymentState::Succeeded => {
                if payment.currency != "usd" {
                    tracing::error!(top_up = %row.id, currency = %payment.currency, "a top-up paid in another currency");
                    return Ok(Step::Done(Settled::Ignored("not paid in USD")));
                }
                let received =
                    Money::from_micros(payment.received_cents * MICROS_PER_CENT, Currency::Usd);
                if status == TopUpStatus::Succeeded {
                    // Posted again only to be refused if it differs from the credit made.
                    let org_id = OrgId::trusted(row.org_id.clone());
                    post_in(tx, &card_credit(&org_id, &payment.id, received, &row.id)?).await?;
                    return Ok(Step::Done(Settled::AlreadyCredited { top_up_id }));
                }
                // Read before the clearing account is locked: nearly nobody owes anything.
                let org_id = OrgId::trusted(row.org_id.clone());
                let owes = super::disputes::owes_in(tx, &org_id).await?;
                return Ok(Step::Credit(Credit {
                    owes,
                    top_up_id,
                    org_id: row.org_id,
                    payment_intent: payment.id.clone(),
                    payment_method: payment.payment_method.clone(),
                    received,
                }));
            }
            PaymentState::Failed | PaymentState::Canceled => {
                let to = if payment.state == PaymentState::Failed {
                    TopUpStatus::Failed
                } else {
                    TopUpStatus::Canceled
                };
                if !status.can_become(to) {
                    return Ok(Step::Done(Settled::Ignored("the top-up has moved past it")));
                }
                let failure = payment.failure.as_ref();
                tx_run!(tx, |c| sqlx::query(
                    "UPDATE top_ups SET status = $1, payment_intent_id = $2, failure_code = $3, \
                     failure_message = $4, updated_at = $5 WHERE id = $6"
                )
                .bind(to.as_str())
                .bind(&payment.id)
                .bind(failure.map(|f| f.decline_code.clone().unwrap_or_else(|| f.code.clone())))
                .bind(failure.map(|f| f.message.clone()))
                .bind(now)
                .bind(&row.id)
                .execute(c)
                .await
                .map(|_| ()))
                .map_err(DbError::from)?;
                Settled::Recorded { top_up_id }
            }
            PaymentState::Pending => {
                if row.payment_intent_id.is_some() {
                    return Ok(Step::Done(Settled::Ignored("nothing new")));
                }
                tx_run!(tx, |c| sqlx::query(
                    "UPDATE top_ups SET payment_intent_id = $1, updated_at = $2 WHERE id = $3"
                )
                .bind(&payment.id)
                .bind(now)
                .bind(&row.id)
                .execute(c)
                .await
                .map(|_| ()))
                .map_err(DbError::from)?;
                Settled::Recorded { top_up_id }
            }
        };
        Ok(Step::Done(done))
    }

    /// What follows a credit once it is committed: the audit row, as Stripe's doing (a
    /// member's own request is audited by the API as it is answered), and the card kept when
    /// the payer asked for it.
    pub(super) async fn after_credit(&self, settled: &Settled) {
        let Settled::Credited {
            top_up_id, org_id, ..
        } = settled
        else {
            return;
        };
        self.keep_paid_card(top_up_id).await;
        self.audit
            .record_background(
                "stripe",
                org_id,
                "card top-up credited",
                Some(top_up_id.clone()),
                200,
            )
            .await;
    }
}

impl Credit {
    /// Posts the credit and marks its top-up succeeded.
    pub(super) async fn post_in(self, tx: &mut Tx) -> Result<Settled> {
        let Credit {
            top_up_id,
            org_id,
            payment_intent,
            payment_method,
            received,
            owes,
        } = self;
        let credit = card_credit(
            &OrgId::trusted(org_id.clone()),
            &payment_intent,
            received,
            &top_up_id,
        )?;
        let posted = post_in(tx, &credit).await?;
        if owes {
            // New money pays what the organisation owes first.
            super::disputes::pay_debt_in(tx, &OrgId::trusted(org_id.clone()), &top_up_id).await?;
        }
        let now = now_micros();
        tx_run!(tx, |c| sqlx::query(
            "UPDATE top_ups SET status = 'succeeded', received = $1, payment_intent_id = $2, \
             payment_method = COALESCE($3, payment_method), transaction_id = $4, \
             failure_code = NULL, failure_message = NULL, succeeded_at = $5, updated_at = $5 \
             WHERE id = $6"
        )
        .bind(received.micros())
        .bind(&payment_intent)
        .bind(&payment_method)
        .bind(&posted.transaction_id)
        .bind(now)
        .bind(&top_up_id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(Settled::Credited {
            top_up_id,
            org_id,
            transaction_id: posted.transaction_id,
        })
    }
}

/// The credit of a card payment: Dr Stripe's clearing account, Cr the organisation's
/// available USD, under the PaymentIntent's id. Every path that credits builds exactly this,
/// so a second one is a replay of the first.
pub(crate) fn card_credit(
    org_id: &OrgId,
    payment_intent: &str,
    received: Money,
    top_up_id: &str,
) -> Result<NewTransaction> {
    Ok(NewTransaction {
        external_ref: format!("stripe:{payment_intent}"),
        kind: TransactionKind::Deposit,
        org_id: Some(org_id.to_string()),
        memo: format!("card top-up {top_up_id}"),
        postings: Posting::transfer(
            AccountRef::platform(AccountKind::ExternalStripe, Currency::Usd),
            AccountRef::org(org_id, AccountKind::Available, Currency::Usd),
            received,
        )?
        .to_vec(),
    })
}

/// The top-up a payment is about, its row locked for this transaction (Postgres; SQLite's
/// writer lock serialises the whole transaction anyway).
async fn locked_top_up(tx: &mut Tx, payment: &CardPayment) -> Result<Option<TopUpRow>> {
    let (column, key) = match payment.metadata.get("top_up_id") {
        Some(id) => ("id", id.as_str()),
        None => ("payment_intent_id", payment.id.as_str()),
    };
    let sql = format!(
        "SELECT {TOP_UP_COLUMNS} FROM top_ups WHERE {column} = $1{}",
        tx.engine().for_update()
    );
    Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(key)
        .fetch_optional(c)
        .await)
    .map_err(DbError::from)?)
}
