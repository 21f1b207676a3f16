//! The device directory and a device's public page. A device is in the directory once it is
//! verified and until it is retired; what it shows is the public part of it only.

use iocloud_billing::{Currency, Money};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{Explorer, io};
use crate::page::{Page, PageRequest};
use crate::rewards::MICROS_PER_HOUR;
use crate::{Error, Result};

/// A device as anyone may see it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExplorerDevice {
    pub id: String,
    /// The catalog's model id; none for a CPU-only device.
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub gpus_free: i64,
    pub cpu_cores: i64,
    pub ram_gib: i64,
    pub region: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// `available`, `busy`, `offline`, `maintenance` or `suspended`.
    pub status: String,
    /// Serving a rental now.
    pub hired: bool,
    /// 0 to 1: what placement learned of it.
    pub reliability: f64,
    /// USD per GPU-hour (per node-hour for a CPU-only device).
    pub price_per_gpu_hour: String,
    /// When it was verified.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub listed_since: Option<Timestamp>,
}

/// The directory's filters; each one absent lets every device through.
#[derive(Clone, Debug, Default)]
pub struct DeviceFilter {
    pub gpu_model: Option<String>,
    pub region: Option<String>,
    pub status: Option<String>,
    pub hired: Option<bool>,
    /// 0 to 1.
    pub min_reliability: Option<f64>,
}

/// Minutes heard in one day (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct UptimeDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// 0 to 1,440.
    pub minutes: i64,
}

/// How an hour went for a device: its hourly proof, or its block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct HourOutcome {
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// A proof: `passed`, `wrong_answer`, `late`, `vram_short` or `unanswered`. A block:
    /// `earned`, or the rule it failed (`not_heard`, `idle_rule`, …).
    pub outcome: String,
    /// $IO earned in a block (none for a proof).
    pub amount: Option<String>,
}

/// A device's public page.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExplorerDeviceDetail {
    pub device: ExplorerDevice,
    /// $IO its listing needs staked.
    pub required_stake: String,
    /// $IO others have co-staked on it.
    pub co_staked: String,
    /// The last 30 days, oldest first.
    pub uptime: Vec<UptimeDay>,
    /// Its hourly proofs over the last 48 hours, newest first.
    pub proofs: Vec<HourOutcome>,
    /// Its blocks over the last 48 hours, newest first.
    pub blocks: Vec<HourOutcome>,
    /// Its hourly proofs over the last 30 days, by outcome.
    pub proofs_30d: ProofCounts,
}

/// Hourly proofs by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ProofCounts {
    pub passed: i64,
    /// Answered wrongly, late, or with less VRAM than the model has.
    pub failed: i64,
    /// Asked for and never answered.
    pub unanswered: i64,
}

/// The directory's columns: the public ones, nothing else.
const PUBLIC_COLUMNS: &str = "d.id, d.gpu_model, d.gpu_count, d.gpus_free, d.cpu_cores, d.ram_gib, d.region, d.country, \
     d.status, d.status = 'busy' AS hired, CAST(d.reliability_bps AS DOUBLE PRECISION) / 10000.0 AS reliability, \
     d.price_per_gpu_hour, d.verified_at";

/// The statuses a directory lists (verified and not retired). The directory's partial indexes
/// repeat this list: change both together.
const SHOWN: [&str; 5] = ["available", "busy", "offline", "maintenance", "suspended"];

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: String,
    gpu_model: Option<String>,
    gpu_count: i64,
    gpus_free: i64,
    cpu_cores: i64,
    ram_gib: i64,
    region: String,
    country: String,
    status: String,
    hired: bool,
    reliability: f64,
    price_per_gpu_hour: i64,
    verified_at: Option<i64>,
}

