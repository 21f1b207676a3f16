//! Provider stake in $IO: the ledger side.
//!
//! Staking moves $IO from an organisation's `available` account into its `stake` account and
//! records a stake row; unbonding starts a cooldown; withdrawing after it moves the tokens back.
//! Every step is one database transaction with its ledger movement, so a crash leaves either
//! both or neither. The functions take an open transaction: the caller (the provider registry)
//! decides under the same lock whether the stake is still needed by its devices.

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Tx, tx_run};
use serde::Serialize;

use crate::ledger::post::post_in;
use crate::ledger::{AccountKind, AccountRef, NewTransaction, Posting, TransactionKind};
use crate::money::{Currency, Money};
use crate::{BillingError, Result};

/// How long an unbonding stake waits before it can be withdrawn.
pub const UNBONDING_MICROS: i64 = 14 * 24 * 3_600_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Stake {
    pub id: String,
    pub org_id: String,
    /// $IO micro-units.
    pub amount: i64,
    /// `active`, `unbonding`, `withdrawn`, or `slashed` (taken whole by slashing cases).
    pub status: String,
    pub created_at: i64,
    pub unbonding_at: Option<i64>,
    pub available_at: Option<i64>,
    pub withdrawn_at: Option<i64>,
}

const COLUMNS: &str =
    "id, org_id, amount, status, created_at, unbonding_at, available_at, withdrawn_at";

fn io(amount: Money) -> Result<Money> {
    if amount.currency() != Currency::Io {
        return Err(BillingError::CurrencyMismatch(
            amount.currency(),
            Currency::Io,
        ));
    }
    if !amount.is_positive() {
        return Err(BillingError::InvalidAmount(
            "the amount must be positive".into(),
        ));
    }
    Ok(amount)
}

fn movement(
    org_id: &str,
    from: AccountKind,
    to: AccountKind,
    amount: Money,
    external_ref: String,
    memo: String,
) -> Result<NewTransaction> {
    let postings: Vec<Posting> = Posting::transfer(
        AccountRef::org(org_id, from, Currency::Io),
        AccountRef::org(org_id, to, Currency::Io),
        amount,
    )?
    .into();
    Ok(NewTransaction {
        external_ref,
        kind: TransactionKind::Transfer,
        org_id: Some(org_id.to_string()),
        memo,
        postings,
    })
}

/// Stakes `amount` $IO of the organisation's available balance. The same `external_ref` twice
/// is one stake (the first one is answered again).
pub async fn stake_in(
    tx: &mut Tx,
    org_id: &str,
    amount: Money,
    external_ref: &str,
) -> Result<Stake> {
    let amount = io(amount)?;
    let reference = format!("stake:{org_id}:{external_ref}");
    if let Some(existing) = by_ref_in(tx, &reference).await? {
        if existing.amount != amount.micros() || existing.org_id != org_id {
            return Err(BillingError::ExternalRefReused(external_ref.to_string()));
        }
        return Ok(existing);
    }
    let id = new_id("stk");
    let t = movement(
        org_id,
        AccountKind::Available,
        AccountKind::Stake,
        amount,
        reference.clone(),
        format!("stake {id}"),
    )?;
    post_in(tx, &t).await?;
    tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO stakes (id, org_id, amount, external_ref, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5)",
        )
        .bind(&id)
        .bind(org_id)
        .bind(amount.micros())
        .bind(&reference)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    stake_in_tx(tx, org_id, &id)
        .await?
        .ok_or_else(|| BillingError::internal("a stake vanished in its own transaction"))
}

async fn by_ref_in(tx: &mut Tx, reference: &str) -> Result<Option<Stake>> {
    let sql = format!("SELECT {COLUMNS} FROM stakes WHERE external_ref = $1");
    Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(reference)
        .fetch_optional(c)
        .await)?)
}

/// One stake of the organisation (`None` for another organisation's).
pub async fn stake_in_tx(tx: &mut Tx, org_id: &str, id: &str) -> Result<Option<Stake>> {
    let sql = format!("SELECT {COLUMNS} FROM stakes WHERE id = $1 AND org_id = $2");
    Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(id)
        .bind(org_id)
        .fetch_optional(c)
        .await)?)
}

/// The organisation's active stake, $IO micro-units.
pub async fn active_in(tx: &mut Tx, org_id: &str) -> Result<i64> {
    Ok(tx_run!(tx, |c| {
        sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM stakes WHERE org_id = $1 AND status = 'active'"
    )
    .bind(org_id)
    .fetch_one(c)
    .await
    })?)
}

/// Starts the cooldown of an active stake; unbonding again changes nothing. The caller has
/// checked that the rest of the stake still covers what the organisation's devices need.
pub async fn unbond_in(tx: &mut Tx, org_id: &str, id: &str, now: i64) -> Result<Option<Stake>> {
    tx_run!(tx, |c| {
        sqlx::query(
            "UPDATE stakes SET status = 'unbonding', unbonding_at = $1, available_at = $2 \
             WHERE id = $3 AND org_id = $4 AND status = 'active'",
        )
        .bind(now)
        .bind(now + UNBONDING_MICROS)
        .bind(id)
        .bind(org_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    stake_in_tx(tx, org_id, id).await
}

/// Moves an unbonded stake back to the available balance once its cooldown is over.
/// Withdrawing twice changes nothing. `Ok(None)`: no such stake; an error names what is wrong.
pub async fn withdraw_in(tx: &mut Tx, org_id: &str, id: &str, now: i64) -> Result<Option<Stake>> {
    let Some(stake) = stake_in_tx(tx, org_id, id).await? else {
        return Ok(None);
    };
    match stake.status.as_str() {
        "withdrawn" => return Ok(Some(stake)),
        "unbonding" if stake.available_at.is_some_and(|t| t <= now) => {}
        "unbonding" => {
            return Err(BillingError::StakeLocked(format!(
                "stake {id} is in its cooldown until {}",
                iocloud_db::time::to_rfc3339(stake.available_at.unwrap_or(now))
            )));
        }
        _ => {
            return Err(BillingError::StakeLocked(format!(
                "stake {id} is active: unstake it first and wait for the cooldown"
            )));
        }
    }
    let t = movement(
        org_id,
        AccountKind::Stake,
        AccountKind::Available,
        Money::from_micros(stake.amount, Currency::Io),
        format!("unstake:{id}"),
        format!("withdraw stake {id}"),
    )?;
    post_in(tx, &t).await?;
    tx_run!(tx, |c| {
        sqlx::query("UPDATE stakes SET status = 'withdrawn', withdrawn_at = $1 WHERE id = $2 AND status = 'unbonding'")
            .bind(now)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    stake_in_tx(tx, org_id, id).await
}

/// The organisation's stakes, newest first.
pub async fn stakes_in(tx: &mut Tx, org_id: &str) -> Result<Vec<Stake>> {
    let sql = format!("SELECT {COLUMNS} FROM stakes WHERE org_id = $1 ORDER BY id DESC");
    Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(org_id)
        .fetch_all(c)
        .await)?)
}
