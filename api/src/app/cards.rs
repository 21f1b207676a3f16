//! Card payments in the console, from the same service as `/v1/billing/top-ups` and
//! `/v1/billing/cards`: pay an amount with a saved card at once, or with a new card set up in
//! Stripe.js's form (the one page allowed to load Stripe's script) and then charged, follow a
//! top-up until it is credited, read its receipt, and keep the saved cards.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use iocloud_billing::{Currency, Money};
use iocloud_control::Actor;
use iocloud_control::payments::top_ups::TopUpRequest;
use iocloud_control::payments::{AutoReloadRequest, CardRequest};
use iocloud_web::app::{AutoReloadLine, CardLine, CardPayment, CardsView, TopUpLine};
use serde::Deserialize;

use super::session::{NoFields, Posted, Visitor};
use super::{html, show};
use crate::state::AppState;

/// Card payments listed on the Billing page.
const RECENT: i64 = 10;

/// A receipt is a plain printable page: its own inline style, nothing else at all.
const RECEIPT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/billing/top-ups", post(pay))
        .route("/app/billing/cards", post(pay_with_new_card))
        .route("/app/billing/top-ups/{id}", get(top_up))
        .route("/app/billing/top-ups/{id}/receipt", get(receipt))
        .route("/app/billing/auto-reload", post(set_auto_reload))
        .route("/app/billing/cards/{id}/default", post(make_default))
        .route("/app/billing/cards/{id}/remove", post(remove))
}

/// The card part of the Billing page; `None` when this deployment takes no cards.
pub(super) async fn view(
    state: &AppState,
    actor: &Actor,
) -> iocloud_control::Result<Option<CardsView>> {
    let payments = &state.control.payments;
    if !payments.is_on() {
        return Ok(None);
    }
    let cards = payments
        .cards(actor)
        .await?
        .into_iter()
        .map(|c| CardLine {
            expires: format!("{:02}/{}", c.exp_month, c.exp_year),
            id: c.id,
            brand: c.brand,
            last4: c.last4,
            is_default: c.is_default,
        })
        .collect();
    let top_ups: Vec<TopUpLine> = payments
        .recent_top_ups(actor, RECENT)
        .await?
        .into_iter()
        .map(line)
        .collect();
    // Never set: off, with nothing filled in.
    let auto_reload = match payments.auto_reload(actor).await {
        Ok(a) => AutoReloadLine {
            enabled: a.enabled,
            threshold: a.threshold,
            amount: a.amount,
            monthly_cap: a.monthly_cap,
            charged_this_month: a.charged_this_month,
            last_failure: a.last_failure,
        },
        Err(iocloud_control::Error::NotFound(_)) => AutoReloadLine {
            enabled: false,
            threshold: String::new(),
            amount: String::new(),
            monthly_cap: String::new(),
            charged_this_month: String::new(),
            last_failure: None,
        },
        Err(e) => return Err(e),
    };
    Ok(Some(CardsView {
        cards,
        top_ups,
        auto_reload,
    }))
}

fn line(t: iocloud_control::payments::top_ups::TopUp) -> TopUpLine {
    TopUpLine {
        id: t.id,
        status: t.status.as_str().to_string(),
        amount: t.amount,
        currency: t.currency.code().to_string(),
        created_at: t.created_at.to_rfc3339(),
        failure: t.failure_message,
    }
}

#[derive(Deserialize)]
pub(super) struct PayForm {
    #[serde(default)]
    amount: String,
    /// A saved card's `pm_…`, or `new` for the card form.
    #[serde(default)]
    card: String,
    save_card: Option<String>,
}

