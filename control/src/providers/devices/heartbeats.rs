//! Heartbeats: taken into a per-replica buffer and written in batches (one transaction a flush,
//! whatever the rate), the uptime they prove, and the sweep that marks silent devices offline.
//!
//! A heartbeat is an observation, not money: one that sits in the buffer when the process
//! dies is lost, and the device's next heartbeat (20 s later) says the same thing again.

use iocloud_db::ids::OrgId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run, tx_run};
use parking_lot::Mutex;
use serde::Serialize;

use super::Devices;
use crate::Result;
use crate::providers::agent::Heartbeat;
use crate::providers::status::{
    DeviceStatus, listed_status_sql, may_become_sql, may_list_sql, record_events_many_in,
    transition_in,
};

const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Since when a device has been heard without a break, once heartbeat `b` is written over the
/// device row `d` (`$2`: the heartbeat timeout, µs): a first heartbeat, or one after a silence
/// longer than the timeout, starts a new run.
fn heard_since(d: &str) -> String {
    format!(
        "CASE WHEN {d}.last_heartbeat_at IS NULL OR b.at - {d}.last_heartbeat_at > $2 THEN b.at \
         WHEN b.at < {d}.last_heartbeat_at THEN COALESCE({d}.heard_since, {d}.last_heartbeat_at) \
         ELSE COALESCE({d}.heard_since, b.at) END"
    )
}

/// An hour row's column keeping the highest value written to it.
fn larger(column: &str) -> String {
    format!(
        "CASE WHEN excluded.{column} IS NULL THEN device_uptime.{column} \
         WHEN device_uptime.{column} IS NULL OR excluded.{column} > device_uptime.{column} THEN excluded.{column} \
         ELSE device_uptime.{column} END"
    )
}

/// The latest heartbeat of each device not yet written.
#[derive(Default)]
pub struct HeartbeatBuffer {
    pending: Mutex<HashMap<String, (Heartbeat, i64)>>,
    /// Held through a flush, so a flush returns only once every heartbeat pushed before it
    /// is written, whoever took it.
    flushing: tokio::sync::Mutex<()>,
    received: AtomicU64,
    written: AtomicU64,
    flushes: AtomicU64,
    flush_micros: AtomicU64,
    slowest_flush_micros: AtomicU64,
}

impl HeartbeatBuffer {
    pub fn push(&self, device_id: &str, beat: Heartbeat, at: i64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .insert(device_id.to_string(), (beat, at));
    }

    /// Devices waiting to be written: the backlog.
    pub fn backlog(&self) -> usize {
        self.pending.lock().len()
    }

    /// (heartbeats received, device rows written) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.written.load(Ordering::Relaxed),
        )
    }

    /// (flushes written, mean and slowest flush in microseconds) since start.
    pub fn flush_times(&self) -> (u64, u64, u64) {
        let n = self.flushes.load(Ordering::Relaxed);
        let total = self.flush_micros.load(Ordering::Relaxed);
        (
            n,
            total.checked_div(n).unwrap_or(0),
            self.slowest_flush_micros.load(Ordering::Relaxed),
        )
    }

    fn take(&self) -> HashMap<String, (Heartbeat, i64)> {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts back what a failed flush took, unless newer heartbeats arrived meanwhile.
    fn restore(&self, batch: HashMap<String, (Heartbeat, i64)>) {
        let mut pending = self.pending.lock();
        for (id, beat) in batch {
            pending.entry(id).or_insert(beat);
        }
    }
}

/// Uptime over the last 24 hours, 7 and 30 days (0 to 1), and the reliability derived from it.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Uptime {
    pub last_24h: f64,
    pub last_7d: f64,
    pub last_30d: f64,
    /// Nodes that came up and ran to their end, and nodes that failed.
    pub nodes_ok: i64,
    pub nodes_failed: i64,
    /// 0 to 1, learned: the device's exponentially weighted score of hours heard and node
    /// outcomes (`providers::reliability`).
    pub reliability: f64,
    /// 0 to 1, the same over all of the provider's devices.
    pub provider_reliability: f64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub went_offline: usize,
    pub challenges_expired: usize,
}

