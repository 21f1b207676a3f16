//! GraphQL for IO Explorer: the same service as `/v1/explorer`, public (no login).

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::costaking::CostakeOffer;
use iocloud_control::explorer::{
    CaseFilter, DeviceFilter, EmissionSchedule, ExplorerBlock, ExplorerBlockDetail, ExplorerCase,
    ExplorerDevice, ExplorerDeviceDetail, HourOutcome, NetworkHour, NetworkNow, NetworkPeriod,
    Payment, Period, Rental, StakingNow,
};
use iocloud_db::Timestamp;

use super::schema::{control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct ExplorerQuery;

#[Object]
impl ExplorerQuery {
    /// The network now: devices and GPUs on the market, hired and idle, by model and region.
    async fn explorer_network(&self, ctx: &Context<'_>) -> GqlResult<NetworkNow> {
        control(ctx).explorer.network().await.map_err(gql_error)
    }

    /// The network hour by hour over the last `hours` (1 to 2160; 168 by default), oldest
    /// first.
    async fn explorer_network_hours(
        &self,
        ctx: &Context<'_>,
        hours: Option<i64>,
    ) -> GqlResult<Vec<NetworkHour>> {
        control(ctx)
            .explorer
            .network_hours(hours.unwrap_or(168))
            .await
            .map_err(gql_error)
    }

    /// The device directory, by id, filtered: its public fields only.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_devices(
        &self,
        ctx: &Context<'_>,
        gpu_model: Option<String>,
        region: Option<String>,
        status: Option<String>,
        hired: Option<bool>,
        min_reliability: Option<f64>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<ExplorerDevice>> {
        let filter = DeviceFilter {
            gpu_model,
            region,
            status,
            hired,
            min_reliability,
        };
        control(ctx)
            .explorer
            .devices(&filter, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// A device's public page.
    async fn explorer_device(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> GqlResult<ExplorerDeviceDetail> {
        control(ctx).explorer.device(&id).await.map_err(gql_error)
    }

    /// The hourly reward blocks, newest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_blocks(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<ExplorerBlock>> {
        control(ctx)
            .explorer
            .blocks(&page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One block (`hour`: its start in RFC 3339, on the hour): its ineligible devices by
    /// reason and its top earners.
    async fn explorer_block(
        &self,
        ctx: &Context<'_>,
        hour: String,
    ) -> GqlResult<ExplorerBlockDetail> {
        let hour = Timestamp::parse_rfc3339(hour.trim()).ok_or_else(|| {
            gql_error(iocloud_control::Error::validation(
                "hour",
                "an RFC 3339 time on the hour, e.g. 2026-12-06T14:00:00Z",
            ))
        })?;
        control(ctx).explorer.block(hour).await.map_err(gql_error)
    }

    /// The network by `period` (`day`, the default, or `month`) over the last `count` (1 to
    /// 366 days, 30 by default; 1 to 60 months, 12), oldest first.
    async fn explorer_network_history(
        &self,
        ctx: &Context<'_>,
        period: Option<String>,
        count: Option<i64>,
    ) -> GqlResult<Vec<NetworkPeriod>> {
        let period = match period.as_deref() {
            None => Period::Day,
            Some(p) => Period::parse(p).ok_or_else(|| {
                gql_error(iocloud_control::Error::validation(
                    "period",
                    "`day` or `month`",
                ))
            })?,
        };
        let count = count.unwrap_or(if period == Period::Day { 30 } else { 12 });
        control(ctx)
            .explorer
            .network_history(period, count)
            .await
            .map_err(gql_error)
    }

    /// A device's verification history: its hourly proofs, newest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_device_proofs(
        &self,
        ctx: &Context<'_>,
        id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<HourOutcome>> {
        control(ctx)
            .explorer
            .device_proofs(&id, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The emission schedule to the cap, year by year.
    async fn explorer_emission(&self, ctx: &Context<'_>) -> EmissionSchedule {
        control(ctx).explorer.emission_schedule()
    }

    /// Staking and slashing now.
    async fn explorer_staking(&self, ctx: &Context<'_>) -> GqlResult<StakingNow> {
        control(ctx).explorer.staking().await.map_err(gql_error)
    }

    /// The slashing cases, newest first, redacted.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_slashing(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        rule: Option<String>,
        device_id: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<ExplorerCase>> {
        let filter = CaseFilter {
            status,
            rule,
            device_id,
        };
        control(ctx)
            .explorer
            .cases(&filter, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The co-staking offers open now, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_costake_offers(
        &self,
        ctx: &Context<'_>,
        model: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<CostakeOffer>> {
        control(ctx)
            .explorer
            .open_offers(model.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The bookings ledger's rentals, newest first, without who rented.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_rentals(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Rental>> {
        control(ctx)
            .explorer
            .rentals(&page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The bookings ledger's payments in and out, newest first, without who paid.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn explorer_payments(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Payment>> {
        control(ctx)
            .explorer
            .payments(&page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}
