//! The provider's stake, as the registry sees it: how much the listed devices need, staking
//! and unstaking with that rule, and listing devices once their stake is covered.
//!
//! This is the one module that decides "is the stake enough"; today the tokens sit in the
//! ledger (`iocloud_billing::staking`), and when staking moves on chain only this module's
//! source of truth changes.

use iocloud_db::ids::OrgId;
use std::sync::Arc;

use iocloud_billing::staking;
use iocloud_billing::{Currency, Money};
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Timestamp, Tx, tx_run};
use serde::{Deserialize, Serialize};

use super::Catalog;
use super::devices::{DEVICE_COLUMNS, DeviceRow};
use super::status::{DeviceStatus, listed_status, transition_in};
use crate::governance::Governance;
use crate::{Action, Actor, Error, ErrorCode, Result};

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StakeRequest {
    /// $IO as a decimal string, e.g. `"16000"`: more than zero, at most six decimals.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:0*[1-9][0-9]{0,12}(?:\.[0-9]{1,6})?|0+\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "16000"
    )]
    pub amount: String,
    /// Makes a retry one stake; defaults to a fresh one.
    pub reference: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Stake")
)]
pub struct StakeView {
    pub id: String,
    /// $IO.
    pub amount: String,
    /// `active`, `unbonding`, `withdrawn`, or `slashed` (taken whole by slashing cases).
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When an unbonding stake may be withdrawn.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub available_at: Option<Timestamp>,
}

