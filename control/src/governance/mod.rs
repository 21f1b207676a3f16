//! Governance by staked $IO: organisations whose stake passes a threshold (or operators) put
//! proposals, in words and optionally with a change of protocol parameters; organisations vote
//! for seven days with the stake they held when the vote opened; a passed change waits out a
//! timelock during which operators may veto it, then applies by itself as a new version of the
//! parameters. Reading is public; proposing and voting need an account.
//!
//! * `params.rs`: the parameters, their ranges and a change (pure).
//! * `proposals.rs`: proposing, voting, vetoing, and reading them.
//! * `pass.rs`: closing votes that ended and executing changes whose timelock ended, once,
//!   whichever replica runs it and wherever it crashes.
//!
//! A change takes effect at the start of an hour, at least a quarter of an hour after it
//! executes, so each hour's block and each hour's charges fall under one version. The
//! parameters are read two ways: a block reads the version in force at its hour's start from
//! the store (so every replica, and a recomputation, gets the same one); charges, quotes,
//! stake and the appeal window read this replica's copy of every version, which each pass
//! refreshes well before a new one takes effect.

mod params;
mod pass;
mod proposals;

use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::ledger::ChargeTerms;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Timestamp, db_run};
use parking_lot::RwLock;
use serde::Serialize;

use crate::Result;
use crate::leases::Leases;
use crate::providers::Catalog;

pub use params::{ModelMultiplier, ParamChange, ParamRange, ProtocolParams, ranges};
pub use pass::GovernancePass;
pub use proposals::{
    Choice, NewProposal, Proposal, ProposalStatus, VetoRequest, Vote, VoteRequest, voter,
};

/// How votes are run.
#[derive(Clone, Debug)]
pub struct GovernanceSettings {
    pub voting_period: Duration,
    pub timelock: Duration,
    /// Votes cast (yes, no and abstain) must weigh at least this share of all stake.
    pub quorum_bps: i64,
    /// The share of yes among yes and no a proposal in words must exceed (a simple majority).
    pub threshold_bps: i64,
    /// The same for a change of parameters (two thirds).
    pub change_threshold_bps: i64,
    /// $IO micro-units an organisation needs staked to propose.
    pub proposal_stake: i64,
}

impl Default for GovernanceSettings {
    fn default() -> Self {
        GovernanceSettings {
            voting_period: Duration::from_secs(7 * 24 * 3600),
            timelock: Duration::from_secs(48 * 3600),
            quorum_bps: 1_000,
            threshold_bps: 5_000,
            change_threshold_bps: 6_666,
            proposal_stake: 100_000 * 1_000_000,
        }
    }
}

/// One version of the parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ParamsVersion {
    pub version: i64,
    pub params: ProtocolParams,
    /// The proposal that made it; none for the launch policy.
    pub proposal_id: Option<String>,
    /// From when it is in force; none for the launch policy.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub effective_at: Option<Timestamp>,
}

impl ParamsVersion {
    /// What usage is charged under while this version is in force.
    pub fn charge_terms(&self) -> ChargeTerms {
        ChargeTerms {
            fee_bps: self.params.fee_bps(),
            params_version: self.version,
        }
    }
}

/// The parameters in force, their ranges and their history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ParamsView {
    pub in_force: ParamsVersion,
    /// An executed change not yet in force: it takes effect at its `effective_at`.
    pub next: Option<ParamsVersion>,
    pub ranges: Vec<ParamRange>,
    /// Every version, newest first.
    pub history: Vec<ParamsVersion>,
}

/// Governance. Cheap to clone.
#[derive(Clone)]
pub struct Governance {
    db: Db,
    leases: Leases,
    catalog: Arc<Catalog>,
    settings: GovernanceSettings,
    /// Version 1: the server's settings.
    launch: ProtocolParams,
    /// This replica's copy of every version, newest first (version 1 last).
    versions: Arc<RwLock<Arc<Vec<ParamsVersion>>>>,
}

impl Governance {
    pub(crate) fn new(
        db: Db,
        leases: Leases,
        catalog: Arc<Catalog>,
        settings: GovernanceSettings,
        launch: ProtocolParams,
    ) -> Governance {
        let first = launch_version(&launch);
        Governance {
            db,
            leases,
            catalog,
            settings,
            launch,
            versions: Arc::new(RwLock::new(Arc::new(vec![first]))),
        }
    }

    pub fn settings(&self) -> &GovernanceSettings {
        &self.settings
    }

    /// The parameters in force now, from this replica's copy (each pass reads it again).
    pub fn in_force(&self) -> ParamsVersion {
        self.in_force_at(now_micros())
    }

    /// The parameters in force at `micros`, from this replica's copy.
    pub fn in_force_at(&self, micros: i64) -> ParamsVersion {
        let versions = self.versions.read().clone();
        versions
            .iter()
            .find(|v| v.effective_at.is_none_or(|at| at.micros() <= micros))
            .cloned()
            .unwrap_or_else(|| launch_version(&self.launch))
    }

    /// The version in force at `micros`: the newest that took effect by then.
    pub async fn params_at(&self, micros: i64) -> Result<ParamsVersion> {
        let row: Option<VersionRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT version, params, proposal_id, effective_at FROM protocol_params \
             WHERE effective_at <= $1 ORDER BY version DESC LIMIT 1"
        )
        .bind(micros)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        match row {
            Some(r) => r.into_version(),
            None => Ok(launch_version(&self.launch)),
        }
    }

    /// Reads every version into this replica's copy.
    pub async fn refresh(&self) -> Result<()> {
        let versions = self.versions().await?;
        *self.versions.write() = Arc::new(versions);
        Ok(())
    }

    /// Every version, newest first, version 1 last.
    async fn versions(&self) -> Result<Vec<ParamsVersion>> {
        let rows: Vec<VersionRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT version, params, proposal_id, effective_at FROM protocol_params ORDER BY version DESC"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut history = rows
            .into_iter()
            .map(VersionRow::into_version)
            .collect::<Result<Vec<_>>>()?;
        history.push(launch_version(&self.launch));
        Ok(history)
    }

    /// The parameters in force, the next ones if a change awaits its hour, their ranges and
    /// every version, newest first.
    pub async fn params(&self) -> Result<ParamsView> {
        let history = self.versions().await?;
        let now = now_micros();
        let in_force = history
            .iter()
            .find(|v| v.effective_at.is_none_or(|at| at.micros() <= now))
            .cloned()
            .unwrap_or_else(|| launch_version(&self.launch));
        let next = history
            .first()
            .filter(|v| v.version > in_force.version)
            .cloned();
        Ok(ParamsView {
            in_force,
            next,
            ranges: ranges(),
            history,
        })
    }
}

fn launch_version(launch: &ProtocolParams) -> ParamsVersion {
    ParamsVersion {
        version: 1,
        params: launch.clone(),
        proposal_id: None,
        effective_at: None,
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    version: i64,
    params: String,
    proposal_id: String,
    effective_at: i64,
}

impl VersionRow {
    fn into_version(self) -> Result<ParamsVersion> {
        let params = serde_json::from_str(&self.params).map_err(|_| crate::Error::CorruptData {
            column: "protocol_params.params",
            value: self.params.clone(),
        })?;
        Ok(ParamsVersion {
            version: self.version,
            params,
            proposal_id: Some(self.proposal_id),
            effective_at: Some(self.effective_at.into()),
        })
    }
}
