//! Offers: what can be rented now, by GPU model and region, with the price range and the
//! reliability a customer can expect, filtered as they ask. The numbers come from the same
//! capacity index placement uses, synced first, so an offer shown is one a quote can place.

use std::sync::Arc;

use iocloud_billing::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::capacity::Capacity;
use crate::placement::Availability;
use crate::providers::Catalog;
use crate::{Action, Actor, Error, Result};

/// Which offers to show; every field optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "OfferFilter")
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OfferFilter {
    /// A model id from `/v1/gpu-models`, e.g. `h100-sxm`.
    pub gpu_model: Option<String>,
    /// `datacenter`, `workstation` or `consumer`.
    pub gpu_class: Option<String>,
    /// A region code from `/v1/regions`.
    pub region: Option<String>,
    /// A continent as `/v1/regions` names it, e.g. `europe`.
    pub continent: Option<String>,
    /// At least this many free GPUs in the model and region: 1 to 4096.
    pub min_gpus: Option<i64>,
    /// USD per GPU-hour: only offers whose cheapest device costs at most this.
    pub max_price_per_gpu_hour: Option<String>,
    /// 0 to 1: only offers whose median device is at least this reliable.
    pub min_reliability: Option<f64>,
    /// `price` (the default: cheapest first) or `gpus` (most free GPUs first).
    pub sort: Option<OfferSort>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "lowercase")]
pub enum OfferSort {
    #[default]
    Price,
    Gpus,
}

/// GPUs of one model free in one region now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Offer")
)]
pub struct OfferView {
    pub gpu_model: String,
    /// The model's name, e.g. `NVIDIA H100 SXM`.
    pub gpu_name: String,
    pub gpu_class: String,
    pub vram_gib: i64,
    pub region: String,
    pub region_name: String,
    pub continent: String,
    /// Machines with a free GPU.
    pub devices: i64,
    /// Distinct providers among them.
    pub providers: i64,
    pub gpus_free: i64,
    /// The most free GPUs on one machine: the largest node that needs no second one.
    pub max_gpus_per_node: i64,
    /// USD per GPU-hour, the cheapest machine.
    pub min_price_per_gpu_hour: String,
    /// USD per GPU-hour, the dearest machine.
    pub max_price_per_gpu_hour: String,
    /// The middle machine's reliability, 0 to 1.
    pub reliability: f64,
}

/// What can be rented now. Cheap to clone.
#[derive(Clone)]
pub struct Offers {
    catalog: Arc<Catalog>,
    capacity: Capacity,
}

struct Checked {
    max_price: Option<i64>,
    min_reliability_bps: Option<u32>,
    min_gpus: Option<u64>,
}

impl Offers {
    pub(crate) fn new(catalog: Arc<Catalog>, capacity: Capacity) -> Offers {
        Offers { catalog, capacity }
    }

    /// Every model and region with a free GPU that passes `filter`, sorted as it asks.
    pub async fn list(&self, actor: &Actor, filter: &OfferFilter) -> Result<Vec<OfferView>> {
        actor.authorize(Action::ResourcesRead)?;
        let checked = self.check(filter)?;
        let mut offers: Vec<OfferView> = self
            .capacity
            .availability()
            .await?
            .iter()
            .filter(|a| self.keeps(filter, &checked, a))
            .filter_map(|a| self.view(a))
            .collect();
        match filter.sort.unwrap_or_default() {
            OfferSort::Price => offers.sort_by(|a, b| {
                price_of(&a.min_price_per_gpu_hour)
                    .cmp(&price_of(&b.min_price_per_gpu_hour))
                    .then(b.gpus_free.cmp(&a.gpus_free))
            }),
            OfferSort::Gpus => offers.sort_by(|a, b| {
                b.gpus_free.cmp(&a.gpus_free).then(
                    price_of(&a.min_price_per_gpu_hour).cmp(&price_of(&b.min_price_per_gpu_hour)),
                )
            }),
        }
        Ok(offers)
    }