/// Postgres: locks the devices in id order, the order claims and give-backs take them. The
/// update that follows would lock them in whatever order its plan reads them, and a claim
/// holding one device while waiting for another could then deadlock with the flush: a second
/// of waiting for Postgres to notice, and maybe the claim rolled back. `NO KEY UPDATE`, the
/// lock the update takes anyway: a node's foreign key to its device does not wait for it.
/// (SQLite's `BEGIN IMMEDIATE` already serialises writers.)
async fn lock_devices_in<'a>(
    tx: &mut iocloud_db::Tx,
    ids: impl Iterator<Item = &'a String>,
) -> Result<()> {
    if let iocloud_db::Tx::Postgres(t) = tx {
        let mut ids: Vec<&str> = ids.map(String::as_str).collect();
        ids.sort_unstable();
        sqlx::query("SELECT id FROM devices WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .fetch_all(&mut **t)
            .await
            .map_err(DbError::from)?;
    }
    Ok(())
}

impl Devices {
    /// The heartbeats taken and not yet written, and the write path's counts.
    pub fn heartbeats(&self) -> &HeartbeatBuffer {
        &self.heartbeats
    }

    /// Writes every buffered heartbeat in one transaction: telemetry, last seen, a minute of
    /// uptime for each device's first heartbeat in a minute, and devices back from offline.
    pub async fn flush_heartbeats(&self) -> Result<usize> {
        let _turn = self.heartbeats.flushing.lock().await;
        let batch = self.heartbeats.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        match self.write_heartbeats(&batch).await {
            Ok(()) => {
                let b = &self.heartbeats;
                let took = started.elapsed().as_micros() as u64;
                b.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                b.flushes.fetch_add(1, Ordering::Relaxed);
                b.flush_micros.fetch_add(took, Ordering::Relaxed);
                b.slowest_flush_micros.fetch_max(took, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(e) => {
                self.heartbeats.restore(batch);
                Err(e)
            }
        }
    }

    async fn write_heartbeats(&self, batch: &HashMap<String, (Heartbeat, i64)>) -> Result<()> {
        let rows: Vec<_> = batch
            .iter()
            .map(|(id, (b, at))| {
                let minute = at / MICROS_PER_MINUTE;
                (
                    id.as_str(),
                    *at,
                    minute,
                    minute / 60,
                    b.free_gpus,
                    b.utilization_pct,
                    b.temperature_c,
                    b.agent_version.as_str(),
                    b.cpu_utilization_pct,
                    b.running_nodes.unwrap_or(0),
                )
            })
            .collect();
        let json =
            serde_json::to_string(&rows).map_err(|e| crate::Error::Internal(e.to_string()))?;
        let timeout = self.heartbeat_timeout.as_micros() as i64;
        let mut tx = self.db.begin().await?;
        let src = tx.engine().json_rows("$1");
        let beats = format!(
            "SELECT value ->> 0 AS id, CAST(value ->> 1 AS BIGINT) AS at, CAST(value ->> 2 AS BIGINT) AS minute, \
             CAST(value ->> 3 AS BIGINT) AS hour, CAST(value ->> 4 AS BIGINT) AS free, CAST(value ->> 5 AS BIGINT) AS util, \
             CAST(value ->> 6 AS BIGINT) AS temp, value ->> 7 AS version, CAST(value ->> 8 AS BIGINT) AS cpu, \
             CAST(value ->> 9 AS BIGINT) AS nodes FROM {src}"
        );
        // The hour's row: a minute of uptime for each device heard from for the first time
        // this minute, and what the hour's block weighs: the silence this heartbeat ends, since
        // when the device has been heard without a break, and its utilisation when idle (no
        // node and every GPU free; a CPU-only device's `utilization_pct` is its CPU's). A
        // heartbeat older than the last one written (another replica's, late) ends no silence.
        let uptime = format!(
            "INSERT INTO device_uptime (device_id, hour, minutes, first_at, last_at, heard_since, longest_gap, idle_gpu_pct, idle_cpu_pct) \
             SELECT b.id, b.hour, CASE WHEN d.last_minute < b.minute THEN 1 ELSE 0 END, b.at, b.at, \
             {heard_since}, \
             CASE WHEN d.last_heartbeat_at IS NULL OR b.at < d.last_heartbeat_at THEN 0 ELSE b.at - d.last_heartbeat_at END, \
             CASE WHEN b.free = d.gpu_count AND b.nodes = 0 AND d.gpu_count > 0 THEN b.util END, \
             CASE WHEN b.free = d.gpu_count AND b.nodes = 0 THEN COALESCE(b.cpu, CASE WHEN d.gpu_count = 0 THEN b.util END) END \
             FROM ({beats}) AS b JOIN devices d ON d.id = b.id WHERE d.status <> 'retired' \
             ON CONFLICT (device_id, hour) DO UPDATE SET minutes = device_uptime.minutes + excluded.minutes, \
             first_at = COALESCE(device_uptime.first_at, excluded.first_at), \
             last_at = CASE WHEN device_uptime.last_at IS NULL OR excluded.last_at > device_uptime.last_at THEN excluded.last_at ELSE device_uptime.last_at END, \
             heard_since = CASE WHEN device_uptime.last_at IS NULL OR excluded.last_at > device_uptime.last_at THEN excluded.heard_since ELSE device_uptime.heard_since END, \
             longest_gap = CASE WHEN excluded.longest_gap > device_uptime.longest_gap THEN excluded.longest_gap ELSE device_uptime.longest_gap END, \
             idle_gpu_pct = {idle_gpu}, idle_cpu_pct = {idle_cpu}",
            heard_since = heard_since("d"),
            idle_gpu = larger("idle_gpu_pct"),
            idle_cpu = larger("idle_cpu_pct"),
        );
        tx_run!(&mut tx, |c| sqlx::query(&uptime)
            .bind(&json)
            .bind(timeout)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        lock_devices_in(&mut tx, batch.keys()).await?;
        let update = format!(
            "UPDATE devices SET heard_since = {}, \
             last_heartbeat_at = CASE WHEN devices.last_heartbeat_at IS NULL OR b.at > devices.last_heartbeat_at THEN b.at ELSE devices.last_heartbeat_at END, \
             last_minute = CASE WHEN b.minute > devices.last_minute THEN b.minute ELSE devices.last_minute END, \
             reported_free_gpus = b.free, utilization_pct = b.util, temperature_c = b.temp, agent_version = b.version \
             FROM ({beats}) AS b WHERE devices.id = b.id AND devices.status <> 'retired'",
            heard_since("devices")
        );
        tx_run!(&mut tx, |c| sqlx::query(&update)
            .bind(&json)
            .bind(timeout)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        // Devices back from offline, all at once (after a network partition it is thousands).
        let back = format!(
            "UPDATE devices SET status = {}, status_reason = 'heard from again', updated_at = $2 \
             WHERE {} AND id IN (SELECT value ->> 0 FROM {src}) RETURNING id, org_id, status",
            listed_status_sql(),
            may_list_sql(&[DeviceStatus::Offline])
        );
        let returned: Vec<(String, String, String)> = tx_run!(&mut tx, |c| sqlx::query_as(&back)
            .bind(&json)
            .bind(now_micros())
            .fetch_all(c)
            .await)
        .map_err(DbError::from)?;
        for to in [DeviceStatus::Available, DeviceStatus::Busy] {
            let moved: Vec<(String, String)> = returned
                .iter()
                .filter(|(_, _, s)| s == to.as_str())
                .map(|(id, org, _)| (id.clone(), org.clone()))
                .collect();
            record_events_many_in(
                &mut tx,
                &moved,
                DeviceStatus::Offline,
                to,
                "heard from again",
                now_micros(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks listed devices not heard from within the heartbeat timeout `offline`, and
    /// devices that let their challenge expire `verification_failed`. Safe on every replica:
    /// each change is conditional on the state it leaves.
    pub async fn sweep(&self, now: i64) -> Result<SweepReport> {
        let cutoff = now - self.heartbeat_timeout.as_micros() as i64;
        let mut report = SweepReport::default();
        let reason = format!("no heartbeat for {} s", self.heartbeat_timeout.as_secs());
        // One statement per state left, so each event names where the device came from.
        // A device in maintenance stays there however long it is silent: its provider is
        // working on it, and coming back must not list it by itself.
        for from in [DeviceStatus::Available, DeviceStatus::Busy] {
            let to = DeviceStatus::Offline;
            let sql = format!(
                "UPDATE devices SET status = '{}', status_reason = $1, updated_at = $2 \
                 WHERE {} AND COALESCE(last_heartbeat_at, verified_at, updated_at) < $3 RETURNING id, org_id",
                to.as_str(),
                may_become_sql(&[from], to)
            );
            let mut tx = self.db.begin().await?;
            let moved: Vec<(String, String)> = tx_run!(&mut tx, |c| sqlx::query_as(&sql)
                .bind(&reason)
                .bind(now)
                .bind(cutoff)
                .fetch_all(c)
                .await)
            .map_err(DbError::from)?;
            record_events_many_in(&mut tx, &moved, from, to, &reason, now).await?;
            tx.commit().await?;
            report.went_offline += moved.len();
        }
        let expired: Vec<(String, OrgId)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT c.device_id, d.org_id FROM device_challenges c JOIN devices d ON d.id = c.device_id WHERE c.deadline < $1 LIMIT 10000"
        )
        .bind(now)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        for (id, org_id) in expired {
            let mut tx = self.db.begin().await?;
            let gone = tx_run!(&mut tx, |c| sqlx::query(
                "DELETE FROM device_challenges WHERE device_id = $1 AND deadline < $2"
            )
            .bind(&id)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if gone > 0
                && transition_in(
                    &mut tx,
                    &id,
                    &org_id,
                    DeviceStatus::PendingVerification,
                    DeviceStatus::VerificationFailed,
                    "the challenge was not answered before its deadline",
                    now,
                )
                .await?
            {
                report.challenges_expired += 1;
            }
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Uptime and reliability of one of the actor's devices.
    pub async fn uptime(
        &self,
        actor: &crate::Actor,
        id: &iocloud_db::ids::DeviceId,
    ) -> Result<Uptime> {
        actor.authorize(crate::Action::ResourcesRead)?;
        let row = super::device_row(&self.db, &actor.org_id, id).await?;
        let since = row.verified_at.unwrap_or(row.created_at);
        self.uptime_since(id, since, now_micros()).await
    }

    /// Uptime and reliability of one device, from its minutes heard and its nodes' outcomes.
    async fn uptime_since(&self, device_id: &str, since: i64, now: i64) -> Result<Uptime> {
        let hour_now = now / MICROS_PER_MINUTE / 60;
        let rows: Vec<(i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour, minutes FROM device_uptime WHERE device_id = $1 AND hour > $2"
        )
        .bind(device_id)
        .bind(hour_now - 30 * 24)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let outcomes: Vec<(String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT CASE WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'ok' END, COUNT(*) \
             FROM node_assignments WHERE device_id = $1 AND (failed_at IS NOT NULL OR ready_at IS NOT NULL) GROUP BY 1"
        )
        .bind(device_id)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let (device_score, provider_score) = self.reliability.of(device_id).await?;
        let count = |k: &str| outcomes.iter().find(|(s, _)| s == k).map_or(0, |(_, n)| *n);
        let (ok, failed) = (count("ok"), count("failed"));
        let age_minutes = ((now - since) / MICROS_PER_MINUTE).max(1);
        let share = |hours: i64| {
            let heard: i64 = rows
                .iter()
                .filter(|(h, _)| *h > hour_now - hours)
                .map(|(_, m)| *m)
                .sum();
            let window = (hours * 60).min(age_minutes);
            (heard as f64 / window as f64).min(1.0)
        };
        Ok(Uptime {
            last_24h: share(24),
            last_7d: share(7 * 24),
            last_30d: share(30 * 24),
            nodes_ok: ok,
            nodes_failed: failed,
            reliability: device_score as f64 / 10_000.0,
            provider_reliability: provider_score as f64 / 10_000.0,
        })
    }

    /// Flushes heartbeats every `heartbeat_flush` and sweeps for silent devices every few
    /// seconds, until the process ends.
    pub fn spawn_workers(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(this.heartbeat_flush);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweep = tokio::time::interval(std::time::Duration::from_secs(5));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut scored_hour = -1;
            loop {
                tokio::select! {
                    _ = flush.tick() => {
                        if let Err(e) = this.flush_heartbeats().await {
                            tracing::warn!(error = %e, "writing heartbeats failed; retrying with the next flush");
                        }
                    }
                    _ = sweep.tick() => {
                        match this.sweep(now_micros()).await {
                            Ok(r) if r != SweepReport::default() => tracing::info!(?r, "device sweep"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "device sweep failed"),
                        }
                        // Once an hour per replica is enough: the statement reads every device.
                        let hour = now_micros().div_euclid(3_600_000_000);
                        if hour != scored_hour {
                            match this.reliability.score(now_micros()).await {
                                Ok(n) => {
                                    scored_hour = hour;
                                    if n > 0 {
                                        tracing::info!(devices = n, "reliability scored for the last hour");
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "scoring reliability failed"),
                            }
                        }
                    }
                }
            }
        })
    }
}
