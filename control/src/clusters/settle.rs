//! Settling ended clusters: every node charged to when it stopped, the rest of the hold
//! released, and a terminating cluster terminated, all in one transaction whose
//! compare-and-set on the row makes it safe to repeat and to race. A cluster its customer
//! deletes is ended in the same transaction ([`Settlement::Terminate`]): one commit instead of
//! two, and the row written once.
//!
//! Settlements that arrive together are done together ([`Batcher`], a group commit). Every
//! settlement credits the same few accounts (platform revenue, a provider's earnings); in a
//! batch those rows are updated once, so they are locked once per batch instead of once per
//! cluster. One that raced (an accrual pass charged it meanwhile, or its row moved) rolls the
//! batch back; the others go again without it, and it goes again by itself (a cluster to
//! terminate is then ended alone, and settled by its caller).

use std::collections::{BTreeMap, HashMap, HashSet};

use iocloud_billing::Money;
use iocloud_billing::metering::{
    HoldToSettle, HoldUsage, HoldsSettled, Settled, settle_hold_in, settle_holds_in,
};
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, tx_run};

use super::Clusters;
use super::lifecycle::{
    Ended, Metering, NodesEnded, ON_REQUEST, end_clusters_nodes_in, give_back_all_in, stale,
};
use super::{ClusterEvent, ClusterRow, ClusterStatus, NodeRow, quota};
use crate::batcher::Batcher;
use crate::{Error, ErrorCode, Result};

/// Tries at settling one cluster alone before giving up (each failed try is someone else's
/// progress: an accrual charged it, or its row moved).
const TRIES: usize = 16;

/// What a batch of settlements is asked to do with each cluster.
pub(crate) enum Settlement {
    /// An ended cluster (terminating or failed): settle it.
    Ended(ClusterRow),
    /// A live cluster its customer deleted, as they last saw it: end it and settle it.
    Terminate(ClusterRow),
}

impl Settlement {
    fn row(&self) -> &ClusterRow {
        match self {
            Settlement::Ended(row) | Settlement::Terminate(row) => row,
        }
    }
}

/// Settlements waiting for their turn ([`Batcher`]).
pub(crate) type SettleQueue = Batcher<Settlement, Result<Ended>>;

/// How a terminated cluster's nodes are ended: with their metering left to the settlement
/// when it has usage to settle.
fn metering(usage: Option<&HoldUsage>) -> Metering {
    match usage {
        Some(_) => Metering::LeftToSettlement,
        None => Metering::Stop,
    }
}

/// What one cluster's settlement wrote, waiting for the batch's money and commit.
struct Done {
    events: Vec<ClusterEvent>,
    settled: Option<Settled>,
    /// The nodes as ending the cluster left them (a [`Settlement::Terminate`] only).
    nodes: Option<Vec<NodeRow>>,
    /// Agents to wake once the batch commits: their nodes are to be torn down.
    wake: Vec<String>,
}

/// A hold's settlement inside a batch's transaction.
enum Charge {
    /// What it moved, its money not yet posted (`None`: no hold or no usage to settle).
    Settled(Option<Settled>),
    /// A usage record moved since it was read (an accrual pass charged it).
    Raced,
}

/// The quota the clusters terminated in a batch give back, per organisation, written after the
/// money and before the GPUs, as a create takes them: creates wait on their organisation's
/// row, so it is held only from there to the commit. In organisation order, so two batches
/// cannot deadlock on them.
#[derive(Default)]
struct QuotaBack(BTreeMap<OrgId, (i64, i64, i64)>);

impl QuotaBack {
    fn add(&mut self, row: &ClusterRow) {
        let (gpus, clusters, spend) = self.0.entry(row.org_id.clone()).or_default();
        *gpus += row.gpus;
        *clusters += 1;
        *spend += row.spend_per_hour;
    }

    async fn release_in(self, tx: &mut Tx) -> Result<()> {
        for (org_id, (gpus, clusters, spend)) in self.0 {
            quota::release_in(tx, &org_id, gpus, clusters, spend).await?;
        }
        Ok(())
    }
}

