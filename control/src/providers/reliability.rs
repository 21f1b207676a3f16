//! Reliability learned from history: an exponentially weighted average per device and per
//! provider, in basis points.
//!
//! Observations: each whole hour, the share of its minutes a device was heard (devices that
//! should be up: available, busy or offline; maintenance is planned and not held against
//! anyone); and each node that came up (10,000) or failed (0). A score moves part of the way
//! toward each observation ([`HOUR_WEIGHT`], [`NODE_WEIGHT`]), so one failure costs a fifth of
//! the distance to zero and about fifteen good hours win most of it back. A provider's score
//! follows the mean of its devices' hours and every one of their node outcomes. Placement ranks
//! a device by `0.7 × device + 0.3 × provider` (docs/placement.md).
//!
//! Every update is a set-based statement guarded by the hour it scores, so several replicas
//! running the hourly job score each hour once.

use std::sync::Arc;

use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run, tx_run};

use crate::Result;
use crate::batcher::Batcher;

/// Node outcomes waiting to move their providers' scores: (provider, observed bps).
pub type ProviderOutcomes = Batcher<(String, i64), Result<()>>;

/// Where a new device or provider starts.
pub const PRIOR_BPS: i64 = 9_000;
/// How far one scored hour moves a score toward what was seen, of 10,000.
pub const HOUR_WEIGHT: i64 = 1_000;
/// How far one node outcome moves a score, of 10,000.
pub const NODE_WEIGHT: i64 = 2_000;

const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// Reads and writes of a batch of node outcomes before giving up: each failed write is
/// another writer's progress.
const SCORE_TRIES: usize = 16;

/// One step of the average: `score + (observed − score) × weight / 10,000`, in integers, as
/// the SQL below computes it.
pub fn ewma(score: i64, observed: i64, weight: i64) -> i64 {
    score + (observed - score) * weight / 10_000
}

/// What placement ranks a device by.
pub fn combined(device_bps: i64, provider_bps: i64) -> u32 {
    ((7 * device_bps + 3 * provider_bps) / 10).clamp(0, 10_000) as u32
}

/// The SQL of [`ewma`] for a column, an observation and a weight given as text.
fn ewma_sql(score: &str, observed: &str, weight: i64) -> String {
    format!("{score} + (({observed}) - {score}) * {weight} / 10000")
}

/// The `SET` of a device row that moves its score toward one node outcome, `observed` bps
/// (10,000 for ready, 0 for failed) at `now`: SQL expressions, placeholders or literals. Only
/// a failure stamps `updated_at` ([`Reliability::record_node_outcome`] says why).
pub(crate) fn node_outcome_set(observed: &str, now: &str) -> String {
    format!(
        "reliability_bps = {}, updated_at = CASE WHEN {observed} < 10000 AND updated_at < {now} THEN {now} ELSE updated_at END",
        ewma_sql("reliability_bps", observed, NODE_WEIGHT)
    )
}

/// The learned scores: scored each hour, moved by node outcomes, read for uptime. Shared by
/// the device registry (its hourly job, its uptime) and the agent protocol (node outcomes).
#[derive(Clone)]
pub struct Reliability {
    db: Db,
    /// Shared by every clone, so that outcomes arriving together move a provider's row once.
    provider_outcomes: Arc<ProviderOutcomes>,
}

impl Reliability {
    pub(crate) fn new(db: Db) -> Self {
        Reliability {
            db,
            provider_outcomes: Default::default(),
        }
    }

