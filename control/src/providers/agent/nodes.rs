//! The nodes given to devices, for the clusters: a node's GPUs taken from its device (and the
//! device busy) when a claim places it, and given back when it is released. The assignments
//! an agent polls for are these rows.

use iocloud_db::ids::OrgId;
use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, tx_run};

use super::{Agents, DeviceAuth};
use crate::providers::devices::{DEVICE_COLUMNS, DeviceRow};
use crate::providers::status::{DeviceStatus, may_become_sql, record_event_in};
use crate::{Error, ErrorCode, Result};

/// The SET of a give-back of `gpus` GPUs to a device at `now`: never more than it has. A busy
/// device with every GPU free becomes available, with `reason` (the node's
/// [`released_reason`]) as its status reason. Every SET sees the row as it was, and a node's
/// GPUs come back once, so the reason reads back as `reason` exactly when this statement made
/// the device available.
pub(super) fn give_back_set(gpus: &str, now: &str, reason: &str) -> String {
    let to = DeviceStatus::Available;
    let all_free = format!(
        "{} AND gpus_free + {gpus} >= gpu_count",
        may_become_sql(&[DeviceStatus::Busy], to)
    );
    format!(
        "gpus_free = CASE WHEN gpus_free + {gpus} > gpu_count THEN gpu_count ELSE gpus_free + {gpus} END, updated_at = {now}, \
         status = CASE WHEN {all_free} THEN '{}' ELSE status END, \
         status_reason = CASE WHEN {all_free} THEN {reason} ELSE status_reason END",
        to.as_str()
    )
}

/// Takes `$1` GPUs of device `$3` at `$2` (all of a CPU-only device, which runs one node at a
/// time: `$1` is 0), never more than are free, on a device that takes nodes: it is then busy.
static ASSIGN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use DeviceStatus::{Available, Busy};
    format!(
        "UPDATE devices SET gpus_free = gpus_free - $1, updated_at = $2, \
         status = CASE WHEN gpu_count = 0 OR gpus_free - $1 < gpu_count THEN '{}' ELSE status END \
         WHERE id = $3 AND ((gpu_count > 0 AND $1 > 0 AND gpus_free >= $1 AND {}) \
         OR (gpu_count = 0 AND $1 = 0 AND {})) RETURNING org_id, status, gpus_free, gpu_count",
        Busy.as_str(),
        may_become_sql(&[Available, Busy], Busy),
        may_become_sql(&[Available], Busy)
    )
});

/// The status reason of a device its node's release made available. Only that give-back writes
/// it (other reasons are an operator's or the provider's, with their own prefixes), which is what
/// lets [`give_back_set`] tell that it made the move.
pub(super) fn released_reason(node_id: &str) -> String {
    format!("node {node_id} released")
}

/// A node to give a device.
#[derive(Clone, Copy, Debug)]
pub struct NewNode<'a> {
    /// Chosen by the caller, so that writes made before the node (its cluster's event) can
    /// name it.
    pub id: &'a str,
    pub device_id: &'a str,
    pub cluster_id: &'a str,
    pub customer_org_id: &'a str,
    pub gpus: i64,
    /// What the node is in its cluster: `head`, `worker`, `control_plane`, `agent`, `container`.
    pub role: &'a str,
    /// Micro-USD, the device's price when the node was placed.
    pub price_per_gpu_hour: i64,
    pub bootstrap: &'a serde_json::Value,
    /// `false`: the node waits, unseen by the agent, until its cluster starts it (a worker
    /// whose head is not up yet).
    pub start_now: bool,
    /// The test the node answers before it may be ready (already in `bootstrap`).
    pub test: Option<&'a super::IssuedTest>,
}

impl Agents {
    /// Gives a node to a device: takes its GPUs (never more than are free) and wakes the
    /// device's agent.
    pub async fn assign_node(
        &self,
        device_id: &str,
        cluster_id: &str,
        customer_org_id: &str,
        gpus: i64,
        bootstrap: &serde_json::Value,
    ) -> Result<String> {
        let mut tx = self.db.begin().await?;
        let id = new_id("nod");
        let node = NewNode {
            id: &id,
            device_id,
            cluster_id,
            customer_org_id,
            gpus,
            role: "node",
            price_per_gpu_hour: 0,
            bootstrap,
            start_now: true,
            test: None,
        };
        self.assign_node_in(&mut tx, &node).await?;
        tx.commit().await?;
        self.wake(device_id).await;
        Ok(id)
    }

