//! The GPU and region catalogs (seeded by migration), and the latency model between places.
//!
//! Read once at start-up: the catalogs change only with a migration.

use std::collections::HashMap;

use iocloud_billing::{Currency, Money};
use iocloud_db::{Db, DbError, db_run};
use serde::Serialize;

use crate::Result;
pub use crate::placement::latency::{distance_km, rtt_ms};
use crate::placement::{Inventory, Place, PlacedModel};

// GraphQL shows a model only through `GpuModelView`, which flattens it; the name keeps the two
// apart and never shows.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "GpuModelFields")
)]
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
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub price_floor: i64,
    #[serde(skip)]
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub price_ceiling: i64,
    /// Most GPUs of this model one machine can hold.
    pub max_per_node: i64,
}

/// A GPU model as the API shows it: prices as decimal USD strings.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "GpuModel")
)]
pub struct GpuModelView {
    #[serde(flatten)]
    #[cfg_attr(feature = "graphql", graphql(flatten))]
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
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Region")
)]
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
    /// An empty placement inventory over the catalog's models and regions.
    pub fn inventory(&self) -> Inventory {
        let models = self
            .gpu_models
            .iter()
            .map(|m| PlacedModel {
                id: m.id.clone(),
                vram_gib: m.vram_gib.clamp(0, i64::from(u32::MAX)) as u32,
            })
            .collect();
        let places = self
            .regions
            .iter()
            .map(|r| Place {
                code: r.code.clone(),
                lat: r.lat,
                lon: r.lon,
            })
            .collect();
        Inventory::new(models, places)
    }

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
