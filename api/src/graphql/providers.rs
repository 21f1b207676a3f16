//! GraphQL for the supply side: catalogs, devices and stake. Same services as REST.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use iocloud_control::providers::devices::{Bandwidth, Location};
use iocloud_control::providers::stake::{StakeRequest, StakeSummary, StakeView};
use iocloud_control::providers::{
    CreatedDevice, DeviceEvent, DeviceSpec, DeviceUpdate, DeviceView, GpuModelView, Region,
};
use iocloud_db::time::to_rfc3339;

use super::schema::{actor, control, gql_error, list_cost, page};
use super::types::GqlPage;

type GqlResult<T> = async_graphql::Result<T>;

#[derive(SimpleObject)]
#[graphql(name = "GpuModel")]
pub struct GqlGpuModel {
    id: String,
    name: String,
    vram_gib: i64,
    fp16_tflops: f64,
    bf16_tflops: f64,
    class: String,
    staking_multiplier: i64,
    max_per_node: i64,
    price_floor: String,
    price_ceiling: String,
}

impl From<GpuModelView> for GqlGpuModel {
    fn from(v: GpuModelView) -> Self {
        let m = v.model;
        GqlGpuModel {
            id: m.id,
            name: m.name,
            vram_gib: m.vram_gib,
            fp16_tflops: m.fp16_tflops,
            bf16_tflops: m.bf16_tflops,
            class: m.class,
            staking_multiplier: m.staking_multiplier,
            max_per_node: m.max_per_node,
            price_floor: v.price_floor,
            price_ceiling: v.price_ceiling,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Region")]
pub struct GqlRegion {
    code: String,
    name: String,
    continent: String,
    lat: f64,
    lon: f64,
}

impl From<Region> for GqlRegion {
    fn from(r: Region) -> Self {
        GqlRegion {
            code: r.code,
            name: r.name,
            continent: r.continent,
            lat: r.lat,
            lon: r.lon,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Device")]
pub struct GqlDevice {
    id: String,
    name: String,
    gpu_model: Option<String>,
    gpu_count: i64,
    gpus_free: i64,
    cpu_cores: i64,
    ram_gib: i64,
    disk_gib: i64,
    region: String,
    country: String,
    lat: f64,
    lon: f64,
    bandwidth_up_mbps: i64,
    bandwidth_down_mbps: i64,
    price_per_gpu_hour: String,
    /// As in REST: `pending_verification`, `available`, `busy`, ...
    status: String,
    status_reason: Option<String>,
    required_stake: String,
    verified_at: Option<String>,
    agent_version: Option<String>,
    last_heartbeat_at: Option<String>,
    utilization_pct: Option<i64>,
    temperature_c: Option<i64>,
    created_at: String,
    updated_at: String,
}

impl From<DeviceView> for GqlDevice {
    fn from(d: DeviceView) -> Self {
        GqlDevice {
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
            lat: d.location.lat,
            lon: d.location.lon,
            bandwidth_up_mbps: d.bandwidth_mbps.up,
            bandwidth_down_mbps: d.bandwidth_mbps.down,
            price_per_gpu_hour: d.price_per_gpu_hour,
            status: d.status.as_str().into(),
            status_reason: d.status_reason,
            required_stake: d.required_stake,
            verified_at: d.verified_at.map(to_rfc3339),
            agent_version: d.telemetry.agent_version,
            last_heartbeat_at: d.telemetry.last_heartbeat_at.map(to_rfc3339),
            utilization_pct: d.telemetry.utilization_pct,
            temperature_c: d.telemetry.temperature_c,
            created_at: to_rfc3339(d.created_at),
            updated_at: to_rfc3339(d.updated_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "CreatedDevice")]
pub struct GqlCreatedDevice {
    device: GqlDevice,
    /// The agent's token, shown only here.
    token: String,
}

impl From<CreatedDevice> for GqlCreatedDevice {
    fn from(c: CreatedDevice) -> Self {
        GqlCreatedDevice {
            device: c.device.into(),
            token: c.token,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "DeviceEvent")]
pub struct GqlDeviceEvent {
    id: String,
    device_id: String,
    from_status: Option<String>,
    to_status: String,
    reason: String,
    created_at: String,
}

impl From<DeviceEvent> for GqlDeviceEvent {
    fn from(e: DeviceEvent) -> Self {
        GqlDeviceEvent {
            id: e.id,
            device_id: e.device_id,
            from_status: e.from_status,
            to_status: e.to_status,
            reason: e.reason,
            created_at: to_rfc3339(e.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Stake")]
pub struct GqlStake {
    id: String,
    amount: String,
    status: String,
    created_at: String,
    available_at: Option<String>,
}

impl From<StakeView> for GqlStake {
    fn from(s: StakeView) -> Self {
        GqlStake {
            id: s.id,
            amount: s.amount,
            status: s.status,
            created_at: to_rfc3339(s.created_at),
            available_at: s.available_at.map(to_rfc3339),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "StakeSummary")]
pub struct GqlStakeSummary {
    active: String,
    required: String,
    free: String,
    stakes: Vec<GqlStake>,
}

impl From<StakeSummary> for GqlStakeSummary {
    fn from(s: StakeSummary) -> Self {
        GqlStakeSummary {
            active: s.active,
            required: s.required,
            free: s.free,
            stakes: s.stakes.into_iter().map(Into::into).collect(),
        }
    }
}

/// A machine to register: the fields of `POST /v1/devices`, camelCased, with the location
/// and bandwidth flattened.
#[derive(InputObject)]
#[graphql(name = "DeviceInput")]
pub struct GqlDeviceInput {
    name: String,
    gpu_model: Option<String>,
    #[graphql(default)]
    gpu_count: i64,
    vram_gib: Option<i64>,
    cpu_cores: i64,
    ram_gib: i64,
    disk_gib: i64,
    region: String,
    country: String,
    lat: f64,
    lon: f64,
    bandwidth_up_mbps: i64,
    bandwidth_down_mbps: i64,
    price_per_gpu_hour: String,
}

impl From<GqlDeviceInput> for DeviceSpec {
    fn from(i: GqlDeviceInput) -> Self {
        DeviceSpec {
            name: i.name,
            gpu_model: i.gpu_model,
            gpu_count: i.gpu_count,
            vram_gib: i.vram_gib,
            cpu_cores: i.cpu_cores,
            ram_gib: i.ram_gib,
            disk_gib: i.disk_gib,
            region: i.region,
            country: i.country,
            location: Location {
                lat: i.lat,
                lon: i.lon,
            },
            bandwidth_mbps: Bandwidth {
                up: i.bandwidth_up_mbps,
                down: i.bandwidth_down_mbps,
            },
            price_per_gpu_hour: i.price_per_gpu_hour,
        }
    }
}

#[derive(Default)]
pub struct ProvidersQuery;

#[Object]
impl ProvidersQuery {
    /// The GPU catalog (public).
    async fn gpu_models(&self, ctx: &Context<'_>) -> Vec<GqlGpuModel> {
        control(ctx)
            .catalog
            .gpu_models
            .iter()
            .map(|m| GpuModelView::from(m).into())
            .collect()
    }

    /// The regions (public).
    async fn regions(&self, ctx: &Context<'_>) -> Vec<GqlRegion> {
        control(ctx)
            .catalog
            .regions
            .iter()
            .cloned()
            .map(Into::into)
            .collect()
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
        status: Option<String>,
    ) -> GqlResult<GqlPage<GqlDevice>> {
        let p = control(ctx)
            .devices
            .list(actor(ctx)?, &page(cursor, limit)?, status.as_deref())
            .await
            .map_err(gql_error)?;
        Ok(GqlPage::from_page(p))
    }

    async fn device(&self, ctx: &Context<'_>, id: String) -> GqlResult<GqlDevice> {
        Ok(control(ctx)
            .devices
            .get(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?
            .into())
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn device_events(
        &self,
        ctx: &Context<'_>,
        id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<GqlPage<GqlDeviceEvent>> {
        let p = control(ctx)
            .devices
            .events(actor(ctx)?, &id, &page(cursor, limit)?)
            .await
            .map_err(gql_error)?;
        Ok(GqlPage::from_page(p))
    }

    async fn stake(&self, ctx: &Context<'_>) -> GqlResult<GqlStakeSummary> {
        Ok(control(ctx)
            .stake
            .summary(actor(ctx)?)
            .await
            .map_err(gql_error)?
            .into())
    }
}

#[derive(Default)]
pub struct ProvidersMutation;

#[Object]
impl ProvidersMutation {
    /// Registers a machine; the answer holds its agent token, shown only here.
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        input: GqlDeviceInput,
    ) -> GqlResult<GqlCreatedDevice> {
        Ok(control(ctx)
            .devices
            .register(actor(ctx)?, input.into())
            .await
            .map_err(gql_error)?
            .into())
    }

    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: Option<String>,
        price_per_gpu_hour: Option<String>,
    ) -> GqlResult<GqlDevice> {
        let update = DeviceUpdate {
            name,
            price_per_gpu_hour,
        };
        Ok(control(ctx)
            .devices
            .update(actor(ctx)?, &id, update)
            .await
            .map_err(gql_error)?
            .into())
    }

    /// `on: true` takes the device out of placement; `false` brings it back.
    async fn set_device_maintenance(
        &self,
        ctx: &Context<'_>,
        id: String,
        on: bool,
        reason: Option<String>,
    ) -> GqlResult<GqlDevice> {
        Ok(control(ctx)
            .devices
            .set_maintenance(actor(ctx)?, &id, on, reason.as_deref())
            .await
            .map_err(gql_error)?
            .into())
    }

    async fn retire_device(&self, ctx: &Context<'_>, id: String) -> GqlResult<GqlDevice> {
        Ok(control(ctx)
            .devices
            .retire(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?
            .into())
    }

    /// Stakes $IO (a decimal string); the same `reference` twice is one stake.
    async fn stake(
        &self,
        ctx: &Context<'_>,
        amount: String,
        reference: Option<String>,
    ) -> GqlResult<GqlStake> {
        Ok(control(ctx)
            .stake
            .stake(actor(ctx)?, StakeRequest { amount, reference })
            .await
            .map_err(gql_error)?
            .into())
    }

    async fn unstake(&self, ctx: &Context<'_>, id: String) -> GqlResult<GqlStake> {
        Ok(control(ctx)
            .stake
            .unstake(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?
            .into())
    }

    async fn withdraw_stake(&self, ctx: &Context<'_>, id: String) -> GqlResult<GqlStake> {
        Ok(control(ctx)
            .stake
            .withdraw(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?
            .into())
    }
}
