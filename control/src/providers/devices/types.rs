//! The registry's types: what a provider sends (a spec, an update), the device's row as
//! stored, and the views REST and GraphQL show, with the stake a device needs.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::{Db, DbError, Timestamp, db_run};
use serde::{Deserialize, Serialize};

use super::super::status::DeviceStatus;
use crate::{Error, Result};

/// Stake a device needs per GPU at launch, in whole $IO, before the model's multiplier (a
/// CPU-only device needs one GPU's of multiplier 1). Governance may change it.
pub const STAKE_PER_GPU_IO: i64 = 200;

// In GraphQL a location is an input of its own (`LocationInput`), and a device's shows as its
// `lat` and `lon`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject, async_graphql::InputObject),
    graphql(name = "Location", input_name = "LocationInput")
)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// -90 to 90.
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    /// -180 to 180.
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
}

// GraphQL shows a device's bandwidth, and takes a new one's, as two fields of the device.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject, async_graphql::InputObject),
    graphql(name = "Bandwidth", input_name = "BandwidthInput")
)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// 1 to 400000.
    #[schema(minimum = 1, maximum = 400000)]
    #[cfg_attr(feature = "graphql", graphql(name = "bandwidthUpMbps"))]
    pub up: i64,
    /// 1 to 400000.
    #[schema(minimum = 1, maximum = 400000)]
    #[cfg_attr(feature = "graphql", graphql(name = "bandwidthDownMbps"))]
    pub down: i64,
}

/// What a provider says about a machine when registering it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "DeviceInput")
)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "rig-01"
    )]
    pub name: String,
    /// A catalog id (`GET /v1/gpu-models`); absent or null for a CPU-only device.
    pub gpu_model: Option<String>,
    /// GPUs in the machine (0 for a CPU-only device).
    #[serde(default)]
    #[schema(minimum = 0)]
    #[cfg_attr(feature = "graphql", graphql(default))]
    pub gpu_count: i64,
    /// VRAM per GPU as the machine reports it; must match the model when given.
    pub vram_gib: Option<i64>,
    /// 1 to 1024.
    #[schema(minimum = 1, maximum = 1024)]
    pub cpu_cores: i64,
    /// 1 to 65536.
    #[schema(minimum = 1, maximum = 65536)]
    pub ram_gib: i64,
    /// 1 to 1000000.
    #[schema(minimum = 1, maximum = 1000000)]
    pub disk_gib: i64,
    /// A region code (`GET /v1/regions`).
    pub region: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[schema(pattern = r"^[A-Z]{2}$", example = "DE")]
    pub country: String,
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub location: Location,
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub bandwidth_mbps: Bandwidth,
    /// USD per GPU-hour as a decimal string (per node-hour for a CPU-only device), within the
    /// model's floor and ceiling.
    pub price_per_gpu_hour: String,
}

/// A change of name or price; absent fields stay as they are.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceUpdate {
    pub name: Option<String>,
    pub price_per_gpu_hour: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub org_id: OrgId,
    pub name: String,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub gpus_free: i64,
    pub cpu_cores: i64,
    pub ram_gib: i64,
    pub disk_gib: i64,
    pub region: String,
    pub country: String,
    pub lat: f64,
    pub lon: f64,
    pub bandwidth_up_mbps: i64,
    pub bandwidth_down_mbps: i64,
    pub price_per_gpu_hour: i64,
    pub status: String,
    pub status_reason: Option<String>,
    pub verified_at: Option<i64>,
    pub agent_version: Option<String>,
    pub last_heartbeat_at: Option<i64>,
    pub reported_free_gpus: Option<i64>,
    pub utilization_pct: Option<i64>,
    pub temperature_c: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) const DEVICE_COLUMNS: &str = "id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
    bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, status, status_reason, verified_at, agent_version, last_heartbeat_at, \
    reported_free_gpus, utilization_pct, temperature_c, created_at, updated_at";

impl DeviceRow {
    pub fn status(&self) -> Result<DeviceStatus> {
        DeviceStatus::parse(&self.status)
            .ok_or_else(|| Error::corrupt("devices.status", &self.status))
    }
}

/// What the agent last reported.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Telemetry {
    pub free_gpus: Option<i64>,
    pub utilization_pct: Option<i64>,
    pub temperature_c: Option<i64>,
    pub agent_version: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_heartbeat_at: Option<Timestamp>,
}

// What GraphQL shows of the telemetry, as fields of the device, in the order it always has.
#[cfg(feature = "graphql")]
impl Telemetry {
    fn agent_version(&self) -> &Option<String> {
        &self.agent_version
    }

    fn last_heartbeat_at(&self) -> &Option<Timestamp> {
        &self.last_heartbeat_at
    }

    fn utilization_pct(&self) -> &Option<i64> {
        &self.utilization_pct
    }

    fn temperature_c(&self) -> &Option<i64> {
        &self.temperature_c
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Device")
)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub gpus_free: i64,
    pub cpu_cores: i64,
    pub ram_gib: i64,
    pub disk_gib: i64,
    pub region: String,
    pub country: String,
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub location: Location,
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub bandwidth_mbps: Bandwidth,
    /// USD per GPU-hour (per node-hour for a CPU-only device).
    pub price_per_gpu_hour: String,
    /// `pending_verification`, `verification_failed`, `pending_stake`, `available`, `busy`,
    /// `maintenance`, `offline`, `suspended` or `retired`.
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    /// $IO of active stake this device needs to be listed.
    pub required_stake: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub verified_at: Option<Timestamp>,
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(
                name = "agent_version",
                into = "Option<String>",
                with = "Telemetry::agent_version"
            ),
            derived(
                name = "last_heartbeat_at",
                into = "Option<Timestamp>",
                with = "Telemetry::last_heartbeat_at"
            ),
            derived(
                name = "utilization_pct",
                into = "Option<i64>",
                with = "Telemetry::utilization_pct"
            ),
            derived(
                name = "temperature_c",
                into = "Option<i64>",
                with = "Telemetry::temperature_c"
            )
        )
    )]
    pub telemetry: Telemetry,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A device just registered, with the one time its agent token is shown.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CreatedDevice")
)]
pub struct CreatedDevice {
    #[serde(flatten)]
    pub device: DeviceView,
    /// The agent's token (`iodt_…`). Shown only here; store it on the machine.
    pub token: String,
}

/// A device of organisation `org_id`.
pub(crate) async fn device_row(db: &Db, org_id: &OrgId, id: &str) -> Result<DeviceRow> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND org_id = $2");
    db_run!(db, |p| sqlx::query_as(&sql)
        .bind(id)
        .bind(org_id)
        .fetch_optional(p)
        .await)
    .map_err(DbError::from)?
    .ok_or(Error::NotFound("device"))
}

pub(super) fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

pub(super) fn usd(micros: i64) -> String {
    Money::from_micros(micros, Currency::Usd).to_decimal()
}
