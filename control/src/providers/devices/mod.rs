//! The device registry: providers register machines, price them, take them out for maintenance
//! and retire them. Each device gets a token for its agent, shown once and stored hashed.
//!
//! The registry's moves are one file: registration, pricing, maintenance, suspension and
//! retirement are the moves of one row through the device's status table (`status.rs`), checked
//! the same way. Its types are in `types`. The [`Devices`] service also writes the heartbeats agents send, and sweeps for silent
//! devices ([`heartbeats`]); the agents' side of the conversation is the
//! [`Agents`](super::agent::Agents) service.

pub mod heartbeats;
mod rentals;
mod types;
mod uptime;

use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::{DeviceId, new_id};
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Timestamp, db_run, tx_run};

use super::catalog::{CPU_PRICE_CEILING, CPU_PRICE_FLOOR, Catalog};
use super::reliability::Reliability;
use super::stake::Stake;
use super::status::{DeviceEvent, DeviceStatus, transition_in};
use crate::cache::{Cache, Forget};
use crate::types::parse_name;
use crate::{Action, Actor, Error, ErrorCode, Page, PageRequest, Result, secrets};
use heartbeats::HeartbeatBuffer;
pub use rentals::Rental;
pub use types::*;
use types::{io, usd};
pub use uptime::{DayUptime, MAX_UPTIME_DAYS};

/// The providers' device registry: registering, pricing, maintenance, suspension, retirement,
/// agent tokens, reads, history and uptime; and the heartbeats' write path and the sweeps
/// that keep devices' states true to what their agents say.
#[derive(Clone)]
pub struct Devices {
    db: Db,
    /// GPU models and regions a device is checked against; its model's stake and prices.
    catalog: Arc<Catalog>,
    /// Forgets a device's token, on every replica, when it is rotated or the device retired.
    cache: Arc<Cache>,
    /// A device whose suspension is lifted is weighed against the stake again.
    stake: Stake,
    /// Uptime reads the scores; the hourly job moves them.
    reliability: Reliability,
    /// Filled by the agent protocol, written here.
    heartbeats: Arc<HeartbeatBuffer>,
    /// A listed device not heard from for this long goes offline.
    heartbeat_timeout: Duration,
    /// How often buffered heartbeats are written.
    heartbeat_flush: Duration,
}

