//! The $IO of a case: taken from the provider's stake (its stake rows shrink, active ones
//! first, newest first) and then from its unwithdrawn $IO rewards into its slash escrow; burned
//! from there, or returned (a new active stake for what came from the stake). Each movement is
//! one ledger transaction with a reference derived from the case, inside the caller's database
//! transaction, so a case and its money move together or not at all.

use iocloud_billing::ledger::{NewTransaction, Posting, TransactionKind, post_in};
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, Money};
use iocloud_db::ids::new_id;
use iocloud_db::{DbError, Tx, tx_run};

use crate::{Error, Result};

fn io(micros: i64) -> Money {
    Money::from_micros(micros, Currency::Io)
}

fn leg(account: AccountRef, micros: i64) -> Option<Posting> {
    (micros != 0).then(|| Posting {
        account,
        amount: io(micros),
    })
}

async fn post(
    tx: &mut Tx,
    org_id: &str,
    reference: String,
    memo: String,
    postings: Vec<Option<Posting>>,
) -> Result<()> {
    let postings: Vec<Posting> = postings.into_iter().flatten().collect();
    if postings.is_empty() {
        return Ok(());
    }
    post_in(
        tx,
        &NewTransaction {
            external_ref: reference,
            kind: TransactionKind::Slash,
            org_id: Some(org_id.to_string()),
            memo,
            postings,
        },
    )
    .await?;
    Ok(())
}

/// What the provider holds that a case may take: (staked, unwithdrawn $IO rewards).
pub(crate) async fn holdings_in(tx: &mut Tx, org_id: &str) -> Result<(i64, i64)> {
    let staked: i64 = tx_run!(tx, |c| sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM stakes WHERE org_id = $1 AND status IN ('active', 'unbonding')"
    )
    .bind(org_id)
    .fetch_one(c)
    .await)
    .map_err(DbError::from)?;
    let rewards = Ledger::balance_in(
        tx,
        &AccountRef::org(org_id, AccountKind::ProviderEarnings, Currency::Io),
    )
    .await?
    .micros();
    Ok((staked, rewards))
}

/// Takes `from_stake` out of the provider's stake rows and both parts into its escrow.
pub(crate) async fn take_in(
    tx: &mut Tx,
    org_id: &str,
    case_id: &str,
    from_stake: i64,
    from_rewards: i64,
) -> Result<()> {
    let stakes: Vec<(String, i64)> = tx_run!(tx, |c| sqlx::query_as(
        "SELECT id, amount FROM stakes WHERE org_id = $1 AND status IN ('active', 'unbonding') \
         ORDER BY CASE WHEN status = 'active' THEN 0 ELSE 1 END, created_at DESC, id DESC"
    )
    .bind(org_id)
    .fetch_all(c)
    .await)
    .map_err(DbError::from)?;
    let mut left = from_stake;
    for (id, amount) in stakes {
        if left == 0 {
            break;
        }
        let take = left.min(amount);
        left -= take;
        tx_run!(tx, |c| sqlx::query(
            "UPDATE stakes SET amount = amount - $1, status = CASE WHEN amount = $1 THEN 'slashed' ELSE status END WHERE id = $2"
        )
        .bind(take)
        .bind(&id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
    }
    if left != 0 {
        return Err(Error::Internal(format!(
            "case {case_id}: the stake moved while it was being slashed"
        )));
    }
    post(
        tx,
        org_id,
        format!("slash:{case_id}:escrow"),
        format!("slashing case {case_id}: into escrow"),
        vec![
            leg(
                AccountRef::org(org_id, AccountKind::Stake, Currency::Io),
                -from_stake,
            ),
            leg(
                AccountRef::org(org_id, AccountKind::ProviderEarnings, Currency::Io),
                -from_rewards,
            ),
            leg(
                AccountRef::org(org_id, AccountKind::SlashEscrow, Currency::Io),
                from_stake + from_rewards,
            ),
        ],
    )
    .await
}

/// Burns the provider's part of a case's escrow: the supply falls by it.
pub(crate) async fn burn_in(tx: &mut Tx, org_id: &str, case_id: &str, amount: i64) -> Result<()> {
    post(
        tx,
        org_id,
        format!("slash:{case_id}:burn"),
        format!("slashing case {case_id}: burned"),
        vec![
            leg(
                AccountRef::org(org_id, AccountKind::SlashEscrow, Currency::Io),
                -amount,
            ),
            leg(
                AccountRef::platform(AccountKind::Burn, Currency::Io),
                amount,
            ),
        ],
    )
    .await
}

/// Returns a case's escrow: what came from the stake as a new active stake, what came from
/// rewards to the rewards.
pub(crate) async fn return_in(
    tx: &mut Tx,
    org_id: &str,
    case_id: &str,
    from_stake: i64,
    from_rewards: i64,
    now: i64,
) -> Result<()> {
    if from_stake > 0 {
        let reference = format!("slash-return:{case_id}");
        tx_run!(tx, |c| sqlx::query(
            "INSERT INTO stakes (id, org_id, amount, external_ref, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5)"
        )
        .bind(new_id("stk"))
        .bind(org_id)
        .bind(from_stake)
        .bind(&reference)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
    }
    post(
        tx,
        org_id,
        format!("slash:{case_id}:return"),
        format!("slashing case {case_id}: returned"),
        vec![
            leg(
                AccountRef::org(org_id, AccountKind::SlashEscrow, Currency::Io),
                -(from_stake + from_rewards),
            ),
            leg(
                AccountRef::org(org_id, AccountKind::Stake, Currency::Io),
                from_stake,
            ),
            leg(
                AccountRef::org(org_id, AccountKind::ProviderEarnings, Currency::Io),
                from_rewards,
            ),
        ],
    )
    .await
}

/// Takes a co-staker's part of a case from its stake into its own escrow.
pub(crate) async fn take_costake_in(
    tx: &mut Tx,
    costaker_org_id: &str,
    case_id: &str,
    micros: i64,
) -> Result<()> {
    post(
        tx,
        costaker_org_id,
        format!("slash:{case_id}:costake-escrow"),
        format!("slashing case {case_id}: the co-stake's part into escrow"),
        vec![
            leg(
                AccountRef::org(costaker_org_id, AccountKind::Stake, Currency::Io),
                -micros,
            ),
            leg(
                AccountRef::org(costaker_org_id, AccountKind::SlashEscrow, Currency::Io),
                micros,
            ),
        ],
    )
    .await
}

/// Burns a co-staker's part of a case, or returns it to its stake.
pub(crate) async fn settle_costake_in(
    tx: &mut Tx,
    costaker_org_id: &str,
    case_id: &str,
    micros: i64,
    burn: bool,
) -> Result<()> {
    let to = if burn {
        AccountRef::platform(AccountKind::Burn, Currency::Io)
    } else {
        AccountRef::org(costaker_org_id, AccountKind::Stake, Currency::Io)
    };
    let what = if burn { "burn" } else { "return" };
    post(
        tx,
        costaker_org_id,
        format!("slash:{case_id}:costake-{what}"),
        format!("slashing case {case_id}: the co-stake's part {what}ed"),
        vec![
            leg(
                AccountRef::org(costaker_org_id, AccountKind::SlashEscrow, Currency::Io),
                -micros,
            ),
            leg(to, micros),
        ],
    )
    .await
}