impl From<DeviceRow> for ExplorerDevice {
    fn from(r: DeviceRow) -> Self {
        ExplorerDevice {
            id: r.id,
            gpu_model: r.gpu_model,
            gpu_count: r.gpu_count,
            gpus_free: r.gpus_free,
            cpu_cores: r.cpu_cores,
            ram_gib: r.ram_gib,
            region: r.region,
            country: r.country,
            status: r.status,
            hired: r.hired,
            reliability: (r.reliability * 10_000.0).round() / 10_000.0,
            price_per_gpu_hour: Money::from_micros(r.price_per_gpu_hour, Currency::Usd)
                .to_decimal(),
            listed_since: r.verified_at.map(Timestamp::from),
        }
    }
}

impl DeviceFilter {
    /// Checks the filter against the catalog: an unknown model or region, a status the
    /// directory does not list, a reliability outside 0 to 1.
    pub fn check(&self, explorer: &Explorer) -> Result<()> {
        if let Some(m) = &self.gpu_model
            && m != "cpu"
            && explorer.catalog.gpu_model(m).is_none()
        {
            return Err(Error::validation("gpu_model", "not a model of the catalog"));
        }
        if let Some(r) = &self.region
            && explorer.catalog.region(r).is_none()
        {
            return Err(Error::validation("region", "not a region of the catalog"));
        }
        if let Some(s) = &self.status
            && !SHOWN.contains(&s.as_str())
        {
            return Err(Error::validation(
                "status",
                format!("one of {}", SHOWN.join(", ")),
            ));
        }
        if let Some(r) = self.min_reliability
            && !(0.0..=1.0).contains(&r)
        {
            return Err(Error::validation("min_reliability", "between 0 and 1"));
        }
        Ok(())
    }
}

