//! The GPU and region catalogs (seeded by migration), and the latency model between places.
//!
//! Read once at start-up: the catalogs change only with a migration.

use std::collections::HashMap;

use iocloud_billing::{Currency, Money};
use iocloud_db::{Db, DbError, db_run};
use serde::Serialize;

use crate::Result;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GpuModel {
    /// kebab-case id, e.g. `h100-sxm`.
    pub id: String,
    pub name: String,
    pub vram_gib: i64,
    pub fp16_tflops: f64,
    pub bf16_tflops: f64,
    /// `datacenter`, `workstation` or `consumer`.
    pub class: String,
    /// Stake per GPU is 200 $IO times this.
    pub staking_multiplier: i64,
    #[serde(skip)]
    pub price_floor: i64,
    #[serde(skip)]
    pub price_ceiling: i64,
    /// Most GPUs of this model one machine can hold.
    pub max_per_node: i64,
}

/// A GPU model as the API shows it: prices as decimal USD strings.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GpuModelView {
    #[serde(flatten)]
    pub model: GpuModel,
    /// USD per GPU-hour.
    pub price_floor: String,
    /// USD per GPU-hour.
    pub price_ceiling: String,
}

impl From<&GpuModel> for GpuModelView {
    fn from(m: &GpuModel) -> Self {
        GpuModelView {
            model: m.clone(),
            price_floor: usd(m.price_floor),
            price_ceiling: usd(m.price_ceiling),
        }
    }
}

fn usd(micros: i64) -> String {
    Money::from_micros(micros, Currency::Usd).to_decimal()
}

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Region {
    /// e.g. `eu-central`.
    pub code: String,
    pub name: String,
    pub continent: String,
    pub lat: f64,
    pub lon: f64,
}

/// A CPU-only device is priced per node-hour within these bounds (USD micro-units).
pub const CPU_PRICE_FLOOR: i64 = 10_000;
pub const CPU_PRICE_CEILING: i64 = 2_000_000;

/// Both catalogs, in catalog order, with lookups by id.
#[derive(Debug, Default)]
pub struct Catalog {
    pub gpu_models: Vec<GpuModel>,
    pub regions: Vec<Region>,
    gpu_index: HashMap<String, usize>,
    region_index: HashMap<String, usize>,
}

impl Catalog {
    pub async fn load(db: &Db) -> Result<Catalog> {
        let gpu_models: Vec<GpuModel> = db_run!(db, |p| sqlx::query_as(
            "SELECT id, name, vram_gib, fp16_tflops, bf16_tflops, class, staking_multiplier, price_floor, price_ceiling, max_per_node \
             FROM gpu_models ORDER BY staking_multiplier DESC, fp16_tflops DESC, id"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let regions: Vec<Region> = db_run!(db, |p| sqlx::query_as(
            "SELECT code, name, continent, lat, lon FROM regions ORDER BY continent, code"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        Ok(Catalog::new(gpu_models, regions))
    }

    pub fn new(gpu_models: Vec<GpuModel>, regions: Vec<Region>) -> Catalog {
        let gpu_index = gpu_models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        let region_index = regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.code.clone(), i))
            .collect();
        Catalog {
            gpu_models,
            regions,
            gpu_index,
            region_index,
        }
    }

    pub fn gpu_model(&self, id: &str) -> Option<&GpuModel> {
        self.gpu_index.get(id).map(|i| &self.gpu_models[*i])
    }

    pub fn region(&self, code: &str) -> Option<&Region> {
        self.region_index.get(code).map(|i| &self.regions[*i])
    }
}

/// Mean radius of the Earth, km.
const EARTH_RADIUS_KM: f64 = 6371.0;
/// Light in fibre covers about 200 km per millisecond.
const FIBRE_KM_PER_MS: f64 = 200.0;
/// Cables do not follow great circles: real paths are about 1.5 times longer.
const ROUTE_FACTOR: f64 = 1.5;
/// Switching, queueing and the last mile, per round trip.
const BASE_RTT_MS: f64 = 2.0;

/// Great-circle distance between two points (degrees), km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// Estimated round-trip time between two points, ms: a fixed 2 ms plus there and back along a
/// path 1.5 times the great-circle distance at 200 km/ms (docs/providers.md).
pub fn rtt_ms(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    BASE_RTT_MS + 2.0 * distance_km(lat1, lon1, lat2, lon2) * ROUTE_FACTOR / FIBRE_KM_PER_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_rtts_are_plausible() {
        // Frankfurt to Ashburn is about 6,500 km; a real RTT there is 85-95 ms.
        let d = distance_km(50.11, 8.68, 39.04, -77.49);
        assert!((6400.0..6700.0).contains(&d), "{d}");
        let rtt = rtt_ms(50.11, 8.68, 39.04, -77.49);
        assert!((80.0..110.0).contains(&rtt), "{rtt}");
        // A point to itself is the fixed cost only; the model is symmetric.
        assert_eq!(rtt_ms(1.0, 2.0, 1.0, 2.0), BASE_RTT_MS);
        assert_eq!(
            rtt_ms(-33.87, 151.21, 51.51, -0.13),
            rtt_ms(51.51, -0.13, -33.87, 151.21)
        );
        // Antipodes: half the circumference.
        let half = distance_km(0.0, 0.0, 0.0, 180.0);
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
    }
}
