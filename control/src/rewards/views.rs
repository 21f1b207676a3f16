//! Reading blocks as a provider sees them: the network's blocks with what the organisation's
//! devices earned in each, one block's rows for its devices, and a device's hours with the
//! reason for every hour it earned nothing. Another organisation's devices are not found.

use iocloud_billing::rewards::{Pool, Reason};
use iocloud_billing::{Currency, Money};
use iocloud_db::ids::DeviceId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{MICROS_PER_HOUR, Rewards};
use crate::page::{Page, PageRequest};
use crate::providers::devices::device_row;
use crate::{Action, Actor, Error, Result};

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// One hourly block of the network, with the organisation's part of it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "RewardBlock")
)]
pub struct BlockView {
    /// The hour's start (UTC); the block covers the hour that follows.
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// The version of the reward parameters the block used.
    pub params_version: i64,
    /// $IO minted.
    pub emission: String,
    /// $IO for GPU devices and for CPU-only devices.
    pub gpu_pool: String,
    pub cpu_pool: String,
    /// $IO paid out of each pool (all of it when a pool had an eligible device).
    pub gpu_paid: String,
    pub cpu_paid: String,
    pub eligible_devices: i64,
    pub ineligible_devices: i64,
    /// $IO the organisation's devices earned in the block.
    pub earned: String,
}

/// What one device got in one block.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "DeviceBlock")
)]
pub struct DeviceBlockView {
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    pub device_id: String,
    pub pool: Pool,
    /// Thousandths of a point: the model's multiplier × GPUs (CPU-only: cores) × the
    /// connectivity factor, × the rental bonus; 0 when not eligible.
    pub score: i64,
    /// $IO the device earned (its co-staker's part included).
    pub amount: String,
    /// $IO of it that went to the device's co-staker.
    pub costaker_amount: String,
    /// Served a rental in the hour (no proof asked, no idle rule, the bonus).
    pub rented: bool,
    pub eligible: bool,
    /// The rule the device failed: `not_listed`, `stake_short`, `not_heard`, `short_uptime`,
    /// `no_proof`, `proof_failed`, `idle_rule` or `slashing_case`.
    #[schema(value_type = Option<String>)]
    pub reason: Option<Reason>,
    /// The evidence for the reason, with its figures.
    pub evidence: Option<String>,
}

/// One block and the organisation's devices in it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "RewardBlockDetail")
)]
pub struct BlockDetail {
    pub block: BlockView,
    pub devices: Vec<DeviceBlockView>,
}

/// The organisation's block rewards at a glance.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "RewardsSummary")
)]
pub struct RewardsSummary {
    /// $IO earned by block rewards, ever, in the last 24 hours and in the last 7 days.
    pub total: String,
    pub last_24h: String,
    pub last_7d: String,
    /// The last block written, if any.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_block: Option<Timestamp>,
    /// $IO the next block mints for the whole network.
    pub next_emission: String,
}

#[derive(sqlx::FromRow)]
struct BlockRow {
    hour: i64,
    params_version: i64,
    emission: i64,
    gpu_pool: i64,
    cpu_pool: i64,
    gpu_paid: i64,
    cpu_paid: i64,
    eligible_devices: i64,
    ineligible_devices: i64,
    earned: i64,
}

impl From<BlockRow> for BlockView {
    fn from(r: BlockRow) -> Self {
        BlockView {
            hour: (r.hour * MICROS_PER_HOUR).into(),
            params_version: r.params_version,
            emission: io(r.emission),
            gpu_pool: io(r.gpu_pool),
            cpu_pool: io(r.cpu_pool),
            gpu_paid: io(r.gpu_paid),
            cpu_paid: io(r.cpu_paid),
            eligible_devices: r.eligible_devices,
            ineligible_devices: r.ineligible_devices,
            earned: io(r.earned),
        }
    }
}

#[derive(sqlx::FromRow)]
struct RowOfDevice {
    hour: i64,
    device_id: String,
    pool: String,
    score: i64,
    amount: i64,
    rented: bool,
    reason: Option<String>,
    evidence: Option<String>,
    costaker_amount: i64,
}

impl TryFrom<RowOfDevice> for DeviceBlockView {
    type Error = Error;

