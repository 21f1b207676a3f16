//! GraphQL for the supply side: catalogs, devices and stake. Same services as REST, answering
//! in the domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::providers::stake::{StakeRequest, StakeSummary, StakeView};
use iocloud_control::providers::{
    CreatedDevice, DeviceEvent, DeviceSpec, DeviceUpdate, DeviceView, GpuModelView, Region,
};
use iocloud_control::types::device_id;

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct ProvidersQuery;

#[Object]
impl ProvidersQuery {
    /// The GPU catalog (public).
    async fn gpu_models(&self, ctx: &Context<'_>) -> Vec<GpuModelView> {
        control(ctx)
            .catalog
            .gpu_models
            .iter()
            .map(GpuModelView::from)
            .collect()
    }

    /// The regions (public).
    async fn regions(&self, ctx: &Context<'_>) -> Vec<Region> {
        control(ctx).catalog.regions.to_vec()
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn devices(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
        status: Option<String>,
    ) -> GqlResult<Page<DeviceView>> {
        control(ctx)
            .devices
            .list(actor(ctx)?, &page(cursor, limit)?, status.as_deref())
            .await
            .map_err(gql_error)
    }

    async fn device(&self, ctx: &Context<'_>, id: String) -> GqlResult<DeviceView> {
        control(ctx)
            .devices
            .get(actor(ctx)?, &device_id(&id)?)
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn device_events(
        &self,
        ctx: &Context<'_>,
        id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<DeviceEvent>> {
        control(ctx)
            .devices
            .events(actor(ctx)?, &device_id(&id)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    async fn stake(&self, ctx: &Context<'_>) -> GqlResult<StakeSummary> {
        control(ctx)
            .stake
            .summary(actor(ctx)?)
            .await
            .map_err(gql_error)
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
        input: DeviceSpec,
    ) -> GqlResult<CreatedDevice> {
        control(ctx)
            .devices
            .register(actor(ctx)?, input)
            .await
            .map_err(gql_error)
    }

    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: Option<String>,
        price_per_gpu_hour: Option<String>,
    ) -> GqlResult<DeviceView> {
        let update = DeviceUpdate {
            name,
            price_per_gpu_hour,
        };
        control(ctx)
            .devices
            .update(actor(ctx)?, &device_id(&id)?, update)
            .await
            .map_err(gql_error)
    }

    /// `on: true` takes the device out of placement; `false` brings it back.
    async fn set_device_maintenance(
        &self,
        ctx: &Context<'_>,
        id: String,
        on: bool,
        reason: Option<String>,
    ) -> GqlResult<DeviceView> {
        control(ctx)
            .devices
            .set_maintenance(actor(ctx)?, &device_id(&id)?, on, reason.as_deref())
            .await
            .map_err(gql_error)
    }

    async fn retire_device(&self, ctx: &Context<'_>, id: String) -> GqlResult<DeviceView> {
        control(ctx)
            .devices
            .retire(actor(ctx)?, &device_id(&id)?)
            .await
            .map_err(gql_error)
    }

    /// Stakes $IO (a decimal string); the same `reference` twice is one stake.
    async fn stake(
        &self,
        ctx: &Context<'_>,
        amount: String,
        reference: Option<String>,
    ) -> GqlResult<StakeView> {
        control(ctx)
            .stake
            .stake(actor(ctx)?, StakeRequest { amount, reference })
            .await
            .map_err(gql_error)
    }

    async fn unstake(&self, ctx: &Context<'_>, id: String) -> GqlResult<StakeView> {
        control(ctx)
            .stake
            .unstake(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    async fn withdraw_stake(&self, ctx: &Context<'_>, id: String) -> GqlResult<StakeView> {
        control(ctx)
            .stake
            .withdraw(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}
