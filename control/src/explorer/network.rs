//! The network at a glance: devices and GPUs listed, hired and idle, by model and by region
//! (with each region's place, for the map), now; and the same hour by hour from the blocks,
//! which keep the network as their hour saw it.

use std::collections::{BTreeMap, BTreeSet};

use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{Explorer, LISTED_SQL};
use crate::Result;
use crate::rewards::MICROS_PER_HOUR;

/// Devices and GPUs of one GPU model on the market.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ModelCount {
    /// The catalog's model id; `cpu` for CPU-only devices.
    pub gpu_model: String,
    pub name: String,
    pub devices: i64,
    pub gpus: i64,
    /// GPUs taken by rentals now (for CPU-only devices: devices serving one).
    pub gpus_hired: i64,
}

/// Devices and GPUs of one region on the market, and where the region is.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct RegionCount {
    pub region: String,
    pub name: String,
    pub continent: String,
    /// The metro the region stands for (degrees).
    pub lat: f64,
    pub lon: f64,
    pub devices: i64,
    pub gpus: i64,
    pub gpus_hired: i64,
}

/// The network now.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NetworkNow {
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// Devices on the market (available or serving a rental).
    pub devices: i64,
    /// Devices serving a rental.
    pub devices_hired: i64,
    pub gpus: i64,
    pub gpus_hired: i64,
    /// GPUs hired over GPUs listed, percent (0 with none listed).
    pub utilisation_pct: f64,
    /// Countries with a device on the market.
    pub countries: i64,
    pub by_model: Vec<ModelCount>,
    pub by_region: Vec<RegionCount>,
}

/// The network in one hour, as its block saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NetworkHour {
    /// The hour's start.
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// Devices listed in the hour, and their GPUs.
    pub devices: i64,
    pub gpus: i64,
    /// Of those, the devices that served a rental in the hour, and their GPUs.
    pub rented_devices: i64,
    pub rented_gpus: i64,
    /// $IO backing the network in the hour (providers' stake and co-stake).
    pub staked: String,
}

/// The most hours one answer covers: 90 days.
pub const MAX_HOURS: i64 = 90 * 24;

impl Explorer {
    /// The network now: one grouped read of the devices on the market, at most every few
    /// seconds per replica.
    pub async fn network(&self) -> Result<NetworkNow> {
        if let Some((at, now)) = self.network.lock().as_ref()
            && at.elapsed() < super::NETWORK_FRESH
        {
            return Ok(now.clone());
        }
        let now = self.read_network().await?;
        *self.network.lock() = Some((std::time::Instant::now(), now.clone()));
        Ok(now)
    }

    /// The network now, read from the devices whatever this replica read last (the one-hour
    /// rollup the benchmark times).
    pub async fn network_fresh(&self) -> Result<NetworkNow> {
        self.read_network().await
    }

    async fn read_network(&self) -> Result<NetworkNow> {
        let sql = format!(
            "SELECT d.gpu_model, d.region, d.country, COUNT(*), \
             CAST(SUM(d.gpu_count) AS BIGINT), CAST(SUM(d.gpu_count - d.gpus_free) AS BIGINT), \
             CAST(SUM(CASE WHEN d.status = 'busy' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM devices d WHERE {LISTED_SQL} GROUP BY d.gpu_model, d.region, d.country"
        );
        type Group = (Option<String>, String, String, i64, i64, i64, i64);
        let groups: Vec<Group> = db_run!(&self.db, |p| sqlx::query_as(&sql).fetch_all(p).await)
            .map_err(DbError::from)?;
        let mut by_model: BTreeMap<String, ModelCount> = BTreeMap::new();
        let mut by_region: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        let mut countries = BTreeSet::new();
        let (mut devices, mut devices_hired, mut gpus, mut gpus_hired) = (0, 0, 0, 0);
        for (model, region, country, n, g, hired, busy) in groups {
            // A CPU-only device serving a rental counts as one hired unit of its kind.
            let hired_units = if model.is_some() { hired } else { busy };
            let key = model.clone().unwrap_or_else(|| "cpu".into());
            let m = by_model.entry(key.clone()).or_insert_with(|| ModelCount {
                name: model
                    .as_deref()
                    .and_then(|m| self.catalog.gpu_model(m))
                    .map_or_else(|| "CPU-only".to_string(), |m| m.name.clone()),
                gpu_model: key,
                ..Default::default()
            });
            m.devices += n;
            m.gpus += g;
            m.gpus_hired += hired_units;
            let r = by_region.entry(region).or_default();
            *r = (r.0 + n, r.1 + g, r.2 + hired);
            countries.insert(country);
            devices += n;
            devices_hired += busy;
            gpus += g;
            gpus_hired += hired;
        }
        let by_region = by_region
            .into_iter()
            .filter_map(|(code, (n, g, hired))| {
                let place = self.catalog.region(&code)?;
                Some(RegionCount {
                    region: code,
                    name: place.name.clone(),
                    continent: place.continent.clone(),
                    lat: place.lat,
                    lon: place.lon,
                    devices: n,
                    gpus: g,
                    gpus_hired: hired,
                })
            })
            .collect();
        let mut by_model: Vec<ModelCount> = by_model.into_values().collect();
        by_model.sort_by(|a, b| b.gpus.cmp(&a.gpus).then(a.gpu_model.cmp(&b.gpu_model)));
        Ok(NetworkNow {
            as_of: Timestamp::from(now_micros()),
            devices,
            devices_hired,
            gpus,
            gpus_hired,
            utilisation_pct: if gpus > 0 {
                (gpus_hired as f64 * 1000.0 / gpus as f64).round() / 10.0
            } else {
                0.0
            },
            countries: countries.len() as i64,
            by_model,
            by_region,
        })
    }

    /// The network hour by hour over the last `hours` hours (1 to [`MAX_HOURS`]) with a block,
    /// oldest first.
    pub async fn network_hours(&self, hours: i64) -> Result<Vec<NetworkHour>> {
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(crate::Error::validation(
                "hours",
                format!("between 1 and {MAX_HOURS}"),
            ));
        }
        let since = now_micros().div_euclid(MICROS_PER_HOUR) - hours;
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT hour, listed_devices, listed_gpus, rented_devices, rented_gpus, staked FROM reward_blocks \
             WHERE hour >= $1 ORDER BY hour"
        )
        .bind(since)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        Ok(rows
            .into_iter()
            .map(
                |(hour, devices, gpus, rented_devices, rented_gpus, staked)| NetworkHour {
                    hour: Timestamp::from(hour * MICROS_PER_HOUR),
                    devices,
                    gpus,
                    rented_devices,
                    rented_gpus,
                    staked: super::io(staked),
                },
            )
            .collect())
    }
}
