//! What happened in one hour, read from what the control plane stored as it happened: the
//! devices and their listing, the heartbeats' hour rows, the hourly proofs, the nodes that ran
//! and the providers' stake. One read per table for the whole network, so a block's cost grows
//! with the devices, not with the devices times the rules.

use std::collections::{HashMap, HashSet};

use iocloud_db::{Db, DbError, db_run};

use crate::Result;
use crate::costaking::{Backing, Costaking};
use crate::governance::ProtocolParams;
use crate::providers::Catalog;
use crate::providers::status::DeviceStatus;
use iocloud_billing::rewards::{HeardHour, Listing};

/// One device a block considers: every verified device that was not retired before the hour.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct BlockDevice {
    pub id: String,
    pub org_id: String,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub cpu_cores: i64,
    pub status: String,
    pub bandwidth_up_mbps: i64,
    pub bandwidth_down_mbps: i64,
    pub region: String,
}

/// A status change in or after the hour.
#[derive(Clone, Debug, sqlx::FromRow)]
struct Change {
    device_id: String,
    from_status: Option<String>,
    to_status: String,
    reason: String,
    created_at: i64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
struct HourRow {
    device_id: String,
    last_at: Option<i64>,
    heard_since: Option<i64>,
    longest_gap: i64,
    idle_gpu_pct: Option<i64>,
    idle_cpu_pct: Option<i64>,
}

/// The hour's proof of one device: (outcome, detail).
pub(crate) type Proof = (Option<String>, Option<String>);

/// Everything a block weighs, for every device at once.
pub(crate) struct Facts {
    pub devices: Vec<BlockDevice>,
    listing: HashMap<String, Listing>,
    heard: HashMap<String, HeardHour>,
    pub proofs: HashMap<String, Proof>,
    pub rented: HashSet<String>,
    /// Organisations whose active stake is short: (active, needed).
    pub stake_short: HashMap<String, (i64, i64)>,
    /// Devices under a slashing case open at some point of the hour: the case's id.
    pub open_cases: HashMap<String, String>,
    /// Co-stakes that backed their device through the hour, by device.
    pub costakes: HashMap<String, Backing>,
    /// $IO micro-units backing the network in the hour: providers' active stake and co-stakes.
    pub staked: i64,
}

impl Facts {
    pub fn listing(&self, device_id: &str) -> Listing {
        self.listing
            .get(device_id)
            .cloned()
            .unwrap_or(Listing::Whole)
    }

