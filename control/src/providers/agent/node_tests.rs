//! Node tests in the protocol: each node a cluster claims is handed a test with its bootstrap
//! ([`node_test`](crate::providers::node_test) holds the computation), and may report
//! `ready` only once its answer passed. A node of several that follows a leader also measures
//! its link to the leader: the round trip feeds placement's latency model between the two
//! regions, and a throughput far below what the devices claim fails the node.
//!
//! A failed test fails the node as a failed report would: its device's reliability falls, the
//! cluster replaces it, and it was never billed (billing starts at `ready`). The test's row
//! stays as evidence, which the slashing detectors read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run, tx_run};
use serde_json::json;

use super::{Agents, ClusterNews, DeviceAuth, NodeReport, NodeTestAnswer, NodeTestOutcome};
use super::{LinkMeasurement, NodeTestResult};
use crate::providers::node_test::{self, Puzzle, TestKey};
use crate::{Error, ErrorCode, Result};

/// How big node tests are and how long a node has for one.
#[derive(Clone, Copy, Debug)]
pub struct NodeTestSettings {
    /// Bits of the test key's modulus.
    pub key_bits: usize,
    /// Squarings per lane.
    pub squarings: u64,
    /// From when the agent can see the test to its answer.
    pub limit: Duration,
}

impl Default for NodeTestSettings {
    fn default() -> Self {
        NodeTestSettings {
            key_bits: 1024,
            squarings: 10_000,
            limit: Duration::from_secs(300),
        }
    }
}

/// A link measuring under this share of the slower device's claim fails the node: far below
/// it, not merely a busy moment.
const BANDWIDTH_FLOOR_PCT: i64 = 25;

/// The tests' settings and the keys this replica has read (the newest is the one it issues
/// with; every key stays readable, for tests issued by other replicas or before a restart).
pub(crate) struct NodeTests {
    settings: NodeTestSettings,
    current: tokio::sync::OnceCell<Arc<TestKey>>,
    keys: parking_lot::Mutex<HashMap<String, Arc<TestKey>>>,
}

impl NodeTests {
    pub(crate) fn new(settings: NodeTestSettings) -> NodeTests {
        NodeTests {
            settings,
            current: tokio::sync::OnceCell::new(),
            keys: Default::default(),
        }
    }
}

/// A test made for one node, not yet written.
#[derive(Clone, Debug)]
pub struct IssuedTest {
    pub key: Arc<TestKey>,
    pub puzzle: Puzzle,
    pub limit_ms: i64,
    /// The node whose link this one measures: its leader.
    pub peer_node_id: Option<String>,
}

impl IssuedTest {
    /// Writes the test into a node's bootstrap, as `test`.
    pub fn write_into(&self, bootstrap: &mut serde_json::Value) {
        let mut test = json!({
            "kind": "squarings",
            "modulus": self.key.modulus_hex(),
            "seed": self.puzzle.seed,
            "lanes": self.puzzle.lanes,
            "squarings": self.puzzle.squarings,
            "limit_ms": self.limit_ms,
        });
        if let Some(peer) = &self.peer_node_id {
            test["peer"] = json!({ "node_id": peer });
        }
        if let Some(b) = bootstrap.as_object_mut() {
            b.insert("test".into(), test);
        }
    }
}

/// What the agent must compute, read back from a bootstrap (as the simulator and `iocloud
/// agent run` do): the modulus and the puzzle, and the peer to measure, if any.
pub fn test_of(bootstrap: &serde_json::Value) -> Option<(String, Puzzle, Option<String>)> {
    let t = bootstrap.get("test")?;
    Some((
        t["modulus"].as_str()?.to_string(),
        Puzzle {
            seed: t["seed"].as_str()?.to_string(),
            lanes: u32::try_from(t["lanes"].as_u64()?).ok()?,
            squarings: t["squarings"].as_u64()?,
        },
        t["peer"]["node_id"].as_str().map(String::from),
    ))
}

