//! The customer's changes to a live cluster (extend, terminate), and ending one for any reason:
//! nodes told to tear down, metering stopped, quota given back, then usage settled and the rest
//! of the hold released (settle.rs; a deleted cluster is ended and settled in one transaction).

use std::collections::{HashMap, HashSet};

use iocloud_billing::ledger::extend_hold_in;
use iocloud_billing::metering::stop_usage_in;
use iocloud_billing::{Money, Rounding};
use iocloud_db::sql::params_from;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, tx_run};
use serde::Deserialize;
use utoipa::ToSchema;

use super::Clusters;
use super::spec::MAX_HOURS;
use super::{
    ClusterEvent, ClusterRow, ClusterStatus, ClusterView, LATEST_EVENTS, NodeRow,
    nodes_of_clusters_in, quota, row_in,
};
use crate::providers::agent::{Agents, DeviceAuth};
use crate::{Action, Actor, Error, ErrorCode, Result};

/// More hours for a cluster.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// 1 or more; the cluster's whole duration stays within 720 hours (30 days).
    #[schema(minimum = 1, maximum = 720)]
    pub hours: i64,
    /// The version the change was decided on; a newer one answers 409.
    pub resource_version: Option<i64>,
}

/// The usage record of a node: one per node, so starting it twice is starting it once. The
/// nodes query (`NODES_SQL`) spells the same in SQL.
pub(crate) fn usage_id(node_id: &str) -> String {
    format!("use_{}", node_id.trim_start_matches("nod_"))
}

/// Why a cluster its customer deleted ended.
pub(crate) const ON_REQUEST: &str = "terminated on request";

/// Tries at ending a cluster on request before answering that it kept changing.
const END_TRIES: usize = 16;

pub(crate) fn check_version(row: &ClusterRow, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(v) if v != row.resource_version => Err(Error::Conflict {
            code: ErrorCode::StaleResourceVersion,
            message: format!(
                "cluster {} is at resource_version {}, not {v}; read it again and retry",
                row.id, row.resource_version
            ),
        }),
        _ => Ok(()),
    }
}

/// The row changed after `row` (at the version it shows) was read: a compare-and-set lost.
pub(crate) fn stale(row: &ClusterRow) -> Error {
    Error::Conflict {
        code: ErrorCode::StaleResourceVersion,
        message: format!(
            "cluster {} changed after resource_version {} was read; read it again and retry",
            row.id, row.resource_version
        ),
    }
}

/// Takes a node out of its cluster at `at`: its agent is told to tear it down, and its
/// metering stops. A node the agent never acknowledged (`waiting`, `assigned`) is released at
/// once, its GPUs added to `back` for the caller to give back once every node is ended
/// ([`give_back_all_in`]), so a dead agent holds nothing; if it wakes up and reports on the
/// node, it is refused and tears it down. Returns the status the node was left in
/// (`releasing`: its agent must be woken), or `None` when it had ended already.
pub(crate) async fn end_node_in(
    tx: &mut Tx,
    node: &NodeRow,
    at: i64,
    back: &mut Vec<GiveBack>,
) -> Result<Option<String>> {
    let left_in = release_nodes_in(tx, &[node], at, back)
        .await?
        .pop()
        .flatten();
    if left_in.is_some() {
        stop_usage_in(tx, &usage_id(&node.id), at).await?;
    }
    Ok(left_in)
}

/// GPUs an ended node gives back to its device (its agent never took the node up).
pub(crate) struct GiveBack {
    device: DeviceAuth,
    gpus: i64,
    node_id: String,
    at: i64,
}

/// Gives GPUs back in device order, last in the transaction. Every transaction takes rows
/// in one order (nodes, holds, cluster rows, ledger accounts, quota, then devices, in id
/// order), so none waits on another that waits on it; devices come last because they are the
/// most contended, and are then held only until the commit.
pub(crate) async fn give_back_all_in(
    agents: &Agents,
    tx: &mut Tx,
    mut back: Vec<GiveBack>,
) -> Result<()> {
    back.sort_by(|a, b| a.device.id.cmp(&b.device.id));
    for b in back {
        agents
            .give_back_gpus_in(tx, &b.device, b.gpus, &b.node_id, b.at)
            .await?;
    }
    Ok(())
}