    pub fn heard(&self, device_id: &str) -> Option<HeardHour> {
        self.heard.get(device_id).copied()
    }
}

fn is_placeable(status: &str) -> bool {
    matches!(
        DeviceStatus::parse(status),
        Some(DeviceStatus::Available | DeviceStatus::Busy)
    )
}

/// Reads the facts of the hour `[start, end)` (`hour`: hours since the epoch).
pub(crate) async fn read(
    db: &Db,
    catalog: &Catalog,
    protocol: &ProtocolParams,
    hour: i64,
    start: i64,
    end: i64,
) -> Result<Facts> {
    let devices: Vec<BlockDevice> = db_run!(db, |p| sqlx::query_as(
        "SELECT id, org_id, gpu_model, gpu_count, cpu_cores, status, bandwidth_up_mbps, bandwidth_down_mbps, region \
         FROM devices WHERE verified_at IS NOT NULL AND verified_at < $1 \
         AND (status <> 'retired' OR updated_at >= $2) ORDER BY id"
    )
    .bind(end)
    .bind(start)
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;

    // The status a device had when the hour began is where its first change since then came
    // from (or its status now, without one); it stayed listed if every change in the hour kept
    // it available or busy.
    let changes: Vec<Change> = db_run!(db, |p| sqlx::query_as(
        "SELECT device_id, from_status, to_status, reason, created_at FROM device_events \
         WHERE created_at >= $1 ORDER BY created_at, id"
    )
    .bind(start)
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;
    let mut first: HashMap<&str, &Change> = HashMap::new();
    let mut left: HashMap<&str, &Change> = HashMap::new();
    for c in &changes {
        first.entry(c.device_id.as_str()).or_insert(c);
        if c.created_at < end && !is_placeable(&c.to_status) {
            left.entry(c.device_id.as_str()).or_insert(c);
        }
    }
    let mut listing = HashMap::new();
    for d in &devices {
        let at_start = match first.get(d.id.as_str()) {
            Some(c) => c.from_status.clone().unwrap_or_default(),
            None => d.status.clone(),
        };
        let l = if !is_placeable(&at_start) {
            Listing::NotAtStart {
                status: if at_start.is_empty() {
                    "not yet listed".into()
                } else {
                    at_start.replace('_', " ")
                },
            }
        } else if let Some(c) = left.get(d.id.as_str()) {
            Listing::Left {
                status: c.to_status.replace('_', " "),
                at: c.created_at,
                why: c.reason.clone(),
            }
        } else {
            Listing::Whole
        };
        if l != Listing::Whole {
            listing.insert(d.id.clone(), l);
        }
    }

    let rows: Vec<HourRow> = db_run!(db, |p| sqlx::query_as(
        "SELECT device_id, last_at, heard_since, longest_gap, idle_gpu_pct, idle_cpu_pct \
         FROM device_uptime WHERE hour = $1"
    )
    .bind(hour)
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;
    let heard = rows
        .into_iter()
        .filter_map(|r| {
            // Hours written before the block rules existed have no times: not judged heard.
            let (last_at, heard_since) = (r.last_at?, r.heard_since?);
            Some((
                r.device_id,
                HeardHour {
                    last_at,
                    heard_since,
                    longest_gap: r.longest_gap,
                    idle_gpu_pct: r.idle_gpu_pct,
                    idle_cpu_pct: r.idle_cpu_pct,
                },
            ))
        })
        .collect();

    let proofs: Vec<(String, Option<String>, Option<String>)> = db_run!(db, |p| sqlx::query_as(
        "SELECT device_id, outcome, detail FROM device_proofs WHERE hour = $1"
    )
    .bind(hour)
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;
    let proofs = proofs
        .into_iter()
        .map(|(id, outcome, detail)| (id, (outcome, detail)))
        .collect();

    // Served a rental: a node that was up at some point of the hour.
    let rented: Vec<String> = db_run!(db, |p| sqlx::query_scalar(
        "SELECT DISTINCT device_id FROM node_assignments WHERE ready_at IS NOT NULL AND ready_at < $1 \
         AND (status NOT IN ('released', 'failed') OR updated_at >= $2)"
    )
    .bind(end)
    .bind(start)
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;

    let stakes: Vec<(String, i64)> = db_run!(db, |p| sqlx::query_as(
        "SELECT org_id, CAST(SUM(amount) AS BIGINT) FROM stakes WHERE status = 'active' GROUP BY org_id"
    )
    .fetch_all(p)
    .await)
    .map_err(DbError::from)?;
    let mut stakes: HashMap<String, i64> = stakes.into_iter().collect();
    // Co-stakes that backed a provider's devices through the hour count as its stake.
    let costakes = Costaking::backing_through(db, start, end).await?;
    for b in costakes.values() {
        *stakes.entry(b.provider_org_id.clone()).or_default() += b.amount;
    }
    // What each provider's devices need, counted as the registry counts it (listed devices and
    // those that will list again by themselves).
    let mut needed: HashMap<&str, i64> = HashMap::new();
    for d in &devices {
        if DeviceStatus::parse(&d.status).is_some_and(DeviceStatus::is_listed) {
            *needed.entry(d.org_id.as_str()).or_default() +=
                protocol.required_stake(catalog, d.gpu_model.as_deref(), d.gpu_count);
        }
    }
    let stake_short = needed
        .into_iter()
        .filter_map(|(org, need)| {
            let active = stakes.get(org).copied().unwrap_or(0);
            (active < need).then(|| (org.to_string(), (active, need)))
        })
        .collect();

    let open_cases = crate::slashing::Slashing::open_during(db, start, end)
        .await?
        .into_iter()
        .collect();

    let staked = stakes.values().sum();
    Ok(Facts {
        staked,
        costakes,
        open_cases,
        listing,
        heard,
        proofs,
        rented: rented.into_iter().collect(),
        stake_short,
        devices,
    })
}
