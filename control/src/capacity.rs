//! Free capacity: the placement index kept current from the database, and plans claimed.
//!
//! The index is a hint. Every replica keeps its own, brought up to date from the devices
//! changed since it last looked (`devices.updated_at`, re-reading a few seconds back so that a
//! write committed late, or a replica's clock a little behind, is not missed). A plan is
//! claimed in one transaction of conditional updates of free GPUs; when any node's device no
//! longer has them, nothing is taken and the next plan is tried, so two requests, or two
//! replicas, can never take the same GPU however stale an index is.

use iocloud_db::ids::OrgId;
use std::sync::Arc;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Tx, db_run};
use parking_lot::RwLock;

use crate::placement::{self, Inventory, Offer, Plan, Request};
use crate::providers::Catalog;
use crate::providers::agent::{Agents, NewNode};
use crate::{Error, ErrorCode, Result};

/// How far back a sync re-reads, µs: late commits and clock skew between replicas.
const SYNC_OVERLAP: i64 = 5_000_000;
/// How old the index a claim places on may be. A sync re-reads every device changed in the
/// last [`SYNC_OVERLAP`], the whole busy fleet, so claims share one per this interval instead
/// of each taking its own. Nothing is lost by it: a plan the stale index got wrong fails its
/// claim (which syncs at once), and "nothing fits" is only answered from a fresh sync. GPUs
/// freed elsewhere show up within this.
const CLAIM_STALENESS: std::time::Duration = std::time::Duration::from_millis(250);
/// Rounds of "place, try every plan" before giving up on a contended request.
const CLAIM_ROUNDS: usize = 64;

/// Whether a claim failed because the index was wrong about a device (its GPUs were taken,
/// it stopped taking nodes, or it is gone): the next plan may fit where this one did not.
fn index_was_wrong(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict {
            code: ErrorCode::InsufficientCapacity | ErrorCode::DeviceUnavailable,
            ..
        } | Error::NotFound("device")
    )
}

/// This replica's view of free capacity, and the claims made through it. Cheap to clone.
///
/// A claim is tried plan by plan, but its transaction belongs to the caller (the use case that
/// claims, e.g. creating a cluster): [`Capacity::claim`] hands each [`Attempt`] to the
/// caller's `commit`, which writes what it needs, takes the GPUs with [`Capacity::take_in`]
/// and commits; capacity decides only what to try next when that fails.
#[derive(Clone)]
pub struct Capacity {
    db: Db,
    agents: Agents,
    index: Arc<CapacityIndex>,
}

struct CapacityIndex {
    inventory: RwLock<Inventory>,
    /// GPUs this replica is claiming right now, per device: a sync subtracts them from what it
    /// reads, so requests placed meanwhile keep avoiding those GPUs until the claim is decided.
    claiming: parking_lot::Mutex<std::collections::HashMap<String, u32>>,
    /// Signalled whenever one of those claims is decided.
    decided: tokio::sync::Notify,
    /// The `updated_at` the next sync reads from, and when the last sync began; syncs take
    /// turns.
    watermark: tokio::sync::Mutex<(i64, Option<std::time::Instant>)>,
}

