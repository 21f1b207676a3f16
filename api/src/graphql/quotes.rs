//! GraphQL for placement quotes. Same service as `POST /v1/quotes`; the quote and its plans
//! answer in the domain's own types.

use async_graphql::{Context, Enum, InputObject, Object};
use iocloud_control::placement::Preference;
use iocloud_control::providers::devices::Location;
use iocloud_control::quotes::{Quote, QuoteRequest};

use super::schema::{actor, control, gql_error};

type GqlResult<T> = async_graphql::Result<T>;

// The inputs below copy domain types that quotes share with clusters and devices, whose GraphQL
// shapes have not moved to the domain yet: `Preference` (`placement`) is converted by the
// cluster input, and `Location` lives with the devices. Once those derive `Enum` and
// `InputObject`, `QuoteRequest` can derive `QuoteInput` and these go.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "Preference")]
pub enum GqlPreference {
    Cost,
    Balanced,
    Latency,
}

impl From<GqlPreference> for Preference {
    fn from(p: GqlPreference) -> Self {
        match p {
            GqlPreference::Cost => Preference::Cost,
            GqlPreference::Balanced => Preference::Balanced,
            GqlPreference::Latency => Preference::Latency,
        }
    }
}

#[derive(InputObject)]
#[graphql(name = "LocationInput")]
pub struct GqlLocationInput {
    pub lat: f64,
    pub lon: f64,
}

/// The fields of `POST /v1/quotes`; every one but `gpuCount` optional.
#[derive(InputObject)]
#[graphql(name = "QuoteInput")]
pub struct GqlQuoteInput {
    gpu_model: Option<String>,
    gpu_class: Option<String>,
    gpu_count: i64,
    gpus_per_node: Option<i64>,
    min_vram_gib: Option<i64>,
    duration_hours: Option<i64>,
    regions: Option<Vec<String>>,
    location: Option<GqlLocationInput>,
    max_rtt_ms: Option<i64>,
    max_price_per_gpu_hour: Option<String>,
    min_bandwidth_mbps: Option<i64>,
    min_reliability: Option<f64>,
    colocation: Option<String>,
    max_rtt_between_nodes_ms: Option<i64>,
    min_providers: Option<i64>,
    preference: Option<GqlPreference>,
}

impl From<GqlQuoteInput> for QuoteRequest {
    fn from(i: GqlQuoteInput) -> Self {
        QuoteRequest {
            gpu_model: i.gpu_model,
            gpu_class: i.gpu_class,
            gpu_count: i.gpu_count,
            gpus_per_node: i.gpus_per_node,
            min_vram_gib: i.min_vram_gib,
            duration_hours: i.duration_hours,
            regions: i.regions,
            location: i.location.map(|l| Location {
                lat: l.lat,
                lon: l.lon,
            }),
            max_rtt_ms: i.max_rtt_ms,
            max_price_per_gpu_hour: i.max_price_per_gpu_hour,
            min_bandwidth_mbps: i.min_bandwidth_mbps,
            min_reliability: i.min_reliability,
            colocation: i.colocation,
            max_rtt_between_nodes_ms: i.max_rtt_between_nodes_ms,
            min_providers: i.min_providers,
            preference: i.preference.map(Into::into),
        }
    }
}

#[derive(Default)]
pub struct QuotesQuery;

#[Object]
impl QuotesQuery {
    /// A quote of the organisation.
    async fn quote(&self, ctx: &Context<'_>, id: String) -> GqlResult<Quote> {
        control(ctx)
            .quotes
            .get(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct QuotesMutation;

#[Object]
impl QuotesMutation {
    /// Ranked plans with prices held for five minutes under a new quote id (as `POST
    /// /v1/quotes`); `insufficient_capacity` (with `constraint`, `availableGpus` and `nearest`
    /// in the extensions) when nothing fits.
    async fn quote(&self, ctx: &Context<'_>, input: GqlQuoteInput) -> GqlResult<Quote> {
        control(ctx)
            .quotes
            .create(actor(ctx)?, &input.into())
            .await
            .map_err(gql_error)
    }
}
