//! Quotes: a placement request answered with ranked plans whose prices hold for five minutes.
//! A cluster can later cite the quote; until then nothing is reserved.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::sync::Arc;

use crate::capacity::Capacity;
use crate::governance::Governance;
use crate::placement::{Colocation, Plan, Preference, Request};
use crate::providers::Catalog;
use crate::{Action, Actor, Error, ErrorCode, Result};

/// How long a quote's prices hold.
pub const QUOTE_TTL_MICROS: i64 = 5 * 60 * 1_000_000;
const MAX_GPUS: i64 = 4_096;
const MAX_HOURS: i64 = 720;

/// What to place. Every field but `gpu_count` is optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "QuoteInput")
)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// A model id from `/v1/gpu-models`, e.g. `h100-sxm`.
    pub gpu_model: Option<String>,
    /// Any model of this class: `datacenter`, `workstation` or `consumer`.
    pub gpu_class: Option<String>,
    /// 1 to 4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub gpu_count: i64,
    /// GPUs on every node; any split when absent.
    #[schema(minimum = 1)]
    pub gpus_per_node: Option<i64>,
    /// 0 to 1024.
    #[schema(minimum = 0, maximum = 1024)]
    pub min_vram_gib: Option<i64>,
    /// 1 to 720; 1 when absent.
    #[schema(minimum = 1, maximum = 720)]
    pub duration_hours: Option<i64>,
    /// Region codes from `/v1/regions`; all when absent.
    #[schema(min_items = 1)]
    pub regions: Option<Vec<String>>,
    /// Where the user is, for latency.
    pub location: Option<crate::providers::devices::Location>,
    /// No node farther than this estimated RTT from `location`.
    /// 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_rtt_ms: Option<i64>,
    /// USD, e.g. `"3.00"`: more than zero.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:0*[1-9][0-9]{0,12}(?:\.[0-9]{1,6})?|0+\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "3.00"
    )]
    pub max_price_per_gpu_hour: Option<String>,
    /// 0 to 400000.
    #[schema(minimum = 0, maximum = 400000)]
    pub min_bandwidth_mbps: Option<i64>,
    /// 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub min_reliability: Option<f64>,
    /// `any` (the default) or `same_region`.
    #[schema(pattern = r"^(?:any|same_region)$")]
    pub colocation: Option<String>,
    /// Every two nodes within this estimated RTT of each other: 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_rtt_between_nodes_ms: Option<i64>,
    /// At least this many distinct providers: 0 to 64.
    #[schema(minimum = 0, maximum = 64)]
    pub min_providers: Option<i64>,
    /// `cost`, `balanced` (the default) or `latency`: which plan comes first.
    pub preference: Option<Preference>,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "PlanNode")
)]
pub struct PlanNodeView {
    pub device_id: String,
    pub region: String,
    pub gpu_model: String,
    pub gpus: u32,
    /// USD.
    pub price_per_gpu_hour: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Plan")
)]
pub struct PlanView {
    /// `cheapest`, `balanced` or `lowest_latency`.
    pub label: String,
    pub nodes: Vec<PlanNodeView>,
    /// USD per hour for the whole cluster.
    pub price_per_hour: String,
    /// USD for the requested duration.
    pub total: String,
    pub estimated_rtt_ms: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Quote")
)]
pub struct Quote {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub duration_hours: i64,
    pub plans: Vec<PlanView>,
    /// The version of the protocol's parameters in force when it was priced
    /// (`/v1/governance/params`).
    #[serde(default = "launch_version")]
    pub params_version: i64,
}

/// Quotes stored before parameters were versioned were priced under the launch ones.
fn launch_version() -> i64 {
    1
}

fn usd(micros: i64) -> String {
    Money::from_micros(micros, Currency::Usd).to_decimal()
}

