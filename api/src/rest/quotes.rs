//! Quotes over REST: what can be rented now, where a cluster would go and what it would cost.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use iocloud_control::offers::{OfferFilter, OfferView};
use iocloud_control::quotes::{Quote, QuoteRequest};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, PlacementProblem, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_quote))
        .routes(routes!(get_quote))
        .routes(routes!(list_offers))
}

/// What can be rented now, by GPU model and region: free GPUs, machines and providers, the
/// price range and the median reliability. Cheapest first unless `sort=gpus`.
#[utoipa::path(get, path = "/v1/offers", tag = "placement", params(OfferFilter),
    responses((status = 200, body = [OfferView]), (status = 422, body = Problem)))]
async fn list_offers(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(filter): ApiQuery<OfferFilter>,
) -> ApiResult<Json<Vec<OfferView>>> {
    Ok(Json(s.control.offers.list(&actor, &filter).await?))
}

/// Ranked plans for a cluster (cheapest, balanced, lowest latency), with prices held for five
/// minutes. When nothing fits: 422 `insufficient_capacity`, naming the constraint that emptied
/// the candidates and the nearest request that would fit.
#[utoipa::path(post, path = "/v1/quotes", tag = "placement", request_body = QuoteRequest,
    responses((status = 201, body = Quote), (status = 422, body = PlacementProblem)))]
async fn create_quote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<QuoteRequest>,
) -> ApiResult<impl IntoResponse> {
    let quote = s.control.quotes.create(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(quote)))
}

/// A quote of the organisation.
#[utoipa::path(get, path = "/v1/quotes/{id}", tag = "placement",
    responses((status = 200, body = Quote), (status = 404, body = Problem)))]
async fn get_quote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(s.control.quotes.get(&actor, &id).await?))
}