    fn try_from(r: RowOfDevice) -> Result<Self> {
        let pool = Pool::parse(&r.pool)
            .ok_or_else(|| Error::Internal(format!("block_rewards.pool {}", r.pool)))?;
        let reason = match r.reason.as_deref() {
            None => None,
            Some(s) => Some(
                Reason::parse(s)
                    .ok_or_else(|| Error::Internal(format!("block_rewards.reason {s}")))?,
            ),
        };
        Ok(DeviceBlockView {
            hour: (r.hour * MICROS_PER_HOUR).into(),
            device_id: r.device_id,
            pool,
            score: r.score,
            amount: io(r.amount),
            costaker_amount: io(r.costaker_amount),
            rented: r.rented,
            eligible: reason.is_none(),
            reason,
            evidence: r.evidence,
        })
    }
}

const BLOCK_COLUMNS: &str = "b.hour, b.params_version, b.emission, b.gpu_pool, b.cpu_pool, b.gpu_paid, b.cpu_paid, \
     b.eligible_devices, b.ineligible_devices, \
     CAST(COALESCE((SELECT SUM(CASE WHEN r.org_id = $1 THEN r.amount - r.costaker_amount ELSE 0 END \
         + CASE WHEN r.costaker_org_id = $1 THEN r.costaker_amount ELSE 0 END) \
         FROM block_rewards r WHERE r.hour = b.hour AND (r.org_id = $1 OR r.costaker_org_id = $1)), 0) AS BIGINT) AS earned";

const DEVICE_COLUMNS: &str =
    "hour, device_id, pool, score, amount, rented, reason, evidence, costaker_amount";

/// A page cursor is the hour of the last row seen (pages go back in time).
fn before_hour(page: &PageRequest) -> Result<i64> {
    match page.after.as_deref() {
        None => Ok(i64::MAX),
        Some(h) => h
            .parse()
            .map_err(|_| Error::validation("cursor", "is not a cursor this API issued")),
    }
}

impl Rewards {
    /// The network's blocks, newest first, with what the organisation earned in each.
    pub async fn blocks(&self, actor: &Actor, page: &PageRequest) -> Result<Page<BlockView>> {
        actor.authorize(Action::BillingRead)?;
        let before = before_hour(page)?;
        let sql = format!(
            "SELECT {BLOCK_COLUMNS} FROM reward_blocks b WHERE b.hour < $2 ORDER BY b.hour DESC LIMIT $3"
        );
        let rows: Vec<BlockRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(before)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let hours: Vec<String> = rows.iter().map(|r| r.hour.to_string()).collect();
        let page = Page::from_rows(rows.into_iter().zip(hours).collect(), page, |(_, h)| h);
        Ok(page.map(|(r, _)| BlockView::from(r)))
    }

    /// One block (`hour`: its start, on the hour) and the organisation's devices in it.
    pub async fn block(&self, actor: &Actor, hour: Timestamp) -> Result<BlockDetail> {
        actor.authorize(Action::BillingRead)?;
        let micros = hour.micros();
        if micros.rem_euclid(MICROS_PER_HOUR) != 0 {
            return Err(Error::validation(
                "hour",
                "a block starts on the hour, e.g. 2026-12-06T14:00:00Z",
            ));
        }
        let hour = micros.div_euclid(MICROS_PER_HOUR);
        let sql = format!("SELECT {BLOCK_COLUMNS} FROM reward_blocks b WHERE b.hour = $2");
        let row: Option<BlockRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(hour)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        let block = row.ok_or(Error::NotFound("block"))?.into();
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM block_rewards WHERE hour = $1 AND org_id = $2 ORDER BY device_id"
        );
        let rows: Vec<RowOfDevice> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(hour)
            .bind(&actor.org_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        Ok(BlockDetail {
            block,
            devices: rows
                .into_iter()
                .map(DeviceBlockView::try_from)
                .collect::<Result<_>>()?,
        })
    }

