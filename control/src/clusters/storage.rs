//! The cluster's rows as stored: the `clusters` row and its compare-and-set, the nodes read
//! beside it, and the SQL that reads them.
//!
//! One file: a row's columns, the statements that read and write them and the reading of each
//! stored value change together. Its last third is tests of those readings, on rows made by hand.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, Tx, tx_run};

use super::{ClusterEvent, ClusterKind, ClusterSpec, ClusterStatus, ClusterView, NodeView};
use super::{bootstrap, events};
use crate::billing::stored_currency;
use crate::providers::DeviceStatus;
use crate::providers::endpoints::Endpoints;
use crate::{Error, Result};

/// The row as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct ClusterRow {
    pub id: String,
    pub org_id: OrgId,
    pub name: String,
    pub kind: String,
    pub spec: String,
    pub generation: i64,
    pub resource_version: i64,
    pub status: StoredStatus,
    pub status_reason: Option<String>,
    pub quote_id: Option<String>,
    pub currency: String,
    pub hold_id: Option<String>,
    pub gpus: i64,
    pub price_per_hour: i64,
    pub spend_per_hour: i64,
    pub usd_per_unit: i64,
    pub rate_id: Option<String>,
    pub duration_hours: i64,
    pub connection: Option<String>,
    pub join_token: String,
    pub provisioning_deadline: Option<i64>,
    pub running_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub terminated_at: Option<i64>,
    pub reconcile_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A cluster row's status as stored. It changes only by [`ClusterRow::set_status`], through
/// the status table ([`ClusterStatus::can_become`]); a new row starts `pending`. Nothing else
/// can make one, so no other write of a cluster's status compiles.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct StoredStatus(String);

