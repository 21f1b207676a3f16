//! The governance pass: closes the votes that ended and executes the changes whose timelock
//! ended. Every step is a conditional update from the state before it, so two replicas closing
//! the same vote close it once, and a crash between the close and the execution leaves a
//! queued change that the next pass executes: a change applies exactly once (its version's
//! row is unique per proposal).

use std::time::Duration;

use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run, tx_run};

use super::proposals::{COLUMNS, ProposalRow};
use super::{Governance, ProposalStatus};
use crate::Result;
use crate::rewards::MICROS_PER_HOUR;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GovernancePass {
    pub closed: usize,
    pub executed: usize,
}

/// The lease one replica at a time closes and executes under.
const LEASE: &str = "governance";

/// How long before it takes effect every replica has read a new version (each reads the
/// latest on every pass, a minute apart at most).
const LEAD: i64 = 15 * 60 * 1_000_000;

/// When a change executed at `now` takes effect: the start of the first hour at least
/// [`LEAD`] away. Each hour's block and each hour's usage lines then fall under one version,
/// and every replica charges with it from its first second.
pub(super) fn effective_from(now: i64) -> i64 {
    (now + LEAD + MICROS_PER_HOUR - 1).div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR
}

/// Whether the votes cast decide for the proposal: the quorum of all stake reached, and yes
/// above the threshold's share of yes and no.
pub(super) fn passes(r: &ProposalRow, yes: i64, no: i64, abstain: i64) -> bool {
    let cast = i128::from(yes) + i128::from(no) + i128::from(abstain);
    let quorum = cast * 10_000 >= i128::from(r.quorum_bps) * i128::from(r.total_weight);
    let decided = i128::from(yes) + i128::from(no);
    let majority = decided > 0 && i128::from(yes) * 10_000 > i128::from(r.threshold_bps) * decided;
    r.total_weight > 0 && quorum && majority
}

impl Governance {
    /// Closes due votes and executes due changes at `now`, then reads the latest parameters
    /// into this replica's copy (every replica runs it; the lease lets one at a time write).
    pub async fn run_pass(&self, now: i64) -> Result<GovernancePass> {
        let mut pass = GovernancePass::default();
        if self.leases.acquire(LEASE, Duration::from_secs(60)).await? {
            pass.closed = self.close_due(now).await?;
            pass.executed = self.execute_due(now).await?;
        }
        self.refresh().await?;
        Ok(pass)
    }

