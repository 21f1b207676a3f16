//! The hourly reward blocks as anyone may see them: the emission and its pools, eligible and
//! ineligible devices (by reason), the network the hour saw, and the top earners. Every figure
//! is read from the block's own row, written with the block.

use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{Explorer, io};
use crate::page::{Page, PageRequest};
use crate::rewards::MICROS_PER_HOUR;
use crate::{Error, Result};

/// One hourly block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExplorerBlock {
    /// The hour's start; the block covers the hour that follows.
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// $IO minted, and its GPU and CPU pools.
    pub emission: String,
    pub gpu_pool: String,
    pub cpu_pool: String,
    /// $IO paid out (what no device earned stays in the rewards pool).
    pub paid: String,
    pub eligible_devices: i64,
    pub ineligible_devices: i64,
    /// Devices listed in the hour and their GPUs; of them, those serving a rental.
    pub listed_devices: i64,
    pub listed_gpus: i64,
    pub rented_devices: i64,
    pub rented_gpus: i64,
}

/// Ineligible devices of a block failing one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ReasonCount {
    pub reason: String,
    pub devices: i64,
}

/// One of a block's top earners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct TopEarner {
    pub device_id: String,
    /// The catalog's model id; `cpu` for a CPU-only device.
    pub gpu_model: String,
    pub region: String,
    pub amount: String,
}

/// One block with its breakdowns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExplorerBlockDetail {
    pub block: ExplorerBlock,
    pub ineligible_by_reason: Vec<ReasonCount>,
    /// At most ten, highest first.
    pub top_earners: Vec<TopEarner>,
}

const COLUMNS: &str = "hour, emission, gpu_pool, cpu_pool, gpu_paid, cpu_paid, eligible_devices, ineligible_devices, \
     listed_devices, listed_gpus, rented_devices, rented_gpus";

#[derive(sqlx::FromRow)]
struct Row {
    hour: i64,
    emission: i64,
    gpu_pool: i64,
    cpu_pool: i64,
    gpu_paid: i64,
    cpu_paid: i64,
    eligible_devices: i64,
    ineligible_devices: i64,
    listed_devices: i64,
    listed_gpus: i64,
    rented_devices: i64,
    rented_gpus: i64,
}

#[derive(sqlx::FromRow)]
struct DetailRow {
    #[sqlx(flatten)]
    row: Row,
    ineligible_by_reason: Option<String>,
    top_earners: Option<String>,
}

impl From<Row> for ExplorerBlock {
    fn from(r: Row) -> Self {
        ExplorerBlock {
            hour: Timestamp::from(r.hour * MICROS_PER_HOUR),
            emission: io(r.emission),
            gpu_pool: io(r.gpu_pool),
            cpu_pool: io(r.cpu_pool),
            paid: io(r.gpu_paid + r.cpu_paid),
            eligible_devices: r.eligible_devices,
            ineligible_devices: r.ineligible_devices,
            listed_devices: r.listed_devices,
            listed_gpus: r.listed_gpus,
            rented_devices: r.rented_devices,
            rented_gpus: r.rented_gpus,
        }
    }
}

/// A block's hour as its cursor: the hour number, wrapped like every cursor.
pub(super) fn cursor_hour(page: &PageRequest) -> Result<i64> {
    match page.after.as_deref() {
        None => Ok(i64::MAX),
        Some(h) => h
            .strip_prefix("h")
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| Error::validation("cursor", "is not a cursor this API issued")),
    }
}

impl Explorer {
    /// The blocks, newest first.
    pub async fn blocks(&self, page: &PageRequest) -> Result<Page<ExplorerBlock>> {
        let before = cursor_hour(page)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM reward_blocks WHERE hour < $1 ORDER BY hour DESC LIMIT $2"
        );
        let rows: Vec<Row> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(before)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let keyed: Vec<(String, Row)> = rows
            .into_iter()
            .map(|r| (format!("h{}", r.hour), r))
            .collect();
        Ok(Page::from_rows(keyed, page, |(k, _)| k).map(|(_, r)| ExplorerBlock::from(r)))
    }

    /// One block (`hour`: its start, on the hour).
    pub async fn block(&self, hour: Timestamp) -> Result<ExplorerBlockDetail> {
        let micros = hour.micros();
        if micros.rem_euclid(MICROS_PER_HOUR) != 0 {
            return Err(Error::validation(
                "hour",
                "a block starts on the hour, e.g. 2026-12-06T14:00:00Z",
            ));
        }
        let sql = format!(
            "SELECT {COLUMNS}, ineligible_by_reason, top_earners FROM reward_blocks WHERE hour = $1"
        );
        let row: Option<DetailRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(micros.div_euclid(MICROS_PER_HOUR))
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        let DetailRow {
            row,
            ineligible_by_reason: reasons,
            top_earners: top,
        } = row.ok_or(Error::NotFound("block"))?;
        let reasons: std::collections::BTreeMap<String, i64> = reasons
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let mut ineligible_by_reason: Vec<ReasonCount> = reasons
            .into_iter()
            .map(|(reason, devices)| ReasonCount { reason, devices })
            .collect();
        ineligible_by_reason
            .sort_by(|a, b| b.devices.cmp(&a.devices).then(a.reason.cmp(&b.reason)));
        let top: Vec<serde_json::Value> = top
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok(ExplorerBlockDetail {
            block: row.into(),
            ineligible_by_reason,
            top_earners: top
                .iter()
                .map(|v| TopEarner {
                    device_id: text(v, "device_id"),
                    gpu_model: text(v, "gpu_model"),
                    region: text(v, "region"),
                    amount: io(v["amount"].as_i64().unwrap_or(0)),
                })
                .collect(),
        })
    }
}