impl From<&Plan> for PlanView {
    fn from(p: &Plan) -> Self {
        PlanView {
            label: p.label.to_string(),
            nodes: p
                .nodes
                .iter()
                .map(|n| PlanNodeView {
                    device_id: n.device_id.clone(),
                    region: n.region.clone(),
                    gpu_model: n.model.clone(),
                    gpus: n.gpus,
                    price_per_gpu_hour: usd(n.price_per_gpu_hour),
                })
                .collect(),
            price_per_hour: usd(p.price_per_hour),
            total: usd(p.total),
            estimated_rtt_ms: p.estimated_rtt_ms,
        }
    }
}

fn within(field: &'static str, v: i64, lo: i64, hi: i64) -> Result<u32> {
    if (lo..=hi).contains(&v) {
        Ok(v as u32)
    } else {
        Err(Error::validation(
            field,
            format!("must be from {lo} to {hi}"),
        ))
    }
}

/// Placement quotes, and the placement requests they (and cluster specs) ask for.
#[derive(Clone)]
pub struct Quotes {
    db: iocloud_db::Db,
    catalog: Arc<Catalog>,
    capacity: Capacity,
    governance: Governance,
}

impl Quotes {
    pub(crate) fn new(
        db: iocloud_db::Db,
        catalog: Arc<Catalog>,
        capacity: Capacity,
        governance: Governance,
    ) -> Quotes {
        Quotes {
            db,
            catalog,
            capacity,
            governance,
        }
    }

    /// The placement request a quote asks for, checked field by field.
    pub fn placement_request(&self, q: &QuoteRequest) -> Result<Request> {
        let mut r = Request::new(within("gpu_count", q.gpu_count, 1, MAX_GPUS)?);
        r.models = match (&q.gpu_model, &q.gpu_class) {
            (Some(_), Some(_)) => {
                return Err(Error::validation(
                    "gpu_class",
                    "give a model or a class, not both",
                ));
            }
            (Some(m), None) => {
                self.catalog.gpu_model(m).ok_or_else(|| {
                    Error::validation(
                        "gpu_model",
                        format!("unknown model {m}; see /v1/gpu-models"),
                    )
                })?;
                vec![m.clone()]
            }
            (None, Some(class)) => {
                let models: Vec<String> = self
                    .catalog
                    .gpu_models
                    .iter()
                    .filter(|m| m.class == *class)
                    .map(|m| m.id.clone())
                    .collect();
                if models.is_empty() {
                    return Err(Error::validation(
                        "gpu_class",
                        "use datacenter, workstation or consumer",
                    ));
                }
                models
            }
            (None, None) => Vec::new(),
        };
        if let Some(n) = q.gpus_per_node {
            let most = r
                .models
                .iter()
                .filter_map(|m| self.catalog.gpu_model(m))
                .map(|m| m.max_per_node)
                .max()
                .unwrap_or(8);
            let n = within("gpus_per_node", n, 1, most)?;
            if !r.gpu_count.is_multiple_of(n) {
                return Err(Error::validation(
                    "gpus_per_node",
                    "gpu_count must be a multiple of it",
                ));
            }
            r.gpus_per_node = Some(n);
        }
        r.min_vram_gib = within("min_vram_gib", q.min_vram_gib.unwrap_or(0), 0, 1_024)?;
        r.duration_hours = within(
            "duration_hours",
            q.duration_hours.unwrap_or(1),
            1,
            MAX_HOURS,
        )?;
        if let Some(regions) = &q.regions {
            if regions.is_empty() {
                return Err(Error::validation(
                    "regions",
                    "leave it out for every region",
                ));
            }
            for code in regions {
                self.catalog.region(code).ok_or_else(|| {
                    Error::validation("regions", format!("unknown region {code}; see /v1/regions"))
                })?;
            }
            r.regions = regions.clone();
        }
        if let Some(l) = &q.location {
            if !(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon) {
                return Err(Error::validation(
                    "location",
                    "latitude −90 to 90, longitude −180 to 180",
                ));
            }
            r.user_location = Some((l.lat, l.lon));
        }
        if let Some(ms) = q.max_rtt_ms {
            if q.location.is_none() {
                return Err(Error::validation(
                    "max_rtt_ms",
                    "needs a location to measure from",
                ));
            }
            r.max_rtt_ms = Some(within("max_rtt_ms", ms, 1, 1_000)?);
        }
        if let Some(text) = &q.max_price_per_gpu_hour {
            let price = Money::parse(text, Currency::Usd)
                .ok()
                .filter(|m| m.is_positive())
                .ok_or_else(|| {
                    Error::validation(
                        "max_price_per_gpu_hour",
                        "a positive USD amount, like \"3.00\"",
                    )
                })?;
            r.max_price = Some(price.micros());
        }
        r.min_bandwidth_mbps = within(
            "min_bandwidth_mbps",
            q.min_bandwidth_mbps.unwrap_or(0),
            0,
            400_000,
        )?;
        if let Some(rel) = q.min_reliability {
            if !(0.0..=1.0).contains(&rel) {
                return Err(Error::validation("min_reliability", "from 0 to 1"));
            }
            r.min_reliability_bps = (rel * 10_000.0).round() as u32;
        }
        r.colocation = match (q.colocation.as_deref(), q.max_rtt_between_nodes_ms) {
            (Some("same_region"), Some(_)) => {
                return Err(Error::validation(
                    "max_rtt_between_nodes_ms",
                    "nodes in one region are already close",
                ));
            }
            (Some("same_region"), None) => Colocation::SameRegion,
            (None | Some("any"), Some(ms)) => {
                Colocation::MaxRttMs(within("max_rtt_between_nodes_ms", ms, 1, 1_000)?)
            }
            (None | Some("any"), None) => Colocation::Any,
            (Some(_), _) => return Err(Error::validation("colocation", "use any or same_region")),
        };
        r.min_providers = within("min_providers", q.min_providers.unwrap_or(0), 0, 64)?;
        if r.min_providers > r.units() {
            return Err(Error::validation(
                "min_providers",
                "more providers than the cluster has nodes",
            ));
        }
        r.preference = q.preference.unwrap_or_default();
        Ok(r)
    }