    /// [`Agents::assign_node`] inside the caller's transaction; the caller wakes the agent
    /// once it commits.
    pub(crate) async fn assign_node_in(
        &self,
        tx: &mut iocloud_db::Tx,
        node: &NewNode<'_>,
    ) -> Result<()> {
        let NewNode {
            id,
            device_id,
            cluster_id,
            customer_org_id,
            gpus,
            bootstrap,
            ..
        } = *node;
        let now = now_micros();
        // The status follows the free GPUs in the same statement, so it cannot go stale. A
        // CPU-only device (no GPUs) runs one node at a time: it is busy while it has one.
        let taken: Option<(OrgId, String, i64, i64)> =
            tx_run!(tx, |c| sqlx::query_as(ASSIGN_SQL.as_str())
                .bind(gpus)
                .bind(now)
                .bind(device_id)
                .fetch_optional(c)
                .await)
            .map_err(DbError::from)?;
        let Some((provider_org_id, taken, gpus_free, gpu_count)) = taken else {
            return Err(self.why_not_assigned(tx, device_id, gpus).await);
        };
        tx_run!(tx, |c| sqlx::query(
            "INSERT INTO node_assignments (id, device_id, provider_org_id, cluster_id, org_id, gpus, bootstrap, status, created_at, updated_at, role, price_per_gpu_hour, test_outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10, $11, $12)"
        )
        .bind(id)
        .bind(device_id)
        .bind(&provider_org_id)
        .bind(cluster_id)
        .bind(customer_org_id)
        .bind(gpus)
        .bind(bootstrap.to_string())
        .bind(now)
        .bind(if node.start_now { "assigned" } else { "waiting" })
        .bind(node.role)
        .bind(node.price_per_gpu_hour)
        .bind(node.test.map(|_| "pending"))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if let Some(test) = node.test {
            self.write_node_test_in(tx, node, &provider_org_id, test, now)
                .await?;
        }
        // Busy exactly while some GPU is taken: it was available if they all were free.
        if gpus_free + gpus == gpu_count && taken == DeviceStatus::Busy.as_str() {
            record_event_in(
                tx,
                device_id,
                &provider_org_id,
                Some(DeviceStatus::Available),
                DeviceStatus::Busy,
                &format!("node {id} assigned"),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Why a device's GPUs could not be taken: it is gone, not taking nodes, or short.
    async fn why_not_assigned(&self, tx: &mut iocloud_db::Tx, device_id: &str, gpus: i64) -> Error {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        let row: Option<DeviceRow> = match tx_run!(tx, |c| sqlx::query_as(&sql)
            .bind(device_id)
            .fetch_optional(c)
            .await)
        {
            Ok(row) => row,
            Err(e) => return DbError::from(e).into(),
        };
        let Some(row) = row else {
            return Error::NotFound("device");
        };
        match row.status() {
            Err(corrupt) => corrupt,
            Ok(DeviceStatus::Available | DeviceStatus::Busy) => Error::Conflict {
                code: ErrorCode::InsufficientCapacity,
                message: format!("device {device_id} has fewer than {gpus} free GPUs"),
            },
            Ok(status) => Error::Conflict {
                code: ErrorCode::DeviceUnavailable,
                message: format!("device {device_id} is {}", status.as_str()),
            },
        }
    }

    /// Gives a node's GPUs back to its device; a busy device with every GPU free again becomes
    /// available in the same statement, and the move is recorded.
    pub(crate) async fn give_back_gpus_in(
        &self,
        tx: &mut iocloud_db::Tx,
        device: &DeviceAuth,
        gpus: i64,
        node_id: &str,
        now: i64,
    ) -> Result<()> {
        let reason = released_reason(node_id);
        let sql = format!(
            "UPDATE devices SET {} WHERE id = $3 RETURNING status_reason",
            give_back_set("$1", "$2", "$4")
        );
        let back: Option<Option<String>> = tx_run!(tx, |c| sqlx::query_scalar(&sql)
            .bind(gpus)
            .bind(now)
            .bind(&device.id)
            .bind(&reason)
            .fetch_optional(c)
            .await)
        .map_err(DbError::from)?;
        let back = back.ok_or(Error::NotFound("device"))?;
        if back.as_deref() == Some(reason.as_str()) {
            record_event_in(
                tx,
                &device.id,
                &device.org_id,
                Some(DeviceStatus::Busy),
                DeviceStatus::Available,
                &reason,
                now,
            )
            .await?;
        }
        Ok(())
    }
}
