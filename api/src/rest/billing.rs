use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use iocloud_control::Page;
use iocloud_control::billing::{
    Balance, BillingPreference, Correction, CreditGrant, HoldView, IoRate, PostingView,
    PriceQuoteView,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balances))
        .routes(routes!(postings))
        .routes(routes!(list_holds))
        .routes(routes!(get_hold))
        .routes(routes!(get_preference, set_preference))
        .routes(routes!(grant_credit))
        .routes(routes!(correct))
        .routes(routes!(io_rate))
        .routes(routes!(create_price_quote))
        .routes(routes!(get_price_quote))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PostingParams {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    /// Only postings in this currency: USD, IOSD or IO.
    pub currency: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceBody {
    /// USD, IOSD or IO (in any case).
    #[schema(
        pattern = r"^(?:[Uu][Ss][Dd]|[Ii][Oo][Ss][Dd]|[Ii][Oo])$",
        example = "USD"
    )]
    currency: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditBody {
    org_id: String,
    /// A decimal string of the currency unit, e.g. "50.00": more than zero, at most six
    /// decimals.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:0*[1-9][0-9]{0,12}(?:\.[0-9]{1,6})?|0+\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "50.00"
    )]
    amount: String,
    /// USD, IOSD or IO (in any case).
    #[schema(
        pattern = r"^(?:[Uu][Ss][Dd]|[Ii][Oo][Ss][Dd]|[Ii][Oo])$",
        example = "USD"
    )]
    currency: String,
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "SLA credit for the outage of 2026-11-03"
    )]
    reason: String,
}

/// Available and held balances in every currency.
#[utoipa::path(get, path = "/v1/balances", tag = "billing", responses((status = 200, body = Vec<Balance>), (status = 403, body = Problem)))]
async fn balances(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Vec<Balance>>> {
    Ok(Json(s.control.billing.balances(&actor).await?))
}

/// Ledger postings of the organisation's accounts, oldest first.
#[utoipa::path(get, path = "/v1/ledger/postings", tag = "billing", params(PostingParams), responses((status = 200, body = Page<PostingView>)))]
async fn postings(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<PostingParams>,
) -> ApiResult<Json<Page<PostingView>>> {
    let page = iocloud_control::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        s.control
            .billing
            .postings(&actor, &page, q.currency.as_deref())
            .await?,
    ))
}

/// Holds on the organisation's balance (one per cluster).
#[utoipa::path(get, path = "/v1/holds", tag = "billing", params(ListParams), responses((status = 200, body = Page<HoldView>)))]
async fn list_holds(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<HoldView>>> {
    Ok(Json(s.control.billing.holds(&actor, &q.page()?).await?))
}

#[utoipa::path(get, path = "/v1/holds/{id}", tag = "billing", responses((status = 200, body = HoldView), (status = 404, body = Problem)))]
async fn get_hold(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HoldView>> {
    Ok(Json(s.control.billing.hold(&actor, &id).await?))
}

#[utoipa::path(get, path = "/v1/billing/preference", tag = "billing", responses((status = 200, body = BillingPreference)))]
async fn get_preference(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<BillingPreference>> {
    Ok(Json(s.control.billing.preference(&actor).await?))
}

/// Choose how clusters are paid: USD credit, IOSD or IO (owners and billing members).
#[utoipa::path(put, path = "/v1/billing/preference", tag = "billing", request_body = PreferenceBody,
    responses((status = 200, body = BillingPreference), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn set_preference(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<PreferenceBody>,
) -> ApiResult<Json<BillingPreference>> {
    Ok(Json(
        s.control
            .billing
            .set_preference(&actor, &b.currency)
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionBody {
    /// The ledger transaction to reverse.
    transaction_id: String,
    /// 1 to 100 characters once trimmed, none of them invisible or direction-changing.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF](?:[^\u0000-\u001F\u007F-\u009F\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]{0,98}[^\u0000-\u0020\u007F-\u00A0\u061C\u1680\u2000-\u200F\u2028-\u202F\u205F-\u2064\u2066-\u2069\u3000\uFEFF])?[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "SLA credit for the outage of 2026-11-03"
    )]
    reason: String,
}

/// Correct a ledger transaction with a compensating one (platform operators only). Once per
/// transaction: asking again answers the first correction.
#[utoipa::path(post, path = "/v1/admin/corrections", tag = "billing", request_body = CorrectionBody,
    responses((status = 200, body = Correction), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn correct(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<CorrectionBody>,
) -> ApiResult<Json<Correction>> {
    Ok(Json(
        s.control
            .billing
            .correct_transaction(&actor, &b.transaction_id, &b.reason)
            .await?,
    ))
}

/// Grant credit to an organisation (platform operators only). With an `Idempotency-Key`, the
/// same key is one grant.
#[utoipa::path(post, path = "/v1/admin/credits", tag = "billing", request_body = CreditBody,
    responses((status = 200, body = CreditGrant), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn grant_credit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    ApiJson(b): ApiJson<CreditBody>,
) -> ApiResult<Json<CreditGrant>> {
    let reference = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    Ok(Json(
        s.control
            .billing
            .grant_credit(
                &actor,
                &b.org_id,
                &b.amount,
                &b.currency,
                &b.reason,
                reference,
            )
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceQuoteBody {
    /// A price in USD, e.g. "100.00": more than zero, at most six decimals.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:0*[1-9][0-9]{0,12}(?:\.[0-9]{1,6})?|0+\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "100.00"
    )]
    amount_usd: String,
    /// USD, IOSD or IO (in any case).
    #[schema(
        pattern = r"^(?:[Uu][Ss][Dd]|[Ii][Oo][Ss][Dd]|[Ii][Oo])$",
        example = "USD"
    )]
    currency: String,
}

/// The IO/USD rate in use, with where and when it was observed.
#[utoipa::path(get, path = "/v1/fx/io-usd", tag = "billing", responses((status = 200, body = IoRate), (status = 503, body = Problem)))]
async fn io_rate(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<IoRate>> {
    Ok(Json(s.control.billing.io_rate(&actor).await?))
}

/// Price a USD amount in the currency you pay with; the price holds for five minutes.
#[utoipa::path(post, path = "/v1/price-quotes", tag = "billing", request_body = PriceQuoteBody,
    responses((status = 201, body = PriceQuoteView), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn create_price_quote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(b): ApiJson<PriceQuoteBody>,
) -> ApiResult<(axum::http::StatusCode, Json<PriceQuoteView>)> {
    Ok((
        axum::http::StatusCode::CREATED,
        Json(
            s.control
                .billing
                .price_quote(&actor, &b.amount_usd, &b.currency)
                .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/v1/price-quotes/{id}", tag = "billing",
    responses((status = 200, body = PriceQuoteView), (status = 404, body = Problem), (status = 410, body = Problem, description = "quote_expired")))]
async fn get_price_quote(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<PriceQuoteView>> {
    Ok(Json(
        s.control.billing.price_quote_by_id(&actor, &id).await?,
    ))
}