/// Makes a terminating cluster terminated, or takes a failed one off the reconciler's list.
async fn finish_in(
    tx: &mut Tx,
    row: &mut ClusterRow,
    message: &str,
) -> Result<Option<ClusterEvent>> {
    if row.status()? != ClusterStatus::Terminating {
        let moved = tx_run!(tx, |c| sqlx::query(
            "UPDATE clusters SET reconcile_at = NULL WHERE id = $1 AND resource_version = $2"
        )
        .bind(&row.id)
        .bind(row.resource_version)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        return if moved == 1 {
            row.reconcile_at = None;
            Ok(None)
        } else {
            Err(stale(row))
        };
    }
    row.set_status(ClusterStatus::Terminated, None)?;
    row.terminated_at = Some(now_micros());
    row.reconcile_at = None;
    let event = row.save_in(tx, "terminated", message).await?;
    event.map(Some).ok_or_else(|| stale(row))
}

/// What the terminated event says the cluster cost.
fn summary(settled: Option<&Settled>) -> String {
    let Some(s) = settled else {
        return "settled".to_string();
    };
    let c = s.hold.currency();
    format!(
        "charged {} {}; released {} {}",
        Money::from_micros(s.hold.captured, c).to_decimal(),
        c.code(),
        Money::from_micros(s.hold.released, c).to_decimal(),
        c.code()
    )
}

/// An ended cluster whose hold was settled in `tx` (`settled`): terminated, or taken off the
/// reconciler's list. A stale-version conflict when its row moved.
async fn finish_settled_in(
    tx: &mut Tx,
    row: &mut ClusterRow,
    settled: Option<Settled>,
) -> Result<Done> {
    let events = finish_in(tx, row, &summary(settled.as_ref()))
        .await?
        .into_iter()
        .collect();
    Ok(Done {
        events,
        settled,
        nodes: None,
        wake: Vec::new(),
    })
}

/// A live cluster ended on request whose nodes were ended and hold settled in `tx` at `now`
/// (every record of the hold charged to its end: the nodes' metering was left to the
/// settlement): the row written once with both steps' events. The quota it gives back is the
/// caller's to write. A stale-version conflict when its row moved.
///
/// A record started after the usage was read would be left running, but none can be: usage
/// starts only with the cluster's row (reconcile.rs), whose compare-and-set here then fails.
async fn terminate_settled_in(
    tx: &mut Tx,
    row: &mut ClusterRow,
    settled: Option<Settled>,
    ended: NodesEnded,
    now: i64,
) -> Result<Done> {
    let summary = summary(settled.as_ref());
    // Through terminating, as the table has it; the row is written once, with both steps.
    row.set_status(ClusterStatus::Terminating, Some(ON_REQUEST))?;
    row.set_status(ClusterStatus::Terminated, None)?;
    row.ended_at = Some(now);
    row.terminated_at = Some(now);
    row.reconcile_at = None;
    let steps = [
        ("terminating", ClusterStatus::Terminating, ON_REQUEST),
        ("terminated", ClusterStatus::Terminated, summary.as_str()),
    ];
    let events = row
        .save_steps_in(tx, &steps)
        .await?
        .ok_or_else(|| stale(row))?;
    Ok(Done {
        events,
        settled,
        nodes: ended.nodes,
        wake: ended.wake,
    })
}

impl Clusters {
    /// Settles an ended (terminating or failed) cluster, with whatever other settlements are
    /// waiting at the same moment. Answers the row as the settlement left it.
    pub(crate) async fn settle_cluster(&self, row: ClusterRow) -> Result<ClusterRow> {
        Ok(self.settle(Settlement::Ended(row)).await?.row)
    }

    /// Ends a live cluster on its customer's request and settles it in the same transaction,
    /// from `row` as they saw it. `Ok(None)` when it was not live; a stale-version conflict,
    /// with nothing written, when the row moved since. A cluster that raced in its batch is
    /// ended alone and answered terminating, for the caller to settle.
    pub(crate) async fn terminate_and_settle(&self, row: ClusterRow) -> Result<Option<Ended>> {
        if !row.status()?.is_live() {
            return Ok(None);
        }
        self.settle(Settlement::Terminate(row)).await.map(Some)
    }

    async fn settle(&self, item: Settlement) -> Result<Ended> {
        let this = self.clone();
        self.settling
            .submit(
                item,
                move |batch| async move { this.settle_batch(batch).await },
            )
            .await
            .unwrap_or_else(|| Err(Error::Internal("a settlement was dropped".into())))
    }

    async fn settle_batch(&self, batch: Vec<Settlement>) -> Vec<Result<Ended>> {
        let (done, retry) = match self.try_batch(&batch).await {
            Ok(outcome) => outcome,
            // The whole batch rolled back: each settles alone.
            Err(e) => {
                tracing::debug!(error = %e, "a batch of settlements failed; settling them one by one");
                (Vec::new(), (0..batch.len()).collect())
            }
        };
        let mut answers: Vec<Option<Result<Ended>>> = (0..batch.len()).map(|_| None).collect();
        for (i, row, done) in done {
            self.agents.wake_many(&done.wake).await;
            self.publish_events(&done.events).await;
            answers[i] = Some(Ok(Ended {
                row,
                nodes: done.nodes,
                events: done.events,
            }));
        }
        for i in retry {
            answers[i] = Some(match &batch[i] {
                Settlement::Ended(row) => self.settle_alone(row.clone()).await.map(|row| Ended {
                    row,
                    nodes: None,
                    events: Vec::new(),
                }),
                // Ended alone, and answered terminating: its caller settles it.
                Settlement::Terminate(row) => self
                    .end_cluster(
                        row.clone(),
                        ClusterStatus::Terminating,
                        "terminating",
                        ON_REQUEST,
                    )
                    .await
                    .and_then(|ended| ended.ok_or_else(|| stale(row))),
            });
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Error::Internal("a settlement was skipped".into()))))
            .collect()
    }

    /// One transaction for the whole batch. Returns the settled (by index, as written, with
    /// what they wrote) and the indexes to settle (or, for a [`Settlement::Terminate`], end)
    /// alone. Clusters that raced (an accrual pass charged them meanwhile, or a row moved)
    /// roll the transaction back and go alone; the rest go again without them, once. Races
    /// are rare, so this costs less than a savepoint around every cluster; after a second one
    /// the rest go alone too, so an accrual pass charging many of them at once costs no more
    /// than that.
    ///
    /// Rows are locked in the order every other writer locks them: the nodes of the clusters
    /// to terminate, then the holds (all at once, in id order: a hold before its cluster's
    /// row, as an extension takes them), then each cluster's row (in id order), then the
    /// ledger's accounts, then quota, then the GPUs given back (devices, in id order). The
    /// holds and their usage are written with one statement per table for the whole batch.
    async fn try_batch(
        &self,
        batch: &[Settlement],
    ) -> Result<(Vec<(usize, ClusterRow, Done)>, Vec<usize>)> {
        // Read before the transaction opens: it holds a connection, and waiting for a second
        // one while holding the first starves the pool under load.
        let holds: Vec<&str> = batch
            .iter()
            .filter_map(|s| s.row().hold_id.as_deref())
            .collect();
        let usage = self.ledger.usage_of_holds(&holds).await?;
        let usage_of = |row: &ClusterRow| row.hold_id.as_ref().and_then(|h| usage.get(h));
        // In cluster order: batches run in several lanes at once, and a cluster can be in two
        // of them (its delete's and the reconciler's); locking clusters in one order keeps two
        // such batches from deadlocking.
        let mut left: Vec<usize> = (0..batch.len()).collect();
        left.sort_by(|&a, &b| batch[a].row().id.cmp(&batch[b].row().id));
        let mut alone = Vec::new();
        for _ in 0..2 {
            let mut tx = self.db.begin().await?;
            let now = now_micros();
            // The nodes of every cluster to terminate, ended together.
            let terminating: Vec<(usize, &ClusterRow)> = left
                .iter()
                .filter_map(|&i| match &batch[i] {
                    Settlement::Terminate(row) => Some((i, row)),
                    Settlement::Ended(_) => None,
                })
                .collect();
            let clusters: Vec<(&str, Metering)> = terminating
                .iter()
                .map(|(_, row)| (row.id.as_str(), metering(usage_of(row))))
                .collect();
            let mut ended = HashMap::new();
            let mut give_back = Vec::new();
            if !clusters.is_empty() {
                let all = end_clusters_nodes_in(&mut tx, &clusters, now).await?;
                for ((i, _), mut nodes) in terminating.iter().zip(all) {
                    give_back.append(&mut nodes.give_back);
                    ended.insert(*i, nodes);
                }
            }
            // Every hold at once (one statement per table for the batch), then each row. A
            // cluster twice in the batch (two deletes at once) has its hold settled once; the
            // second copy's row is then stale, and it goes alone.
            let mut holds_seen = HashSet::new();
            let to_settle: Vec<(usize, HoldToSettle)> = left
                .iter()
                .filter_map(|&i| {
                    let row = batch[i].row();
                    let (hold_id, usage) = (row.hold_id.as_deref()?, usage_of(row)?);
                    if !holds_seen.insert(hold_id) {
                        return None;
                    }
                    let at = match &batch[i] {
                        Settlement::Ended(row) => row.ended_at.unwrap_or(now),
                        Settlement::Terminate(_) => now,
                    };
                    Some((i, HoldToSettle { hold_id, usage, at }))
                })
                .collect();
            let (indexes, holds): (Vec<usize>, Vec<HoldToSettle>) = to_settle.into_iter().unzip();
            let terms = self.governance.in_force().charge_terms();
            let mut settled: HashMap<usize, Settled> =
                match settle_holds_in(&mut tx, &holds, terms).await? {
                    HoldsSettled::Settled(settled) => indexes.into_iter().zip(settled).collect(),
                    HoldsSettled::Raced(raced) => {
                        tx.rollback().await?;
                        let raced_here = |i: &usize| {
                            batch[*i]
                                .row()
                                .hold_id
                                .as_ref()
                                .is_some_and(|h| raced.contains(h))
                        };
                        alone.extend(left.iter().copied().filter(raced_here));
                        left.retain(|i| !raced_here(i));
                        if left.is_empty() {
                            break;
                        }
                        continue;
                    }
                };
            let (mut done, mut money, mut quota, mut raced) =
                (Vec::new(), Vec::new(), QuotaBack::default(), None);
            for &i in &left {
                let mut row = batch[i].row().clone();
                let charged = settled.remove(&i);
                let outcome = match ended.remove(&i) {
                    None => finish_settled_in(&mut tx, &mut row, charged).await,
                    Some(nodes) => {
                        let outcome =
                            terminate_settled_in(&mut tx, &mut row, charged, nodes, now).await;
                        if outcome.is_ok() {
                            quota.add(&row);
                        }
                        outcome
                    }
                };
                match outcome {
                    Ok(mut d) => {
                        money.extend(d.settled.take());
                        done.push((i, row, d));
                    }
                    Err(Error::Conflict {
                        code: ErrorCode::StaleResourceVersion,
                        ..
                    }) => {
                        raced = Some(i);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(i) = raced else {
                if !money.is_empty() {
                    Settled::post_all_in(&mut tx, money).await?;
                }
                quota.release_in(&mut tx).await?;
                give_back_all_in(&self.agents, &mut tx, give_back).await?;
                tx.commit().await?;
                return Ok((done, alone));
            };
            tx.rollback().await?;
            left.retain(|&j| j != i);
            alone.push(i);
            if left.is_empty() {
                break;
            }
        }
        alone.extend(left);
        Ok((Vec::new(), alone))
    }

    /// One cluster in its own transaction, read again until it goes through.
    async fn settle_alone(&self, mut row: ClusterRow) -> Result<ClusterRow> {
        for _ in 0..TRIES {
            let holds: Vec<&str> = row.hold_id.as_deref().into_iter().collect();
            let usage = self.ledger.usage_of_holds(&holds).await?;
            let mut tx = self.db.begin().await?;
            let hold_usage = row.hold_id.as_ref().and_then(|h| usage.get(h));
            let Some(Done {
                events, settled, ..
            }) = self.settle_in(&mut tx, &mut row, hold_usage).await?
            else {
                continue;
            };
            if let Some(settled) = settled {
                settled.post_in(&mut tx).await?;
            }
            tx.commit().await?;
            self.publish_events(&events).await;
            return Ok(row);
        }
        Err(Error::Conflict {
            code: ErrorCode::SettlementContended,
            message: format!("cluster {} kept being charged while it was settled", row.id),
        })
    }

    /// An ended cluster's settlement inside `tx`, its money not yet posted. `Ok(None)` when a
    /// usage record moved since `usage` was read.
    async fn settle_in(
        &self,
        tx: &mut Tx,
        row: &mut ClusterRow,
        usage: Option<&HoldUsage>,
    ) -> Result<Option<Done>> {
        let at = row.ended_at.unwrap_or_else(now_micros);
        let Charge::Settled(settled) = self.charge_in(tx, row, usage, at).await? else {
            return Ok(None);
        };
        finish_settled_in(tx, row, settled).await.map(Some)
    }

    /// Charges every usage record of `row`'s hold to its end (`at` for those still running)
    /// and releases the rest of the hold.
    async fn charge_in(
        &self,
        tx: &mut Tx,
        row: &ClusterRow,
        usage: Option<&HoldUsage>,
        at: i64,
    ) -> Result<Charge> {
        let (Some(hold_id), Some(usage)) = (&row.hold_id, usage) else {
            return Ok(Charge::Settled(None));
        };
        let terms = self.governance.in_force_at(at).charge_terms();
        Ok(match settle_hold_in(tx, hold_id, usage, at, terms).await? {
            Some(settled) => Charge::Settled(Some(settled)),
            None => Charge::Raced,
        })
    }
}