impl Devices {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Db,
        catalog: Arc<Catalog>,
        cache: Arc<Cache>,
        stake: Stake,
        reliability: Reliability,
        heartbeats: Arc<HeartbeatBuffer>,
        heartbeat_timeout: Duration,
        heartbeat_flush: Duration,
    ) -> Self {
        Devices {
            db,
            catalog,
            cache,
            stake,
            reliability,
            heartbeats,
            heartbeat_timeout,
            heartbeat_flush,
        }
    }

    fn view(&self, d: DeviceRow) -> Result<DeviceView> {
        let required = self.stake.required(d.gpu_model.as_deref(), d.gpu_count);
        let status = d.status()?;
        Ok(DeviceView {
            id: d.id,
            name: d.name,
            gpu_model: d.gpu_model,
            gpu_count: d.gpu_count,
            gpus_free: d.gpus_free,
            cpu_cores: d.cpu_cores,
            ram_gib: d.ram_gib,
            disk_gib: d.disk_gib,
            region: d.region,
            country: d.country,
            location: Location {
                lat: d.lat,
                lon: d.lon,
            },
            bandwidth_mbps: Bandwidth {
                up: d.bandwidth_up_mbps,
                down: d.bandwidth_down_mbps,
            },
            price_per_gpu_hour: usd(d.price_per_gpu_hour),
            status,
            status_reason: d.status_reason,
            required_stake: io(required),
            verified_at: d.verified_at.map(Timestamp::from),
            telemetry: Telemetry {
                free_gpus: d.reported_free_gpus,
                utilization_pct: d.utilization_pct,
                temperature_c: d.temperature_c,
                agent_version: d.agent_version,
                last_heartbeat_at: d.last_heartbeat_at.map(Timestamp::from),
            },
            created_at: d.created_at.into(),
            updated_at: d.updated_at.into(),
        })
    }

    /// Checks a price against the catalog bounds of the device's model.
    fn parse_price(&self, raw: &str, gpu_model: Option<&str>) -> Result<i64> {
        let price = Money::parse(raw, Currency::Usd)
            .map_err(|e| Error::validation("price_per_gpu_hour", e.to_string()))?;
        let (floor, ceiling, what) = match gpu_model.and_then(|m| self.catalog.gpu_model(m)) {
            Some(m) => (m.price_floor, m.price_ceiling, m.id.as_str()),
            None => (CPU_PRICE_FLOOR, CPU_PRICE_CEILING, "a CPU-only device"),
        };
        if price.micros() < floor || price.micros() > ceiling {
            return Err(Error::validation(
                "price_per_gpu_hour",
                format!(
                    "must be between {} and {} USD for {what}",
                    usd(floor),
                    usd(ceiling)
                ),
            ));
        }
        Ok(price.micros())
    }

    fn check_spec(&self, s: &DeviceSpec) -> Result<()> {
        let range = |field: &'static str, v: i64, lo: i64, hi: i64| {
            if v < lo || v > hi {
                Err(Error::validation(
                    field,
                    format!("must be between {lo} and {hi}"),
                ))
            } else {
                Ok(())
            }
        };
        match s.gpu_model.as_deref() {
            Some(id) => {
                let m = self.catalog.gpu_model(id).ok_or_else(|| {
                    Error::validation(
                        "gpu_model",
                        format!("unknown GPU model {id:?}; the catalog is at GET /v1/gpu-models"),
                    )
                })?;
                range("gpu_count", s.gpu_count, 1, m.max_per_node)?;
                if let Some(v) = s.vram_gib
                    && v != m.vram_gib
                {
                    return Err(Error::validation(
                        "vram_gib",
                        format!("{} has {} GiB, not {v}", m.name, m.vram_gib),
                    ));
                }
            }
            None => {
                if s.gpu_count != 0 || s.vram_gib.is_some_and(|v| v != 0) {
                    return Err(Error::validation(
                        "gpu_model",
                        "name the GPU model of a device with GPUs",
                    ));
                }
            }
        }
        range("cpu_cores", s.cpu_cores, 1, 1024)?;
        range("ram_gib", s.ram_gib, 1, 65_536)?;
        range("disk_gib", s.disk_gib, 1, 1_000_000)?;
        range("bandwidth_mbps.up", s.bandwidth_mbps.up, 1, 400_000)?;
        range("bandwidth_mbps.down", s.bandwidth_mbps.down, 1, 400_000)?;
        if self.catalog.region(&s.region).is_none() {
            return Err(Error::validation(
                "region",
                format!(
                    "unknown region {:?}; the catalog is at GET /v1/regions",
                    s.region
                ),
            ));
        }
        if s.country.len() != 2 || !s.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::validation(
                "country",
                "must be an ISO 3166-1 alpha-2 code such as DE",
            ));
        }
        let (lat, lon) = (s.location.lat, s.location.lon);
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(Error::validation(
                "location.lat",
                "must be between -90 and 90",
            ));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(Error::validation(
                "location.lon",
                "must be between -180 and 180",
            ));
        }
        Ok(())
    }

    /// Registers a machine of the actor's organisation. It starts `pending_verification` until
    /// its agent connects and answers a challenge.
    pub async fn register(&self, actor: &Actor, spec: DeviceSpec) -> Result<CreatedDevice> {
        actor.authorize(Action::ResourcesWrite)?;
        let name = parse_name("name", &spec.name)?;
        self.check_spec(&spec)?;
        let price = self.parse_price(&spec.price_per_gpu_hour, spec.gpu_model.as_deref())?;
        let id = new_id("dev");
        let token = secrets::generate("iodt_");
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let inserted = tx_run!(&mut tx, |c| {
            sqlx::query(
                "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
                 bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, status_reason, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id)
            .bind(&actor.org_id)
            .bind(&name)
            .bind(spec.gpu_model.as_deref())
            .bind(spec.gpu_count)
            .bind(spec.cpu_cores)
            .bind(spec.ram_gib)
            .bind(spec.disk_gib)
            .bind(&spec.region)
            .bind(&spec.country)
            .bind(spec.location.lat)
            .bind(spec.location.lon)
            .bind(spec.bandwidth_mbps.up)
            .bind(spec.bandwidth_mbps.down)
            .bind(price)
            .bind(secrets::hash(&token))
            .bind(DeviceStatus::PendingVerification.as_str())
            .bind("waiting for the agent to connect")
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Err(Error::Conflict {
                code: ErrorCode::NameTaken,
                message: format!("a device named {name:?} already exists in this organisation"),
            });
        }
        super::status::record_event_in(
            &mut tx,
            &id,
            &actor.org_id,
            None,
            DeviceStatus::PendingVerification,
            "registered",
            now,
        )
        .await?;
        tx.commit().await?;
        let row = device_row(&self.db, &actor.org_id, &id).await?;
        Ok(CreatedDevice {
            device: self.view(row)?,
            token,
        })
    }

    pub async fn get(&self, actor: &Actor, id: &DeviceId) -> Result<DeviceView> {
        actor.authorize(Action::ResourcesRead)?;
        self.view(device_row(&self.db, &actor.org_id, id).await?)
    }

    /// The organisation's devices, oldest first, optionally in one status.
    pub async fn list(
        &self,
        actor: &Actor,
        page: &PageRequest,
        status: Option<&str>,
    ) -> Result<Page<DeviceView>> {
        actor.authorize(Action::ResourcesRead)?;
        let status = match status {
            None | Some("") => "",
            Some(s) => DeviceStatus::parse(s)
                .ok_or_else(|| Error::validation("status", format!("unknown status {s:?}")))?
                .as_str(),
        };
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE org_id = $1 AND id > $2 AND ($3 = '' OR status = $3) ORDER BY id LIMIT $4"
        );
        let rows: Vec<DeviceRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(status)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let page = Page::from_rows(rows, page, |d| &d.id);
        // Every row read, before the page is made of them.
        let views = page
            .items
            .into_iter()
            .map(|d| self.view(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items: views,
            next_cursor: page.next_cursor,
        })
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: &DeviceId,
        update: DeviceUpdate,
    ) -> Result<DeviceView> {
        actor.authorize(Action::ResourcesWrite)?;
        let row = device_row(&self.db, &actor.org_id, id).await?;
        if row.status()? == DeviceStatus::Retired {
            return Err(retired(id));
        }
        let name = update
            .name
            .as_deref()
            .map(|n| parse_name("name", n))
            .transpose()?;
        let price = update
            .price_per_gpu_hour
            .as_deref()
            .map(|p| self.parse_price(p, row.gpu_model.as_deref()))
            .transpose()?;
        let changed = db_run!(&self.db, |p| {
            sqlx::query(
                "UPDATE devices SET name = COALESCE($1, name), price_per_gpu_hour = COALESCE($2, price_per_gpu_hour), updated_at = $3 \
                 WHERE id = $4 AND org_id = $5 AND status <> 'retired' \
                 AND NOT EXISTS (SELECT 1 FROM devices o WHERE o.org_id = $5 AND o.name = $1 AND o.id <> $4 AND o.status <> 'retired')",
            )
            .bind(name.as_deref())
            .bind(price)
            .bind(now_micros())
            .bind(id)
            .bind(&actor.org_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(DbError::from);
        // Two renames to one name at once: the unique index refuses the second.
        let changed = match changed {
            Err(DbError::Conflict(_)) => 0,
            other => other?,
        };
        if changed == 0 {
            if device_row(&self.db, &actor.org_id, id).await?.status()? == DeviceStatus::Retired {
                return Err(retired(id));
            }
            return Err(Error::Conflict {
                code: ErrorCode::NameTaken,
                message: "another device of this organisation has that name".into(),
            });
        }
        self.get(actor, id).await
    }

    /// Takes a listed device out of placement (`on`), or brings it back. Nodes already on it
    /// keep running. Asking for the state it is in changes nothing.
    pub async fn set_maintenance(
        &self,
        actor: &Actor,
        id: &DeviceId,
        on: bool,
        reason: Option<&str>,
    ) -> Result<DeviceView> {
        actor.authorize(Action::ResourcesWrite)?;
        check_reason(reason)?;
        let row = device_row(&self.db, &actor.org_id, id).await?;
        let from = row.status()?;
        let to = if on {
            DeviceStatus::Maintenance
        } else {
            super::status::listed_status(row.gpus_free, row.gpu_count)
        };
        let already = if on {
            from == DeviceStatus::Maintenance
        } else {
            from != DeviceStatus::Maintenance
        };
        if already {
            if from == DeviceStatus::Retired {
                return Err(retired(id));
            }
            if !on && from != to && !from.is_listed() {
                return Err(invalid_state(from, "resume"));
            }
            return self.view(row);
        }
        if !from.can_become(to) {
            return Err(invalid_state(
                from,
                if on { "go into maintenance" } else { "resume" },
            ));
        }
        let reason = match (on, reason.map(str::trim)) {
            (true, Some(r)) if !r.is_empty() => format!("maintenance: {}", truncate(r, 200)),
            (true, _) => "maintenance".to_string(),
            (false, _) => "back from maintenance".to_string(),
        };
        let mut tx = self.db.begin().await?;
        let moved =
            transition_in(&mut tx, id, &actor.org_id, from, to, &reason, now_micros()).await?;
        tx.commit().await?;
        if !moved {
            return Err(changed_meanwhile());
        }
        self.get(actor, id).await
    }

    /// Retires a device for good: its token stops working. A device with nodes still on it
    /// cannot be retired (put it into maintenance and wait for them to end). Retiring twice
    /// changes nothing.
    pub async fn retire(&self, actor: &Actor, id: &DeviceId) -> Result<DeviceView> {
        actor.authorize(Action::ResourcesWrite)?;
        let row = device_row(&self.db, &actor.org_id, id).await?;
        let from = row.status()?;
        if from == DeviceStatus::Retired {
            return self.view(row);
        }
        let mut tx = self.db.begin().await?;
        // Lock the device row first: `assign_node` updates it too, so no node slips in between
        // the count and the retirement.
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE devices SET updated_at = updated_at WHERE id = $1"
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        let running: i64 = tx_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM node_assignments WHERE device_id = $1 AND status IN ('assigned', 'starting', 'ready', 'failed', 'releasing')"
        )
        .bind(id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        if running > 0 {
            return Err(Error::Conflict {
                code: ErrorCode::DeviceBusy,
                message: format!(
                    "{running} node(s) still run on this device; put it into maintenance and retire it when they end"
                ),
            });
        }
        let moved = transition_in(
            &mut tx,
            id,
            &actor.org_id,
            from,
            DeviceStatus::Retired,
            "retired by its provider",
            now_micros(),
        )
        .await?;
        tx_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM device_challenges WHERE device_id = $1"
        )
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        if !moved {
            return Err(changed_meanwhile());
        }
        self.cache.invalidate(Forget::Device(id)).await;
        self.get(actor, id).await
    }

    /// Issues a new agent token for a device (the old one stops working at once), for a
    /// provider who lost it or fears it leaked.
    pub async fn rotate_token(&self, actor: &Actor, id: &DeviceId) -> Result<CreatedDevice> {
        actor.authorize(Action::ResourcesWrite)?;
        let row = device_row(&self.db, &actor.org_id, id).await?;
        if row.status()? == DeviceStatus::Retired {
            return Err(retired(id));
        }
        let token = secrets::generate("iodt_");
        let changed = db_run!(&self.db, |p| sqlx::query(
            "UPDATE devices SET token_hash = $1, updated_at = $2 WHERE id = $3 AND org_id = $4 AND status <> 'retired'"
        )
        .bind(secrets::hash(&token))
        .bind(now_micros())
        .bind(id)
        .bind(&actor.org_id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if changed == 0 {
            return Err(retired(id));
        }
        self.cache.invalidate(Forget::Device(id)).await;
        let row = device_row(&self.db, &actor.org_id, id).await?;
        Ok(CreatedDevice {
            device: self.view(row)?,
            token,
        })
    }

    /// A platform operator suspends a device of any organisation (abuse, fraud, a failed
    /// audit), or lifts the suspension: the device returns listed if it was verified, else to
    /// verification. Suspending a suspended device changes nothing.
    pub async fn suspend(
        &self,
        actor: &Actor,
        id: &DeviceId,
        suspend: bool,
        reason: Option<&str>,
    ) -> Result<DeviceView> {
        if !actor.is_operator {
            return Err(Error::Forbidden(
                "suspending devices (platform operators only)",
            ));
        }
        check_reason(reason)?;
        let row = self.any_row(id).await?;
        let from = row.status()?;
        if from == DeviceStatus::Retired {
            return Err(retired(id));
        }
        if (from == DeviceStatus::Suspended) == suspend {
            return self.view(row);
        }
        // Lifted, a verified device is weighed against the stake again before it is listed.
        let to = if suspend {
            DeviceStatus::Suspended
        } else if row.verified_at.is_some() {
            DeviceStatus::PendingStake
        } else {
            DeviceStatus::PendingVerification
        };
        let reason = match (suspend, reason.map(str::trim)) {
            (true, Some(r)) if !r.is_empty() => {
                format!("suspended by an operator: {}", truncate(r, 200))
            }
            (true, _) => "suspended by an operator".to_string(),
            (false, _) => "suspension lifted by an operator".to_string(),
        };
        let mut tx = self.db.begin().await?;
        super::stake::lock_stake(&mut tx, &row.org_id).await?;
        let moved =
            transition_in(&mut tx, id, &row.org_id, from, to, &reason, now_micros()).await?;
        if moved && to == DeviceStatus::PendingStake {
            self.stake.list_covered_in(&mut tx, &row.org_id).await?;
        }
        tx.commit().await?;
        if !moved {
            return Err(changed_meanwhile());
        }
        self.view(self.any_row(id).await?)
    }

    /// A device of any organisation (for operators).
    async fn any_row(&self, id: &str) -> Result<DeviceRow> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("device"))
    }

    /// A device's status changes, oldest first.
    pub async fn events(
        &self,
        actor: &Actor,
        id: &DeviceId,
        page: &PageRequest,
    ) -> Result<Page<DeviceEvent>> {
        actor.authorize(Action::ResourcesRead)?;
        device_row(&self.db, &actor.org_id, id).await?;
        let rows: Vec<DeviceEvent> = db_run!(&self.db, |p| {
            sqlx::query_as(
            "SELECT id, device_id, from_status, to_status, reason, created_at FROM device_events \
             WHERE device_id = $1 AND org_id = $2 AND id > $3 ORDER BY id LIMIT $4"
        )
        .bind(id)
        .bind(&actor.org_id)
        .bind(page.after_id())
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await
        })
        .map_err(DbError::from)?;
        Ok(Page::from_rows(rows, page, |e| &e.id))
    }
}

pub(crate) fn retired(id: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::DeviceRetired,
        message: format!("device {id} is retired"),
    }
}