    /// The filter's values, each refused in words when out of range or unknown.
    fn check(&self, f: &OfferFilter) -> Result<Checked> {
        if let Some(m) = &f.gpu_model
            && self.catalog.gpu_model(m).is_none()
        {
            return Err(Error::validation(
                "gpu_model",
                format!("unknown model {m}; see /v1/gpu-models"),
            ));
        }
        if let Some(c) = &f.gpu_class
            && !matches!(c.as_str(), "datacenter" | "workstation" | "consumer")
        {
            return Err(Error::validation(
                "gpu_class",
                "datacenter, workstation or consumer",
            ));
        }
        if let Some(r) = &f.region
            && self.catalog.region(r).is_none()
        {
            return Err(Error::validation(
                "region",
                format!("unknown region {r}; see /v1/regions"),
            ));
        }
        if let Some(c) = &f.continent
            && !self.catalog.regions.iter().any(|r| &r.continent == c)
        {
            return Err(Error::validation(
                "continent",
                "a continent /v1/regions names, like europe",
            ));
        }
        let min_gpus = match f.min_gpus {
            Some(n) if !(1..=4_096).contains(&n) => {
                return Err(Error::validation("min_gpus", "must be from 1 to 4096"));
            }
            n => n.map(|n| n as u64),
        };
        let max_price = match &f.max_price_per_gpu_hour {
            Some(p) => Some(
                Money::parse(p, Currency::Usd)
                    .ok()
                    .filter(|m| m.is_positive())
                    .ok_or_else(|| {
                        Error::validation("max_price_per_gpu_hour", "a price in USD, like 2.50")
                    })?
                    .micros(),
            ),
            None => None,
        };
        let min_reliability_bps = match f.min_reliability {
            Some(r) if !(0.0..=1.0).contains(&r) => {
                return Err(Error::validation("min_reliability", "must be from 0 to 1"));
            }
            r => r.map(|r| (r * 10_000.0).round() as u32),
        };
        Ok(Checked {
            max_price,
            min_reliability_bps,
            min_gpus,
        })
    }

    fn keeps(&self, f: &OfferFilter, c: &Checked, a: &Availability) -> bool {
        let model = self.catalog.gpu_model(&a.model);
        let region = self.catalog.region(&a.region);
        f.gpu_model.as_ref().is_none_or(|m| *m == a.model)
            && f.gpu_class
                .as_ref()
                .is_none_or(|cl| model.is_some_and(|m| &m.class == cl))
            && f.region.as_ref().is_none_or(|r| *r == a.region)
            && f.continent
                .as_ref()
                .is_none_or(|ct| region.is_some_and(|r| &r.continent == ct))
            && c.min_gpus.is_none_or(|n| a.gpus_free >= n)
            && c.max_price.is_none_or(|p| a.min_price <= p)
            && c.min_reliability_bps
                .is_none_or(|r| a.median_reliability_bps >= r)
    }

    fn view(&self, a: &Availability) -> Option<OfferView> {
        let model = self.catalog.gpu_model(&a.model)?;
        let region = self.catalog.region(&a.region)?;
        let usd = |micros| Money::from_micros(micros, Currency::Usd).to_decimal();
        Some(OfferView {
            gpu_model: model.id.clone(),
            gpu_name: model.name.clone(),
            gpu_class: model.class.clone(),
            vram_gib: model.vram_gib,
            region: region.code.clone(),
            region_name: region.name.clone(),
            continent: region.continent.clone(),
            devices: i64::from(a.devices),
            providers: i64::from(a.providers),
            gpus_free: a.gpus_free as i64,
            max_gpus_per_node: i64::from(a.most_on_one_device).min(model.max_per_node),
            min_price_per_gpu_hour: usd(a.min_price),
            max_price_per_gpu_hour: usd(a.max_price),
            reliability: f64::from(a.median_reliability_bps) / 10_000.0,
        })
    }
}

/// A price this module wrote, back in micro-USD, for sorting.
fn price_of(text: &str) -> i64 {
    Money::parse(text, Currency::Usd).map_or(i64::MAX, |m| m.micros())
}