impl StoredStatus {
    /// A new cluster's: `pending`, the first status of the table.
    pub fn initial() -> StoredStatus {
        StoredStatus(ClusterStatus::Pending.as_str().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) const COLUMNS: &str = "id, org_id, name, kind, spec, generation, resource_version, status, status_reason, quote_id, currency, hold_id, \
    gpus, price_per_hour, spend_per_hour, usd_per_unit, rate_id, duration_hours, connection, join_token, provisioning_deadline, running_at, expires_at, ended_at, \
    terminated_at, reconcile_at, created_at, updated_at";

/// A cluster row's compare-and-set: every column a step may change ($1 to $16, `updated_at`
/// last), for the row `$17` still at version `$18`.
const SAVE: &str = "UPDATE clusters SET spec = $1, generation = $2, resource_version = $3, status = $4, status_reason = $5, hold_id = $6, \
     price_per_hour = $7, duration_hours = $8, connection = $9, provisioning_deadline = $10, running_at = $11, expires_at = $12, \
     ended_at = $13, terminated_at = $14, reconcile_at = $15, updated_at = $16 WHERE id = $17 AND resource_version = $18";

impl ClusterRow {
    pub fn status(&self) -> Result<ClusterStatus> {
        let stored = self.status.as_str();
        ClusterStatus::parse(stored).ok_or_else(|| Error::corrupt("clusters.status", stored))
    }

    pub fn kind(&self) -> Result<ClusterKind> {
        ClusterKind::parse(&self.kind).ok_or_else(|| Error::corrupt("clusters.kind", &self.kind))
    }

    pub fn spec(&self) -> Result<ClusterSpec> {
        serde_json::from_str(&self.spec).map_err(|e| Error::Internal(format!("bad spec: {e}")))
    }

    pub fn currency(&self) -> Result<Currency> {
        stored_currency("clusters.currency", &self.currency)
    }

    /// The stored connection, `None` before the cluster ran. Not JSON is corrupt data; the
    /// value itself stays out of the error and the log, as it may hold a credential.
    pub fn connection(&self) -> Result<Option<serde_json::Value>> {
        let Some(stored) = self.connection.as_deref() else {
            return Ok(None);
        };
        serde_json::from_str(stored).map(Some).map_err(|_| {
            Error::corrupt(
                "clusters.connection",
                &format!("({} bytes that are not JSON)", stored.len()),
            )
        })
    }

    /// A USD amount in the cluster's currency, at the rate locked when it was created.
    pub fn in_currency(&self, usd_micros: i64) -> Result<Money> {
        let rate = iocloud_billing::prices::Rate {
            id: String::new(),
            usd_per_io: self.usd_per_unit,
            source: String::new(),
            observed_at: 0,
        };
        Ok(iocloud_billing::prices::PriceFeed::convert(
            Money::from_micros(usd_micros, Currency::Usd),
            self.currency()?,
            &rate,
        )?)
    }

    /// The stored connection without any secret in it (see
    /// [`Clusters::credentials`]).
    fn public_connection(&self) -> Result<Option<serde_json::Value>> {
        let Some(mut connection) = self.connection()? else {
            return Ok(None);
        };
        if let Some(fields) = connection.as_object_mut() {
            for key in bootstrap::SECRET_CONNECTION_KEYS {
                fields.remove(key);
            }
        }
        Ok(Some(connection))
    }

    pub(super) fn view(&self) -> Result<ClusterView> {
        Ok(ClusterView {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind()?,
            status: self.status()?,
            status_reason: self.status_reason.clone(),
            resource_version: self.resource_version,
            generation: self.generation,
            spec: self.spec()?,
            gpus: self.gpus,
            currency: self.currency.clone(),
            price_per_hour: Money::from_micros(self.price_per_hour, self.currency()?).to_decimal(),
            hold_id: self.hold_id.clone(),
            connection: self.public_connection()?,
            created_at: self.created_at.into(),
            running_at: self.running_at.map(Timestamp::from),
            expires_at: self.expires_at.map(Timestamp::from),
            terminated_at: self.terminated_at.map(Timestamp::from),
            nodes: None,
            events: None,
        })
    }

    /// Writes this row over the stored one if nobody changed it since `self` was read, with
    /// one event; bumps `resource_version`. `Ok(None)` when somebody else moved first.
    pub async fn save_in(
        &mut self,
        tx: &mut Tx,
        kind: &str,
        message: &str,
    ) -> Result<Option<ClusterEvent>> {
        let step = (kind, self.status()?, message);
        let saved = self.save_steps_in(tx, &[step]).await?;
        Ok(saved.and_then(|events| events.into_iter().next()))
    }

    /// [`ClusterRow::save_in`] for a row that went through several statuses at once (`kind`,
    /// the status after it, message): the row is written once, with an event and a version
    /// per step, so followers see every step in order.
    pub async fn save_steps_in(
        &mut self,
        tx: &mut Tx,
        steps: &[(&str, ClusterStatus, &str)],
    ) -> Result<Option<Vec<ClusterEvent>>> {
        debug_assert!(
            steps
                .last()
                .is_some_and(|(_, status, _)| Some(*status) == self.status().ok()),
            "the last step is the row's status"
        );
        debug_assert!(
            steps
                .windows(2)
                .all(|w| w[0].1 == w[1].1 || w[0].1.can_become(w[1].1)),
            "each step follows the one before it in the status table"
        );
        let read = self.resource_version;
        let now = now_micros();
        self.resource_version += steps.len() as i64;
        self.updated_at = now;
        let at = Timestamp::from_micros(now);
        let events: Vec<ClusterEvent> = (read + 1..)
            .zip(steps)
            .map(|(seq, (kind, status, message))| ClusterEvent {
                cluster_id: self.id.clone(),
                seq,
                at,
                kind: kind.to_string(),
                status: *status,
                message: message.to_string(),
            })
            .collect();
        // The row's columns as `SAVE` numbers them, then the version it was read at.
        macro_rules! bind_row {
            ($q:expr) => {
                $q.bind(&self.spec)
                    .bind(self.generation)
                    .bind(self.resource_version)
                    .bind(&self.status)
                    .bind(&self.status_reason)
                    .bind(&self.hold_id)
                    .bind(self.price_per_hour)
                    .bind(self.duration_hours)
                    .bind(&self.connection)
                    .bind(self.provisioning_deadline)
                    .bind(self.running_at)
                    .bind(self.expires_at)
                    .bind(self.ended_at)
                    .bind(self.terminated_at)
                    .bind(self.reconcile_at)
                    .bind(now)
                    .bind(&self.id)
                    .bind(read)
            };
        }
        let saved = if let Tx::Postgres(t) = tx {
            // One round trip on Postgres: the events are written only if the row was, so the
            // count of events written says whether the compare-and-set won.
            let sql = format!(
                "WITH saved AS ({SAVE} RETURNING id, org_id) \
                 INSERT INTO cluster_events (cluster_id, seq, org_id, at, kind, status, message) \
                 SELECT saved.id, e.seq, saved.org_id, $16, e.kind, e.status, e.message \
                 FROM saved CROSS JOIN unnest($19::bigint[], $20::text[], $21::text[], $22::text[]) AS e(seq, kind, status, message)"
            );
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
            let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
            let written = bind_row!(sqlx::query(&sql))
                .bind(&seqs)
                .bind(&kinds)
                .bind(&statuses)
                .bind(&messages)
                .execute(&mut **t)
                .await
                .map_err(DbError::from)?
                .rows_affected();
            written > 0
        } else {
            let moved = tx_run!(tx, |c| bind_row!(sqlx::query(SAVE))
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if moved == 1 {
                events::record_all_in(tx, &self.org_id, &events, now).await?;
            }
            moved == 1
        };
        if !saved {
            self.resource_version = read;
            return Ok(None);
        }
        Ok(Some(events))
    }

    /// Sets the status (and its reason) for the next [`ClusterRow::save_in`], if the status
    /// table lets the row's status become it (or it is that already: then only the reason
    /// changes). An illegal move is refused with nothing changed. The compare-and-set of the
    /// save makes sure the status checked is still the stored one.
    pub fn set_status(&mut self, status: ClusterStatus, reason: Option<&str>) -> Result<()> {
        let from = self.status()?;
        if from != status && !from.can_become(status) {
            return Err(Error::Conflict {
                code: crate::ErrorCode::InvalidState,
                message: format!(
                    "cluster {} is {} and cannot become {}",
                    self.id,
                    from.as_str(),
                    status.as_str()
                ),
            });
        }
        self.status = StoredStatus(status.as_str().to_string());
        self.status_reason = reason.map(str::to_string);
        Ok(())
    }
}

pub(crate) async fn row_in(tx: &mut Tx, id: &str) -> Result<Option<ClusterRow>> {
    let sql = format!("SELECT {COLUMNS} FROM clusters WHERE id = $1");
    Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(c)
        .await)
    .map_err(DbError::from)?)
}

/// A node as [`NODES_SQL`] reads it. The columns a cluster row also has are named `node_…`,
/// so both can be read from one joined row ([`Clusters::row_and_nodes`]).
#[derive(sqlx::FromRow)]
pub(crate) struct NodeRow {
    #[sqlx(rename = "node_id")]
    pub id: String,
    #[sqlx(rename = "node_cluster_id")]
    pub cluster_id: String,
    pub device_id: String,
    pub provider_org_id: OrgId,
    #[sqlx(rename = "node_gpus")]
    pub gpus: i64,
    pub role: String,
    #[sqlx(rename = "node_status")]
    pub status: String,
    pub endpoints: Option<String>,
    /// A control-plane node's certificate authority (checked PEM), once reported.
    pub ca_certificate: Option<String>,
    pub reason: Option<String>,
    pub price_per_gpu_hour: i64,
    pub bootstrap: String,
    pub ready_at: Option<i64>,
    pub failed_at: Option<i64>,
    #[sqlx(rename = "node_ended_at")]
    pub ended_at: Option<i64>,
    pub device_status: String,
    pub region: String,
    pub gpu_model: Option<String>,
    /// Whether the node has a usage record (it is, or was, billed).
    pub metered: bool,
}

/// The columns of [`NodeRow`], from `node_assignments n` and `devices d`.
macro_rules! node_columns {
    () => {
        "n.id AS node_id, n.cluster_id AS node_cluster_id, n.device_id, n.provider_org_id, n.gpus AS node_gpus, n.role, n.status AS node_status, n.endpoints, n.ca_certificate, \
         n.reason, n.price_per_gpu_hour, n.bootstrap, n.ready_at, n.failed_at, n.ended_at AS node_ended_at, \
         d.status AS device_status, d.region, d.gpu_model, \
         (SELECT COUNT(*) FROM usage_records u WHERE u.id = 'use_' || substr(n.id, 5)) > 0 AS metered"
    };
}

/// A cluster's nodes, oldest first, with what placement knows of their devices. A node's
/// usage record is found by its id ([`super::lifecycle::usage_id`]) in a scalar subquery: a key
/// lookup per node, which the planner cannot turn into a scan of every record (as it did
/// with `EXISTS` and with a join, once plans were cached while the table was small).
pub(super) const NODES_SQL: &str = concat!(
    "SELECT ",
    node_columns!(),
    " FROM node_assignments n JOIN devices d ON d.id = n.device_id WHERE n.cluster_id = $1 ORDER BY n.created_at, n.id"
);

/// A cluster's row and its nodes in one read: the row's columns on every node's row (one row
/// without a node when it has none), as the reconciler's every step needs both. Two plain left
/// joins: SQLite would build a nested join whole before matching it to the cluster.
pub(super) static ROW_AND_NODES_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, {} FROM clusters c LEFT JOIN node_assignments n ON n.cluster_id = c.id \
         LEFT JOIN devices d ON d.id = n.device_id WHERE c.id = $1 ORDER BY n.created_at, n.id",
        iocloud_db::sql::qualified("c", COLUMNS),
        node_columns!()
    )
});