/// Pays `amount`: with a saved card at once (then its top-up's page), or, for a new card, the
/// card form's page, which sets the card up with Stripe before anything is charged.
async fn pay(State(state): State<AppState>, Posted { v, form }: Posted<PayForm>) -> Response {
    let amount = form.amount.trim().to_string();
    let save_card = form.save_card.is_some();
    if form.card.is_empty() || form.card == "new" {
        // The amount is checked before the card is asked for.
        if Money::parse(&amount, Currency::Usd).map_or(true, |m| !m.is_positive()) {
            let e = iocloud_control::Error::validation("amount", "a price in USD, like 25.00");
            return refused(&state, &v, e).await;
        }
        let setup = match state.control.payments.start_card_setup(&v.actor).await {
            Ok(s) => s,
            Err(e) => return refused(&state, &v, e).await,
        };
        let Some(key) = setup.publishable_key else {
            tracing::error!("cards are on without a publishable key for Stripe.js");
            return super::failed(&v, iocloud_control::Error::Internal("card form".into()));
        };
        let payment = CardPayment {
            amount,
            save_card,
            publishable_key: key,
            client_secret: setup.client_secret,
            stripe_js_url: state.config.stripe_js_url.clone(),
        };
        let mut res = show(
            &state,
            &v,
            StatusCode::OK,
            async { Ok(payment) },
            iocloud_web::app::card_payment_page,
        )
        .await;
        if let Ok(csp) = HeaderValue::from_str(&iocloud_web::app::card_csp(&origin_of(
            &state.config.stripe_js_url,
        ))) {
            res.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        return res;
    }
    // A card already saved stays saved.
    charge(&state, &v, amount, form.card, true).await
}

/// Charges `amount` to the saved card `card` now, and shows its top-up; a card kept only for
/// this payment is removed after it.
async fn charge(
    state: &AppState,
    v: &Visitor,
    amount: String,
    card: String,
    keep: bool,
) -> Response {
    let request = TopUpRequest {
        amount,
        currency: None,
        payment_method: Some(card.clone()),
        default_card: false,
        save_card: false,
    };
    let paid = state.control.payments.top_up(&v.actor, &request).await;
    if !keep && let Err(e) = state.control.payments.remove_card(&v.actor, &card).await {
        tracing::warn!(error = %e, "a card kept for one payment could not be removed");
    }
    match paid {
        Ok(t) => v.answer(Redirect::to(&format!("/app/billing/top-ups/{}", t.id)).into_response()),
        Err(e) => refused(state, v, e).await,
    }
}

#[derive(Deserialize)]
pub(super) struct NewCardForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    setup_intent: String,
    save_card: Option<String>,
}

/// The card form, back from Stripe with its SetupIntent: the card is kept (attached to the
/// organisation's customer, as `POST /v1/billing/cards` does) and charged.
async fn pay_with_new_card(
    State(state): State<AppState>,
    Posted { v, form }: Posted<NewCardForm>,
) -> Response {
    let request = CardRequest {
        setup_intent: Some(form.setup_intent.trim().to_string()),
        payment_method: None,
    };
    match state.control.payments.save_card(&v.actor, &request).await {
        Ok(card) => {
            charge(
                &state,
                &v,
                form.amount.trim().to_string(),
                card.id,
                form.save_card.is_some(),
            )
            .await
        }
        Err(e) => refused(&state, &v, e).await,
    }
}

/// The Billing page again with a refusal in words, or the failure page.
async fn refused(state: &AppState, v: &Visitor, e: iocloud_control::Error) -> Response {
    match super::team::refusal(&e) {
        Some((status, words)) => super::billing::render(state, v, None, Some(words), status).await,
        None => super::failed(v, e),
    }
}

/// `https://js.stripe.com` of `https://js.stripe.com/v3/`.
fn origin_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    let scheme = url.split_once("://").map_or("https", |(s, _)| s);
    format!("{scheme}://{host}")
}

async fn top_up(State(state): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    let load = async {
        Ok(line(
            state.control.payments.get_top_up(&v.actor, &id).await?,
        ))
    };
    show(
        &state,
        &v,
        StatusCode::OK,
        load,
        iocloud_web::app::top_up_page,
    )
    .await
}

async fn receipt(State(state): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    match state.control.payments.receipt(&v.actor, &id).await {
        Ok(r) => {
            let mut res = Html(crate::rest::payments::printable_receipt(&r)).into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(RECEIPT_CSP),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            v.answer(res)
        }
        Err(e) => match super::team::refusal(&e) {
            Some((status, words)) if status != StatusCode::NOT_FOUND => v.answer(html(
                status,
                iocloud_web::app::message("No receipt yet", &words),
            )),
            _ => super::failed(&v, e),
        },
    }
}

#[derive(Deserialize)]
pub(super) struct AutoReloadForm {
    enabled: Option<String>,
    #[serde(default)]
    threshold: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    monthly_cap: String,
}

async fn set_auto_reload(
    State(state): State<AppState>,
    Posted { v, form }: Posted<AutoReloadForm>,
) -> Response {
    let request = AutoReloadRequest {
        enabled: form.enabled.is_some(),
        threshold: form.threshold.trim().to_string(),
        amount: form.amount.trim().to_string(),
        monthly_cap: form.monthly_cap.trim().to_string(),
    };
    match state
        .control
        .payments
        .set_auto_reload(&v.actor, &request)
        .await
    {
        Ok(_) => v.answer(Redirect::to("/app/billing").into_response()),
        Err(e) => refused(&state, &v, e).await,
    }
}

async fn make_default(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    match state.control.payments.set_default_card(&v.actor, &id).await {
        Ok(_) => v.answer(Redirect::to("/app/billing").into_response()),
        Err(e) => refused(&state, &v, e).await,
    }
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    match state.control.payments.remove_card(&v.actor, &id).await {
        Ok(()) => v.answer(Redirect::to("/app/billing").into_response()),
        Err(e) => refused(&state, &v, e).await,
    }
}
