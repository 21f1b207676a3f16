//! A cluster's events: one per step of a change of its row, numbered up to the
//! `resource_version` the change made. They are the cluster's history in the database, and live news on the
//! `cluster-events` channel (Redis pub/sub when configured, so every replica hears every event).
//! A follower reads the database for what it missed and the channel for what is new.

use iocloud_db::ids::OrgId;
use std::collections::HashMap;
use std::time::Duration;

use futures::Stream;
use iocloud_db::Timestamp;
use iocloud_db::{DbError, Tx, db_run, tx_run};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;

use super::ClusterStatus;
use super::Clusters;
use crate::listen::Hearing;
use crate::{Action, Actor, Error, Result};

pub const CHANNEL: &str = "cluster-events";
/// How often a follower re-reads the database, in case a message was lost on the way.
const FOLLOW_POLL: Duration = Duration::from_secs(5);
/// How often it re-reads while this replica cannot hear the channel (Redis away).
const DEAF_POLL: Duration = Duration::from_secs(1);
/// Events a follower reads from the database at a time.
const FOLLOW_PAGE: i64 = 500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ClusterEvent")
)]
pub struct ClusterEvent {
    pub cluster_id: String,
    /// The cluster's `resource_version` after the event: events of a cluster count up from 1.
    /// A change saved with several steps at once (a create, a delete settled at once) numbers
    /// each step, so only its last number is a version the row was stored at.
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// What happened: `created`, `placing`, `reserved`, `provisioning`, `node_ready`,
    /// `running`, `node_lost`, `node_replaced`, `degraded`, `extended`, `terminating`,
    /// `terminated`, `failed`, `expired`, ...
    pub kind: String,
    /// The cluster's status after it.
    pub status: ClusterStatus,
    pub message: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    cluster_id: String,
    seq: i64,
    at: i64,
    kind: String,
    status: String,
    message: String,
}

impl EventRow {
    pub(super) fn event(self) -> Result<ClusterEvent> {
        let status = ClusterStatus::parse(&self.status)
            .ok_or_else(|| Error::corrupt("cluster_events.status", &self.status))?;
        Ok(ClusterEvent {
            cluster_id: self.cluster_id,
            seq: self.seq,
            at: self.at.into(),
            kind: self.kind,
            status,
            message: self.message,
        })
    }
}

const COLUMNS: &str = "cluster_id, seq, at, kind, status, message";

/// An event read beside its cluster's row (`c`, joined to `e`): its columns named `event_…`,
/// all NULL when the cluster has no event.
pub(super) const JOINED_COLUMNS: &str = "e.cluster_id AS event_cluster_id, e.seq AS event_seq, e.at AS event_at, \
     e.kind AS event_kind, e.status AS event_status, e.message AS event_message";

#[derive(sqlx::FromRow)]
pub(super) struct JoinedEventRow {
    event_cluster_id: Option<String>,
    event_seq: Option<i64>,
    event_at: Option<i64>,
    event_kind: Option<String>,
    event_status: Option<String>,
    event_message: Option<String>,
}

impl JoinedEventRow {
    /// The event, `None` where the join found none.
    pub(super) fn event(self) -> Option<EventRow> {
        Some(EventRow {
            cluster_id: self.event_cluster_id?,
            seq: self.event_seq?,
            at: self.event_at?,
            kind: self.event_kind?,
            status: self.event_status?,
            message: self.event_message?,
        })
    }
}

