//! Corrections: a transaction is never edited; it is answered by a new, compensating one.

use iocloud_db::db_run;

use super::{AccountKind, AccountRef, Ledger, NewTransaction, Posted, Posting, TransactionKind};
use crate::money::{Currency, Money};
use crate::{BillingError, Result};

impl Ledger {
    /// Posts the reverse of transaction `id` (each posting negated), once: correcting the same
    /// transaction again answers the first correction. Money that a capture took from a hold
    /// goes back to the organisation's available balance (the hold itself stays as it is).
    /// Hold movements and corrections cannot be reversed: release the hold, or correct the
    /// original transaction. Neither can anything that moved stake: a stake's record (active,
    /// unbonding, withdrawn) is what lists devices, and a reversal would empty the stake
    /// account behind a record that still says the tokens are there.
    pub async fn reverse(&self, id: &str, reason: &str) -> Result<(Posted, String)> {
        let tx: Option<(String, Option<String>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT kind, org_id FROM ledger_transactions WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)?;
        let Some((kind, org_id)) = tx else {
            return Err(BillingError::TransactionNotFound(id.to_string()));
        };
        if matches!(
            kind.as_str(),
            "hold" | "hold_extend" | "release" | "correction"
        ) {
            return Err(BillingError::NotReversible(format!(
                "a {kind} transaction cannot be reversed: {}",
                if kind == "correction" {
                    "it is already a correction"
                } else {
                    "release or settle the hold instead"
                }
            )));
        }
        // Corrected before (perhaps with another reason): that correction is the answer.
        let reference = format!("correction:{id}");
        let existing: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM ledger_transactions WHERE external_ref = $1"
        )
        .bind(&reference)
        .fetch_optional(p)
        .await)?;
        if let Some(transaction_id) = existing {
            return Ok((
                Posted {
                    transaction_id,
                    replayed: true,
                },
                kind,
            ));
        }
        let rows: Vec<(String, String, String, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as(
            "SELECT a.owner, a.kind, p.currency, p.amount FROM ledger_postings p \
             JOIN ledger_accounts a ON a.id = p.account_id WHERE p.transaction_id = $1 ORDER BY p.id"
        )
        .bind(id)
        .fetch_all(p)
        .await
        })?;
        let mut postings = Vec::with_capacity(rows.len());
        if rows
            .iter()
            .any(|(_, k, _, _)| AccountKind::parse(k) == Some(AccountKind::Stake))
        {
            return Err(BillingError::NotReversible(
                "a stake movement cannot be reversed: unstake and withdraw the stake instead"
                    .into(),
            ));
        }
        for (owner, account_kind, currency, amount) in rows {
            let currency = Currency::parse(&currency)
                .ok_or_else(|| BillingError::corrupt("ledger_accounts.currency", &currency))?;
            let kind = match AccountKind::parse(&account_kind) {
                // What left a hold comes back spendable, not held: the hold does not grow.
                Some(AccountKind::Held) => AccountKind::Available,
                Some(k) => k,
                None => {
                    return Err(BillingError::corrupt("ledger_accounts.kind", &account_kind));
                }
            };
            postings.push(Posting {
                account: AccountRef {
                    owner,
                    kind,
                    currency,
                },
                amount: Money::from_micros(amount, currency).checked_neg()?,
            });
        }
        let posted = self
            .post(&NewTransaction {
                external_ref: reference,
                kind: TransactionKind::Correction,
                org_id,
                memo: format!("correction of {id}: {reason}"),
                postings,
            })
            .await?;
        Ok((posted, kind))
    }
}
