//! Free capacity: the placement index kept current from the database, and plans claimed.
//!
//! The index is a hint. Every replica keeps its own, brought up to date from the devices
//! changed since it last looked (`devices.updated_at`, re-reading a few seconds back so that a
//! write committed late, or a replica's clock a little behind, is not missed). A plan is
//! claimed in one transaction of conditional updates of free GPUs; when any node's device no
//! longer has them, nothing is taken and the next plan is tried, so two requests, or two
//! replicas, can never take the same GPU however stale an index is.

use std::sync::Arc;

use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run};
use parking_lot::RwLock;

use crate::placement::{self, Inventory, Offer, Plan, PlanNode, Request};
use crate::providers::agent::NewNode;
use crate::{Control, Error, ErrorCode, Result};

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

pub struct CapacityIndex {
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

impl CapacityIndex {
    pub fn new(catalog: &crate::providers::Catalog) -> CapacityIndex {
        CapacityIndex {
            inventory: RwLock::new(catalog.inventory()),
            claiming: Default::default(),
            decided: tokio::sync::Notify::new(),
            watermark: tokio::sync::Mutex::new((0, None)),
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

/// A plan claimed for a cluster: its node ids, in the plan's order.
#[derive(Debug)]
pub struct Claim {
    pub plan: Plan,
    pub node_ids: Vec<String>,
}

impl Control {
    /// Brings this replica's index up to date with the devices changed since it last looked.
    pub async fn sync_capacity(&self) -> Result<()> {
        self.sync_capacity_since(std::time::Instant::now()).await
    }

    /// Brings the index up to date with everything committed before `asked`. Concurrent
    /// callers share syncs: one that began after `asked` (and has finished, as we hold the
    /// lock) already read all of it, so many requests at once cost two reads, not one each.
    async fn sync_capacity_since(&self, asked: std::time::Instant) -> Result<()> {
        let mut state = self.capacity.watermark.lock().await;
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
        let claiming = self.capacity.claiming.lock().clone();
        let mut inventory = self.capacity.inventory.write();
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
        self.sync_capacity().await?;
        self.place_on_index(request)
    }

    /// The plans a claim tries: placed on an index at most [`CLAIM_STALENESS`] old, or on a
    /// fresh one when that one has nothing that fits.
    async fn claim_plans(&self, request: &Request) -> Result<Vec<Plan>> {
        let asked = std::time::Instant::now();
        let recent = asked.checked_sub(CLAIM_STALENESS).unwrap_or(asked);
        self.sync_capacity_since(recent).await?;
        match self.place_on_index(request) {
            Err(Error::InsufficientCapacity(_)) => {
                self.sync_capacity_since(asked).await?;
                self.place_on_index(request)
            }
            placed => placed,
        }
    }

    fn place_on_index(&self, request: &Request) -> Result<Vec<Plan>> {
        let inventory = self.capacity.inventory.read();
        placement::place(&inventory, request)
            .map_err(|why| Error::InsufficientCapacity(Box::new(why)))
    }

    /// Places and claims: the best plan whose GPUs are all still free is taken, node by node,
    /// in one transaction for `cluster_id` of `org_id`. Every node gets `bootstrap`.
    pub async fn claim_capacity(
        &self,
        org_id: &str,
        cluster_id: &str,
        request: &Request,
        bootstrap: &serde_json::Value,
    ) -> Result<Claim> {
        let mut work = SameBootstrap(bootstrap);
        let (claim, ()) = self
            .claim_capacity_with(org_id, cluster_id, request, &mut work)
            .await?;
        Ok(claim)
    }

    /// [`Control::claim_capacity`], with each node's bootstrap from `work` and `work`'s own
    /// writes in the same transaction: all of it commits, or none.
    pub(crate) async fn claim_capacity_with<W: ClaimWork>(
        &self,
        org_id: &str,
        cluster_id: &str,
        request: &Request,
        work: &mut W,
    ) -> Result<(Claim, W::Output)> {
        // A claim fails only when someone else took the GPUs, so every failed round is
        // somebody's progress; the bound is a safety net, not a tuning knob.
        for _ in 0..CLAIM_ROUNDS {
            let decided = self.capacity.decided.notified();
            let plans = match self.claim_plans(request).await {
                Ok(plans) => plans,
                // GPUs this replica is claiming right now may yet come back (a claim refused
                // for quota or funds): wait for one to be decided before saying nothing fits.
                Err(Error::InsufficientCapacity(_))
                    if !self.capacity.claiming.lock().is_empty() =>
                {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), decided).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for plan in plans {
                match self.claim_plan(org_id, cluster_id, plan, work).await {
                    Ok(done) => return Ok(done),
                    Err(e) if index_was_wrong(&e) => continue,
                    // A deadlock or a busy database: the transaction did nothing.
                    Err(Error::Db(e)) if e.is_retryable() => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Err(Error::Conflict {
            code: ErrorCode::CapacityContended,
            message: "the capacity kept being taken while we tried; try again".into(),
        })
    }

    /// Claims every node of the plan, or none. Devices are taken in id order, so two claims
    /// that share devices lock them in the same order and cannot deadlock.
    async fn claim_plan<W: ClaimWork>(
        &self,
        org_id: &str,
        cluster_id: &str,
        mut plan: Plan,
        work: &mut W,
    ) -> Result<(Claim, W::Output)> {
        plan.nodes.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        // Taken in this replica's index before the database is asked, so requests placed at the
        // same moment here choose other devices instead of queueing on these rows; given back
        // if the claim does not go through, or if it is never finished (its request dropped).
        let mark = LocalClaim::take(self, &plan);
        let claimed = self.claim_in_db(org_id, cluster_id, &plan, work).await;
        mark.decide(claimed.is_ok());
        let (node_ids, output) = match claimed {
            Ok(done) => done,
            Err(e) => {
                if index_was_wrong(&e) {
                    // Look again before the next plan.
                    self.sync_capacity().await?;
                }
                return Err(e);
            }
        };
        for node in &plan.nodes {
            self.agents.wake(&node.device_id).await;
        }
        Ok((Claim { plan, node_ids }, output))
    }
}

/// A plan's GPUs marked as being claimed in this replica's index, until the claim is
/// decided. The mark is undone when this is dropped, whatever became of the claim: a client
/// that hangs up, or the request timeout, drops the claim's future mid-way, and a mark left
/// behind would keep those GPUs out of every placement, and make every request that does not
/// fit wait for a decision that never comes.
#[must_use = "the mark is undone when this is dropped"]
struct LocalClaim<'a> {
    control: &'a Control,
    plan: &'a Plan,
    /// Whether the database has the GPUs; until told, the claim counts as lost.
    won: bool,
}

impl<'a> LocalClaim<'a> {
    fn take(control: &'a Control, plan: &'a Plan) -> LocalClaim<'a> {
        let capacity = &control.capacity;
        let mut claiming = capacity.claiming.lock();
        let mut inventory = capacity.inventory.write();
        for node in &plan.nodes {
            *claiming.entry(node.device_id.clone()).or_default() += node.gpus;
            inventory.take(&node.device_id, node.gpus);
        }
        LocalClaim {
            control,
            plan,
            won: false,
        }
    }

    /// The claim is decided: the database has the GPUs (`won`) or they go back to the index.
    fn decide(mut self, won: bool) {
        self.won = won;
    }
}

impl Drop for LocalClaim<'_> {
    fn drop(&mut self) {
        let capacity = &self.control.capacity;
        let mut claiming = capacity.claiming.lock();
        let mut inventory = capacity.inventory.write();
        for node in &self.plan.nodes {
            if let Some(n) = claiming.get_mut(&node.device_id) {
                *n = n.saturating_sub(node.gpus);
                if *n == 0 {
                    claiming.remove(&node.device_id);
                }
            }
            if !self.won {
                inventory.give_back(&node.device_id, node.gpus);
            }
        }
        drop((claiming, inventory));
        capacity.decided.notify_waiters();
    }
}

impl Control {
    /// The claim's transaction: `work`'s own writes, then every node's GPUs. Devices are
    /// locked last, here as in every other transaction that takes or gives back GPUs
    /// (nodes, then cluster rows and holds, then ledger accounts, then quota, then devices):
    /// a device row is the most contended (claims, agent releases, heartbeats and scores all
    /// write it), so it is held only from its update to the commit, never while this
    /// transaction waits on a customer's accounts.
    async fn claim_in_db<W: ClaimWork>(
        &self,
        org_id: &str,
        cluster_id: &str,
        plan: &Plan,
        work: &mut W,
    ) -> Result<(Vec<String>, W::Output)> {
        let node_ids: Vec<String> = plan.nodes.iter().map(|_| new_id("nod")).collect();
        let starts: Vec<NodeStart> = plan
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let first = (index > 0).then(|| node_ids[0].as_str());
                work.node(index, first, node)
            })
            .collect();
        let mut tx = self.db.begin().await?;
        let output = work.within(&mut tx, plan, &node_ids).await?;
        for ((node, id), start) in plan.nodes.iter().zip(&node_ids).zip(&starts) {
            let new = NewNode {
                id,
                device_id: &node.device_id,
                cluster_id,
                customer_org_id: org_id,
                gpus: i64::from(node.gpus),
                role: start.role,
                price_per_gpu_hour: node.price_per_gpu_hour,
                bootstrap: &start.bootstrap,
                start_now: start.start_now,
            };
            self.agents.assign_node_in(&mut tx, &new).await?;
        }
        tx.commit().await?;
        Ok((node_ids, output))
    }
}

/// How one node of a claimed plan starts.
pub(crate) struct NodeStart {
    pub role: &'static str,
    pub bootstrap: serde_json::Value,
    pub start_now: bool,
}

/// What a claim does besides taking GPUs: each node's bootstrap, and writes of its own in the
/// claim's transaction (the cluster row, quota, the hold), made before the GPUs are taken.
pub(crate) trait ClaimWork {
    type Output;
    /// Node `index` of the plan; `first` is the id of node 0 (for the nodes after it).
    fn node(&mut self, index: usize, first: Option<&str>, node: &PlanNode) -> NodeStart;
    /// The work's writes, before the nodes are inserted: `node_ids` are the ids they will
    /// have. A claim that fails rolls these back with it.
    async fn within(
        &mut self,
        tx: &mut iocloud_db::Tx,
        plan: &Plan,
        node_ids: &[String],
    ) -> Result<Self::Output>;
}

struct SameBootstrap<'a>(&'a serde_json::Value);

impl ClaimWork for SameBootstrap<'_> {
    type Output = ();
    fn node(&mut self, _: usize, _: Option<&str>, _: &PlanNode) -> NodeStart {
        NodeStart {
            role: "node",
            bootstrap: self.0.clone(),
            start_now: true,
        }
    }
    async fn within(&mut self, _: &mut iocloud_db::Tx, _: &Plan, _: &[String]) -> Result<()> {
        Ok(())
    }
}

/// Shared by every clone of [`Control`].
pub type SharedCapacity = Arc<CapacityIndex>;