/// The node half of [`end_node_in`], for many nodes with at most two statements: their
/// metering left running, and the GPUs of those whose agents never acknowledged them added to
/// `back` for the caller to give back. Answers, in `nodes`' order, the status each was left in
/// (`None`: it had ended already).
async fn release_nodes_in(
    tx: &mut Tx,
    nodes: &[&NodeRow],
    at: i64,
    back: &mut Vec<GiveBack>,
) -> Result<Vec<Option<String>>> {
    // Each statement moves a node only from the statuses it names, so a report the agent
    // makes meanwhile cannot make the GPUs come back twice. Statuses only move forward
    // (waiting, assigned, starting, ...), so a node read past `assigned` is not unseen now.
    let maybe_unseen: Vec<&str> = nodes
        .iter()
        .filter(|n| matches!(n.status.as_str(), "waiting" | "assigned"))
        .map(|n| n.id.as_str())
        .collect();
    let unseen: HashSet<String> = if maybe_unseen.is_empty() {
        HashSet::new()
    } else {
        let sql = format!(
            "UPDATE node_assignments SET ended_at = $1, updated_at = $1, status = 'released' \
             WHERE id IN ({}) AND ended_at IS NULL AND status IN ('waiting', 'assigned') RETURNING id",
            params_from(maybe_unseen.len(), 2)
        );
        let ids: Vec<String> = tx_run!(tx, |c| {
            let mut q = sqlx::query_scalar(&sql).bind(at);
            for id in &maybe_unseen {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })
        .map_err(DbError::from)?;
        ids.into_iter().collect()
    };
    let rest: Vec<&str> = nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| !unseen.contains(*id))
        .collect();
    let mut left_in: HashMap<String, String> = HashMap::new();
    if !rest.is_empty() {
        let sql = format!(
            "UPDATE node_assignments SET ended_at = $1, updated_at = $1, \
             status = CASE WHEN status IN ('starting', 'ready', 'failed') THEN 'releasing' ELSE status END \
             WHERE id IN ({}) AND ended_at IS NULL RETURNING id, status",
            params_from(rest.len(), 2)
        );
        let moved: Vec<(String, String)> = tx_run!(tx, |c| {
            let mut q = sqlx::query_as(&sql).bind(at);
            for id in &rest {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })
        .map_err(DbError::from)?;
        left_in.extend(moved);
    }
    Ok(nodes
        .iter()
        .map(|node| {
            if unseen.contains(&node.id) {
                back.push(GiveBack {
                    device: DeviceAuth {
                        id: node.device_id.clone(),
                        org_id: node.provider_org_id.clone(),
                        gpu_count: 0,
                    },
                    gpus: node.gpus,
                    node_id: node.id.clone(),
                    at,
                });
                return Some("released".to_string());
            }
            left_in.remove(&node.id)
        })
        .collect())
}

/// A cluster's nodes as ending it left them, and what is left to do once they are.
pub(crate) struct NodesEnded {
    /// `None` when one of them was ended meanwhile by someone else, so its status now is not
    /// known here.
    pub nodes: Option<Vec<NodeRow>>,
    /// Agents to wake once the transaction commits: their nodes are to be torn down.
    pub wake: Vec<String>,
    /// GPUs for the caller to give back ([`give_back_all_in`]).
    pub give_back: Vec<GiveBack>,
}

/// What ending a cluster's nodes does with their metering.
#[derive(Clone, Copy)]
pub(crate) enum Metering {
    Stop,
    /// A settlement of the cluster's hold in the same transaction stops it.
    LeftToSettlement,
}

/// Ends every current node of a cluster at `at`.
pub(crate) async fn end_nodes_in(
    tx: &mut Tx,
    cluster_id: &str,
    at: i64,
    metering: Metering,
) -> Result<NodesEnded> {
    let mut ended = end_clusters_nodes_in(tx, &[(cluster_id, metering)], at).await?;
    ended
        .pop()
        .ok_or_else(|| Error::Internal("no nodes ended".into()))
}

/// Ends every current node of each cluster at `at`, in `clusters`' order: one read (which
/// locks the nodes, in the order every writer takes them) and at most two writes for them all.
pub(crate) async fn end_clusters_nodes_in(
    tx: &mut Tx,
    clusters: &[(&str, Metering)],
    at: i64,
) -> Result<Vec<NodesEnded>> {
    let ids: Vec<&str> = clusters.iter().map(|(id, _)| *id).collect();
    let mut by_cluster: HashMap<String, Vec<NodeRow>> = HashMap::new();
    for node in nodes_of_clusters_in(tx, &ids).await? {
        by_cluster
            .entry(node.cluster_id.clone())
            .or_default()
            .push(node);
    }
    let current: Vec<&NodeRow> = by_cluster
        .values()
        .flatten()
        .filter(|n| n.ended_at.is_none())
        .collect();
    let mut give_back = Vec::new();
    let left_in: HashMap<String, Option<String>> = {
        let statuses = release_nodes_in(tx, &current, at, &mut give_back).await?;
        current.iter().map(|n| n.id.clone()).zip(statuses).collect()
    };
    let mut back_of: HashMap<String, Vec<GiveBack>> = HashMap::new();
    for b in give_back {
        back_of.entry(b.node_id.clone()).or_default().push(b);
    }
    let mut ended = Vec::with_capacity(clusters.len());
    for (cluster_id, metering) in clusters {
        let mut nodes = by_cluster.remove(*cluster_id).unwrap_or_default();
        let (mut wake, mut give_back, mut known) = (Vec::new(), Vec::new(), true);
        for node in nodes.iter_mut().filter(|n| n.ended_at.is_none()) {
            let Some(status) = left_in.get(&node.id).cloned().flatten() else {
                known = false;
                continue;
            };
            if let Metering::Stop = metering {
                stop_usage_in(tx, &usage_id(&node.id), at).await?;
            }
            give_back.extend(back_of.remove(&node.id).into_iter().flatten());
            if status == "releasing" {
                wake.push(node.device_id.clone());
            }
            node.status = status;
            node.ended_at = Some(at);
        }
        ended.push(NodesEnded {
            nodes: known.then_some(nodes),
            wake,
            give_back,
        });
    }
    Ok(ended)
}

/// The latest events after a change that wrote `written` to a row read with `earlier` (its
/// latest events then): `None`, to be read, unless both are at hand and follow on, as they do
/// when the change was made from that very row.
fn events_after_change(
    earlier: Option<Vec<ClusterEvent>>,
    written: Vec<ClusterEvent>,
) -> Option<Vec<ClusterEvent>> {
    let mut events = earlier?;
    let first = written.first()?;
    if events.last().map_or(0, |e| e.seq) + 1 != first.seq {
        return None;
    }
    events.extend(written);
    let excess = events.len().saturating_sub(LATEST_EVENTS as usize);
    events.drain(..excess);
    Some(events)
}

/// A cluster just ended, with its nodes as the ending left them (`None` when one of them was
/// ended meanwhile by someone else, so its status now is not known here).
pub(crate) struct Ended {
    pub row: ClusterRow,
    pub nodes: Option<Vec<NodeRow>>,
    /// The events the ending wrote (empty where they are not at hand).
    pub events: Vec<ClusterEvent>,
}

impl Clusters {
    /// Ends a live cluster, as `row` (just read) shows it: `to` is `Terminating` (it ran, or
    /// the customer asked) or `Failed` (it never ran). Nodes go, metering stops at once, quota
    /// is given back; the reconciler then settles the money. `Ok(None)` when it was no longer
    /// live; a stale-version conflict, with nothing written, when the row moved since.
    pub(crate) async fn end_cluster(
        &self,
        mut row: ClusterRow,
        to: ClusterStatus,
        kind: &str,
        reason: &str,
    ) -> Result<Option<Ended>> {
        if !row.status()?.is_live() {
            return Ok(None);
        }
        row.set_status(to, Some(reason))?;
        let mut tx = self.db.begin().await?;
        let now = now_micros();
        let ended = end_nodes_in(&mut tx, &row.id, now, Metering::Stop).await?;
        row.ended_at = Some(now);
        row.reconcile_at = Some(now);
        let Some(event) = row.save_in(&mut tx, kind, reason).await? else {
            return Err(stale(&row));
        };
        quota::release_in(&mut tx, &row.org_id, row.gpus, 1, row.spend_per_hour).await?;
        give_back_all_in(&self.agents, &mut tx, ended.give_back).await?;
        tx.commit().await?;
        let (nodes, wake) = (ended.nodes, ended.wake);
        self.agents.wake_many(&wake).await;
        let events = vec![event];
        self.publish_events(&events).await;
        Ok(Some(Ended { row, nodes, events }))
    }

    /// Terminates a cluster: billing stops now, what is left of the hold goes back. Deleting
    /// an ended cluster changes nothing and answers it as it is.
    pub async fn terminate(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: Option<i64>,
    ) -> Result<ClusterView> {
        actor.authorize(Action::ResourcesWrite)?;
        // The events come with the row: the answer shows them with those the ending adds.
        let (row, earlier) = self.cluster_row_and_events(&actor.org_id, id).await?;
        if !row.status()?.is_live() {
            let nodes = self.nodes_of(&row.id).await?;
            return self.view_from(&row, &nodes, earlier).await;
        }
        check_version(&row, expected_version)?;
        let id = row.id.clone();
        let ended = self.end_on_request(row, expected_version).await?;
        let settled = match ended {
            // Ended and settled in one go: the usual case.
            Some(Ended { row, nodes, events }) if row.status()? == ClusterStatus::Terminated => {
                Some((row, nodes, events))
            }
            // Ended but not settled (it raced in its batch): settled now, from the row just
            // written, as the reconciler would next.
            Some(Ended { row, nodes, .. }) => match self.settle_cluster(row).await {
                // The reconciler moved it first: look again, as it does.
                Err(Error::Conflict {
                    code: ErrorCode::StaleResourceVersion,
                    ..
                }) => None,
                other => Some((other?, nodes, Vec::new())),
            },
            // Ended meanwhile by someone else: settled below too if still due.
            None => None,
        };
        match settled {
            // The nodes as this request left them: their agents' reports come after.
            Some((row, Some(nodes), written)) => {
                let events = events_after_change(earlier, written);
                self.view_from(&row, &nodes, events).await
            }
            Some((row, None, _)) => self.full_view(&row).await,
            None => {
                self.reconcile(&id).await?;
                let row = self.row_of(&id).await?.ok_or(Error::NotFound("cluster"))?;
                self.full_view(&row).await
            }
        }
    }

    /// Ends a cluster its customer asked to end, from `row` as they saw it, and settles it in
    /// the same transaction when it can ([`Clusters::terminate_and_settle`]). With a version
    /// asked for, any change since answers 409; without one, the cluster is ended as it is
    /// now, read again after each change that raced it (a provisioning cluster's row moves
    /// with every node report). `Ok(None)` when it was ended meanwhile by someone else.
    async fn end_on_request(
        &self,
        mut row: ClusterRow,
        expected_version: Option<i64>,
    ) -> Result<Option<Ended>> {
        let id = row.id.clone();
        let mut last = None;
        for _ in 0..END_TRIES {
            match self.terminate_and_settle(row).await {
                Err(
                    e @ Error::Conflict {
                        code: ErrorCode::StaleResourceVersion,
                        ..
                    },
                ) => {
                    if expected_version.is_some() {
                        return Err(e);
                    }
                    let Some(now) = self.row_of(&id).await? else {
                        return Ok(None);
                    };
                    row = now;
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Internal("no attempt to end the cluster".into())))
    }

    /// Adds hours to a live cluster and holds funds for them.
    pub async fn extend(&self, actor: &Actor, id: &str, ext: &Extension) -> Result<ClusterView> {
        actor.authorize(Action::ResourcesWrite)?;
        if !(1..=MAX_HOURS).contains(&ext.hours) {
            return Err(Error::validation("hours", format!("from 1 to {MAX_HOURS}")));
        }
        let org_row = self.cluster_row(&actor.org_id, id).await?;
        let id = org_row.id.as_str();
        let mut tx = self.db.begin().await?;
        let mut row = row_in(&mut tx, id)
            .await?
            .ok_or(Error::NotFound("cluster"))?;
        check_version(&row, ext.resource_version)?;
        if !row.status()?.is_live() {
            return Err(Error::Conflict {
                code: ErrorCode::InvalidState,
                message: format!("a {} cluster cannot be extended", row.status.as_str()),
            });
        }
        if row.duration_hours + ext.hours > MAX_HOURS {
            return Err(Error::validation(
                "hours",
                format!(
                    "the cluster already has {} hours; the most is {MAX_HOURS}",
                    row.duration_hours
                ),
            ));
        }
        let extra = Money::from_micros(row.price_per_hour, row.currency()?).mul_div(
            ext.hours,
            1,
            Rounding::Down,
        )?;
        let hold_id = row
            .hold_id
            .clone()
            .ok_or_else(|| Error::Internal(format!("cluster {id} has no hold")))?;
        extend_hold_in(
            &mut tx,
            &hold_id,
            extra,
            &format!("cluster:{id}:extend:{}", row.resource_version),
        )
        .await?;
        let mut spec = row.spec()?;
        spec.duration_hours += ext.hours;
        row.spec = serde_json::to_string(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        row.generation += 1;
        row.duration_hours += ext.hours;
        row.expires_at = row.expires_at.map(|t| t + ext.hours * 3_600_000_000);
        let message = format!(
            "extended by {} hour(s) to {}; held {} {} more",
            ext.hours,
            row.duration_hours,
            extra.to_decimal(),
            row.currency
        );
        let event: ClusterEvent = row
            .save_in(&mut tx, "extended", &message)
            .await?
            .ok_or_else(|| stale(&row))?;
        tx.commit().await?;
        self.publish_events(&[event]).await;
        self.full_view(&row).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(seqs: std::ops::RangeInclusive<i64>) -> Vec<ClusterEvent> {
        seqs.map(|seq| ClusterEvent {
            cluster_id: "clu_t".into(),
            seq,
            at: iocloud_db::Timestamp::from_micros(0),
            kind: "step".into(),
            status: ClusterStatus::Running,
            message: String::new(),
        })
        .collect()
    }

    fn seqs(events: &Option<Vec<ClusterEvent>>) -> Option<Vec<i64>> {
        events.as_ref().map(|e| e.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn events_written_on_top_of_those_read_follow_on_or_are_read_again() {
        let following = events_after_change(Some(events(1..=4)), events(5..=6));
        assert_eq!(seqs(&following), Some((1..=6).collect()));
        // The row moved between the read and the change (a retry from a later row): a gap.
        assert_eq!(
            events_after_change(Some(events(1..=4)), events(7..=8)),
            None
        );
        // Nothing read with the row (by name), or nothing written at hand.
        assert_eq!(events_after_change(None, events(5..=6)), None);
        assert_eq!(events_after_change(Some(events(1..=4)), Vec::new()), None);
        // The newest fifty.
        let long = events_after_change(Some(events(1..=49)), events(50..=51));
        assert_eq!(seqs(&long), Some((2..=51).collect()));
    }
}
