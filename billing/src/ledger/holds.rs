//! Holds: an organisation's funds reserved for a cluster's expected cost, captured in parts as
//! the cluster runs, extended, and released when it ends. A hold never takes a balance below
//! zero (the move from `available` to `held` is a conditional ledger posting), and its captures
//! and releases never exceed it (a conditional update of the hold, checked again by the table).

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Tx, db_run, tx_run};
use serde::Serialize;

use super::post::{NewTransaction, Posting, post_in};
use super::{AccountKind, AccountRef, FeeBps, Ledger, TransactionKind, split_fee};
use crate::money::{Currency, Money};
use crate::{BillingError, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Hold {
    pub id: String,
    pub org_id: String,
    /// Read from its column: a code that is none of ours fails the read.
    pub currency: Currency,
    pub amount: i64,
    pub captured: i64,
    pub released: i64,
    /// `open`, or `settled` once everything was captured or released.
    pub status: String,
    /// What the hold is for (a cluster id).
    pub reference: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Hold {
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// What can still be captured or released.
    pub fn remaining(&self) -> Money {
        Money::from_micros(self.amount - self.captured - self.released, self.currency())
    }
}

/// [`Ledger::place_hold`] inside the caller's transaction (a cluster's reservation: its GPUs,
/// its quota and its hold commit together), with the id the caller chose (so that it can write
/// it before the hold). A placement replayed answers the hold first placed, whatever its id.
pub async fn place_hold_in(
    tx: &mut Tx,
    id: &str,
    org_id: &str,
    amount: Money,
    reference: &str,
    external_ref: &str,
) -> Result<Hold> {
    positive(amount)?;
    let c = amount.currency();
    let posted = move_within_org(
        tx,
        TransactionKind::Hold,
        org_id,
        [AccountKind::Available, AccountKind::Held],
        amount,
        format!("hold for {reference}"),
        external_ref,
    )
    .await?;
    if posted.replayed {
        let existing: String = tx_run!(tx, |c| {
            sqlx::query_scalar("SELECT id FROM holds WHERE external_ref = $1")
                .bind(external_ref)
                .fetch_one(c)
                .await
        })?;
        return hold_in(tx, &existing).await;
    }
    let now = now_micros();
    let hold = Hold {
        id: id.to_string(),
        org_id: org_id.to_string(),
        currency: c,
        amount: amount.micros(),
        captured: 0,
        released: 0,
        status: "open".into(),
        reference: reference.to_string(),
        created_at: now,
        updated_at: now,
    };
    tx_run!(tx, |conn| {
        sqlx::query(
            "INSERT INTO holds (id, org_id, currency, amount, captured, released, status, reference, external_ref, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, 0, 'open', $5, $6, $7, $7)",
        )
        .bind(&hold.id)
        .bind(org_id)
        .bind(c.code())
        .bind(amount.micros())
        .bind(reference)
        .bind(external_ref)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(hold)
}

/// [`Ledger::extend_hold`] inside the caller's transaction.
pub async fn extend_hold_in(
    tx: &mut Tx,
    hold_id: &str,
    extra: Money,
    external_ref: &str,
) -> Result<Hold> {
    positive(extra)?;
    let hold = hold_in(tx, hold_id).await?;
    if extra.currency() != hold.currency() {
        return Err(BillingError::CurrencyMismatch(
            extra.currency(),
            hold.currency(),
        ));
    }
    let posted = move_within_org(
        tx,
        TransactionKind::HoldExtend,
        &hold.org_id,
        [AccountKind::Available, AccountKind::Held],
        extra,
        format!("extend hold {hold_id}"),
        external_ref,
    )
    .await?;
    if !posted.replayed {
        let updated = tx_run!(tx, |conn| {
            sqlx::query("UPDATE holds SET amount = amount + $1, updated_at = $2 WHERE id = $3 AND status = 'open'")
                .bind(extra.micros())
                .bind(now_micros())
                .bind(hold_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if updated == 0 {
            return Err(BillingError::HoldExceeded {
                hold: hold_id.to_string(),
                remaining: "0 (settled)".into(),
            });
        }
    }
    hold_in(tx, hold_id).await
}

pub(crate) const COLUMNS: &str =
    "id, org_id, currency, amount, captured, released, status, reference, created_at, updated_at";

/// The hold, its row locked before any account it moves money between: settlement, capture,
/// extension and release all take that order (hold, then accounts), so they wait for each
/// other instead of deadlocking.
pub(crate) async fn hold_in(tx: &mut Tx, id: &str) -> Result<Hold> {
    let sql = format!(
        "SELECT {COLUMNS} FROM holds WHERE id = $1{}",
        tx.engine().for_update()
    );
    let row: Option<Hold> = tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(c)
        .await)?;
    row.ok_or_else(|| BillingError::HoldNotFound(id.to_string()))
}

/// Moves `amount` between two of an organisation's own accounts (`[from, to]`) as one ledger
/// transaction inside `tx`: what placing, extending and releasing a hold each do.
async fn move_within_org(
    tx: &mut Tx,
    kind: TransactionKind,
    org_id: &str,
    [from, to]: [AccountKind; 2],
    amount: Money,
    memo: String,
    external_ref: &str,
) -> Result<super::Posted> {
    let c = amount.currency();
    let postings = Posting::transfer(
        AccountRef::org(org_id, from, c),
        AccountRef::org(org_id, to, c),
        amount,
    )?;
    let t = NewTransaction {
        external_ref: external_ref.to_string(),
        kind,
        org_id: Some(org_id.to_string()),
        memo,
        postings: postings.to_vec(),
    };
    post_in(tx, &t).await
}

fn positive(amount: Money) -> Result<()> {
    if amount.is_positive() {
        Ok(())
    } else {
        Err(BillingError::InvalidAmount(
            "the amount must be positive".into(),
        ))
    }
}

impl Ledger {
    pub async fn hold(&self, org_id: &str, id: &str) -> Result<Hold> {
        let sql = format!("SELECT {COLUMNS} FROM holds WHERE id = $1 AND org_id = $2");
        let row: Option<Hold> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)?;
        row.ok_or_else(|| BillingError::HoldNotFound(id.to_string()))
    }

    /// The hold placed with this reference, if any (callers retrying a placement use it).
    pub async fn hold_by_external_ref(&self, external_ref: &str) -> Result<Option<Hold>> {
        let sql = format!("SELECT {COLUMNS} FROM holds WHERE external_ref = $1");
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(external_ref)
            .fetch_optional(p)
            .await)?)
    }

    /// What each of these holds of the organisation is for (its reference, a cluster id), in
    /// one query; ids of other organisations' holds, or of none, are left out.
    pub async fn hold_references(
        &self,
        org_id: &str,
        ids: &[String],
    ) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let slots: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, reference FROM holds WHERE org_id = $1 AND id IN ({})",
            slots.join(", ")
        );
        Ok(db_run!(&self.db, |p| {
            let mut q = sqlx::query_as(&sql).bind(org_id);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })?)
    }

    /// An organisation's holds, newest last, after the id `after` (for cursor pagination).
    pub async fn holds(&self, org_id: &str, after: &str, limit: i64) -> Result<Vec<Hold>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM holds WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org_id)
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await)?)
    }

    /// Reserves `amount` of the organisation's available balance. Refused (and nothing written)
    /// when the balance does not cover it. The same `external_ref` twice is one hold.
    pub async fn place_hold(
        &self,
        org_id: &str,
        amount: Money,
        reference: &str,
        external_ref: &str,
    ) -> Result<Hold> {
        let mut tx = self.db.begin().await?;
        let hold = place_hold_in(
            &mut tx,
            &new_id("hld"),
            org_id,
            amount,
            reference,
            external_ref,
        )
        .await?;
        tx.commit().await?;
        Ok(hold)
    }

    /// Reserves `extra` more for an open hold (a cluster extended).
    pub async fn extend_hold(
        &self,
        hold_id: &str,
        extra: Money,
        external_ref: &str,
    ) -> Result<Hold> {
        let mut tx = self.db.begin().await?;
        let hold = extend_hold_in(&mut tx, hold_id, extra, external_ref).await?;
        tx.commit().await?;
        Ok(hold)
    }

    /// Takes `amount` of the hold as payment: the provider's share to its earnings, the fee to
    /// the platform's revenue. Refused when the hold has less than `amount` left.
    pub async fn capture(
        &self,
        hold_id: &str,
        amount: Money,
        provider_org: &str,
        fee_bps: FeeBps,
        external_ref: &str,
    ) -> Result<Hold> {
        positive(amount)?;
        let mut tx = self.db.begin().await?;
        capture_in(
            &mut tx,
            hold_id,
            amount,
            provider_org,
            fee_bps,
            external_ref,
        )
        .await?;
        let hold = hold_in(&mut tx, hold_id).await?;
        tx.commit().await?;
        Ok(hold)
    }

    /// Returns what is left of the hold to the organisation's available balance and settles it.
    /// Releasing a settled hold changes nothing.
    pub async fn release(&self, hold_id: &str, external_ref: &str) -> Result<Hold> {
        let mut tx = self.db.begin().await?;
        let hold = hold_in(&mut tx, hold_id).await?;
        let remaining = hold.remaining();
        if hold.status == "settled" || !remaining.is_positive() {
            tx.commit().await?;
            return Ok(hold);
        }
        let posted = move_within_org(
            &mut tx,
            TransactionKind::Release,
            &hold.org_id,
            [AccountKind::Held, AccountKind::Available],
            remaining,
            format!("release hold {hold_id}"),
            external_ref,
        )
        .await?;
        if !posted.replayed {
            let updated = tx_run!(&mut tx, |conn| {
                sqlx::query(
                    "UPDATE holds SET released = released + $1, status = 'settled', updated_at = $2 \
                     WHERE id = $3 AND status = 'open' AND captured + released + $1 = amount",
                )
                .bind(remaining.micros())
                .bind(now_micros())
                .bind(hold_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
            })?;
            if updated == 0 {
                return Err(BillingError::HoldExceeded {
                    hold: hold_id.to_string(),
                    remaining: remaining.to_decimal(),
                });
            }
        }
        let hold = hold_in(&mut tx, hold_id).await?;
        tx.commit().await?;
        Ok(hold)
    }
}