/// Writes several events of one organisation's clusters, all at `at`, in one statement.
pub(crate) async fn record_all_in(
    tx: &mut Tx,
    org_id: &OrgId,
    events: &[ClusterEvent],
    at: i64,
) -> Result<()> {
    let rows: Vec<String> = (0..events.len())
        .map(|i| {
            let b = i * 5;
            format!(
                "(${}, ${}, $1, $2, ${}, ${}, ${})",
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO cluster_events (cluster_id, seq, org_id, at, kind, status, message) VALUES {}",
        rows.join(", ")
    );
    tx_run!(tx, |c| {
        let mut q = sqlx::query(&sql).bind(org_id).bind(at);
        for e in events {
            q = q
                .bind(&e.cluster_id)
                .bind(e.seq)
                .bind(&e.kind)
                .bind(e.status.as_str())
                .bind(&e.message);
        }
        q.execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}

/// This replica's fan-out of the channel to its followers, by cluster: a follower wakes for
/// its own cluster's events only. (One channel for all woke every follower for every event,
/// and copied the event for each: work that grew with the square of the load.)
pub struct EventHub {
    clusters: Mutex<HashMap<String, broadcast::Sender<ClusterEvent>>>,
    /// Changes whenever the replica starts or stops hearing the channel: every follower then
    /// re-reads the database (the gap signal), and while deaf re-reads every [`DEAF_POLL`].
    hearing: watch::Sender<Hearing>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            clusters: Mutex::default(),
            hearing: watch::channel(Hearing::Listening).0,
        }
    }
}

/// Events a cluster's followers may fall behind by before they re-read the database.
const BACKLOG: usize = 64;

impl EventHub {
    /// A follower's receiver for the cluster's events from now on.
    fn subscribe(&self, cluster_id: &str) -> broadcast::Receiver<ClusterEvent> {
        let mut clusters = self.clusters.lock();
        if clusters.len() >= 1024 && clusters.len().is_power_of_two() {
            // Forget clusters nobody follows any more, now and then as the map grows.
            clusters.retain(|_, tx| tx.receiver_count() > 0);
        }
        clusters
            .entry(cluster_id.to_string())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe()
    }

    /// Tells every follower that events may have been missed (and whether they still are).
    fn gap(&self, hearing: Hearing) {
        self.hearing.send_replace(hearing);
    }

    /// Hands the event to its cluster's followers on this replica, if any.
    fn send(&self, event: ClusterEvent) {
        let mut clusters = self.clusters.lock();
        let Some(tx) = clusters.get(&event.cluster_id) else {
            return;
        };
        if let Err(broadcast::error::SendError(event)) = tx.send(event) {
            // Its followers are all gone.
            clusters.remove(&event.cluster_id);
        }
    }
}

impl Clusters {
    /// Tells every replica's followers (after the events' transaction committed). A message
    /// lost here is found by the followers' next read of the database; this replica's own
    /// followers are told directly.
    pub(crate) async fn publish_events(&self, events: &[ClusterEvent]) {
        for e in events {
            let Ok(text) = serde_json::to_string(e) else {
                continue;
            };
            if let Err(err) = self.kv.publish(CHANNEL, &text).await {
                iocloud_db::note_kv_failure(
                    &err,
                    "could not publish a cluster event; other replicas' followers poll for it",
                );
                self.events.send(e.clone());
            }
        }
    }

    /// Feeds the channel to this replica's followers until the process ends.
    pub fn spawn_event_listener(&self) -> tokio::task::JoinHandle<()> {
        let (this, again) = (self.clone(), self.clone());
        // Events missed are found by the followers themselves: they re-read the database when
        // told of a gap, on a gap in the numbers, or after a quiet spell.
        crate::listen::spawn_listener(
            self.kv.clone(),
            CHANNEL,
            move |m| {
                if let Ok(event) = serde_json::from_str::<ClusterEvent>(&m) {
                    this.events.send(event);
                }
            },
            move |hearing| again.events.gap(hearing),
        )
    }

    pub(crate) async fn latest_events(
        &self,
        cluster_id: &str,
        n: i64,
    ) -> Result<Vec<ClusterEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM cluster_events WHERE cluster_id = $1 ORDER BY seq DESC LIMIT $2) AS latest ORDER BY seq"
        );
        let rows: Vec<EventRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(cluster_id)
            .bind(n)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        rows.into_iter().map(EventRow::event).collect()
    }

    /// A cluster's events after `after`; only the organisation's when `org_id` is given.
    async fn events_after(
        &self,
        cluster_id: &str,
        org_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ClusterEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM cluster_events WHERE cluster_id = $1 AND seq > $2 AND ($4 IS NULL OR org_id = $4) \
             ORDER BY seq LIMIT $3"
        );
        let rows: Vec<EventRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(cluster_id)
            .bind(after)
            .bind(limit)
            .bind(org_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        rows.into_iter().map(EventRow::event).collect()
    }

    /// A cluster's events after `after` (a `seq`), oldest first, at most `limit`.
    pub async fn list_events(
        &self,
        actor: &Actor,
        id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ClusterEvent>> {
        actor.authorize(Action::ResourcesRead)?;
        let row = self.cluster_row(&actor.org_id, id).await?;
        self.events_after(&row.id, None, after, limit.clamp(1, 1_000))
            .await
    }

    /// Every event of the cluster after `after`, then each new one as it happens; the stream
    /// ends after the cluster's final event (terminated or failed). Checked for the actor's
    /// organisation once, up front.
    pub async fn follow_events(
        &self,
        actor: &Actor,
        id: &str,
        after: i64,
    ) -> Result<impl Stream<Item = ClusterEvent> + Send + 'static> {
        actor.authorize(Action::ResourcesRead)?;
        // Listen before reading, so nothing falls between the read and the first message. By
        // name, the cluster's id comes from its row: it listens after that read, and before
        // the events are read (the stream's first step).
        let by_id = id.starts_with("clu_");
        let listening = by_id.then(|| self.events.subscribe(id));
        // Events carry their organisation, so the first page of them, read for the actor's
        // organisation, also proves the cluster is theirs; only an empty page (a name, another
        // tenant's id, nothing new yet) needs the cluster's row.
        let first = if by_id {
            self.events_after(id, Some(&actor.org_id), after, FOLLOW_PAGE)
                .await?
        } else {
            Vec::new()
        };
        let (cluster_id, ended) = match first.first() {
            Some(e) => (e.cluster_id.clone(), false),
            None => {
                let row = self.cluster_row(&actor.org_id, id).await?;
                let ended = row.status()?.is_final();
                (row.id, ended)
            }
        };
        let live = listening.unwrap_or_else(|| self.events.subscribe(&cluster_id));
        // By id, the page read is all there was (the cluster is now known to be the
        // organisation's); by name, nothing was read yet.
        let read = !by_id || first.len() as i64 == FOLLOW_PAGE;
        let state = Follow {
            clusters: self.clone(),
            cluster_id,
            last: after,
            live,
            hearing: self.events.hearing.subscribe(),
            read,
            backlog: first.into(),
            ended,
            done: false,
        };
        Ok(futures::stream::unfold(state, Follow::next))
    }
}

