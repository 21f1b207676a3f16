//! Hourly block rewards: once an hour, on one replica, the hour's emission is minted and shared
//! among the devices that earned it, and every device the block considered keeps a row saying
//! what it earned or why it earned nothing. The rules and the arithmetic are pure
//! (`iocloud_billing::rewards`, `iocloud_billing::emission`); this service reads the hour's
//! facts, writes the block, and catches up every hour missed while no replica ran.

mod block;
mod facts;
mod supply;
mod views;

pub use supply::Supply;
pub use views::{BlockDetail, BlockView, DeviceBlockView, DeviceEarnings, RewardsSummary};

use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::emission::{EmissionParams, Schedule};
use iocloud_billing::rewards::RewardParams;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run};

use crate::governance::Governance;
use crate::leases::Leases;
use crate::providers::Catalog;
use crate::{Error, Result};

/// An hour in microseconds: a block's span.
pub const MICROS_PER_HOUR: i64 = iocloud_billing::emission::MICROS_PER_HOUR;

/// The lease only one replica at a time writes blocks under.
const LEASE: &str = "reward-blocks";

/// The most blocks one pass writes: a replica back after a long outage catches up over a few
/// passes instead of holding the lease for minutes.
const BLOCKS_PER_PASS: usize = 48;

/// What writing one block did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockReport {
    pub hour: i64,
    /// False when the block had been written before (nothing changed).
    pub written: bool,
    pub devices: usize,
    pub eligible: i64,
    /// Micro-$IO minted.
    pub emission: i64,
}

/// The hourly blocks. Cheap to clone.
#[derive(Clone)]
pub struct Rewards {
    db: Db,
    catalog: Arc<Catalog>,
    leases: Leases,
    schedule: Arc<Schedule>,
    /// The reward rules of the parameters in force at each block's hour.
    governance: Governance,
    /// Silence longer than this breaks a device's hour.
    heartbeat_timeout: Duration,
    /// How long after an hour ends its block is written: late heartbeats and proofs answered
    /// at the hour's end are in by then.
    delay: Duration,
}

impl Rewards {
    pub(crate) fn new(
        db: Db,
        catalog: Arc<Catalog>,
        leases: Leases,
        heartbeat_timeout: Duration,
        delay: Duration,
        governance: Governance,
    ) -> Result<Self> {
        let schedule = Schedule::new(EmissionParams::default())
            .map_err(|e| Error::Internal(format!("the emission schedule: {e}")))?;
        Ok(Rewards {
            db,
            catalog,
            leases,
            schedule: Arc::new(schedule),
            governance,
            heartbeat_timeout,
            delay,
        })
    }

    /// The emission schedule in force.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The reward rules in force (this replica's copy of the latest parameters).
    pub fn params(&self) -> RewardParams {
        let v = self.governance.in_force();
        v.params.reward_params(v.version)
    }

    /// Micro-$IO the block of `hour` (hours since the epoch) mints.
    pub fn emission_of(&self, hour: i64) -> i64 {
        self.schedule
            .hour_emission(self.schedule.hour_at(hour * MICROS_PER_HOUR))
    }

    /// Works out and writes the block of `hour` (hours since the epoch) from what is stored.
    /// Writing it again changes nothing. The caller makes sure the hour is over.
    pub async fn run_block(&self, hour: i64) -> Result<BlockReport> {
        let (start, end) = (hour * MICROS_PER_HOUR, (hour + 1) * MICROS_PER_HOUR);
        let in_force = self.governance.params_at(start).await?;
        let facts =
            facts::read(&self.db, &self.catalog, &in_force.params, hour, start, end).await?;
        let emission = self.emission_of(hour);
        let params = in_force.params.reward_params(in_force.version);
        let computed = block::compute(
            &params,
            &in_force.params,
            &self.catalog,
            &facts,
            emission,
            (start, end),
            self.heartbeat_timeout.as_micros() as i64,
        );
        let written = block::write(&self.db, hour, params.version, &computed).await?;
        Ok(BlockReport {
            hour,
            written,
            devices: computed.rows.len(),
            eligible: computed.eligible(),
            emission,
        })
    }

    /// The hours whose blocks are due at `now` and not written, oldest first (at most
    /// [`BLOCKS_PER_PASS`]): from the block after the last one written to the last hour over
    /// for at least the delay. With no block yet, only that last hour: a deployment that gains
    /// blocks (or a new network) starts from its present, and hours before it never had the
    /// facts a block needs, so minting for them would only fill the pool with what nobody could
    /// earn.
    async fn due(&self, now: i64) -> Result<Vec<i64>> {
        let (last, first_verified): (Option<i64>, Option<i64>) = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT (SELECT MAX(hour) FROM reward_blocks), (SELECT MIN(verified_at) FROM devices)",
            )
            .fetch_one(p)
            .await
        })
        .map_err(DbError::from)?;
        // The last hour whose end is at least `delay` ago.
        let until = (now - self.delay.as_micros() as i64).div_euclid(MICROS_PER_HOUR) - 1;
        let from = match (last, first_verified) {
            (Some(h), _) => h + 1,
            (None, Some(v)) => v.div_euclid(MICROS_PER_HOUR).max(until),
            (None, None) => return Ok(Vec::new()),
        };
        Ok((from..=until).take(BLOCKS_PER_PASS).collect())
    }

    /// Writes every block due at `now` under the lease (another replica holding it: nothing).
    pub async fn run_due(&self, now: i64) -> Result<Vec<BlockReport>> {
        let ttl = Duration::from_secs(120);
        if !self.leases.acquire(LEASE, ttl).await? {
            return Ok(Vec::new());
        }
        let mut reports = Vec::new();
        for hour in self.due(now).await? {
            // Renewed before each block, so a long catch-up keeps it; lost, another replica
            // carries on from the last block written.
            if !self.leases.acquire(LEASE, ttl).await? {
                break;
            }
            reports.push(self.run_block(hour).await?);
        }
        Ok(reports)
    }

    /// Runs the due blocks every `interval` until the process ends; every replica may run
    /// this, the lease lets one at a time write.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                match this.run_due(now_micros()).await {
                    Ok(reports) => {
                        for r in reports.iter().filter(|r| r.written) {
                            tracing::info!(
                                hour = r.hour,
                                devices = r.devices,
                                eligible = r.eligible,
                                emission = r.emission,
                                "block written"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "block pass failed"),
                }
            }
        })
    }
}
