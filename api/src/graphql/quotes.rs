//! GraphQL for offers and placement quotes. Same services as `GET /v1/offers` and `POST /v1/quotes`; the request, the quote and
//! its plans are the domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::offers::{OfferFilter, OfferView};
use iocloud_control::quotes::{Quote, QuoteRequest};

use super::schema::{actor, control, gql_error};

type GqlResult<T> = async_graphql::Result<T>;

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

    /// What can be rented now, by GPU model and region (as `GET /v1/offers`).
    async fn offers(
        &self,
        ctx: &Context<'_>,
        filter: Option<OfferFilter>,
    ) -> GqlResult<Vec<OfferView>> {
        control(ctx)
            .offers
            .list(actor(ctx)?, &filter.unwrap_or_default())
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
    async fn quote(&self, ctx: &Context<'_>, input: QuoteRequest) -> GqlResult<Quote> {
        control(ctx)
            .quotes
            .create(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }
}
