//! What is rented on a provider's devices now: the live nodes customers' clusters have on
//! them, as their provider may see them (the node, its GPUs, since and until when, what it is
//! rented at), never whose cluster it is: another organisation's names stay with it.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::DeviceId;
use iocloud_db::sql::params_from;
use iocloud_db::{DbError, Timestamp, db_run};

use super::Devices;
use crate::page::MAX_LIMIT;
use crate::{Action, Actor, Error, Result};

/// The statuses of a node that holds its device's GPUs for its cluster now: placed and waiting
/// for its leader, given to the agent, coming up, or up. A failed node runs nothing, a
/// releasing or released one was given up, and a node whose `ended_at` is set is over
/// whatever its status says.
const LIVE: &str = "'waiting', 'assigned', 'starting', 'ready'";

/// A node of a customer's cluster on one of the provider's devices.
#[derive(Clone, Debug, PartialEq)]
pub struct Rental {
    pub device_id: DeviceId,
    pub node_id: String,
    /// `waiting`, `assigned`, `starting` or `ready`.
    pub status: String,
    /// GPUs of the device it holds (0 on a CPU-only device, whose node has all of it).
    pub gpus: i64,
    /// When the node was placed on the device.
    pub since: Timestamp,
    /// When its cluster ends; `None` until the cluster runs (it then ends `duration_hours`
    /// later).
    pub until: Option<Timestamp>,
    /// The hours its cluster was rented for (`None` for a node given outside a cluster).
    pub duration_hours: Option<i64>,
    /// USD per GPU-hour (per node-hour on a CPU-only device) the node is rented at: the
    /// device's price when it was placed, before the platform fee.
    pub price_per_gpu_hour: String,
}

type RentalRow = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);

impl Devices {
    /// The live nodes on those of `device_ids` that are the actor's organisation's (others
    /// have none here), by device and then oldest first. At most a page of devices at once.
    pub async fn rentals(&self, actor: &Actor, device_ids: &[DeviceId]) -> Result<Vec<Rental>> {
        actor.authorize(Action::ResourcesRead)?;
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        if device_ids.len() > MAX_LIMIT as usize {
            return Err(Error::validation(
                "device_ids",
                format!("at most {MAX_LIMIT} devices at once"),
            ));
        }
        let sql = format!(
            "SELECT n.device_id, n.id, n.status, n.gpus, n.created_at, n.price_per_gpu_hour, c.expires_at, c.duration_hours \
             FROM node_assignments n LEFT JOIN clusters c ON c.id = n.cluster_id \
             WHERE n.provider_org_id = $1 AND n.ended_at IS NULL AND n.status IN ({LIVE}) AND n.device_id IN ({}) \
             ORDER BY n.device_id, n.id",
            params_from(device_ids.len(), 2)
        );
        let rows: Vec<RentalRow> = db_run!(&self.db, |p| {
            let mut q = sqlx::query_as(&sql).bind(&actor.org_id);
            for id in device_ids {
                q = q.bind(id.as_str());
            }
            q.fetch_all(p).await
        })
        .map_err(DbError::from)?;
        Ok(rows
            .into_iter()
            .map(
                |(device_id, node_id, status, gpus, created_at, price, until, hours)| Rental {
                    device_id: DeviceId::trusted(device_id),
                    node_id,
                    status,
                    gpus,
                    since: Timestamp::from_micros(created_at),
                    until: until.map(Timestamp::from_micros),
                    duration_hours: hours,
                    price_per_gpu_hour: Money::from_micros(price, Currency::Usd).to_decimal(),
                },
            )
            .collect())
    }
}
