//! Disputes (chargebacks) of card payments, from Stripe's webhooks. Opening one takes the
//! disputed amount back: from the available balance as far as it goes, the rest recorded as
//! debt (new clusters wait until it is paid). Winning it gives back exactly what it took;
//! losing it leaves the money gone. A disputed part of a payment cannot be refunded.
//!
//! Debt is paid from the next card top-up as soon as it is credited.

use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::stripe::{DisputeNews, DisputeState};
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, TransactionKind};
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, tx_run};

use super::Settled;
use super::{MICROS_PER_CENT, Payments, usd};
use crate::Result;

fn account(org: &OrgId, kind: AccountKind) -> AccountRef {
    AccountRef::org(org, kind, Currency::Usd)
}

fn stripe() -> AccountRef {
    AccountRef::platform(AccountKind::ExternalStripe, Currency::Usd)
}

impl Payments {
    /// Applies a dispute event. Each dispute is opened once and closed once, whatever Stripe
    /// sends again.
    pub(super) async fn dispute_in(&self, tx: &mut Tx, news: &DisputeNews) -> Result<Settled> {
        let Some(pi) = news.payment_intent.as_deref() else {
            return Ok(Settled::Ignored("a dispute of no payment"));
        };
        if news.currency != "usd" {
            return Ok(Settled::Ignored("a dispute in another currency"));
        }
        let top_up: Option<(String, String)> = tx_run!(tx, |c| sqlx::query_as(
            "SELECT id, org_id FROM top_ups WHERE payment_intent_id = $1"
        )
        .bind(pi)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        let Some((top_up_id, org)) = top_up else {
            return Ok(Settled::Ignored(
                "a dispute of a payment that is no top-up of ours",
            ));
        };
        let org = OrgId::trusted(org);
        let opened = self.open_dispute_in(tx, news, &top_up_id, &org).await?;
        let closed = match news.state {
            DisputeState::Open => false,
            state => self.close_dispute_in(tx, news, &org, state).await?,
        };
        Ok(if opened || closed {
            Settled::Recorded { top_up_id }
        } else {
            Settled::Ignored("the dispute is where it was")
        })
    }

    /// Takes the disputed amount back, once per dispute (a `closed` event that arrives
    /// first opens it too, so that closing it has something to give back).
    async fn open_dispute_in(
        &self,
        tx: &mut Tx,
        news: &DisputeNews,
        top_up_id: &str,
        org: &OrgId,
    ) -> Result<bool> {
        let amount = news.amount_cents * MICROS_PER_CENT;
        let available = Ledger::balance_in(tx, &account(org, AccountKind::Available))
            .await?
            .micros()
            .max(0);
        let from_available = amount.min(available);
        let owed = amount - from_available;
        let now = now_micros();
        let inserted = tx_run!(tx, |c| sqlx::query(
            "INSERT INTO disputes (id, org_id, top_up_id, payment_intent_id, amount, taken_available, taken_debt, \
             status, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9) ON CONFLICT (id) DO NOTHING"
        )
        .bind(&news.id)
        .bind(org)
        .bind(top_up_id)
        .bind(news.payment_intent.as_deref())
        .bind(amount)
        .bind(from_available)
        .bind(owed)
        .bind(&news.reason)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Ok(false);
        }
        tx_run!(tx, |c| sqlx::query(
            "UPDATE top_ups SET disputed = disputed + $1, updated_at = $2 WHERE id = $3"
        )
        .bind(amount)
        .bind(now)
        .bind(top_up_id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let mut postings = vec![Posting {
            account: stripe(),
            amount: usd(amount),
        }];
        if from_available > 0 {
            postings.push(Posting {
                account: account(org, AccountKind::Available),
                amount: usd(-from_available),
            });
        }
        if owed > 0 {
            postings.push(Posting {
                account: account(org, AccountKind::Debt),
                amount: usd(-owed),
            });
        }
        post_in(
            tx,
            &NewTransaction {
                external_ref: format!("stripe:{}", news.id),
                kind: TransactionKind::Dispute,
                org_id: Some(org.to_string()),
                memo: format!("card payment disputed ({})", news.reason),
                postings,
            },
        )
        .await?;
        Ok(true)
    }

    /// Closes an open dispute: a won one gives back what it took (paying the debt it left
    /// first, as far as that is still owed).
    async fn close_dispute_in(
        &self,
        tx: &mut Tx,
        news: &DisputeNews,
        org: &OrgId,
        state: DisputeState,
    ) -> Result<bool> {
        let status = match state {
            DisputeState::Won => "won",
            DisputeState::Lost => "lost",
            DisputeState::Closed | DisputeState::Open => "closed",
        };
        let row: Option<(i64, String)> = tx_run!(tx, |c| sqlx::query_as(
            "UPDATE disputes SET status = $1, closed_at = $2 WHERE id = $3 AND status = 'open' \
             RETURNING amount, top_up_id"
        )
        .bind(status)
        .bind(now_micros())
        .bind(&news.id)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        let Some((amount, top_up_id)) = row else {
            return Ok(false);
        };
        if state != DisputeState::Won {
            return Ok(true);
        }
        tx_run!(tx, |c| sqlx::query(
            "UPDATE top_ups SET disputed = disputed - $1 WHERE id = $2"
        )
        .bind(amount)
        .bind(&top_up_id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let owed = -Ledger::balance_in(tx, &account(org, AccountKind::Debt))
            .await?
            .micros()
            .min(0);
        let to_debt = owed.min(amount);
        let mut postings = vec![Posting {
            account: stripe(),
            amount: usd(-amount),
        }];
        if to_debt > 0 {
            postings.push(Posting {
                account: account(org, AccountKind::Debt),
                amount: usd(to_debt),
            });
        }
        if amount > to_debt {
            postings.push(Posting {
                account: account(org, AccountKind::Available),
                amount: usd(amount - to_debt),
            });
        }
        post_in(
            tx,
            &NewTransaction {
                external_ref: format!("stripe:{}:won", news.id),
                kind: TransactionKind::Dispute,
                org_id: Some(org.to_string()),
                memo: "card payment dispute won".into(),
                postings,
            },
        )
        .await?;
        Ok(true)
    }
}

/// True when the organisation owes anything.
pub(super) async fn owes_in(tx: &mut Tx, org: &OrgId) -> Result<bool> {
    Ok(Ledger::balance_in(tx, &account(org, AccountKind::Debt))
        .await?
        .micros()
        < 0)
}

/// Pays what the organisation owes from its available balance, as far as it goes, under
/// `reference` (once). Called when new money arrives.
pub(super) async fn pay_debt_in(tx: &mut Tx, org: &OrgId, reference: &str) -> Result<()> {
    let owed = -Ledger::balance_in(tx, &account(org, AccountKind::Debt))
        .await?
        .micros()
        .min(0);
    if owed == 0 {
        return Ok(());
    }
    let available = Ledger::balance_in(tx, &account(org, AccountKind::Available))
        .await?
        .micros();
    let paid = owed.min(available);
    if paid <= 0 {
        return Ok(());
    }
    post_in(
        tx,
        &NewTransaction {
            external_ref: format!("debt:{reference}"),
            kind: TransactionKind::Transfer,
            org_id: Some(org.to_string()),
            memo: "owed amount paid from the balance".into(),
            postings: Posting::transfer(
                account(org, AccountKind::Available),
                account(org, AccountKind::Debt),
                usd(paid),
            )?
            .to_vec(),
        },
    )
    .await?;
    Ok(())
}