/// Splits the rows of [`ROW_AND_NODES_SQL`]; a node without its device is left out, as
/// [`NODES_SQL`]'s inner join leaves it out.
pub(super) fn split_row_and_nodes<R>(
    rows: Vec<R>,
) -> std::result::Result<Option<(ClusterRow, Vec<NodeRow>)>, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> ClusterRow: sqlx::FromRow<'r, R>,
    for<'r> NodeRow: sqlx::FromRow<'r, R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    split_joined(rows, |r| {
        let node: Option<String> = r.try_get("node_id")?;
        let device: Option<String> = r.try_get("device_status")?;
        if node.is_none() || device.is_none() {
            return Ok(None);
        }
        <NodeRow as sqlx::FromRow<R>>::from_row(r).map(Some)
    })
}

/// Splits rows of a cluster's row left-joined to something: the row from the first, and from
/// each the joined part (`None` where the join found nothing).
fn split_joined<R, T>(
    rows: Vec<R>,
    part: impl Fn(&R) -> std::result::Result<Option<T>, sqlx::Error>,
) -> std::result::Result<Option<(ClusterRow, Vec<T>)>, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> ClusterRow: sqlx::FromRow<'r, R>,
{
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let row = <ClusterRow as sqlx::FromRow<R>>::from_row(first)?;
    let mut parts = Vec::with_capacity(rows.len());
    for r in &rows {
        parts.extend(part(r)?);
    }
    Ok(Some((row, parts)))
}