    /// A device's blocks, newest first: what it earned each hour, or why it earned nothing.
    pub async fn device_blocks(
        &self,
        actor: &Actor,
        id: &DeviceId,
        page: &PageRequest,
    ) -> Result<Page<DeviceBlockView>> {
        actor.authorize(Action::ResourcesRead)?;
        device_row(&self.db, &actor.org_id, id).await?;
        let before = before_hour(page)?;
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM block_rewards WHERE device_id = $1 AND org_id = $2 AND hour < $3 \
             ORDER BY hour DESC LIMIT $4"
        );
        let rows: Vec<RowOfDevice> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(&actor.org_id)
            .bind(before)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let hours: Vec<String> = rows.iter().map(|r| r.hour.to_string()).collect();
        let page = Page::from_rows(rows.into_iter().zip(hours).collect(), page, |(_, h)| h);
        let items = page
            .items
            .into_iter()
            .map(|(r, _)| DeviceBlockView::try_from(r))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// The organisation's block rewards: in total, over the last day and week.
    pub async fn summary(&self, actor: &Actor) -> Result<RewardsSummary> {
        actor.authorize(Action::BillingRead)?;
        let now = now_micros();
        let this_hour = now.div_euclid(MICROS_PER_HOUR);
        let (total, day, week, last): (i64, i64, i64, Option<i64>) = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(mine), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN hour >= $2 THEN mine ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN hour >= $3 THEN mine ELSE 0 END), 0) AS BIGINT), \
                 (SELECT MAX(hour) FROM reward_blocks) \
                 FROM (SELECT hour, CASE WHEN org_id = $1 THEN amount - costaker_amount ELSE 0 END \
                     + CASE WHEN costaker_org_id = $1 THEN costaker_amount ELSE 0 END AS mine \
                     FROM block_rewards WHERE org_id = $1 OR costaker_org_id = $1) AS m",
            )
            .bind(&actor.org_id)
            .bind(this_hour - 24)
            .bind(this_hour - 24 * 7)
            .fetch_one(p)
            .await
        })
        .map_err(DbError::from)?;
        let next = last.map_or(this_hour - 1, |h| h + 1);
        Ok(RewardsSummary {
            total: io(total),
            last_24h: io(day),
            last_7d: io(week),
            last_block: last.map(|h| Timestamp::from(h * MICROS_PER_HOUR)),
            next_emission: io(self.emission_of(next)),
        })
    }
}

/// What one device of the organisation earned over a span of hours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEarnings {
    pub device_id: String,
    pub name: String,
    /// Micro-$IO.
    pub earned: i64,
    /// Hours the device earned in, of the hours a block considered it.
    pub eligible_hours: i64,
    pub hours: i64,
}

impl Rewards {
    /// Micro-$IO the organisation's devices earned on each of the last `days` days (today
    /// included, UTC), oldest first; every day appears.
    pub async fn earned_by_day(&self, actor: &Actor, days: i64) -> Result<Vec<(String, i64)>> {
        actor.authorize(Action::BillingRead)?;
        if !(1..=366).contains(&days) {
            return Err(Error::validation("days", "must be between 1 and 366"));
        }
        let today = now_micros().div_euclid(iocloud_db::time::MICROS_PER_DAY);
        let first = today - (days - 1);
        // Hours are never negative, so integer division is the same floor on both engines.
        let sums: Vec<(i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour / 24 AS day, CAST(SUM(CASE WHEN org_id = $1 THEN amount - costaker_amount ELSE 0 END \
             + CASE WHEN costaker_org_id = $1 THEN costaker_amount ELSE 0 END) AS BIGINT) FROM block_rewards \
             WHERE (org_id = $1 OR costaker_org_id = $1) AND hour >= $2 AND hour < $3 GROUP BY hour / 24"
        )
        .bind(&actor.org_id)
        .bind(first * 24)
        .bind((today + 1) * 24)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let sums: std::collections::HashMap<i64, i64> = sums.into_iter().collect();
        Ok((first..=today)
            .map(|d| {
                (
                    iocloud_db::time::day_string(d),
                    sums.get(&d).copied().unwrap_or(0),
                )
            })
            .collect())
    }

    /// What each of the organisation's devices earned in the blocks of the last `hours` hours,
    /// most first (devices without a block in them are left out).
    pub async fn earned_by_device(&self, actor: &Actor, hours: i64) -> Result<Vec<DeviceEarnings>> {
        actor.authorize(Action::BillingRead)?;
        if !(1..=24 * 366).contains(&hours) {
            return Err(Error::validation("hours", "must be between 1 and 8784"));
        }
        let since = now_micros().div_euclid(MICROS_PER_HOUR) - hours;
        let rows: Vec<(String, String, i64, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT r.device_id, d.name, CAST(SUM(r.amount - r.costaker_amount) AS BIGINT), \
             CAST(SUM(CASE WHEN r.reason IS NULL THEN 1 ELSE 0 END) AS BIGINT), CAST(COUNT(*) AS BIGINT) \
             FROM block_rewards r JOIN devices d ON d.id = r.device_id \
             WHERE r.org_id = $1 AND r.hour >= $2 GROUP BY r.device_id, d.name \
             ORDER BY 3 DESC, r.device_id"
        )
        .bind(&actor.org_id)
        .bind(since)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        Ok(rows
            .into_iter()
            .map(
                |(device_id, name, earned, eligible_hours, hours)| DeviceEarnings {
                    device_id,
                    name,
                    earned,
                    eligible_hours,
                    hours,
                },
            )
            .collect())
    }
}