impl Capacity {
    pub(crate) fn new(db: Db, agents: Agents, catalog: &Catalog) -> Capacity {
        Capacity {
            db,
            agents,
            index: Arc::new(CapacityIndex {
                inventory: RwLock::new(catalog.inventory()),
                claiming: Default::default(),
                decided: tokio::sync::Notify::new(),
                watermark: tokio::sync::Mutex::new((0, None)),
            }),
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeviceOffer {
    id: String,
    org_id: String,
    gpu_model: Option<String>,
    gpus_free: i64,
    region: String,
    bandwidth_up_mbps: i64,
    bandwidth_down_mbps: i64,
    price_per_gpu_hour: i64,
    status: String,
    reliability_bps: i64,
    provider_reliability_bps: Option<i64>,
}

impl DeviceOffer {
    /// What placement may use of the device, or `None` when it can take no GPU node.
    fn offer(self) -> std::result::Result<Offer, String> {
        match self.gpu_model {
            Some(model) if matches!(self.status.as_str(), "available" | "busy") => Ok(Offer {
                device_id: self.id,
                provider_id: self.org_id,
                model,
                region: self.region,
                gpus_free: self.gpus_free.clamp(0, i64::from(u32::MAX)) as u32,
                price: self.price_per_gpu_hour,
                bandwidth_mbps: self.bandwidth_up_mbps.min(self.bandwidth_down_mbps).max(0) as u32,
                reliability_bps: crate::providers::reliability::combined(
                    self.reliability_bps,
                    self.provider_reliability_bps
                        .unwrap_or(crate::providers::reliability::PRIOR_BPS),
                ),
            }),
            _ => Err(self.id),
        }
    }
}

/// A plan claimed: its node ids, in the plan's order.
#[derive(Debug)]
pub struct Claim {
    pub plan: Plan,
    pub node_ids: Vec<String>,
}

/// One plan being tried: the nodes to take (sorted by device id, the order devices are
/// locked in) and the ids they will have.
pub struct Attempt {
    pub plan: Plan,
    pub node_ids: Vec<String>,
    mark: LocalClaim,
    /// The key the nodes' tests are made with, read before the caller's transaction.
    test_key: Arc<crate::providers::node_test::TestKey>,
}

impl Attempt {
    /// The id of the plan's first node, for node `index` after it (the nodes that follow it).
    pub fn first_node(&self, index: usize) -> Option<&str> {
        (index > 0).then(|| self.node_ids[0].as_str())
    }
}

/// How one node of a claimed plan starts.
pub struct NodeStart {
    pub role: &'static str,
    pub bootstrap: serde_json::Value,
    pub start_now: bool,
}

impl Capacity {
    /// Brings this replica's index up to date with the devices changed since it last looked.
    pub async fn sync(&self) -> Result<()> {
        self.sync_since(std::time::Instant::now()).await
    }

    /// Brings the index up to date with everything committed before `asked`. Concurrent
    /// callers share syncs: one that began after `asked` (and has finished, as we hold the
    /// lock) already read all of it, so many requests at once cost two reads, not one each.
    async fn sync_since(&self, asked: std::time::Instant) -> Result<()> {
        let mut state = self.index.watermark.lock().await;
        if state.1.is_some_and(|began| began >= asked) {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let now = now_micros();
        let since = (state.0 - SYNC_OVERLAP).max(0);
        let rows: Vec<DeviceOffer> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT d.id, d.org_id, d.gpu_model, d.gpus_free, d.region, d.bandwidth_up_mbps, d.bandwidth_down_mbps, d.price_per_gpu_hour, d.status, \
             d.reliability_bps, r.reliability_bps AS provider_reliability_bps \
             FROM devices d LEFT JOIN provider_reliability r ON r.org_id = d.org_id WHERE d.updated_at >= $1"
        )
        .bind(since)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        // Round trips node tests measured between regions since the last look.
        let measured: Vec<(String, String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT region_a, region_b, rtt_us FROM region_latency WHERE updated_at >= $1"
        )
        .bind(since)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let claiming = self.index.claiming.lock().clone();
        let mut inventory = self.index.inventory.write();
        for (a, b, rtt_us) in measured {
            inventory.set_measured_rtt(&a, &b, rtt_us as f64 / 1000.0);
        }
        for row in rows {
            match row.offer() {
                Ok(mut offer) => {
                    if let Some(gpus) = claiming.get(&offer.device_id) {
                        offer.gpus_free = offer.gpus_free.saturating_sub(*gpus);
                    }
                    if let Err(e) = inventory.upsert(&offer) {
                        tracing::warn!(error = %e, device = %offer.device_id, "device left out of placement");
                    }
                }
                Err(id) => {
                    inventory.remove(&id);
                }
            }
        }
        *state = (now, Some(began));
        Ok(())
    }

    /// The ranked plans for a request, on an index that has everything committed before it.
    pub async fn plans(&self, request: &Request) -> Result<Vec<Plan>> {
        self.sync().await?;
        self.place_on_index(request)
    }

    /// Free GPUs per model and region, on an index that has everything committed before it.
    pub async fn availability(&self) -> Result<Vec<placement::Availability>> {
        self.sync().await?;
        Ok(self.index.inventory.read().availability())
    }

    /// The plans a claim tries: placed on an index at most [`CLAIM_STALENESS`] old, or on a
    /// fresh one when that one has nothing that fits.
    async fn claim_plans(&self, request: &Request) -> Result<Vec<Plan>> {
        let asked = std::time::Instant::now();
        let recent = asked.checked_sub(CLAIM_STALENESS).unwrap_or(asked);
        self.sync_since(recent).await?;
        match self.place_on_index(request) {
            Err(Error::InsufficientCapacity(_)) => {
                self.sync_since(asked).await?;
                self.place_on_index(request)
            }
            placed => placed,
        }
    }

    fn place_on_index(&self, request: &Request) -> Result<Vec<Plan>> {
        let inventory = self.index.inventory.read();
        placement::place(&inventory, request)
            .map_err(|why| Error::InsufficientCapacity(Box::new(why)))
    }

    /// Places and claims `request`: the plans to try, best first, one [`Attempt`] at a time.
    /// The caller writes each attempt in its own transaction (taking the GPUs with
    /// [`Capacity::take_in`]) and hands the outcome to [`Claiming::decide`].
    pub fn claiming<'a>(&'a self, request: &'a Request) -> Claiming<'a> {
        Claiming {
            capacity: self,
            request,
            plans: Vec::new().into_iter(),
            rounds: 0,
        }
    }

    /// Takes the attempt's GPUs in the caller's transaction: one node per node of the plan,
    /// starting as `starts` says, for `cluster_id` of `org_id`.
    ///
    /// The caller's last write before it commits: devices are locked last in every transaction
    /// that takes or gives back GPUs (nodes, then cluster rows and holds, then ledger
    /// accounts, then quota, then devices), because a device row is the most contended (claims,
    /// agent releases, heartbeats and scores all write it), so it is held only from its update
    /// to the commit, never while the transaction waits on a customer's accounts.
    pub async fn take_in(
        &self,
        tx: &mut Tx,
        attempt: &Attempt,
        org_id: &OrgId,
        cluster_id: &str,
        starts: &[NodeStart],
    ) -> Result<()> {
        let nodes = attempt.plan.nodes.iter().zip(&attempt.node_ids);
        for ((node, id), start) in nodes.zip(starts) {
            // Each node's test goes with its bootstrap; a follower measures its link to the
            // leader it names.
            let leader = start.bootstrap["leader_node_id"].as_str();
            let test = self.agents.issue_node_test(
                &attempt.test_key,
                Some(node.model.as_str()),
                node.gpus,
                leader,
            );
            let mut bootstrap = start.bootstrap.clone();
            test.write_into(&mut bootstrap);
            let new = NewNode {
                id,
                device_id: &node.device_id,
                cluster_id,
                customer_org_id: org_id,
                gpus: i64::from(node.gpus),
                role: start.role,
                price_per_gpu_hour: node.price_per_gpu_hour,
                bootstrap: &bootstrap,
                start_now: start.start_now,
                test: Some(&test),
            };
            self.agents.assign_node_in(tx, &new).await?;
        }
        Ok(())
    }

    /// Claims plain nodes for `cluster_id` of `org_id`, every one started at once with
    /// `bootstrap`, with nothing else in the claim's transaction.
    pub async fn claim_nodes(
        &self,
        org_id: &OrgId,
        cluster_id: &str,
        request: &Request,
        bootstrap: &serde_json::Value,
    ) -> Result<Claim> {
        let mut claiming = self.claiming(request);
        loop {
            let attempt = claiming.next().await?;
            let starts: Vec<NodeStart> = attempt
                .node_ids
                .iter()
                .map(|_| NodeStart {
                    role: "node",
                    bootstrap: bootstrap.clone(),
                    start_now: true,
                })
                .collect();
            let committed = async {
                let mut tx = self.db.begin().await?;
                self.take_in(&mut tx, &attempt, org_id, cluster_id, &starts)
                    .await?;
                Ok(tx.commit().await?)
            }
            .await;
            if let Some((claim, ())) = claiming.decide(attempt, committed).await? {
                return Ok(claim);
            }
        }
    }
}

/// A claim in progress: the plans left to try, and how many times placement was asked.
pub struct Claiming<'a> {
    capacity: &'a Capacity,
    request: &'a Request,
    plans: std::vec::IntoIter<Plan>,
    rounds: usize,
}

impl Claiming<'_> {
    /// The next plan to try, its GPUs marked as taken in this replica's index until the
    /// attempt is decided (or dropped). Placement is asked again when the plans run out.
    pub async fn next(&mut self) -> Result<Attempt> {
        let test_key = self.capacity.agents.node_test_key().await?;
        loop {
            if let Some(mut plan) = self.plans.next() {
                plan.nodes.sort_by(|a, b| a.device_id.cmp(&b.device_id));
                // Taken in this replica's index before the database is asked, so requests
                // placed at the same moment here choose other devices instead of queueing on
                // these rows; given back if the claim does not go through, or if it is never
                // finished (its request dropped).
                let mark = LocalClaim::take(&self.capacity.index, &plan);
                return Ok(Attempt {
                    node_ids: plan.nodes.iter().map(|_| new_id("nod")).collect(),
                    plan,
                    mark,
                    test_key,
                });
            }
            // A claim fails only when someone else took the GPUs, so every failed round is
            // somebody's progress; the bound is a safety net, not a tuning knob.
            if self.rounds == CLAIM_ROUNDS {
                return Err(Error::Conflict {
                    code: ErrorCode::CapacityContended,
                    message: "the capacity kept being taken while we tried; try again".into(),
                });
            }
            self.rounds += 1;
            let index = &self.capacity.index;
            let decided = index.decided.notified();
            match self.capacity.claim_plans(self.request).await {
                Ok(plans) => self.plans = plans.into_iter(),
                // GPUs this replica is claiming right now may yet come back (a claim refused
                // for quota or funds): wait for one to be decided before saying nothing fits.
                Err(Error::InsufficientCapacity(_)) if !index.claiming.lock().is_empty() => {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), decided).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What the caller's transaction made of `attempt`: committed, the claim (and the
    /// devices' agents are woken); failed because the GPUs were gone or the database asked
    /// for a retry, `None`, and the next plan is tried; any other failure ends the claim.
    pub async fn decide<T>(
        &mut self,
        attempt: Attempt,
        committed: Result<T>,
    ) -> Result<Option<(Claim, T)>> {
        let Attempt {
            plan,
            node_ids,
            mut mark,
            ..
        } = attempt;
        mark.won = committed.is_ok();
        drop(mark);
        match committed {
            Ok(output) => {
                for node in &plan.nodes {
                    self.capacity.agents.wake(&node.device_id).await;
                }
                Ok(Some((Claim { plan, node_ids }, output)))
            }
            Err(e) if index_was_wrong(&e) => {
                // Look again before the next plan.
                self.capacity.sync().await?;
                Ok(None)
            }
            // A deadlock or a busy database: the transaction did nothing.
            Err(Error::Db(e)) if e.is_retryable() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A plan's GPUs marked as being claimed in this replica's index, until the claim is
/// decided. The mark is undone when this is dropped, whatever became of the claim: a client
/// that hangs up, or the request timeout, drops the claim's future mid-way, and a mark left
/// behind would keep those GPUs out of every placement, and make every request that does not
/// fit wait for a decision that never comes.
#[must_use = "the mark is undone when this is dropped"]
struct LocalClaim {
    index: Arc<CapacityIndex>,
    /// Each node's device and GPUs.
    nodes: Vec<(String, u32)>,
    /// Whether the database has the GPUs; until told, the claim counts as lost.
    won: bool,
}

impl LocalClaim {
    fn take(index: &Arc<CapacityIndex>, plan: &Plan) -> LocalClaim {
        let nodes: Vec<(String, u32)> = plan
            .nodes
            .iter()
            .map(|n| (n.device_id.clone(), n.gpus))
            .collect();
        let mut claiming = index.claiming.lock();
        let mut inventory = index.inventory.write();
        for (device, gpus) in &nodes {
            *claiming.entry(device.clone()).or_default() += gpus;
            inventory.take(device, *gpus);
        }
        drop((claiming, inventory));
        LocalClaim {
            index: index.clone(),
            nodes,
            won: false,
        }
    }
}

impl Drop for LocalClaim {
    fn drop(&mut self) {
        let index = &self.index;
        let mut claiming = index.claiming.lock();
        let mut inventory = index.inventory.write();
        for (device, gpus) in &self.nodes {
            if let Some(n) = claiming.get_mut(device) {
                *n = n.saturating_sub(*gpus);
                if *n == 0 {
                    claiming.remove(device);
                }
            }
            if !self.won {
                inventory.give_back(device, *gpus);
            }
        }
        drop((claiming, inventory));
        index.decided.notify_waiters();
    }
}