    async fn close_due(&self, now: i64) -> Result<usize> {
        let sql =
            format!("SELECT {COLUMNS} FROM proposals WHERE status = 'voting' AND ends_at <= $1");
        let due: Vec<ProposalRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(now)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let mut closed = 0;
        for r in due {
            let (yes, no, abstain, _) = self.tally(&r.id).await?;
            let (status, executes_at) = match (passes(&r, yes, no, abstain), r.change.is_some()) {
                (false, _) => (ProposalStatus::Rejected, None),
                (true, false) => (ProposalStatus::Passed, None),
                (true, true) => (
                    ProposalStatus::Queued,
                    Some(r.ends_at + self.settings.timelock.as_micros() as i64),
                ),
            };
            let done = db_run!(&self.db, |p| sqlx::query(
                "UPDATE proposals SET status = $2, yes_weight = $3, no_weight = $4, abstain_weight = $5, \
                 closed_at = $6, executes_at = $7, updated_at = $6 WHERE id = $1 AND status = 'voting'"
            )
            .bind(&r.id)
            .bind(status.as_str())
            .bind(yes)
            .bind(no)
            .bind(abstain)
            .bind(now)
            .bind(executes_at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if done == 1 {
                tracing::info!(proposal = %r.id, status = status.as_str(), "vote closed");
                closed += 1;
            }
        }
        Ok(closed)
    }

    async fn execute_due(&self, now: i64) -> Result<usize> {
        let sql = format!(
            "SELECT {COLUMNS} FROM proposals WHERE status = 'queued' AND executes_at <= $1 ORDER BY executes_at, id"
        );
        let due: Vec<ProposalRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(now)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let mut executed = 0;
        for r in due {
            let Some(change) = r.change() else {
                continue;
            };
            let mut tx = self.db.begin().await?;
            let latest: Option<(i64, String)> = tx_run!(&mut tx, |c| sqlx::query_as(
                "SELECT version, params FROM protocol_params ORDER BY version DESC LIMIT 1"
            )
            .fetch_optional(c)
            .await)
            .map_err(DbError::from)?;
            let (version, current) = match latest {
                Some((v, json)) => (
                    v,
                    serde_json::from_str(&json).map_err(|_| crate::Error::CorruptData {
                        column: "protocol_params.params",
                        value: json.clone(),
                    })?,
                ),
                None => (1, self.launch.clone()),
            };
            // A change the ranges no longer allow is rejected rather than applied.
            let (status, next) = match current.with(&change, &self.catalog) {
                Ok(next) => (ProposalStatus::Executed, Some(next)),
                Err(e) => {
                    tracing::warn!(proposal = %r.id, error = %e, "a queued change is out of range now");
                    (ProposalStatus::Rejected, None)
                }
            };
            let new_version = next.as_ref().map(|_| version + 1);
            let moved = tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE proposals SET status = $2, executed_at = $3, params_version = $4, updated_at = $3 \
                 WHERE id = $1 AND status = 'queued'"
            )
            .bind(&r.id)
            .bind(status.as_str())
            .bind(now)
            .bind(new_version)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if moved == 0 {
                continue;
            }
            if let Some(next) = next {
                let json = serde_json::to_string(&next)
                    .map_err(|e| crate::Error::Internal(e.to_string()))?;
                tx_run!(&mut tx, |c| sqlx::query(
                    "INSERT INTO protocol_params (version, params, proposal_id, effective_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)"
                )
                .bind(version + 1)
                .bind(&json)
                .bind(&r.id)
                .bind(effective_from(now))
                .bind(now)
                .execute(c)
                .await
                .map(|_| ()))
                .map_err(DbError::from)?;
                executed += 1;
                tracing::info!(proposal = %r.id, version = version + 1, "parameters changed");
            }
            tx.commit().await?;
        }
        Ok(executed)
    }

    /// Runs [`Governance::run_pass`] every `interval` until the process ends.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                if let Err(e) = this.run_pass(now_micros()).await {
                    tracing::warn!(error = %e, "governance pass failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(total: i64, quorum_bps: i64, threshold_bps: i64) -> ProposalRow {
        ProposalRow {
            id: "prp_1".into(),
            org_id: None,
            title: "t".into(),
            body: "b".into(),
            change: None,
            status: "voting".into(),
            starts_at: 0,
            ends_at: 0,
            total_weight: total,
            quorum_bps,
            threshold_bps,
            yes_weight: 0,
            no_weight: 0,
            abstain_weight: 0,
            closed_at: None,
            executes_at: None,
            veto_reason: None,
            executed_at: None,
            params_version: None,
        }
    }

    #[test]
    fn a_change_takes_effect_on_the_hour_after_the_lead() {
        let h = MICROS_PER_HOUR;
        assert_eq!(effective_from(10 * h), 11 * h);
        assert_eq!(effective_from(10 * h + 45 * 60_000_000), 11 * h);
        assert_eq!(effective_from(10 * h + 46 * 60_000_000), 12 * h);
    }

    #[test]
    fn quorum_counts_abstentions_and_the_threshold_does_not() {
        let simple = row(1_000, 1_000, 5_000);
        assert!(
            !passes(&simple, 50, 40, 0),
            "90 of 1,000 is under the 10 % quorum"
        );
        assert!(passes(&simple, 51, 40, 9), "abstentions make the quorum");
        assert!(!passes(&simple, 50, 50, 100), "a tie is not a majority");
        let change = row(1_000, 1_000, 6_666);
        assert!(passes(&change, 200, 100, 0), "two thirds pass a change");
        assert!(!passes(&change, 199, 101, 0));
        assert!(!passes(&row(0, 1_000, 5_000), 0, 0, 0), "nobody staked");
    }
}