/// The judgement on an answer, pure: right, in time, and a link no slower than the floor.
fn judge(
    right: bool,
    elapsed_ms: i64,
    limit_ms: i64,
    link: Option<(LinkMeasurement, i64)>,
) -> (NodeTestOutcome, Option<String>) {
    if !right {
        return (
            NodeTestOutcome::WrongAnswer,
            Some("the answer is not the test's".into()),
        );
    }
    if elapsed_ms > limit_ms {
        return (
            NodeTestOutcome::TooSlow,
            Some(format!(
                "answered after {:.1} s, more than the {:.1} s limit",
                elapsed_ms as f64 / 1000.0,
                limit_ms as f64 / 1000.0
            )),
        );
    }
    if let Some((m, claimed)) = link
        && m.bandwidth_mbps * 100 < claimed * BANDWIDTH_FLOOR_PCT
    {
        return (
            NodeTestOutcome::BandwidthShort,
            Some(format!(
                "the link to its peer measured {} Mbit/s, under {BANDWIDTH_FLOOR_PCT} % of the {claimed} Mbit/s the devices claim",
                m.bandwidth_mbps
            )),
        );
    }
    (NodeTestOutcome::Passed, None)
}

/// A node's test as stored, with its node's status.
#[derive(sqlx::FromRow)]
struct TestRow {
    key_id: String,
    seed: String,
    lanes: i64,
    squarings: i64,
    peer_node_id: Option<String>,
    limit_ms: i64,
    issued_at: i64,
    outcome: String,
    reason: Option<String>,
    answer: Option<String>,
    status: String,
}

impl Agents {
    /// The key new tests are issued with: the newest stored, or one made and stored now.
    /// Read before any claim's transaction begins (making one writes).
    pub(crate) async fn node_test_key(&self) -> Result<Arc<TestKey>> {
        self.node_tests
            .current
            .get_or_try_init(|| async {
                let newest: Option<(String, String, String)> = db_run!(&self.db, |p| {
                    sqlx::query_as(
                        "SELECT id, modulus, phi FROM node_test_keys ORDER BY created_at DESC, id LIMIT 1",
                    )
                    .fetch_optional(p)
                    .await
                })
                .map_err(DbError::from)?;
                let key = match newest {
                    Some((id, modulus, phi)) => {
                        TestKey::from_hex(id, &modulus, &phi).map_err(Error::Internal)?
                    }
                    None => {
                        // Two replicas starting at once may each make one: each test names
                        // its key, so both stay good.
                        let bits = self.node_tests.settings.key_bits;
                        let id = iocloud_db::ids::new_id("ntk");
                        let key = tokio::task::spawn_blocking(move || TestKey::generate(id, bits))
                            .await
                            .map_err(|e| Error::Internal(format!("node test key: {e}")))?
                            .map_err(Error::Internal)?;
                        db_run!(&self.db, |p| sqlx::query(
                            "INSERT INTO node_test_keys (id, modulus, phi, created_at) VALUES ($1, $2, $3, $4)"
                        )
                        .bind(&key.id)
                        .bind(key.modulus_hex())
                        .bind(key.phi_hex())
                        .bind(now_micros())
                        .execute(p)
                        .await
                        .map(|r| r.rows_affected()))
                        .map_err(DbError::from)?;
                        key
                    }
                };
                let key = Arc::new(key);
                self.node_tests
                    .keys
                    .lock()
                    .insert(key.id.clone(), key.clone());
                Ok::<_, Error>(key)
            })
            .await
            .cloned()
    }

    /// A key by its id, from this replica's memory or the database.
    async fn node_test_key_by_id(&self, id: &str) -> Result<Arc<TestKey>> {
        if let Some(key) = self.node_tests.keys.lock().get(id) {
            return Ok(key.clone());
        }
        let (modulus, phi): (String, String) = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT modulus, phi FROM node_test_keys WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?
        .ok_or_else(|| Error::Internal(format!("node test key {id} is gone")))?;
        let key =
            Arc::new(TestKey::from_hex(id.to_string(), &modulus, &phi).map_err(Error::Internal)?);
        self.node_tests
            .keys
            .lock()
            .insert(id.to_string(), key.clone());
        Ok(key)
    }

