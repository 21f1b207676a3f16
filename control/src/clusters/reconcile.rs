//! The reconciler: level-triggered, one step at a time. Each step reads the cluster and its
//! nodes, does the one thing that brings them closer to the spec, and commits it with an event;
//! then the next step looks again. A crash between steps loses nothing: the next look (on any
//! replica) sees the same state and does the same step. Steps run when a node reports, and on
//! every cluster that is due (`reconcile_at`), which each replica checks every few seconds.

use iocloud_billing::Money;
use iocloud_billing::metering::{NewUsage, start_usage_in};
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Tx, db_run, tx_run};

use super::Clusters;
use super::bootstrap::{self, ClusterBoot};
use super::claim::ClaimWork;
use super::create::RECHECK;
use super::lifecycle::{end_node_in, give_back_all_in, stale, usage_id};
use super::{ClusterEvent, ClusterKind, ClusterRow, ClusterStatus, NodeRow};
use crate::capacity::NodeStart;
use crate::placement::{Plan, PlanNode};
use crate::providers::DeviceStatus;
use crate::providers::agent::{ClusterNews, Workload};
use crate::providers::certificate::CaCertificate;
use crate::providers::endpoints::Endpoints;
use crate::{Error, ErrorCode, Result};

/// How long a replica keeps a due cluster to itself while it works on it, µs.
const LEASE: i64 = 30_000_000;
/// Steps taken for one cluster at a time, at most (each is progress; this bounds a pass).
const MAX_STEPS: usize = 16;

enum Step {
    Again,
    Done,
}

/// Whether a node no longer serves its cluster.
fn is_lost(n: &NodeRow) -> Result<bool> {
    Ok(
        matches!(n.status.as_str(), "failed" | "released" | "releasing")
            || !matches!(
                n.device_status()?,
                DeviceStatus::Available | DeviceStatus::Busy
            ),
    )
}

/// The current nodes that no longer serve, each with when it stopped and why. A follower
/// serves only through its leader (a Ray worker through its head, a Kubernetes agent through
/// its server), so when the leader is lost its followers go with it, from the same moment,
/// and the cluster is brought up again around a new leader.
fn lost_nodes<'a>(current: &[&'a NodeRow], now: i64) -> Result<Vec<(&'a NodeRow, i64, String)>> {
    let stopped = |n: &NodeRow| n.failed_at.unwrap_or(now).min(now);
    let lost = current
        .iter()
        .map(|n| is_lost(n))
        .collect::<Result<Vec<bool>>>()?;
    let lost_leader = current
        .iter()
        .zip(&lost)
        .find(|(n, lost)| **lost && bootstrap::is_leader(&n.role))
        .map(|(n, _)| *n);
    Ok(current
        .iter()
        .zip(lost)
        .filter_map(|(&n, lost)| {
            if lost {
                return Some((n, stopped(n), lost_reason(n)));
            }
            lost_leader.map(|leader| {
                let reason = format!("node {} left with its leader {}", n.id, leader.id);
                (n, stopped(leader), reason)
            })
        })
        .collect())
}

fn lost_reason(n: &NodeRow) -> String {
    match n.status.as_str() {
        "failed" => format!(
            "node {} failed: {}",
            n.id,
            n.reason.as_deref().unwrap_or("no reason given")
        ),
        "released" | "releasing" => format!("node {} was released by its provider", n.id),
        _ => format!(
            "node {}'s device {} is {}",
            n.id, n.device_id, n.device_status
        ),
    }
}

