//! Card payments: top-ups, and Stripe's webhook (mounted outside `/v1`: Stripe signs its
//! requests instead of presenting a key).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use iocloud_control::Page;
use iocloud_control::billing::alerts::{BalanceAlert, BalanceAlertRequest};
use iocloud_control::payments::{
    AutoReload, AutoReloadRequest, Card, CardRequest, CardSetup, Receipt, Refund, RefundRequest,
    Refundable, TopUp, TopUpRequest, WebhookReceipt,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, ListParams};
use crate::rest::usage::{InvoiceParams, json_or_page};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_top_up, list_top_ups))
        .routes(routes!(get_top_up))
        .routes(routes!(top_up_receipt))
        .routes(routes!(card_settings))
        .routes(routes!(create_refund, list_refunds))
        .routes(routes!(get_refund))
        .routes(routes!(refundable))
        .routes(routes!(balance_alerts, set_balance_alert))
        .routes(routes!(remove_balance_alert))
        .routes(routes!(list_cards, save_card))
        .routes(routes!(start_card_setup))
        .routes(routes!(remove_card))
        .routes(routes!(default_card))
        .routes(routes!(get_auto_reload, set_auto_reload))
}

/// Stripe's webhook, with its place in the API document.
pub fn webhook_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

/// Top up the organisation's USD balance by card (role `billing` or owner). With a
/// `payment_method` the card is charged now and the answer is the credited top-up, or 402
/// `card_declined`; without one the top-up waits for the console's card form, which confirms
/// it with the answer's `client_secret`, and is credited when Stripe's webhook arrives.
#[utoipa::path(post, path = "/v1/billing/top-ups", tag = "billing", request_body = TopUpRequest,
    responses((status = 201, body = TopUp), (status = 402, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn create_top_up(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<TopUpRequest>,
) -> ApiResult<impl IntoResponse> {
    let top_up = s.control.payments.top_up(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(top_up)))
}

/// The organisation's card top-ups, oldest first.
#[utoipa::path(get, path = "/v1/billing/top-ups", tag = "billing", params(ListParams),
    responses((status = 200, body = Page<TopUp>), (status = 403, body = Problem)))]
async fn list_top_ups(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<TopUp>>> {
    Ok(Json(s.control.payments.top_ups(&actor, &q.page()?).await?))
}

/// One card top-up.
#[utoipa::path(get, path = "/v1/billing/top-ups/{id}", tag = "billing",
    responses((status = 200, body = TopUp), (status = 404, body = Problem)))]
async fn get_top_up(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TopUp>> {
    Ok(Json(s.control.payments.get_top_up(&actor, &id).await?))
}

/// The receipt of a paid top-up: amount, date, card (brand and last four digits) and Stripe's
/// reference, with what was refunded since. `?format=html` gives a printable page. A top-up
/// not paid yet answers 409 `invalid_state`.
#[utoipa::path(get, path = "/v1/billing/top-ups/{id}/receipt", tag = "billing", params(InvoiceParams),
    responses((status = 200, description = "The receipt; with `format=html`, a printable page", content((Receipt = "application/json"), (String = "text/html"))),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn top_up_receipt(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<InvoiceParams>,
) -> ApiResult<Response> {
    let receipt = s.control.payments.receipt(&actor, &id).await?;
    json_or_page(q.format.as_deref(), receipt, printable_receipt)
}

pub(crate) fn printable_receipt(r: &Receipt) -> String {
    let paid_at = r.paid_at.to_rfc3339();
    let times: Vec<String> = r
        .refunds
        .iter()
        .map(|x| x.created_at.to_rfc3339())
        .collect();
    let refunds = r
        .refunds
        .iter()
        .zip(&times)
        .map(|(x, at)| {
            [
                x.refund_id.as_str(),
                x.amount.as_str(),
                x.status.as_str(),
                at.as_str(),
            ]
        })
        .collect();
    iocloud_web::receipt::render_view(&iocloud_web::receipt::ReceiptView {
        number: &r.number,
        organization: &r.organization,
        org_id: &r.org_id,
        amount: &r.amount,
        currency: r.currency.code(),
        paid_at: &paid_at,
        card: r
            .card
            .as_ref()
            .map(|c| (c.brand.as_str(), c.last4.as_str())),
        payment_reference: &r.payment_reference,
        refunded: &r.refunded,
        refunds,
    })
}

/// Refund unused card credit to the cards it came from, newest payment first (role `billing`
/// or owner). Without an amount, everything refundable. More than is refundable answers 422
/// `refund_exceeds_refundable`, naming what is.
#[utoipa::path(post, path = "/v1/billing/refunds", tag = "billing", request_body = RefundRequest,
    responses((status = 201, body = Refund), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
async fn create_refund(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<RefundRequest>,
) -> ApiResult<impl IntoResponse> {
    let refund = s.control.payments.refund(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// The organisation's refunds, oldest first.
#[utoipa::path(get, path = "/v1/billing/refunds", tag = "billing", params(ListParams),
    responses((status = 200, body = Page<Refund>), (status = 403, body = Problem)))]
async fn list_refunds(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<Refund>>> {
    Ok(Json(s.control.payments.refunds(&actor, &q.page()?).await?))
}

/// One refund, with its parts.
#[utoipa::path(get, path = "/v1/billing/refunds/{id}", tag = "billing",
    responses((status = 200, body = Refund), (status = 404, body = Problem)))]
async fn get_refund(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Refund>> {
    Ok(Json(s.control.payments.get_refund(&actor, &id).await?))
}

/// How much card credit could be refunded now.
#[utoipa::path(get, path = "/v1/billing/refundable", tag = "billing",
    responses((status = 200, body = Refundable), (status = 403, body = Problem)))]
async fn refundable(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Refundable>> {
    Ok(Json(s.control.payments.refundable(&actor).await?))
}

/// The organisation's low-balance alerts, each with whether the balance is under it now
/// (what the console's banner shows).
#[utoipa::path(get, path = "/v1/billing/low-balance", tag = "billing",
    responses((status = 200, body = Vec<BalanceAlert>), (status = 403, body = Problem)))]
