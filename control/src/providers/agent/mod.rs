//! What a node agent does with the control plane, authenticated by its device token: say hello
//! (and get a verification challenge), answer it, heartbeat, wait for node assignments and
//! report how each node is doing.
//!
//! The [`Agents`] service, apart from the provider's registry ([`super::devices`]): its caller
//! is a machine holding a device token, not a member acting for an organisation, and it needs
//! what the registry does not (the heartbeat buffer, the wake-ups, the protocol's timings, and
//! a way to tell the clusters of a node's news). It also gives nodes to devices and takes them
//! back, for the clusters (`nodes.rs`): the assignments an agent polls for are those rows.
//!
//! The protocol's calls stay together because every one is the same conversation with one
//! agent (its token, its device's row and its nodes); the messages they exchange are in
//! `messages.rs`, the hourly proof of an idle listed device in `proofs.rs`, the test a cluster
//! node answers before it is ready in `node_tests.rs`, and the nodes' GPUs,
//! endpoints, heartbeats and verification in their own modules.

mod messages;
mod node_tests;
mod nodes;
mod proofs;

use iocloud_db::ids::OrgId;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run, tx_run};

use super::devices::heartbeats::HeartbeatBuffer;
use super::devices::{DeviceRow, device_row};
use super::endpoints::Endpoints;
use super::reliability::Reliability;
use super::stake::Stake;
use super::status::{DeviceStatus, transition_in};
pub use super::tokens::DeviceAuth;
use super::tokens::DeviceTokens;
use super::wakeups::Wakeups;
use super::{Catalog, verification};
use crate::{Error, ErrorCode, Result, secrets};
pub use messages::{
    Assignment, Challenge, ChallengeAnswer, Heartbeat, HeartbeatAnswer, Hello, HelloAnswer,
    LinkMeasurement, NodeReport, NodeReportStatus, NodeTestAnswer, NodeTestOutcome, NodeTestResult,
    ProofAnswer, ProofChallenge, ProofOutcome, ProofResult, Workload,
};
use messages::{check_range, check_version};
pub use node_tests::{IssuedTest, NodeTestSettings, test_of};
pub use nodes::NewNode;
use nodes::{give_back_set, released_reason};