    /// A test for a node of `gpus` GPUs of `model` (none: a CPU-only device), following
    /// `peer` if it has a leader.
    pub(crate) fn issue_node_test(
        &self,
        key: &Arc<TestKey>,
        model: Option<&str>,
        gpus: u32,
        peer: Option<&str>,
    ) -> IssuedTest {
        let tflops = model
            .and_then(|m| self.catalog.gpu_model(m))
            .map(|m| m.fp16_tflops);
        let settings = &self.node_tests.settings;
        IssuedTest {
            key: key.clone(),
            puzzle: Puzzle::new(node_test::lanes_for(tflops, gpus), settings.squarings),
            limit_ms: i64::try_from(settings.limit.as_millis()).unwrap_or(i64::MAX),
            peer_node_id: peer.map(String::from),
        }
    }

    /// Writes a node's test, in the transaction that creates the node.
    pub(crate) async fn write_node_test_in(
        &self,
        tx: &mut iocloud_db::Tx,
        node: &super::NewNode<'_>,
        provider_org_id: &str,
        test: &IssuedTest,
        now: i64,
    ) -> Result<()> {
        tx_run!(tx, |c| sqlx::query(
            "INSERT INTO node_tests (node_id, cluster_id, device_id, org_id, key_id, seed, lanes, squarings, limit_ms, peer_node_id, issued_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending')"
        )
        .bind(node.id)
        .bind(node.cluster_id)
        .bind(node.device_id)
        .bind(provider_org_id)
        .bind(&test.key.id)
        .bind(&test.puzzle.seed)
        .bind(i64::from(test.puzzle.lanes))
        .bind(i64::try_from(test.puzzle.squarings).unwrap_or(i64::MAX))
        .bind(test.limit_ms)
        .bind(&test.peer_node_id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// The agent answers its node's test. Passed, the node may report `ready`; anything else
    /// fails the node at once. The first answer stands: the same answer again is told the
    /// same result, another one is refused.
    pub async fn answer_node_test(
        &self,
        device: &DeviceAuth,
        node_id: &str,
        answer: NodeTestAnswer,
        clusters: &impl ClusterNews,
    ) -> Result<NodeTestResult> {
        let digits = answer.answer.trim().to_ascii_lowercase();
        if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::validation(
                "answer",
                "must be 64 hexadecimal digits (SHA-256)",
            ));
        }
        super::check_range("elapsed_ms", answer.elapsed_ms, 0, 86_400_000)?;
        if let Some(link) = &answer.link {
            if !(link.rtt_ms.is_finite() && (0.01..=10_000.0).contains(&link.rtt_ms)) {
                return Err(Error::validation(
                    "link.rtt_ms",
                    "must be between 0.01 and 10000",
                ));
            }
            super::check_range("link.bandwidth_mbps", link.bandwidth_mbps, 1, 1_000_000)?;
        }
        let row: Option<TestRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT t.key_id, t.seed, t.lanes, t.squarings, t.peer_node_id, t.limit_ms, t.issued_at, t.outcome, t.reason, t.answer, n.status \
             FROM node_tests t JOIN node_assignments n ON n.id = t.node_id \
             WHERE t.node_id = $1 AND t.device_id = $2"
        )
        .bind(node_id)
        .bind(&device.id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let Some(row) = row else {
            return Err(Error::NotFound("node"));
        };
        let status = row.status.as_str();
        if let Some(decided) = NodeTestOutcome::parse(&row.outcome) {
            if row.answer.as_deref() != Some(digits.as_str()) {
                return Err(Error::conflict(
                    ErrorCode::NodeTestAnswered,
                    "this node's test is answered; the first answer stands",
                ));
            }
            // The same answer again (a retry): a failure whose node move was lost is made now.
            if decided != NodeTestOutcome::Passed && matches!(status, "assigned" | "starting") {
                self.fail_tested_node(device, node_id, row.reason.as_deref(), clusters)
                    .await?;
            }
            return Ok(NodeTestResult {
                node_id: node_id.to_string(),
                outcome: decided,
                detail: row.reason,
            });
        }
        if !matches!(status, "assigned" | "starting") {
            return Err(Error::Conflict {
                code: ErrorCode::InvalidState,
                message: format!("a node that is {status} takes no test answer"),
            });
        }
        if row.peer_node_id.is_some() && answer.link.is_none() {
            return Err(Error::validation(
                "link",
                "measure the link to the test's peer and report it",
            ));
        }
        let key = self.node_test_key_by_id(&row.key_id).await?;
        let puzzle = Puzzle {
            seed: row.seed.clone(),
            lanes: u32::try_from(row.lanes).unwrap_or(0),
            squarings: u64::try_from(row.squarings).unwrap_or(0),
        };
        // A few milliseconds per lane: off the async threads.
        let expected = tokio::task::spawn_blocking(move || key.expected(&puzzle))
            .await
            .map_err(|e| Error::Internal(format!("node test: {e}")))?;
        let now = now_micros();
        // The agent's own figure, or the time since it could see the test if that is longer:
        // an answer worked out before the agent said it started still took that long.
        let elapsed_ms = answer.elapsed_ms.max((now - row.issued_at) / 1000);
        let link = match (&row.peer_node_id, answer.link) {
            (Some(peer), Some(m)) => Some((m, self.link_claim(device, peer).await?)),
            _ => None,
        };
        let (outcome, detail) = judge(
            expected == digits,
            elapsed_ms,
            row.limit_ms,
            link.as_ref().map(|(m, c)| (*m, c.claimed_mbps)),
        );
        let mut tx = self.db.begin().await?;
        let written = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE node_tests SET answer = $1, elapsed_ms = $2, rtt_us = $3, bandwidth_mbps = $4, outcome = $5, reason = $6, answered_at = $7 \
             WHERE node_id = $8 AND outcome = 'pending'"
        )
        .bind(&digits)
        .bind(answer.elapsed_ms)
        .bind(answer.link.map(|l| (l.rtt_ms * 1000.0).round() as i64))
        .bind(answer.link.map(|l| l.bandwidth_mbps))
        .bind(outcome.as_str())
        .bind(&detail)
        .bind(now)
        .bind(node_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if written == 0 {
            // Answered at the same moment by another request: that answer stands.
            drop(tx);
            return Box::pin(self.answer_node_test(
                device,
                node_id,
                NodeTestAnswer {
                    answer: digits,
                    ..answer
                },
                clusters,
            ))
            .await;
        }
        let passed = outcome == NodeTestOutcome::Passed;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE node_assignments SET test_outcome = $1 WHERE id = $2"
        )
        .bind(if passed { "passed" } else { "failed" })
        .bind(node_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if passed && let Some((m, claim)) = &link {
            self.learn_rtt_in(&mut tx, &claim.regions, m.rtt_ms, now)
                .await?;
        }
        tx.commit().await?;
        if !passed {
            self.fail_tested_node(device, node_id, detail.as_deref(), clusters)
                .await?;
        }
        Ok(NodeTestResult {
            node_id: node_id.to_string(),
            outcome,
            detail,
        })
    }

    /// Fails a node whose test did not pass, as the agent's own `failed` report would.
    async fn fail_tested_node(
        &self,
        device: &DeviceAuth,
        node_id: &str,
        detail: Option<&str>,
        clusters: &impl ClusterNews,
    ) -> Result<()> {
        let report = NodeReport {
            status: "failed".into(),
            endpoints: None,
            ca_certificate: None,
            reason: Some(format!(
                "failed its node test: {}",
                detail.unwrap_or("no detail")
            )),
        };
        match self.node_report(device, node_id, report, clusters).await {
            // Failed or released meanwhile: nothing more to do.
            Err(Error::Conflict {
                code: ErrorCode::InvalidState,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// What the devices at both ends of a node's link claim (the slower direction of the
    /// slower device) and their regions, ordered.
    async fn link_claim(&self, device: &DeviceAuth, peer_node: &str) -> Result<LinkClaim> {
        let rows: Vec<(String, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT region, bandwidth_up_mbps, bandwidth_down_mbps FROM devices \
             WHERE id = $1 OR id = (SELECT device_id FROM node_assignments WHERE id = $2)"
        )
        .bind(&device.id)
        .bind(peer_node)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let claimed_mbps = rows
            .iter()
            .map(|(_, up, down)| (*up).min(*down))
            .min()
            .unwrap_or(0);
        let mut regions: Vec<String> = rows.into_iter().map(|(r, _, _)| r).collect();
        // Both nodes on one device (or its peer gone): the link is within one region.
        if regions.len() == 1 {
            regions.push(regions[0].clone());
        }
        regions.sort();
        Ok(LinkClaim {
            claimed_mbps,
            regions: (regions[0].clone(), regions[regions.len() - 1].clone()),
        })
    }

    /// Folds a measured round trip into the moving average between two regions (the last ten
    /// or so samples), which every replica's placement reads at its next sync.
    async fn learn_rtt_in(
        &self,
        tx: &mut iocloud_db::Tx,
        (a, b): &(String, String),
        rtt_ms: f64,
        now: i64,
    ) -> Result<()> {
        let rtt_us = (rtt_ms * 1000.0).round() as i64;
        tx_run!(tx, |c| sqlx::query(
            "INSERT INTO region_latency (region_a, region_b, rtt_us, samples, updated_at) VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (region_a, region_b) DO UPDATE SET \
             rtt_us = region_latency.rtt_us + (EXCLUDED.rtt_us - region_latency.rtt_us) / (CASE WHEN region_latency.samples < 9 THEN region_latency.samples + 1 ELSE 10 END), \
             samples = region_latency.samples + 1, updated_at = EXCLUDED.updated_at"
        )
        .bind(a)
        .bind(b)
        .bind(rtt_us)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(())
    }
}

/// The two ends of a link: what they claim, and their regions (in order).
struct LinkClaim {
    claimed_mbps: i64,
    regions: (String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(bandwidth_mbps: i64) -> LinkMeasurement {
        LinkMeasurement {
            rtt_ms: 1.0,
            bandwidth_mbps,
        }
    }

    #[test]
    fn judged_in_order_wrong_slow_short() {
        assert_eq!(judge(true, 10, 100, None).0, NodeTestOutcome::Passed);
        assert_eq!(judge(false, 10, 100, None).0, NodeTestOutcome::WrongAnswer);
        // A wrong answer is wrong however fast it came.
        assert_eq!(judge(false, 0, 100, None).0, NodeTestOutcome::WrongAnswer);
        let (slow, why) = judge(true, 101, 100, None);
        assert_eq!(slow, NodeTestOutcome::TooSlow);
        assert!(why.unwrap().contains("0.1 s limit"));
        // A quarter of the claim passes; under it does not.
        assert_eq!(
            judge(true, 10, 100, Some((link(250), 1000))).0,
            NodeTestOutcome::Passed
        );
        let (short, why) = judge(true, 10, 100, Some((link(249), 1000)));
        assert_eq!(short, NodeTestOutcome::BandwidthShort);
        assert!(why.unwrap().contains("249 Mbit/s"));
    }

    #[test]
    fn a_bootstrap_gives_its_test_back() {
        let key = Arc::new(TestKey::generate("ntk_t".into(), 128).unwrap());
        let test = IssuedTest {
            key: key.clone(),
            puzzle: Puzzle::new(3, 20),
            limit_ms: 5000,
            peer_node_id: Some("nod_lead".into()),
        };
        let mut boot = json!({"role": "worker"});
        test.write_into(&mut boot);
        let (modulus, puzzle, peer) = test_of(&boot).unwrap();
        assert_eq!(modulus, key.modulus_hex());
        assert_eq!(puzzle, test.puzzle);
        assert_eq!(peer.as_deref(), Some("nod_lead"));
        assert_eq!(boot["test"]["limit_ms"], 5000);
        assert!(test_of(&json!({"role": "head"})).is_none());
    }
}