/// A capture inside an open database transaction (metering charges and moves its own rows in
/// the same one). Returns whether the reference was a replay.
pub(crate) async fn capture_in(
    tx: &mut Tx,
    hold_id: &str,
    amount: Money,
    provider_org: &str,
    fee_bps: FeeBps,
    external_ref: &str,
) -> Result<bool> {
    positive(amount)?;
    let hold = hold_in(tx, hold_id).await?;
    let c = hold.currency();
    if amount.currency() != c {
        return Err(BillingError::CurrencyMismatch(amount.currency(), c));
    }
    if amount.micros() > hold.remaining().micros() || hold.status != "open" {
        // A retry of a capture that already went through is answered by `post_in` below.
        let already: Option<String> = tx_run!(tx, |conn| {
            sqlx::query_scalar("SELECT id FROM ledger_transactions WHERE external_ref = $1")
                .bind(external_ref)
                .fetch_optional(conn)
                .await
        })?;
        if already.is_none() {
            return Err(BillingError::HoldExceeded {
                hold: hold_id.to_string(),
                remaining: hold.remaining().to_decimal(),
            });
        }
    }
    let (provider_share, fee) = split_fee(amount, fee_bps)?;
    let mut postings = vec![Posting {
        account: AccountRef::org(&hold.org_id, AccountKind::Held, c),
        amount: amount.checked_neg()?,
    }];
    if provider_share.is_positive() {
        postings.push(Posting {
            account: AccountRef::org(provider_org, AccountKind::ProviderEarnings, c),
            amount: provider_share,
        });
    }
    if fee.is_positive() {
        postings.push(Posting {
            account: AccountRef::platform(AccountKind::PlatformRevenue, c),
            amount: fee,
        });
    }
    let posted = post_in(
        tx,
        &NewTransaction {
            external_ref: external_ref.to_string(),
            kind: TransactionKind::Capture,
            org_id: Some(hold.org_id.clone()),
            memo: format!("capture from hold {hold_id} for {}", hold.reference),
            postings,
        },
    )
    .await?;
    if !posted.replayed {
        let updated = tx_run!(tx, |conn| {
            sqlx::query(
                    "UPDATE holds SET captured = captured + $1, updated_at = $2, \
                     status = CASE WHEN captured + released + $1 = amount THEN 'settled' ELSE status END \
                     WHERE id = $3 AND status = 'open' AND captured + released + $1 <= amount",
                )
                .bind(amount.micros())
                .bind(now_micros())
                .bind(hold_id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected())
        })?;
        if updated == 0 {
            return Err(BillingError::HoldExceeded {
                hold: hold_id.to_string(),
                remaining: hold.remaining().to_decimal(),
            });
        }
    }
    Ok(posted.replayed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ledger, scratch_databases};

    /// A hold whose stored currency is none of ours is an error naming the column and the
    /// value when read, never a hold in USD.
    #[tokio::test]
    async fn a_stored_currency_that_does_not_parse_is_an_error_not_usd() {
        for scratch in scratch_databases().await {
            let ledger = ledger(&scratch).await;
            db_run!(ledger.db(), |p| sqlx::query(
                "INSERT INTO holds (id, org_id, currency, amount, captured, released, status, reference, external_ref, created_at, updated_at) \
                 VALUES ('hld_x', 'org_c', 'XYZ', 1000000, 0, 0, 'open', 'clu_x', 'hold-x', 0, 0)"
            )
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
            .unwrap();
            for err in [
                ledger.hold("org_c", "hld_x").await.unwrap_err(),
                ledger.release("hld_x", "release-x").await.unwrap_err(),
            ] {
                assert!(
                    matches!(&err, BillingError::CorruptRow { column, value }
                        if column == "currency" && value == "XYZ"),
                    "{err:?}"
                );
            }
        }
    }
}