/// Events an answer shows: the latest.
pub(crate) const LATEST_EVENTS: i64 = 50;

/// A cluster's row (by id and organisation) and its latest events, newest first, in one read:
/// the row's columns on every event's row (one row without an event when it has none).
pub(super) static ROW_AND_EVENTS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, {} FROM clusters c LEFT JOIN cluster_events e ON e.cluster_id = c.id \
         WHERE c.id = $1 AND c.org_id = $2 ORDER BY e.seq DESC LIMIT {LATEST_EVENTS}",
            iocloud_db::sql::qualified("c", COLUMNS),
            events::JOINED_COLUMNS
        )
    });

/// Splits the rows of [`ROW_AND_EVENTS_SQL`]: the row, and its events oldest first, as stored
/// (read them with [`events::EventRow::event`]).
pub(super) fn split_row_and_events<R>(
    rows: Vec<R>,
) -> std::result::Result<Option<(ClusterRow, Vec<events::EventRow>)>, sqlx::Error>
where
    R: sqlx::Row,
    for<'r> ClusterRow: sqlx::FromRow<'r, R>,
    for<'r> events::JoinedEventRow: sqlx::FromRow<'r, R>,
{
    let split = split_joined(rows, |r| {
        <events::JoinedEventRow as sqlx::FromRow<R>>::from_row(r).map(events::JoinedEventRow::event)
    })?;
    Ok(split.map(|(row, mut events)| {
        events.reverse();
        (row, events)
    }))
}