/// How often a waiting agent's assignments are read while its replica cannot hear wake-ups.
/// Each read is one indexed query per waiting agent: 2 s keeps a fleet of 10,000 at 5,000 a
/// second for as long as Redis is away.
const DEAF_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What the agent protocol tells the clusters: a node of cluster `cluster_id` moved, and the
/// cluster should act on it now rather than at its next look.
///
/// The clusters are still methods of the control plane, which holds this service. So the
/// caller of a report hands them in for that one call ([`Agents::node_report`]) instead of the
/// service keeping them: the service holds only its own handles, and nothing in it holds the
/// control plane it is part of.
pub trait ClusterNews {
    fn node_moved(&self, cluster_id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// The agent protocol, and the nodes given to devices (see the module's documentation).
#[derive(Clone)]
pub struct Agents {
    db: Db,
    /// A device's GPU class sets its challenge's difficulty.
    catalog: Arc<Catalog>,
    tokens: Arc<DeviceTokens>,
    /// Written by the device registry's flush.
    heartbeats: Arc<HeartbeatBuffer>,
    wakeups: Arc<Wakeups>,
    /// Lists a device once it is verified.
    stake: Stake,
    /// Node outcomes move it.
    reliability: Reliability,
    /// How long an agent has to answer its challenge.
    challenge_deadline: Duration,
    /// How often an agent is told to heartbeat.
    heartbeat_interval: Duration,
    /// The tests cluster nodes answer before they are ready.
    node_tests: Arc<node_tests::NodeTests>,
}

impl Agents {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Db,
        catalog: Arc<Catalog>,
        tokens: Arc<DeviceTokens>,
        heartbeats: Arc<HeartbeatBuffer>,
        wakeups: Arc<Wakeups>,
        stake: Stake,
        reliability: Reliability,
        challenge_deadline: Duration,
        heartbeat_interval: Duration,
        node_tests: NodeTestSettings,
    ) -> Self {
        Agents {
            db,
            catalog,
            tokens,
            heartbeats,
            wakeups,
            stake,
            reliability,
            challenge_deadline,
            heartbeat_interval,
            node_tests: Arc::new(node_tests::NodeTests::new(node_tests)),
        }
    }

    /// The device a token belongs to, if it is the device `id` names. Another device's token,
    /// an unknown token and a retired device's token are all refused.
    pub async fn authenticate(&self, token: &str, id: &str) -> Result<Arc<DeviceAuth>> {
        if !token.starts_with("iodt_") {
            return Err(Error::InvalidToken);
        }
        let hash = secrets::hash(token);
        let auth = match self.tokens.get(&hash) {
            Some(a) => a,
            None => {
                let generation = self.tokens.generation();
                let row: Option<(String, OrgId, i64, String)> =
                    db_run!(&self.db, |p| sqlx::query_as(
                        "SELECT id, org_id, gpu_count, status FROM devices WHERE token_hash = $1"
                    )
                    .bind(&hash)
                    .fetch_optional(p)
                    .await)
                    .map_err(DbError::from)?;
                let Some((dev_id, org_id, gpu_count, status)) = row else {
                    return Err(Error::InvalidToken);
                };
                if status == DeviceStatus::Retired.as_str() {
                    return Err(Error::DeviceRetired);
                }
                self.tokens.put(
                    &hash,
                    DeviceAuth {
                        id: dev_id,
                        org_id,
                        gpu_count,
                    },
                    generation,
                )
            }
        };
        if auth.id != id {
            // Another device's id: answered like a missing one.
            return Err(Error::NotFound("device"));
        }
        Ok(auth)
    }

    async fn agent_device(&self, device: &DeviceAuth) -> Result<DeviceRow> {
        device_row(&self.db, &device.org_id, &device.id).await
    }

    /// The agent connects: a device still to be verified gets a challenge (the same one until
    /// it expires); one that failed verification gets a fresh try.
    pub async fn hello(&self, device: &DeviceAuth, hello: Hello) -> Result<HelloAnswer> {
        check_version(&hello.agent_version)?;
        let now = now_micros();
        db_run!(&self.db, |p| sqlx::query(
            "UPDATE devices SET agent_version = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(&hello.agent_version)
        .bind(now)
        .bind(&device.id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        let row = self.agent_device(device).await?;
        let mut status = row.status()?;
        let mut challenge = None;
        if matches!(
            status,
            DeviceStatus::PendingVerification | DeviceStatus::VerificationFailed
        ) {
            let mut tx = self.db.begin().await?;
            if status == DeviceStatus::VerificationFailed {
                transition_in(
                    &mut tx,
                    &device.id,
                    &device.org_id,
                    status,
                    DeviceStatus::PendingVerification,
                    "the agent reconnected; verifying again",
                    now,
                )
                .await?;
                status = DeviceStatus::PendingVerification;
            }
            let open: Option<(String, i64, i64)> = tx_run!(&mut tx, |c| sqlx::query_as(
                "SELECT nonce, difficulty, deadline FROM device_challenges WHERE device_id = $1 AND deadline > $2"
            )
            .bind(&device.id)
            .bind(now)
            .fetch_optional(c)
            .await)
            .map_err(DbError::from)?;
            let (nonce, difficulty, deadline) = match open {
                Some(c) => c,
                None => {
                    let class = row
                        .gpu_model
                        .as_deref()
                        .and_then(|m| self.catalog.gpu_model(m))
                        .map(|m| m.class.as_str());
                    let c = (
                        verification::new_nonce(),
                        i64::from(verification::difficulty_for(class)),
                        now + self.challenge_deadline.as_micros() as i64,
                    );
                    tx_run!(&mut tx, |conn| sqlx::query(
                        "INSERT INTO device_challenges (device_id, nonce, difficulty, issued_at, deadline) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (device_id) DO UPDATE SET nonce = excluded.nonce, difficulty = excluded.difficulty, \
                         issued_at = excluded.issued_at, deadline = excluded.deadline"
                    )
                    .bind(&device.id)
                    .bind(&c.0)
                    .bind(c.1)
                    .bind(now)
                    .bind(c.2)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
                    .map_err(DbError::from)?;
                    c
                }
            };
            tx.commit().await?;
            challenge = Some(Challenge {
                nonce,
                difficulty: difficulty as u32,
                deadline,
            });
        }
        let row = self.agent_device(device).await?;
        Ok(HelloAnswer {
            device_id: row.id.clone(),
            status,
            status_reason: row.status_reason,
            challenge,
            heartbeat_interval_secs: self.heartbeat_interval.as_secs(),
        })
    }

    /// Checks a challenge answer. Right and in time: the device is verified and listed if
    /// the stake covers it (else it waits for stake). Wrong or late: `verification_failed`
    /// with the reason. Either way the challenge is spent.
    pub async fn answer(
        &self,
        device: &DeviceAuth,
        answer: ChallengeAnswer,
    ) -> Result<HelloAnswer> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        // Listing the device weighs it against the stake: decided under the stake lock.
        super::stake::lock_stake(&mut tx, &device.org_id).await?;
        let open: Option<(String, i64, i64)> = tx_run!(&mut tx, |c| sqlx::query_as(
            "SELECT nonce, difficulty, deadline FROM device_challenges WHERE device_id = $1"
        )
        .bind(&device.id)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        let Some((nonce, difficulty, deadline)) = open else {
            return Err(Error::Conflict {
                code: ErrorCode::NoChallenge,
                message: "there is no open challenge for this device; say hello first".into(),
            });
        };
        if nonce != answer.nonce {
            return Err(Error::Conflict {
                code: ErrorCode::NoChallenge,
                message: "that is not the open challenge; say hello for the current one".into(),
            });
        }
        let failure = if now > deadline {
            Some("the challenge was answered after its deadline")
        } else if !verification::check(&nonce, difficulty as u32, answer.answer) {
            Some("the challenge answer was wrong")
        } else {
            None
        };
        tx_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM device_challenges WHERE device_id = $1"
        )
        .bind(&device.id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        let to = if failure.is_some() {
            DeviceStatus::VerificationFailed
        } else {
            DeviceStatus::PendingStake
        };
        let moved = transition_in(
            &mut tx,
            &device.id,
            &device.org_id,
            DeviceStatus::PendingVerification,
            to,
            failure.unwrap_or("verified"),
            now,
        )
        .await?;
        if !moved {
            return Err(Error::Conflict {
                code: ErrorCode::NoChallenge,
                message: "this device is not waiting for verification".into(),
            });
        }
        if failure.is_none() {
            tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE devices SET verified_at = $1 WHERE id = $2"
            )
            .bind(now)
            .bind(&device.id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            self.stake.list_covered_in(&mut tx, &device.org_id).await?;
        }
        tx.commit().await?;
        let row = self.agent_device(device).await?;
        Ok(HelloAnswer {
            device_id: row.id.clone(),
            status: row.status()?,
            status_reason: row.status_reason,
            challenge: None,
            heartbeat_interval_secs: self.heartbeat_interval.as_secs(),
        })
    }

    /// Takes a heartbeat into the write buffer (flushed in batches); rate-limited per device.
    pub async fn heartbeat(&self, device: &DeviceAuth, beat: Heartbeat) -> Result<HeartbeatAnswer> {
        check_range("free_gpus", beat.free_gpus, 0, device.gpu_count)?;
        check_range("utilization_pct", beat.utilization_pct, 0, 100)?;
        check_range("temperature_c", beat.temperature_c, -50, 150)?;
        if let Some(pct) = beat.cpu_utilization_pct {
            check_range("cpu_utilization_pct", pct, 0, 100)?;
        }
        // A CPU-only device runs one node at a time; a GPU device at most one per GPU.
        if let Some(nodes) = beat.running_nodes {
            check_range("running_nodes", nodes, 0, device.gpu_count.max(1))?;
        }
        check_version(&beat.agent_version)?;
        self.heartbeats.push(&device.id, beat, now_micros());
        Ok(HeartbeatAnswer {
            accepted: true,
            heartbeat_interval_secs: self.heartbeat_interval.as_secs(),
        })
    }

    /// The device's nodes to bring up or tear down. Waits up to `wait` for one to appear.
    pub async fn assignments(
        &self,
        device: &DeviceAuth,
        wait: std::time::Duration,
    ) -> Result<Vec<Assignment>> {
        // Listen before the first read, so an assignment made in between is not missed.
        let watch = self.wakeups.watch(&device.id);
        let woken = watch.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // Skipped only by a poll that waits: it reads at the end of its wait anyway, so a
        // wake-up lost on the way costs one wait, as it would without the skip.
        let found = if !wait.is_zero() && self.wakeups.known_idle(&device.id) {
            Vec::new()
        } else {
            self.open_assignments(&device.id).await?
        };
        if !found.is_empty() || wait.is_zero() {
            return Ok(found);
        }
        // Woken or not, look once more at the end: a wake-up lost on the way costs one wait.
        // While this replica cannot hear wake-ups (Redis away), no wake-up from another
        // replica can come: look every `DEAF_CHECK` meanwhile.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let step = if self.wakeups.is_deaf() {
                left.min(DEAF_CHECK)
            } else {
                left
            };
            if tokio::time::timeout(step, woken.as_mut()).await.is_ok() || step == left {
                break;
            }
            let found = self.open_assignments(&device.id).await?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        self.open_assignments(&device.id).await
    }

    async fn open_assignments(&self, device_id: &str) -> Result<Vec<Assignment>> {
        let token = self.wakeups.read_token(device_id);
        let rows: Vec<(String, String, i64, String, String)> =
            db_run!(&self.db, |p| sqlx::query_as(
                "SELECT id, cluster_id, gpus, status, bootstrap FROM node_assignments \
             WHERE device_id = $1 AND status IN ('assigned', 'releasing') ORDER BY id"
            )
            .bind(device_id)
            .fetch_all(p)
            .await)
            .map_err(DbError::from)?;
        self.wakeups.remember(
            device_id,
            token,
            rows.iter().map(|(id, ..)| id.clone()).collect(),
        );
        rows.into_iter()
            .map(|(id, cluster_id, gpus, status, bootstrap)| {
                Ok(Assignment {
                    id,
                    cluster_id,
                    gpus,
                    status,
                    bootstrap: serde_json::from_str(&bootstrap)
                        .map_err(|e| Error::Internal(format!("bad bootstrap: {e}")))?,
                })
            })
            .collect()
    }

    /// Tells the replica where the device's agent waits (perhaps this one) to look again.
    pub(crate) async fn wake(&self, device_id: &str) {
        self.wakeups.announce(device_id).await;
    }

    pub(crate) async fn wake_many(&self, device_ids: &[String]) {
        for device_id in device_ids {
            self.wake(device_id).await;
        }
    }

    /// Wakes this replica's waiting agents for assignments made on any replica, until the
    /// process ends.
    pub fn spawn_wakeup_listener(&self) -> tokio::task::JoinHandle<()> {
        self.wakeups.spawn_listener()
    }

    /// The agent reports on a node. `released` gives its GPUs back. A move its cluster should
    /// act on is told to `clusters` before the report is answered.
    pub async fn node_report(
        &self,
        device: &DeviceAuth,
        node_id: &str,
        report: NodeReport,
        clusters: &impl ClusterNews,
    ) -> Result<()> {
        let allowed: &[&str] = match report.status.as_str() {
            "starting" => &["assigned"],
            "ready" => &["assigned", "starting"],
            "failed" => &["assigned", "starting", "ready"],
            "released" => &["assigned", "starting", "ready", "failed", "releasing"],
            other => {
                return Err(Error::validation(
                    "status",
                    format!("{other:?}: expected starting, ready, failed or released"),
                ));
            }
        };
        let reason = report.reason.as_deref().map(str::trim).unwrap_or("");
        if reason.len() > 500 {
            return Err(Error::validation("reason", "must be at most 500 bytes"));
        }
        // The reason reaches the customer's cluster events: it must read as it displays.
        crate::types::check_visible_text("reason", reason)?;
        if report.status == "failed" && reason.is_empty() {
            return Err(Error::validation("reason", "say why the node failed"));
        }
        // Endpoints reach the customer's kubeconfig and other nodes' bootstraps: a report
        // with one that is not plainly an address is refused whole, before anything moves.
        let endpoints = report
            .endpoints
            .as_ref()
            .map(Endpoints::parse)
            .transpose()?
            .map(|e| serde_json::to_string(&e))
            .transpose()
            .map_err(|e| Error::Internal(format!("endpoints: {e}")))?;
        let ca_certificate = report
            .ca_certificate
            .as_deref()
            .map(|pem| {
                super::certificate::CaCertificate::parse(pem)
                    .map(String::from)
                    .map_err(|why| Error::validation("ca_certificate", why))
            })
            .transpose()?;
        let now = now_micros();
        // Moves only from a status the report may follow; the statuses are this code's own.
        let from: Vec<String> = allowed.iter().map(|s| format!("'{s}'")).collect();
        let sql = format!(
            "UPDATE node_assignments SET status = $1, reason = COALESCE($2, reason), endpoints = COALESCE($3, endpoints), updated_at = $4, \
             ca_certificate = COALESCE($7, ca_certificate), \
             ready_at = CASE WHEN $1 = 'ready' THEN $4 ELSE ready_at END, failed_at = CASE WHEN $1 = 'failed' THEN $4 ELSE failed_at END \
             WHERE id = $5 AND device_id = $6 AND status IN ({}) \
             AND ($1 <> 'ready' OR test_outcome IS NULL OR test_outcome = 'passed') RETURNING gpus, cluster_id, ended_at",
            from.join(", ")
        );
        let reason = (!reason.is_empty()).then_some(reason);
        // The node's move with its seven parameters, as `sql` or inside a statement around it.
        macro_rules! node_query {
            ($sql:expr) => {
                sqlx::query_as($sql)
                    .bind(&report.status)
                    .bind(reason)
                    .bind(&endpoints)
                    .bind(now)
                    .bind(node_id)
                    .bind(&device.id)
                    .bind(&ca_certificate)
            };
        }
        macro_rules! move_node {
            ($c:ident) => {
                node_query!(&sql).fetch_optional($c).await
            };
        }
        // A report is one statement, committed on its own. A release also gives the node's GPUs
        // back (a transaction on SQLite). On Postgres a ready node's statement also moves its
        // device's score, which a success needs nothing else for; elsewhere that is written
        // after the cluster has its news.
        let ready_on_pg = match &self.db {
            iocloud_db::Db::Postgres(pool) if report.status == "ready" => Some(pool),
            _ => None,
        };
        let moved: Option<(i64, String, Option<i64>)> = if let Some(pool) = ready_on_pg {
            let ready = format!(
                "WITH moved AS ({sql}), \
                 scored AS (UPDATE devices SET {} FROM moved WHERE devices.id = $6) \
                 SELECT gpus, cluster_id, ended_at FROM moved",
                super::reliability::node_outcome_set("10000", "$4")
            );
            iocloud_db::pg_run!(pool, |c| node_query!(&ready).fetch_optional(c).await)
                .map_err(DbError::from)?
        } else if report.status != "released" {
            db_run!(&self.db, |c| move_node!(c)).map_err(DbError::from)?
        } else if let iocloud_db::Db::Postgres(pool) = &self.db {
            // On Postgres the release is one statement too: the node, its GPUs and the
            // device's move to available (with its event) in one round trip, where a
            // transaction would take five.
            let release = format!(
                "WITH moved AS ({sql}), \
                 back AS (UPDATE devices SET {} FROM moved WHERE devices.id = $6 RETURNING devices.status_reason), \
                 made AS (INSERT INTO device_events (id, device_id, org_id, from_status, to_status, reason, created_at) \
                 SELECT $9, $6, $10, '{}', '{}', $8, $4 FROM back WHERE back.status_reason = $8) \
                 SELECT gpus, cluster_id, ended_at FROM moved",
                give_back_set("moved.gpus", "$4", "$8"),
                DeviceStatus::Busy.as_str(),
                DeviceStatus::Available.as_str()
            );
            iocloud_db::pg_run!(pool, |c| node_query!(&release)
                .bind(released_reason(node_id))
                .bind(new_id("dve"))
                .bind(&device.org_id)
                .fetch_optional(c)
                .await)
            .map_err(DbError::from)?
        } else {
            let mut tx = self.db.begin().await?;
            let moved: Option<(i64, String, Option<i64>)> =
                tx_run!(&mut tx, |c| move_node!(c)).map_err(DbError::from)?;
            if let Some((gpus, _, _)) = &moved {
                self.give_back_gpus_in(&mut tx, device, *gpus, node_id, now)
                    .await?;
                tx.commit().await?;
            }
            moved
        };
        if moved.is_some() {
            self.wakeups.reported(&device.id, node_id);
        }
        let Some((_, cluster_id, ended_at)) = moved else {
            let status: Option<(String, Option<String>)> = db_run!(&self.db, |c| {
                sqlx::query_as(
                "SELECT status, test_outcome FROM node_assignments WHERE id = $1 AND device_id = $2"
            )
            .bind(node_id)
            .bind(&device.id)
            .fetch_optional(c)
            .await
            })
            .map_err(DbError::from)?;
            return match status {
                None => Err(Error::NotFound("node")),
                // Said already (an agent's retry, or a concurrent report that moved it first).
                Some((status, _)) if status == report.status => Ok(()),
                Some((status, Some(test)))
                    if report.status == "ready"
                        && allowed.contains(&status.as_str())
                        && test == "pending" =>
                {
                    Err(Error::conflict(
                        ErrorCode::NodeTestPending,
                        "answer the node's test (its bootstrap's `test`) before it is ready",
                    ))
                }
                Some((status, _)) => Err(Error::Conflict {
                    code: ErrorCode::InvalidState,
                    message: format!("a node that is {status} cannot become {}", report.status),
                }),
            };
        };
        // A failure counts against the device before the cluster looks for a replacement; a
        // success is scored after the cluster has its news (the score waits its turn among
        // other reports').
        let outcome = match report.status.as_str() {
            "ready" => Some(true),
            "failed" => Some(false),
            _ => None,
        };
        if outcome == Some(false) {
            self.note_node_outcome(device, false, now, false).await;
        }
        // The cluster takes the news now rather than at its next look. The report itself is
        // in; a reconcile that fails here is retried by the next pass. A node the cluster
        // had already let go (it ended) is no news to it.
        let news = match report.status.as_str() {
            "starting" => false,
            "released" => ended_at.is_none(),
            _ => true,
        };
        if news && let Err(e) = clusters.node_moved(&cluster_id).await {
            tracing::warn!(error = %e, cluster = %cluster_id, "reconciling after a node report failed");
        }
        if outcome == Some(true) {
            self.note_node_outcome(device, true, now, ready_on_pg.is_some())
                .await;
        }
        Ok(())
    }

    /// A soft score: a failure to record it is logged, not the report's failure. With
    /// `device_scored` the device's half was written with the node's move: only the provider's
    /// is left.
    async fn note_node_outcome(
        &self,
        device: &DeviceAuth,
        ok: bool,
        now: i64,
        device_scored: bool,
    ) {
        let recorded = if device_scored {
            self.reliability
                .record_provider_outcome(&device.org_id, ok, now)
                .await
        } else {
            self.reliability
                .record_node_outcome(&device.id, &device.org_id, ok, now)
                .await
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, device = %device.id, "could not record a node outcome");
        }
    }
}
