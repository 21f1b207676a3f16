//! GraphQL for placement quotes. Same service as `POST /v1/quotes`; the request, the quote and
//! its plans are the domain's own types.

use async_graphql::{Context, Object};
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