/// Moves when the cluster is next looked at, if nobody changed it since `row` was read.
async fn quiet_schedule(db: &Db, row: &ClusterRow, at: Option<i64>) -> Result<()> {
    db_run!(db, |c| sqlx::query(
        "UPDATE clusters SET reconcile_at = $1 WHERE id = $2 AND resource_version = $3"
    )
    .bind(at)
    .bind(&row.id)
    .bind(row.resource_version)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

/// When to look at a cluster next if nothing happens before.
fn next_look(row: &ClusterRow, now: i64) -> Result<Option<i64>> {
    let soon = now + RECHECK;
    Ok(match row.status()? {
        ClusterStatus::Provisioning => Some(soon.min(row.provisioning_deadline.unwrap_or(soon))),
        ClusterStatus::Running | ClusterStatus::Degraded => {
            Some(soon.min(row.expires_at.unwrap_or(soon)))
        }
        ClusterStatus::Terminated | ClusterStatus::Failed => None,
        _ => Some(soon),
    })
}

/// An agent's report on a node reaches its cluster at once
/// ([`Agents::node_report`](crate::providers::agent::Agents::node_report)): the
/// cluster steps now rather than at its next look.
impl ClusterNews for Clusters {
    async fn node_moved(&self, cluster_id: &str) -> Result<()> {
        self.reconcile(cluster_id).await
    }
}

impl Clusters {
    /// Runs a reconcile pass every `interval` until the process ends.
    pub fn spawn_reconciler(&self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                if let Err(e) = this.reconcile_due().await {
                    tracing::warn!(error = %e, "cluster reconcile pass failed; the next one retries");
                }
            }
        })
    }

    /// One pass over the clusters that are due. They are taken by moving their `reconcile_at`
    /// forward in one conditional update, so two replicas never work on the same one; on
    /// Postgres rows being written right now are skipped (`SKIP LOCKED`) rather than waited
    /// for: a cluster busy with a step is looked at by that step.
    pub async fn reconcile_due(&self) -> Result<usize> {
        let now = now_micros();
        let skip = match self.db.engine() {
            iocloud_db::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            iocloud_db::Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE clusters SET reconcile_at = $1 WHERE id IN \
             (SELECT id FROM clusters WHERE reconcile_at <= $2 ORDER BY reconcile_at LIMIT 256{skip}) \
             AND reconcile_at <= $2 RETURNING id"
        );
        let due: Vec<String> = db_run!(&self.db, |p| sqlx::query_scalar(&sql)
            .bind(now + LEASE)
            .bind(now)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        for id in &due {
            if let Err(e) = self.reconcile(id).await {
                tracing::warn!(error = %e, cluster = %id, "reconciling a cluster failed; it is retried");
            }
        }
        Ok(due.len())
    }

    /// Steps the cluster until there is nothing left to do now.
    pub async fn reconcile(&self, id: &str) -> Result<()> {
        for _ in 0..MAX_STEPS {
            match self.reconcile_step(id).await {
                Ok(Step::Again) => continue,
                Ok(Step::Done) => return Ok(()),
                // Somebody else moved the cluster between our read and write: look again.
                Err(Error::Conflict {
                    code: ErrorCode::StaleResourceVersion,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One step. It reads first (the row and its nodes at once), outside any transaction, and
    /// opens one only to write: most looks find nothing to do. Every write ends in the row's
    /// compare-and-set, so a step decided on a stale read commits nothing.
    async fn reconcile_step(&self, id: &str) -> Result<Step> {
        let now = now_micros();
        let Some((mut row, nodes)) = self.row_and_nodes(id).await? else {
            return Ok(Step::Done);
        };
        let status = row.status()?;
        match status {
            ClusterStatus::Terminated => {
                if row.reconcile_at.is_some() {
                    quiet_schedule(&self.db, &row, None).await?;
                }
                return Ok(Step::Done);
            }
            ClusterStatus::Terminating | ClusterStatus::Failed => {
                self.settle_cluster(row).await?;
                return Ok(Step::Done);
            }
            ClusterStatus::Pending | ClusterStatus::Placing => {
                // A create commits its cluster provisioning; anything else is not ours to finish.
                self.end_cluster(
                    row,
                    ClusterStatus::Failed,
                    "failed",
                    "placement did not finish",
                )
                .await?;
                return Ok(Step::Again);
            }
            ClusterStatus::Provisioning | ClusterStatus::Running | ClusterStatus::Degraded => {}
        }
        if status == ClusterStatus::Provisioning
            && row.provisioning_deadline.is_some_and(|d| now > d)
        {
            let minutes = self.settings.provisioning_timeout.as_secs().div_ceil(60);
            let reason = format!("provisioning did not finish within {minutes} minute(s)");
            self.end_cluster(row, ClusterStatus::Failed, "failed", &reason)
                .await?;
            return Ok(Step::Again);
        }
        if status != ClusterStatus::Provisioning && row.expires_at.is_some_and(|t| now >= t) {
            let reason = format!("the cluster's {} hour(s) are over", row.duration_hours);
            self.end_cluster(row, ClusterStatus::Terminating, "expired", &reason)
                .await?;
            return Ok(Step::Again);
        }
        let current: Vec<&NodeRow> = nodes.iter().filter(|n| n.ended_at.is_none()).collect();

        // Nodes that stopped serving: out of the cluster, not charged from when they stopped.
        let lost = lost_nodes(&current, now)?;
        if !lost.is_empty() {
            let mut tx = self.db.begin().await?;
            let (mut wake, mut reasons, mut back) = (Vec::new(), Vec::new(), Vec::new());
            for (n, at, reason) in lost {
                if end_node_in(&mut tx, n, at, &mut back).await?.as_deref() == Some("releasing") {
                    wake.push(n.device_id.clone());
                }
                reasons.push(reason);
            }
            let event = row
                .save_in(&mut tx, "node_lost", &reasons.join("; "))
                .await?
                .ok_or_else(|| stale(&row))?;
            give_back_all_in(&self.agents, &mut tx, back).await?;
            tx.commit().await?;
            self.agents.wake_many(&wake).await;
            self.publish_events(&[event]).await;
            return Ok(Step::Again);
        }

        let serving: i64 = current.iter().map(|n| n.gpus).sum();
        if serving < row.gpus {
            let missing = row.gpus - serving;
            let leader_ready = current
                .iter()
                .find(|n| bootstrap::is_leader(&n.role))
                .map(|n| {
                    let endpoints = n.endpoints().unwrap_or_default();
                    (n.id.clone(), n.status == "ready", endpoints)
                });
            return self
                .replace_nodes(row, missing, leader_ready, current.is_empty())
                .await;
        }

        // Followers waiting for a leader that is now up. Then nothing is left to do until
        // they report.
        let kind = row.kind()?;
        let leader = current
            .iter()
            .find(|n| bootstrap::is_leader(&n.role) && n.status == "ready");
        let waiting: Vec<&&NodeRow> = current.iter().filter(|n| n.status == "waiting").collect();
        if let (Some(leader), false) = (leader, waiting.is_empty())
            && let Some(address) =
                bootstrap::leader_address(kind, &leader.endpoints().unwrap_or_default())
        {
            let mut tx = self.db.begin().await?;
            for n in &waiting {
                let mut boot: serde_json::Value = serde_json::from_str(&n.bootstrap)
                    .map_err(|e| Error::Internal(format!("bad bootstrap: {e}")))?;
                bootstrap::follower_ready(&mut boot, &leader.id, &address);
                tx_run!(&mut tx, |c| sqlx::query(
                    "UPDATE node_assignments SET bootstrap = $1, status = 'assigned', updated_at = $2 WHERE id = $3 AND status = 'waiting'"
                )
                .bind(boot.to_string())
                .bind(now)
                .bind(&n.id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
                .map_err(DbError::from)?;
                // Its agent sees its test from now: the test's limit counts from here.
                tx_run!(&mut tx, |c| sqlx::query(
                    "UPDATE node_tests SET issued_at = $1 WHERE node_id = $2 AND outcome = 'pending'"
                )
                .bind(now)
                .bind(&n.id)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
                .map_err(DbError::from)?;
            }
            let message = format!(
                "{} node(s) joining {} at {address}",
                waiting.len(),
                leader.id
            );
            let event = row
                .save_in(&mut tx, "joining", &message)
                .await?
                .ok_or_else(|| stale(&row))?;
            tx.commit().await?;
            for n in &waiting {
                self.agents.wake(&n.device_id).await;
            }
            self.publish_events(&[event]).await;
            return Ok(Step::Done);
        }

        // Every node up: the cluster runs, and each node is metered from when it served.
        // That is all there is to do until something changes.
        let all_ready = current.iter().all(|n| n.status == "ready");
        let unmetered: Vec<&&NodeRow> = current.iter().filter(|n| !n.metered).collect();
        if all_ready && (status != ClusterStatus::Running || !unmetered.is_empty()) {
            // Read before the transaction opens: the key a container's SSH commands name.
            let ssh_identity = match kind {
                ClusterKind::Container => self.ssh_identity(&row.org_id, &row.spec()?).await?,
                _ => None,
            };
            let mut tx = self.db.begin().await?;
            let running_at = row.running_at.unwrap_or(now);
            for n in &unmetered {
                let rate = row.in_currency(n.price_per_gpu_hour.saturating_mul(n.gpus))?;
                self.start_node_usage_in(
                    &mut tx,
                    &row,
                    n,
                    rate,
                    n.ready_at.unwrap_or(now).max(running_at).min(now),
                )
                .await?;
            }
            let (kind_of_event, message) = match status {
                ClusterStatus::Provisioning => {
                    row.running_at = Some(now);
                    row.expires_at = Some(now + row.duration_hours * 3_600_000_000);
                    (
                        "running",
                        format!("all {} node(s) ready; billing started", current.len()),
                    )
                }
                ClusterStatus::Degraded => (
                    "recovered",
                    "every node is serving again; billing for all of them".to_string(),
                ),
                _ => (
                    "node_ready",
                    format!("{} replacement node(s) ready and billed", unmetered.len()),
                ),
            };
            let nodes: Vec<(String, String, Endpoints)> = current
                .iter()
                .map(|n| {
                    (
                        n.id.clone(),
                        n.role.clone(),
                        n.endpoints().unwrap_or_default(),
                    )
                })
                .collect();
            let leader_ca = current
                .iter()
                .find(|n| bootstrap::is_leader(&n.role))
                .and_then(|n| n.ca_certificate.as_deref())
                .and_then(|pem| CaCertificate::parse(pem).ok());
            row.connection = Some(
                bootstrap::connection(kind, &nodes, leader_ca.as_ref(), ssh_identity.as_deref())
                    .to_string(),
            );
            row.set_status(ClusterStatus::Running, None)?;
            row.reconcile_at = next_look(&row, now)?;
            let event = row
                .save_in(&mut tx, kind_of_event, &message)
                .await?
                .ok_or_else(|| stale(&row))?;
            tx.commit().await?;
            self.publish_events(&[event]).await;
            return Ok(Step::Done);
        }

        // Nothing to do now: look again later (or when a node reports).
        let next = next_look(&row, now)?;
        if row.reconcile_at != next {
            quiet_schedule(&self.db, &row, next).await?;
        }
        Ok(Step::Done)
    }

    /// Meters a node from `from`. Only here, and always with the cluster's row saved in the
    /// same transaction: a delete that settles the hold at once relies on it (settle.rs).
    async fn start_node_usage_in(
        &self,
        tx: &mut Tx,
        row: &ClusterRow,
        node: &NodeRow,
        rate: Money,
        at: i64,
    ) -> Result<()> {
        let hold_id = row
            .hold_id
            .as_deref()
            .ok_or_else(|| Error::Internal(format!("cluster {} has no hold", row.id)))?;
        start_usage_in(
            tx,
            &usage_id(&node.id),
            &NewUsage {
                org_id: &row.org_id,
                cluster_id: &row.id,
                node_id: &node.id,
                device_id: &node.device_id,
                provider_org_id: &node.provider_org_id,
                hold_id,
                gpus: node.gpus,
                rate_per_hour: rate,
                started_at: at,
            },
        )
        .await?;
        Ok(())
    }

    /// Finds nodes for `missing` GPUs within the spec. When nothing fits, a provisioning
    /// cluster fails and a running one is degraded (and not charged for what is missing).
    async fn replace_nodes(
        &self,
        mut row: ClusterRow,
        missing: i64,
        leader: Option<(String, bool, Endpoints)>,
        no_nodes_left: bool,
    ) -> Result<Step> {
        let spec = row.spec()?;
        let checked = self.check_spec(&spec)?;
        let mut request = checked.request;
        request.gpu_count = u32::try_from(missing).unwrap_or(u32::MAX);
        request.min_providers = 0;
        if request
            .gpus_per_node
            .is_some_and(|n| !request.gpu_count.is_multiple_of(n))
        {
            request.gpus_per_node = None;
        }
        // The keys as they are now: a key removed since the cluster was made is not given.
        let workload = self
            .with_keys(&row.org_id, &spec, checked.workload, false)
            .await?;
        let mut work = Replacement {
            kind: row.kind()?,
            row: row.clone(),
            image: checked.image,
            workload,
            leader,
            no_nodes_left,
        };
        match self.claim(&row.org_id, &row.id, &request, &mut work).await {
            Ok((_, event)) => {
                self.publish_events(&[event]).await;
                Ok(Step::Again)
            }
            Err(Error::InsufficientCapacity(why)) => {
                let status = row.status()?;
                if status == ClusterStatus::Provisioning {
                    let reason = format!("no node can replace a failed one: {why}");
                    self.end_cluster(row, ClusterStatus::Failed, "failed", &reason)
                        .await?;
                    return Ok(Step::Again);
                }
                let now = now_micros();
                if status == ClusterStatus::Running {
                    let mut tx = self.db.begin().await?;
                    let reason = format!(
                        "{missing} GPU(s) lost and no replacement fits ({why}); they are not charged"
                    );
                    row.set_status(ClusterStatus::Degraded, Some(&reason))?;
                    row.reconcile_at = next_look(&row, now)?;
                    let event = row
                        .save_in(&mut tx, "degraded", &reason)
                        .await?
                        .ok_or_else(|| stale(&row))?;
                    tx.commit().await?;
                    self.publish_events(&[event]).await;
                } else {
                    // Degraded already: try again at the next look.
                    quiet_schedule(&self.db, &row, next_look(&row, now)?).await?;
                }
                Ok(Step::Done)
            }
            Err(e) => Err(e),
        }
    }
}

/// New nodes for a cluster that lost some, claimed with the event that says so.
struct Replacement {
    row: ClusterRow,
    kind: ClusterKind,
    image: String,
    /// What the new nodes run, and the SSH keys they let in.
    workload: Workload,
    /// The cluster's leader, if it still has one: its id, whether it is ready, its endpoints.
    leader: Option<(String, bool, Endpoints)>,
    no_nodes_left: bool,
}

impl ClaimWork for Replacement {
    type Output = ClusterEvent;

    fn node(&mut self, index: usize, first: Option<&str>, node: &PlanNode) -> NodeStart {
        let kind = self.kind;
        let boot = ClusterBoot {
            cluster_id: &self.row.id,
            kind,
            image: &self.image,
            join_token: &self.row.join_token,
            workload: &self.workload,
        };
        // Without a leader the first new node leads; otherwise every new node follows.
        let as_index = if self.leader.is_none() || self.no_nodes_left {
            index
        } else {
            index + 1
        };
        let leader_id = self.leader.as_ref().map(|(id, _, _)| id.as_str()).or(first);
        let mut start = boot.node(as_index, leader_id, node);
        if let Some((id, true, endpoints)) = &self.leader
            && !start.start_now
            && let Some(address) = bootstrap::leader_address(kind, endpoints)
        {
            bootstrap::follower_ready(&mut start.bootstrap, id, &address);
            start.start_now = true;
        }
        start
    }

    async fn within(
        &mut self,
        tx: &mut Tx,
        plan: &Plan,
        node_ids: &[String],
    ) -> Result<ClusterEvent> {
        let gpus: u32 = plan.nodes.iter().map(|n| n.gpus).sum();
        let message = format!(
            "{} replacement node(s) with {gpus} GPU(s) starting: {}",
            node_ids.len(),
            node_ids.join(", ")
        );
        // On a copy: the GPUs are taken after this, and a claim that fails there rolls the
        // save back, so the next plan must compare against the version as it was.
        let mut row = self.row.clone();
        row.save_in(tx, "node_replaced", &message)
            .await?
            .ok_or_else(|| stale(&self.row))
    }
}