    /// Scores the last whole hour into every device that has not had it yet, then into their
    /// providers. Cheap when there is nothing to do: run it with the device sweep.
    pub async fn score(&self, now: i64) -> Result<u64> {
        let hour = now.div_euclid(MICROS_PER_HOUR) - 1;
        let heard = "COALESCE((SELECT u.minutes FROM device_uptime u WHERE u.device_id = devices.id AND u.hour = $1), 0) * 10000 / 60";
        let sql = format!(
            "UPDATE devices SET reliability_bps = {}, reliability_hour = $1, updated_at = $2 \
             WHERE reliability_hour < $1 AND status IN ('available', 'busy', 'offline') AND verified_at IS NOT NULL",
            ewma_sql("reliability_bps", heard, HOUR_WEIGHT)
        );
        let scored = db_run!(&self.db, |p| sqlx::query(&sql)
            .bind(hour)
            .bind(now_micros())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if scored == 0 {
            return Ok(0);
        }
        // Providers: the mean of their scored devices' hours.
        let mean = "(SELECT CAST(SUM(COALESCE((SELECT u.minutes FROM device_uptime u WHERE u.device_id = d.id AND u.hour = $1), 0)) AS BIGINT) \
                    * 10000 / (60 * COUNT(*)) FROM devices d WHERE d.org_id = provider_reliability.org_id AND d.reliability_hour = $1)";
        let statements = [
            "INSERT INTO provider_reliability (org_id, reliability_bps, scored_hour, updated_at) \
             SELECT DISTINCT org_id, 9000, 0, $2 FROM devices WHERE reliability_hour = $1 ON CONFLICT (org_id) DO NOTHING"
                .to_string(),
            format!(
                "UPDATE provider_reliability SET reliability_bps = {}, scored_hour = $1, updated_at = $2 \
                 WHERE scored_hour < $1 AND org_id IN (SELECT org_id FROM devices WHERE reliability_hour = $1)",
                ewma_sql("reliability_bps", mean, HOUR_WEIGHT)
            ),
        ];
        let mut tx = self.db.begin().await?;
        for sql in &statements {
            tx_run!(&mut tx, |c| sqlx::query(sql)
                .bind(hour)
                .bind(now_micros())
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
        }
        tx.commit().await?;
        Ok(scored)
    }

    /// Moves the device's and its provider's scores toward a node outcome (ready or failed).
    /// Two separate writes, outside the report's transaction: a soft score is not worth
    /// holding the device's row (which claims need) while the provider's row is busy. Every
    /// report of a provider's devices moves that one row, so outcomes arriving together move
    /// it once ([`ProviderOutcomes`]). A crash in between loses one observation.
    ///
    /// Only a failure stamps the device's `updated_at`, which sends it to every replica's
    /// placement index at once: its lower score may now put it under a request's minimum. A
    /// success reaches the index with the device's next change (its node's GPUs coming back,
    /// the next claim), as a provider's score does; leaving `updated_at` alone lets Postgres
    /// rewrite the row in place (a HOT update) instead of adding to each of the devices'
    /// indexes. The stamp never moves back: a give-back may have stamped a later time.
    pub(crate) async fn record_node_outcome(
        &self,
        device_id: &str,
        provider_org_id: &str,
        ok: bool,
        now: i64,
    ) -> Result<()> {
        let observed = if ok { 10_000 } else { 0 };
        let device = format!(
            "UPDATE devices SET {} WHERE id = $2",
            node_outcome_set("$1", "$3")
        );
        db_run!(&self.db, |p| sqlx::query(&device)
            .bind(observed)
            .bind(device_id)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        self.record_provider_outcome(provider_org_id, ok, now).await
    }

    /// The provider's half of [`Reliability::record_node_outcome`], for a caller that moved the
    /// device's score itself (with [`node_outcome_set`]).
    pub(crate) async fn record_provider_outcome(
        &self,
        provider_org_id: &str,
        ok: bool,
        now: i64,
    ) -> Result<()> {
        let observed = if ok { 10_000 } else { 0 };
        let this = self.clone();
        self.provider_outcomes
            .submit(
                (provider_org_id.to_string(), observed),
                move |batch| async move {
                    let result = this.move_provider_scores(&batch, now).await;
                    batch
                        .iter()
                        .map(|_| {
                            result
                                .as_ref()
                                .map(|_| ())
                                .map_err(|e| crate::Error::Internal(e.to_string()))
                        })
                        .collect()
                },
            )
            .await
            .unwrap_or_else(|| Err(crate::Error::Internal("a node outcome was dropped".into())))
    }

    /// Applies outcomes (provider, observed) to the providers' scores in the order they came:
    /// the rows are read, moved step by step here, and each written back only if it still
    /// holds what was read. Another replica's batch, or the hourly scoring, may have moved a
    /// row in between: its outcomes are applied again from a fresh read. No transaction, and
    /// no row held locked across round trips.
    async fn move_provider_scores(&self, outcomes: &[(String, i64)], now: i64) -> Result<()> {
        let mut pending: Vec<&(String, i64)> = outcomes.iter().collect();
        for _ in 0..SCORE_TRIES {
            let moved = match self.provider_scores_round(&pending, now).await {
                Ok(moved) => moved,
                // A deadlock or a busy database: nothing was written by that statement.
                Err(crate::Error::Db(e)) if e.is_retryable() => continue,
                Err(e) => return Err(e),
            };
            pending.retain(|(org, _)| !moved.contains(org));
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(crate::Error::Internal(
            "providers' scores kept moving while node outcomes were applied".into(),
        ))
    }

    /// One read, fold and write of the pending outcomes; answers the providers written.
    async fn provider_scores_round(
        &self,
        pending: &[&(String, i64)],
        now: i64,
    ) -> Result<std::collections::HashSet<String>> {
        let mut orgs: Vec<&str> = pending.iter().map(|(org, _)| org.as_str()).collect();
        orgs.sort_unstable();
        orgs.dedup();
        let read = format!(
            "SELECT org_id, reliability_bps FROM provider_reliability WHERE org_id IN ({})",
            iocloud_db::sql::params(orgs.len())
        );
        let rows: Vec<(String, i64)> = db_run!(&self.db, |p| {
            let mut q = sqlx::query_as(&read);
            for org in &orgs {
                q = q.bind(*org);
            }
            q.fetch_all(p).await
        })
        .map_err(DbError::from)?;
        let read: std::collections::BTreeMap<&str, i64> =
            rows.iter().map(|(org, bps)| (org.as_str(), *bps)).collect();
        let missing: Vec<&str> = orgs
            .iter()
            .copied()
            .filter(|org| !read.contains_key(org))
            .collect();
        if !missing.is_empty() {
            // A provider's first outcome: its row starts at the prior, then moves.
            self.start_provider_scores(&missing, now).await?;
            return Ok(Default::default());
        }
        let mut scores = read.clone();
        for (org, observed) in pending {
            if let Some(score) = scores.get_mut(org.as_str()) {
                *score = ewma(*score, *observed, NODE_WEIGHT);
            }
        }
        self.write_provider_scores(&read, &scores, now).await
    }

    async fn start_provider_scores(&self, orgs: &[&str], now: i64) -> Result<()> {
        let values: Vec<String> = (0..orgs.len())
            .map(|i| format!("(${}, {PRIOR_BPS}, 0, ${})", i + 1, orgs.len() + 1))
            .collect();
        let sql = format!(
            "INSERT INTO provider_reliability (org_id, reliability_bps, scored_hour, updated_at) VALUES {} \
             ON CONFLICT (org_id) DO NOTHING",
            values.join(", ")
        );
        db_run!(&self.db, |p| {
            let mut q = sqlx::query(&sql);
            for org in orgs {
                q = q.bind(*org);
            }
            q.bind(now).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Writes each provider's new score where its row still holds the one read; answers the
    /// providers written.
    async fn write_provider_scores(
        &self,
        read: &std::collections::BTreeMap<&str, i64>,
        scores: &std::collections::BTreeMap<&str, i64>,
        now: i64,
    ) -> Result<std::collections::HashSet<String>> {
        let sql = format!(
            "UPDATE provider_reliability SET reliability_bps = d.next_bps, updated_at = ${} \
             FROM (SELECT column1 AS org_id, column2 AS read_bps, column3 AS next_bps FROM (VALUES {}) AS v) AS d \
             WHERE provider_reliability.org_id = d.org_id AND provider_reliability.reliability_bps = d.read_bps \
             RETURNING provider_reliability.org_id",
            3 * scores.len() + 1,
            iocloud_db::sql::rows(scores.len(), 3)
        );
        let moved: Vec<String> = db_run!(&self.db, |p| {
            let mut q = sqlx::query_scalar(&sql);
            for (org, new) in scores {
                q = q.bind(*org).bind(read[org]).bind(*new);
            }
            q.bind(now).fetch_all(p).await
        })
        .map_err(DbError::from)?;
        Ok(moved.into_iter().collect())
    }

    /// A device's learned score and its provider's, in basis points.
    pub async fn of(&self, device_id: &str) -> Result<(i64, i64)> {
        let row: Option<(i64, Option<i64>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT d.reliability_bps, r.reliability_bps FROM devices d \
             LEFT JOIN provider_reliability r ON r.org_id = d.org_id WHERE d.id = $1"
        )
        .bind(device_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let (device, provider) = row.ok_or(crate::Error::NotFound("device"))?;
        Ok((device, provider.unwrap_or(PRIOR_BPS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_costs_and_good_hours_win_it_back() {
        let after_failure = ewma(9_500, 0, NODE_WEIGHT);
        assert_eq!(after_failure, 7_600);
        let mut s = after_failure;
        for _ in 0..15 {
            s = ewma(s, 10_000, HOUR_WEIGHT);
        }
        assert!(s > 9_400, "recovered to {s}");
        // An hour half heard pulls a perfect score down a twentieth.
        assert_eq!(ewma(10_000, 5_000, HOUR_WEIGHT), 9_500);
    }

    #[test]
    fn placement_weighs_device_over_provider() {
        assert_eq!(combined(10_000, 5_000), 8_500);
        assert_eq!(combined(PRIOR_BPS, PRIOR_BPS), 9_000);
    }
}