impl From<staking::Stake> for StakeView {
    fn from(s: staking::Stake) -> Self {
        StakeView {
            id: s.id,
            amount: Money::from_micros(s.amount, Currency::Io).to_decimal(),
            status: s.status,
            created_at: s.created_at.into(),
            available_at: s.available_at.map(Timestamp::from),
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "StakeSummary")
)]
pub struct StakeSummary {
    /// $IO staked and active.
    pub active: String,
    /// $IO the organisation's listed and waiting devices need.
    pub required: String,
    /// $IO of active stake that could be unstaked now.
    pub free: String,
    /// $IO co-stakers have staked for the organisation's devices (it counts toward `required`
    /// beside `active`).
    pub co_staked: String,
    pub stakes: Vec<StakeView>,
}

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// Serialises stake decisions of one organisation (see `orgs::lock_org`).
pub(crate) async fn lock_stake(tx: &mut Tx, org_id: &OrgId) -> Result<()> {
    tx_run!(tx, |c| sqlx::query(
        "UPDATE organizations SET updated_at = updated_at WHERE id = $1"
    )
    .bind(org_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

/// The provider's stake: staking, unstaking and withdrawing, and listing the devices it covers.
/// The registry and the agent protocol hold it to list devices once they are verified or
/// their suspension is lifted.
#[derive(Clone)]
pub struct Stake {
    db: Db,
    catalog: Arc<Catalog>,
    /// The stake per GPU and the model multipliers in force.
    governance: Governance,
}

impl Stake {
    pub(crate) fn new(db: Db, catalog: Arc<Catalog>, governance: Governance) -> Self {
        Stake {
            db,
            catalog,
            governance,
        }
    }

    /// $IO micro-units of stake a device of `gpu_count` × `gpu_model` needs now (one GPU's
    /// worth for a CPU-only device), under the parameters in force.
    pub fn required(&self, gpu_model: Option<&str>, gpu_count: i64) -> i64 {
        self.governance
            .in_force()
            .params
            .required_stake(&self.catalog, gpu_model, gpu_count)
    }

    /// $IO micro-units the organisation's listed devices need.
    async fn required_in(&self, tx: &mut Tx, org_id: &OrgId) -> Result<i64> {
        let rows: Vec<(Option<String>, i64, String)> = tx_run!(tx, |c| sqlx::query_as(
            "SELECT gpu_model, gpu_count, status FROM devices WHERE org_id = $1 \
             AND (status IN ('available', 'busy', 'maintenance', 'offline') OR (status = 'suspended' AND verified_at IS NOT NULL))"
        )
        .bind(org_id)
        .fetch_all(c)
        .await)
        .map_err(DbError::from)?;
        let params = self.governance.in_force().params;
        Ok(rows
            .iter()
            .map(|(m, n, _)| params.required_stake(&self.catalog, m.as_deref(), *n))
            .sum())
    }

    /// $IO micro-units of co-stake backing the organisation's devices now.
    async fn co_staked_in(tx: &mut Tx, org_id: &OrgId) -> Result<i64> {
        crate::costaking::Costaking::backing_in(tx, org_id, now_micros()).await
    }

    pub async fn summary(&self, actor: &Actor) -> Result<StakeSummary> {
        actor.authorize(Action::BillingRead)?;
        let mut tx = self.db.begin().await?;
        let active = staking::active_in(&mut tx, &actor.org_id).await?;
        let co_staked = Self::co_staked_in(&mut tx, &actor.org_id).await?;
        let required = self.required_in(&mut tx, &actor.org_id).await?;
        let stakes = staking::stakes_in(&mut tx, &actor.org_id).await?;
        drop(tx);
        Ok(StakeSummary {
            active: io(active),
            required: io(required),
            free: io((active + co_staked - required).max(0).min(active)),
            co_staked: io(co_staked),
            stakes: stakes.into_iter().map(StakeView::from).collect(),
        })
    }

    /// Stakes $IO from the organisation's balance, then lists every verified device the stake
    /// now covers.
    pub async fn stake(&self, actor: &Actor, req: StakeRequest) -> Result<StakeView> {
        actor.authorize(Action::BillingManage)?;
        let amount = Money::parse(&req.amount, Currency::Io)
            .map_err(|e| Error::validation("amount", e.to_string()))?;
        if !amount.is_positive() {
            return Err(Error::validation("amount", "must be positive"));
        }
        let reference = match req.reference.as_deref().map(str::trim) {
            Some(r) if r.is_empty() || r.len() > 200 => {
                return Err(Error::validation(
                    "reference",
                    "must be 1 to 200 characters",
                ));
            }
            Some(r) => r.to_string(),
            None => iocloud_db::ids::new_id("ref"),
        };
        let mut tx = self.db.begin().await?;
        lock_stake(&mut tx, &actor.org_id).await?;
        let stake = staking::stake_in(&mut tx, &actor.org_id, amount, &reference).await?;
        self.list_covered_in(&mut tx, &actor.org_id).await?;
        tx.commit().await?;
        Ok(stake.into())
    }

    /// Starts the 14-day cooldown of a stake, if the rest still covers the listed devices.
    pub async fn unstake(&self, actor: &Actor, id: &str) -> Result<StakeView> {
        actor.authorize(Action::BillingManage)?;
        let mut tx = self.db.begin().await?;
        lock_stake(&mut tx, &actor.org_id).await?;
        let stake = staking::stake_in_tx(&mut tx, &actor.org_id, id)
            .await?
            .ok_or(Error::NotFound("stake"))?;
        if stake.status != "active" {
            return Ok(stake.into());
        }
        let active = staking::active_in(&mut tx, &actor.org_id).await?
            + Self::co_staked_in(&mut tx, &actor.org_id).await?;
        let required = self.required_in(&mut tx, &actor.org_id).await?;
        if active - stake.amount < required {
            return Err(Error::Conflict {
                code: ErrorCode::StakeRequired,
                message: format!(
                    "your listed devices need {} $IO staked; without this stake {} would remain. Retire devices or stake more first",
                    io(required),
                    io(active - stake.amount)
                ),
            });
        }
        let stake = staking::unbond_in(&mut tx, &actor.org_id, id, now_micros())
            .await?
            .ok_or(Error::NotFound("stake"))?;
        tx.commit().await?;
        Ok(stake.into())
    }

    /// Returns an unbonded stake to the available balance after its cooldown.
    pub async fn withdraw(&self, actor: &Actor, id: &str) -> Result<StakeView> {
        actor.authorize(Action::BillingManage)?;
        let mut tx = self.db.begin().await?;
        lock_stake(&mut tx, &actor.org_id).await?;
        let stake = staking::withdraw_in(&mut tx, &actor.org_id, id, now_micros())
            .await?
            .ok_or(Error::NotFound("stake"))?;
        tx.commit().await?;
        Ok(stake.into())
    }

    /// Lists every `pending_stake` device of the organisation that the active stake covers,
    /// oldest first, and gives the others the reason they wait.
    pub(crate) async fn list_covered_in(&self, tx: &mut Tx, org_id: &OrgId) -> Result<()> {
        let active = staking::active_in(tx, org_id).await? + Self::co_staked_in(tx, org_id).await?;
        let mut required = self.required_in(tx, org_id).await?;
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE org_id = $1 AND status = 'pending_stake' ORDER BY id"
        );
        let waiting: Vec<DeviceRow> =
            tx_run!(tx, |c| sqlx::query_as(&sql).bind(org_id).fetch_all(c).await)
                .map_err(DbError::from)?;
        let now = now_micros();
        for d in waiting {
            let need = self.required(d.gpu_model.as_deref(), d.gpu_count);
            if required + need <= active {
                required += need;
                transition_in(
                    tx,
                    &d.id,
                    org_id,
                    DeviceStatus::PendingStake,
                    listed_status(d.gpus_free, d.gpu_count),
                    "verified and covered by stake",
                    now,
                )
                .await?;
            } else {
                let reason = format!(
                    "needs {} $IO of stake; {} of the {} active is free",
                    io(need),
                    io((active - required).max(0)),
                    io(active)
                );
                tx_run!(tx, |c| sqlx::query(
                    "UPDATE devices SET status_reason = $1 WHERE id = $2 AND status = 'pending_stake'"
                )
                .bind(&reason)
                .bind(&d.id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
                .map_err(DbError::from)?;
            }
        }
        Ok(())
    }
}