impl NodeRow {
    /// The status of the node's device.
    pub fn device_status(&self) -> Result<DeviceStatus> {
        DeviceStatus::parse(&self.device_status)
            .ok_or_else(|| Error::corrupt("devices.status", &self.device_status))
    }

    /// What the node's agent reported, `None` before it did. A stored value that no longer
    /// reads as endpoints (kept before reports were checked) counts as none, so it reaches
    /// neither the customer nor other nodes.
    pub fn endpoints(&self) -> Option<Endpoints> {
        let stored = self.endpoints.as_deref()?;
        serde_json::from_str(stored)
            .inspect_err(
                |e| tracing::warn!(error = %e, node = %self.id, "stored endpoints ignored"),
            )
            .ok()
    }

    pub(super) fn view(&self) -> NodeView {
        NodeView {
            id: self.id.clone(),
            role: self.role.clone(),
            status: self.status.clone(),
            device_id: self.device_id.clone(),
            region: self.region.clone(),
            gpu_model: self.gpu_model.clone(),
            gpus: self.gpus,
            price_per_gpu_hour: Money::from_micros(self.price_per_gpu_hour, Currency::Usd)
                .to_decimal(),
            endpoints: self.endpoints(),
            reason: self.reason.clone(),
            current: self.ended_at.is_none(),
        }
    }
}