async fn balance_alerts(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<BalanceAlert>>> {
    Ok(Json(s.control.billing.balance_alerts(&actor).await?))
}

/// Set the available balance of a currency under which the owners and billing members are
/// emailed, once per crossing.
#[utoipa::path(put, path = "/v1/billing/low-balance", tag = "billing", request_body = BalanceAlertRequest,
    responses((status = 200, body = BalanceAlert), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn set_balance_alert(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<BalanceAlertRequest>,
) -> ApiResult<Json<BalanceAlert>> {
    Ok(Json(
        s.control
            .billing
            .set_balance_alert(&actor, &request)
            .await?,
    ))
}

/// Remove the low-balance alert of a currency.
#[utoipa::path(delete, path = "/v1/billing/low-balance/{currency}", tag = "billing",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove_balance_alert(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(currency): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.control
        .billing
        .remove_balance_alert(&actor, &currency)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The organisation's saved cards (brand, last four digits, expiry), oldest first.
#[utoipa::path(get, path = "/v1/billing/cards", tag = "billing",
    responses((status = 200, body = Vec<Card>), (status = 403, body = Problem)))]
async fn list_cards(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Vec<Card>>> {
    Ok(Json(s.control.payments.cards(&actor).await?))
}

/// Open a card form: a Stripe SetupIntent for the organisation, whose client secret Stripe.js
/// confirms (3-D Secure included); then save the card with its `setup_intent`.
#[utoipa::path(post, path = "/v1/billing/cards/setup", tag = "billing",
    responses((status = 201, body = CardSetup), (status = 403, body = Problem), (status = 503, body = Problem)))]
async fn start_card_setup(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<impl IntoResponse> {
    let setup = s.control.payments.start_card_setup(&actor).await?;
    Ok((StatusCode::CREATED, Json(setup)))
}

/// Save a card: the card form's confirmed `setup_intent` (`seti_…`), or a `payment_method`
/// (`pm_…`) made with Stripe.js. Attached to the organisation's Stripe customer; the first
/// card saved is the default. Another organisation's card form answers 404; one not yet
/// confirmed, 409 `invalid_state`.
#[utoipa::path(post, path = "/v1/billing/cards", tag = "billing", request_body = CardRequest,
    responses((status = 201, body = Card), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn save_card(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<CardRequest>,
) -> ApiResult<impl IntoResponse> {
    let card = s.control.payments.save_card(&actor, &request).await?;
    Ok((StatusCode::CREATED, Json(card)))
}

/// Remove a saved card: detached in Stripe, it can be charged no more.
#[utoipa::path(delete, path = "/v1/billing/cards/{id}", tag = "billing",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn remove_card(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.control.payments.remove_card(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a saved card the default one.
#[utoipa::path(post, path = "/v1/billing/cards/{id}/default", tag = "billing",
    responses((status = 200, body = Card), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn default_card(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Card>> {
    Ok(Json(
        s.control.payments.set_default_card(&actor, &id).await?,
    ))
}

/// The organisation's auto-reload settings and how it went lately.
#[utoipa::path(get, path = "/v1/billing/auto-reload", tag = "billing",
    responses((status = 200, body = AutoReload), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn get_auto_reload(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<AutoReload>> {
    Ok(Json(s.control.payments.auto_reload(&actor).await?))
}

/// Set auto-reload: when available USD falls under `threshold`, charge `amount` on the
/// default card, at most `monthly_cap` a month; it turns itself off after three declines.
#[utoipa::path(put, path = "/v1/billing/auto-reload", tag = "billing", request_body = AutoReloadRequest,
    responses((status = 200, body = AutoReload), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
async fn set_auto_reload(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiJson(request): ApiJson<AutoReloadRequest>,
) -> ApiResult<Json<AutoReload>> {
    Ok(Json(
        s.control.payments.set_auto_reload(&actor, &request).await?,
    ))
}

/// Whether this deployment takes cards, and the publishable key its card form needs.
#[derive(Serialize, ToSchema)]
pub struct CardSettings {
    pub enabled: bool,
    /// Stripe's publishable key (`pk_…`), public by design.
    pub publishable_key: Option<String>,
}

/// Whether cards are taken here, and the key the console's card form gives Stripe.js.
#[utoipa::path(get, path = "/v1/billing/card-settings", tag = "billing",
    responses((status = 200, body = CardSettings)))]
async fn card_settings(State(s): State<AppState>, Auth(_actor): Auth) -> Json<CardSettings> {
    let payments = &s.control.payments;
    Json(CardSettings {
        enabled: payments.is_on(),
        publishable_key: payments.publishable_key().map(str::to_string),
    })
}

/// Stripe's webhook. The raw body's `Stripe-Signature` is verified; an event already handled
/// answers 200 `replayed` and changes nothing; a forged, stale or malformed one answers 400
/// `webhook_rejected` and stores nothing.
#[utoipa::path(post, path = "/webhooks/stripe", tag = "billing",
    request_body(content = String, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature of the raw body")),
    responses((status = 200, body = WebhookReceipt), (status = 400, body = Problem), (status = 503, body = Problem)))]
async fn stripe_webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookReceipt>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(Json(s.control.payments.webhook(&body, signature).await?))
}