fn changed_meanwhile() -> Error {
    Error::Conflict {
        code: ErrorCode::ConcurrentUpdate,
        message: "the device changed meanwhile; read it again and retry".into(),
    }
}

fn invalid_state(from: DeviceStatus, what: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::InvalidState,
        message: format!("a device that is {} cannot {what}", from.as_str()),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A status reason is shown to the provider and in the device's history: it must read as it
/// displays.
fn check_reason(reason: Option<&str>) -> Result<()> {
    match reason {
        Some(r) => crate::types::check_visible_text("reason", r.trim()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_in_status(status: &str) -> DeviceRow {
        DeviceRow {
            id: "dev_t".into(),
            org_id: iocloud_db::ids::OrgId::trusted("org_t"),
            name: "rig".into(),
            gpu_model: None,
            gpu_count: 0,
            gpus_free: 0,
            cpu_cores: 8,
            ram_gib: 32,
            disk_gib: 100,
            region: "eu-central".into(),
            country: "DE".into(),
            lat: 50.1,
            lon: 8.7,
            bandwidth_up_mbps: 100,
            bandwidth_down_mbps: 100,
            price_per_gpu_hour: 0,
            status: status.into(),
            status_reason: None,
            verified_at: None,
            agent_version: None,
            last_heartbeat_at: None,
            reported_free_gpus: None,
            utilization_pct: None,
            temperature_c: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn an_unknown_status_is_corrupt_data_not_suspended() {
        for s in DeviceStatus::ALL {
            assert_eq!(row_in_status(s.as_str()).status().unwrap(), s);
        }
        match row_in_status("resting").status() {
            Err(e @ Error::CorruptData { .. }) => {
                assert_eq!(e.code(), crate::ErrorCode::Internal);
                let Error::CorruptData { column, value } = e else {
                    unreachable!()
                };
                assert_eq!((column, value.as_str()), ("devices.status", "resting"));
            }
            other => panic!("read as {other:?}"),
        }
    }
}