impl Explorer {
    /// The directory, by id, filtered.
    pub async fn devices(
        &self,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> Result<Page<ExplorerDevice>> {
        filter.check(self)?;
        // Only the filters given, so the planner sees plain equalities and uses the directory's
        // index; the values are bound, the numbers are the checked ones.
        let shown: Vec<String> = SHOWN.iter().map(|s| format!("'{s}'")).collect();
        let mut conds = vec![
            format!("d.status IN ({})", shown.join(", ")),
            "d.id > $1".to_string(),
        ];
        let mut texts: Vec<&str> = vec![page.after_id()];
        match filter.gpu_model.as_deref() {
            Some("cpu") => conds.push("d.gpu_model IS NULL".into()),
            Some(m) => {
                texts.push(m);
                conds.push(format!("d.gpu_model = ${}", texts.len()));
            }
            None => {}
        }
        if let Some(r) = filter.region.as_deref() {
            texts.push(r);
            conds.push(format!("d.region = ${}", texts.len()));
        }
        if let Some(s) = filter.status.as_deref() {
            texts.push(s);
            conds.push(format!("d.status = ${}", texts.len()));
        }
        match filter.hired {
            Some(true) => conds.push("d.status = 'busy'".into()),
            Some(false) => conds.push("d.status <> 'busy'".into()),
            None => {}
        }
        let min_bps = filter
            .min_reliability
            .map_or(0, |r| (r * 10_000.0).round() as i64);
        if min_bps > 0 {
            conds.push(format!("d.reliability_bps >= {min_bps}"));
        }
        let sql = format!(
            "SELECT {PUBLIC_COLUMNS} FROM devices d WHERE {} ORDER BY d.id LIMIT {}",
            conds.join(" AND "),
            page.fetch_limit()
        );
        let rows: Vec<DeviceRow> = db_run!(&self.db, |p| {
            let mut q = sqlx::query_as(&sql);
            for t in &texts {
                q = q.bind(*t);
            }
            q.fetch_all(p).await
        })
        .map_err(DbError::from)?;
        let devices: Vec<ExplorerDevice> = rows.into_iter().map(ExplorerDevice::from).collect();
        Ok(Page::from_rows(devices, page, |d| d.id.as_str()))
    }

    /// A device the directory lists; any other is not found.
    async fn device_row(&self, id: &str) -> Result<ExplorerDevice> {
        let shown: Vec<String> = SHOWN.iter().map(|s| format!("'{s}'")).collect();
        let sql = format!(
            "SELECT {PUBLIC_COLUMNS} FROM devices d WHERE d.id = $1 AND d.status IN ({})",
            shown.join(", ")
        );
        let row: Option<DeviceRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        Ok(ExplorerDevice::from(row.ok_or(Error::NotFound("device"))?))
    }

    /// One device's page; a device the directory does not list is not found.
    pub async fn device(&self, id: &str) -> Result<ExplorerDeviceDetail> {
        let device = self.device_row(id).await?;
        let hour = now_micros().div_euclid(MICROS_PER_HOUR);
        let days: Vec<(i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour / 24, CAST(SUM(minutes) AS BIGINT) FROM device_uptime \
             WHERE device_id = $1 AND hour >= $2 GROUP BY hour / 24 ORDER BY hour / 24"
        )
        .bind(id)
        .bind((hour / 24 - 29) * 24)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let proofs: Vec<(i64, Option<String>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour, outcome FROM device_proofs WHERE device_id = $1 AND hour >= $2 ORDER BY hour DESC"
        )
        .bind(id)
        .bind(hour - 48)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let blocks: Vec<(i64, i64, Option<String>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour, amount, reason FROM block_rewards WHERE device_id = $1 AND hour >= $2 ORDER BY hour DESC"
        )
        .bind(id)
        .bind(hour - 48)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let co_staked: i64 = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM costake_positions \
             WHERE device_id = $1 AND status IN ('active', 'unstaking')"
        )
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        let outcomes: Vec<(Option<String>, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT outcome, COUNT(*) FROM device_proofs WHERE device_id = $1 AND hour >= $2 GROUP BY outcome"
        )
        .bind(id)
        .bind(hour - 30 * 24)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut proofs_30d = ProofCounts::default();
        for (outcome, n) in outcomes {
            match outcome.as_deref() {
                Some("passed") => proofs_30d.passed += n,
                Some(_) => proofs_30d.failed += n,
                None => proofs_30d.unanswered += n,
            }
        }
        let at = |h: i64| Timestamp::from(h * MICROS_PER_HOUR);
        Ok(ExplorerDeviceDetail {
            proofs_30d,
            required_stake: io(self
                .stake
                .required(device.gpu_model.as_deref(), device.gpu_count)),
            co_staked: io(co_staked),
            uptime: days
                .into_iter()
                .map(|(day, minutes)| UptimeDay {
                    day: iocloud_db::time::to_rfc3339(day * 24 * MICROS_PER_HOUR)[..10].to_string(),
                    minutes: minutes.min(1440),
                })
                .collect(),
            proofs: proofs.into_iter().map(proof_outcome).collect(),
            blocks: blocks
                .into_iter()
                .map(|(h, amount, reason)| HourOutcome {
                    hour: at(h),
                    outcome: reason.unwrap_or_else(|| "earned".into()),
                    amount: Some(io(amount)),
                })
                .collect(),
            device,
        })
    }
}

/// An hourly proof as the explorer shows it.
fn proof_outcome((hour, outcome): (i64, Option<String>)) -> HourOutcome {
    HourOutcome {
        hour: Timestamp::from(hour * MICROS_PER_HOUR),
        outcome: outcome.unwrap_or_else(|| "unanswered".into()),
        amount: None,
    }
}

impl Explorer {
    /// A device's verification history: its hourly proofs, newest first.
    pub async fn device_proofs(&self, id: &str, page: &PageRequest) -> Result<Page<HourOutcome>> {
        let before = super::blocks::cursor_hour(page)?;
        // Only a device the directory lists has a public history.
        self.device_row(id).await?;
        let rows: Vec<(i64, Option<String>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour, outcome FROM device_proofs WHERE device_id = $1 AND hour < $2 \
             ORDER BY hour DESC LIMIT $3"
        )
        .bind(id)
        .bind(before)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let keyed: Vec<(String, HourOutcome)> = rows
            .into_iter()
            .map(|r| (format!("h{}", r.0), proof_outcome(r)))
            .collect();
        Ok(Page::from_rows(keyed, page, |(k, _)| k).map(|(_, o)| o))
    }
}