/// The nodes of several clusters, each cluster's oldest first, locked (on Postgres) in that
/// order: the order in which every transaction that ends nodes takes them.
pub(crate) async fn nodes_of_clusters_in(tx: &mut Tx, ids: &[&str]) -> Result<Vec<NodeRow>> {
    let lock = match tx.engine() {
        iocloud_db::Engine::Postgres => " FOR NO KEY UPDATE OF n",
        iocloud_db::Engine::Sqlite => "",
    };
    let sql = format!(
        "SELECT {} FROM node_assignments n JOIN devices d ON d.id = n.device_id WHERE n.cluster_id IN ({}) \
         ORDER BY n.cluster_id, n.created_at, n.id{lock}",
        node_columns!(),
        iocloud_db::sql::params(ids.len())
    );
    Ok(tx_run!(tx, |c| {
        let mut q = sqlx::query_as(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })
    .map_err(DbError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_in_status(status: &str) -> ClusterRow {
        ClusterRow {
            id: "clu_t".into(),
            org_id: OrgId::trusted("org_t"),
            name: "t".into(),
            kind: "ray".into(),
            spec: "{}".into(),
            generation: 1,
            resource_version: 4,
            status: StoredStatus(status.into()),
            status_reason: Some("before".into()),
            quote_id: None,
            currency: "USD".into(),
            hold_id: None,
            gpus: 1,
            price_per_hour: 0,
            spend_per_hour: 0,
            usd_per_unit: 1_000_000,
            rate_id: None,
            duration_hours: 1,
            connection: None,
            join_token: String::new(),
            provisioning_deadline: None,
            running_at: None,
            expires_at: None,
            ended_at: None,
            terminated_at: None,
            reconcile_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn set_status_moves_only_as_the_table_allows() {
        for from in ClusterStatus::ALL {
            for to in ClusterStatus::ALL {
                let mut row = row_in_status(from.as_str());
                let set = row.set_status(to, Some("after"));
                if from == to || from.can_become(to) {
                    assert!(set.is_ok(), "{} -> {}", from.as_str(), to.as_str());
                    assert_eq!(row.status().unwrap(), to);
                    assert_eq!(row.status_reason.as_deref(), Some("after"));
                } else {
                    let Err(Error::Conflict { code, .. }) = set else {
                        panic!("{} -> {} was allowed", from.as_str(), to.as_str());
                    };
                    assert_eq!(code, crate::ErrorCode::InvalidState);
                    assert_eq!(row.status().unwrap(), from, "nothing changed");
                    assert_eq!(row.status_reason.as_deref(), Some("before"));
                }
            }
        }
    }

    #[test]
    fn a_new_row_starts_pending() {
        assert_eq!(StoredStatus::initial().as_str(), "pending");
    }

    /// `read` failed on corrupt data of `column` holding `value`, as an internal error.
    fn assert_corrupt<T: std::fmt::Debug>(read: Result<T>, column: &str, value: &str) {
        match read {
            Err(e @ Error::CorruptData { .. }) => {
                let Error::CorruptData {
                    column: c,
                    value: v,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!((*c, v.as_str()), (column, value));
                assert_eq!(e.code(), crate::ErrorCode::Internal);
                assert!(e.is_internal(), "its detail stays out of answers");
            }
            other => panic!("{column} {value:?} read as {other:?}"),
        }
    }

    #[test]
    fn an_unknown_status_is_corrupt_data_not_failed() {
        let mut row = row_in_status("paused");
        assert_corrupt(row.status(), "clusters.status", "paused");
        assert_corrupt(row.view(), "clusters.status", "paused");
        assert_corrupt(
            row.set_status(ClusterStatus::Failed, None),
            "clusters.status",
            "paused",
        );
        for s in ClusterStatus::ALL {
            assert_eq!(row_in_status(s.as_str()).status().unwrap(), s);
        }
    }

    #[test]
    fn an_unknown_kind_is_corrupt_data_not_ray() {
        let mut row = row_in_status("running");
        for kind in ClusterKind::ALL {
            row.kind = kind.as_str().into();
            assert_eq!(row.kind().unwrap(), kind);
        }
        row.kind = "slurm".into();
        assert_corrupt(row.kind(), "clusters.kind", "slurm");
    }

    #[test]
    fn an_unknown_currency_is_corrupt_data_not_usd() {
        let mut row = row_in_status("running");
        for code in ["USD", "IOSD", "IO"] {
            row.currency = code.into();
            assert_eq!(row.currency().unwrap().code(), code);
        }
        row.currency = "EUR".into();
        assert_corrupt(row.currency(), "clusters.currency", "EUR");
        assert_corrupt(row.in_currency(1_000_000), "clusters.currency", "EUR");
        // An organisation's billing currency is read the same way.
        assert_corrupt(
            stored_currency("organizations.billing_currency", "GBP"),
            "organizations.billing_currency",
            "GBP",
        );
    }

    #[test]
    fn a_connection_that_is_not_json_is_corrupt_data_without_its_secrets() {
        let mut row = row_in_status("running");
        assert_eq!(row.connection().unwrap(), None);
        row.connection = Some(r#"{"api_server":"https://10.0.0.1:6443","kubeconfig":"k"}"#.into());
        let public = row.public_connection().unwrap().unwrap();
        assert_eq!(
            public,
            serde_json::json!({"api_server": "https://10.0.0.1:6443"})
        );
        row.connection = Some(r#"{"kubeconfig":"token: s3cret""#.into());
        assert_corrupt(
            row.connection(),
            "clusters.connection",
            "(29 bytes that are not JSON)",
        );
        assert_corrupt(
            row.public_connection(),
            "clusters.connection",
            "(29 bytes that are not JSON)",
        );
    }

    #[test]
    fn an_unknown_device_status_on_a_node_is_corrupt_data() {
        let mut node = NodeRow {
            id: "nod_t".into(),
            cluster_id: "clu_t".into(),
            device_id: "dev_t".into(),
            provider_org_id: OrgId::trusted("org_p"),
            gpus: 1,
            role: "head".into(),
            status: "ready".into(),
            endpoints: None,
            ca_certificate: None,
            reason: None,
            price_per_gpu_hour: 0,
            bootstrap: "{}".into(),
            ready_at: None,
            failed_at: None,
            ended_at: None,
            device_status: "busy".into(),
            region: "eu-central".into(),
            gpu_model: None,
            metered: false,
        };
        assert_eq!(node.device_status().unwrap(), DeviceStatus::Busy);
        node.device_status = "resting".into();
        assert_corrupt(node.device_status(), "devices.status", "resting");
    }
}