struct Follow {
    clusters: Clusters,
    cluster_id: String,
    last: i64,
    live: broadcast::Receiver<ClusterEvent>,
    /// The replica's hearing of the channel: a change is a gap.
    hearing: watch::Receiver<Hearing>,
    backlog: std::collections::VecDeque<ClusterEvent>,
    /// Whether the database may hold events not yet sent: at the start, after a full page,
    /// and when the channel lagged, skipped one or went quiet. An event that came in order on
    /// the channel leaves nothing behind it to read.
    read: bool,
    /// The cluster had already ended when the follow began (asked for after its last event):
    /// once the database has nothing after `last`, nothing more will come.
    ended: bool,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(ClusterEvent, Follow)> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.seq <= self.last {
                    continue;
                }
                self.last = e.seq;
                self.done = e.status.is_final() && is_last_word(&e);
                return Some((e, self));
            }
            if self.done {
                return None;
            }
            // Whatever the database has that we have not sent, then wait for news.
            if self.read {
                match self
                    .clusters
                    .events_after(&self.cluster_id, None, self.last, FOLLOW_PAGE)
                    .await
                {
                    Ok(found) => {
                        self.read = found.len() as i64 == FOLLOW_PAGE;
                        if !found.is_empty() {
                            self.backlog.extend(found);
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading cluster events failed"),
                }
            }
            // Ended, and the database said it has nothing more (not a failed read).
            if self.ended && !self.read {
                return None;
            }
            let poll = match *self.hearing.borrow_and_update() {
                Hearing::Listening => FOLLOW_POLL,
                Hearing::Deaf => DEAF_POLL,
            };
            let deadline = tokio::time::sleep(poll);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    got = self.live.recv() => match got {
                        Ok(e) if e.cluster_id == self.cluster_id => {
                            // A client may start after any number, the largest too.
                            if self.last.checked_add(1) == Some(e.seq) {
                                self.backlog.push_back(e);
                            } else if e.seq > self.last {
                                // After a gap: the database has the ones between.
                                self.read = true;
                            }
                            break;
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.read = true;
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    // The gap signal. (Its sender lives in `clusters`, so it cannot close.)
                    _ = self.hearing.changed() => {
                        self.read = true;
                        break;
                    }
                    _ = &mut deadline => {
                        self.read = true;
                        break;
                    }
                }
            }
        }
    }
}

/// The event that ends a follow: the cluster reached its final status. Node clean-up after it
/// (agents tearing nodes down) is not the customer's to wait for.
fn is_last_word(e: &ClusterEvent) -> bool {
    matches!(e.kind.as_str(), "terminated" | "failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cluster_id: &str, seq: i64) -> ClusterEvent {
        ClusterEvent {
            cluster_id: cluster_id.into(),
            seq,
            at: Timestamp::from_micros(0),
            kind: "step".into(),
            status: ClusterStatus::Provisioning,
            message: String::new(),
        }
    }

    #[test]
    fn a_follower_hears_its_own_clusters_events_only() {
        let hub = EventHub::default();
        let mut a = hub.subscribe("clu_a");
        let mut b = hub.subscribe("clu_b");
        hub.send(event("clu_a", 1));
        hub.send(event("clu_c", 1));
        assert_eq!(a.try_recv().unwrap(), event("clu_a", 1));
        assert!(a.try_recv().is_err());
        assert!(b.try_recv().is_err(), "not woken for another cluster");
        // Nobody follows clu_b any more: its next event forgets it.
        drop(b);
        hub.send(event("clu_b", 1));
        assert!(!hub.clusters.lock().contains_key("clu_b"));
        assert!(hub.clusters.lock().contains_key("clu_a"));
    }

    #[test]
    fn an_event_with_an_unknown_status_is_corrupt_data() {
        let stored = |status: &str| EventRow {
            cluster_id: "clu_a".into(),
            seq: 3,
            at: 0,
            kind: "step".into(),
            status: status.into(),
            message: String::new(),
        };
        assert_eq!(
            stored("provisioning").event().unwrap().status,
            ClusterStatus::Provisioning
        );
        match stored("paused").event() {
            Err(Error::CorruptData { column, value }) => {
                assert_eq!(
                    (column, value.as_str()),
                    ("cluster_events.status", "paused")
                );
            }
            other => panic!("read as {other:?}"),
        }
    }
}