    /// Ranked plans for the request, kept for five minutes under a quote id.
    pub async fn create(&self, actor: &Actor, q: &QuoteRequest) -> Result<Quote> {
        actor.authorize(Action::QuotesCreate)?;
        let request = self.placement_request(q)?;
        let plans = self.capacity.plans(&request).await?;
        let now = now_micros();
        let quote = Quote {
            id: new_id("quo"),
            expires_at: Timestamp::from_micros(now + QUOTE_TTL_MICROS),
            duration_hours: i64::from(request.duration_hours),
            plans: plans.iter().map(PlanView::from).collect(),
            params_version: self.governance.in_force_at(now).version,
        };
        let body = serde_json::to_string(&quote).map_err(|e| Error::Internal(e.to_string()))?;
        let asked = serde_json::to_string(q).map_err(|e| Error::Internal(e.to_string()))?;
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO placement_quotes (id, org_id, request, quote, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&quote.id)
        .bind(&actor.org_id)
        .bind(&asked)
        .bind(&body)
        .bind(now + QUOTE_TTL_MICROS)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(quote)
    }

    /// One of the organisation's quotes (another organisation's answers 404).
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Quote> {
        actor.authorize(Action::ResourcesRead)?;
        Ok(self.read(&actor.org_id, id).await?.0)
    }

    /// A quote a cluster cites: the organisation's, and not yet expired.
    pub(crate) async fn cited(&self, org_id: &OrgId, id: &str) -> Result<Quote> {
        let (quote, expires_at) = self.read(org_id, id).await?;
        if expires_at <= now_micros() {
            return Err(Error::Conflict {
                code: ErrorCode::QuoteExpired,
                message: format!("quote {id} has expired; ask for a new one"),
            });
        }
        Ok(quote)
    }

    /// The quote and when it expires, µs.
    async fn read(&self, org_id: &OrgId, id: &str) -> Result<(Quote, i64)> {
        let found: Option<(String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT quote, expires_at FROM placement_quotes WHERE id = $1 AND org_id = $2"
        )
        .bind(id)
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let (body, expires_at) = found.ok_or(Error::NotFound("quote"))?;
        let quote = serde_json::from_str(&body).map_err(|e| Error::Internal(e.to_string()))?;
        Ok((quote, expires_at))
    }
}
