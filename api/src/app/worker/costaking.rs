//! Co-staking in the console, through the same calls as `/v1/costaking`: the organisation's
//! offers of its devices' stake (made and withdrawn here), the market of other providers' open
//! offers (filtered by GPU model and reliability, never naming the provider; taken here), and
//! its co-stakes (unstaked and withdrawn here). The market's filters are read leniently (an
//! empty field is no filter); a refused one is shown above an empty market. Another
//! organisation's offer or co-stake reads as missing (404), as it does over REST.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_control::costaking::{CostakeOffer, CostakePosition, NewOffer, TakeOffer};
use iocloud_control::providers::DeviceStatus;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_web::app::{
    Choice, CostakeMarketFilter, CostakeMarketLine, CostakeOfferForm, CostakeOfferLine,
    CostakePositionLine, CostakingView,
};
use serde::Deserialize;

use super::super::session::{NoFields, Posted, Visitor};
use super::super::{failed, show};
use super::{all_devices, model_name, percent, refusal};
use crate::state::AppState;

/// The page every form returns to.
const PAGE: &str = "/app/worker/costaking";

/// Offers in a page of the market.
const MARKET: u32 = 50;

/// What a form did, by the key its redirect carries.
const DONE: [(&str, &str); 5] = [
    ("offered", "The offer is in the market."),
    ("offer_withdrawn", "The offer was withdrawn."),
    ("taken", "Your $IO backs the device now."),
    ("unstaking", "The co-stake's notice began."),
    ("withdrawn", "The co-stake's $IO is back."),
];

/// What the last form did, which page of the market, and its filters.
#[derive(Deserialize, Default)]
pub(super) struct CostakingQuery {
    done: Option<String>,
    after: Option<String>,
    model: Option<String>,
    min_reliability: Option<String>,
}

/// What a form's answer adds to the page.
#[derive(Default)]
struct Extras {
    notice: Option<String>,
    error: Option<String>,
    /// The offer form as typed, when it was refused.
    form: Option<CostakeOfferForm>,
    /// The offer a refused take was for, and the amount typed.
    take: Option<(String, String)>,
}

/// Basis points as a percentage: `5000` is `50 %`, `1250` `12.5 %`.
fn share(bps: i64) -> String {
    let (whole, hundredths) = (bps / 100, bps % 100);
    match hundredths {
        0 => format!("{whole} %"),
        h if h % 10 == 0 => format!("{whole}.{} %", h / 10),
        h => format!("{whole}.{h:02} %"),
    }
}

/// A percentage as typed (`20`, `12.5`, `0.01`, a `%` allowed) in basis points; `None` when it
/// is not one with at most two decimals.
fn share_bps(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches('%').trim_end();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) || frac.len() > 2 {
        return None;
    }
    // A leading zero reads an empty whole part (`.5`) as nought.
    let whole: i64 = format!("0{whole}").parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}

/// The offer `POST /v1/costaking/offers` takes, from the form: the share read as a percentage
/// and the term as days; the domain checks the rest.
fn new_offer(f: &CostakeOfferForm) -> iocloud_control::Result<NewOffer> {
    let device_id = f.device_id.trim();
    if device_id.is_empty() {
        return Err(DomainError::validation(
            "device_id",
            "choose one of your devices",
        ));
    }
    let reward_share_bps = share_bps(&f.share)
        .filter(|bps| (1..=10_000).contains(bps))
        .ok_or_else(|| {
            DomainError::validation("reward_share_bps", "a percentage from 0.01 to 100, like 20")
        })?;
    let term_days =
        f.term_days.trim().parse::<i64>().map_err(|_| {
            DomainError::validation("term_days", "a whole number of days, 1 to 365")
        })?;
    Ok(NewOffer {
        device_id: device_id.to_string(),
        amount: f.amount.trim().to_string(),
        reward_share_bps,
        term_days,
    })
}

/// A co-stake's state in words, and until when it lasts (the notice, the cooldown).
fn state_words(p: &CostakePosition) -> (String, Option<String>) {
    let (words, until) = match p.state.as_str() {
        "active" => ("Backs the device and earns", None),
        "notice" => ("Notice: still backs the device and earns", p.unstake_at),
        "cooldown" => ("Cooldown: backs nothing, earns nothing", p.available_at),
        "withdrawable" => ("Cooldown over: withdraw it", None),
        "withdrawn" => ("Back in your balance", None),
        other => (other, None),
    };
    (words.to_string(), until.map(|t| t.to_rfc3339()))
}

// The page.

pub(super) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<CostakingQuery>,
) -> Response {
    let filter = CostakeMarketFilter {
        model: q.model.unwrap_or_default().trim().to_string(),
        min_reliability: q.min_reliability.unwrap_or_default().trim().to_string(),
    };
    let extras = Extras {
        notice: crate::app::said_done(q.done.as_deref(), &DONE),
        ..Extras::default()
    };
    let after = q.after.as_deref();
    render(&state, &v, filter, after, extras, StatusCode::OK).await
}

/// A page of the market, filtered, and the address of the next: the first page for a cursor
/// this console did not make.
async fn market_page(
    state: &AppState,
    actor: &Actor,
    filter: &CostakeMarketFilter,
    after: Option<&str>,
) -> iocloud_control::Result<(Vec<CostakeOffer>, Option<String>)> {
    let min_reliability = match filter.min_reliability.as_str() {
        "" => None,
        text => Some(text.parse::<f64>().map_err(|_| {
            DomainError::validation("min_reliability", "a number from 0 to 1, like 0.95")
        })?),
    };
    let model = Some(filter.model.as_str()).filter(|m| !m.is_empty());
    let page = PageRequest::parse(after, Some(MARKET)).unwrap_or(PageRequest {
        after: None,
        limit: MARKET,
    });
    let c = &state.control.costaking;
    let found = c.market(actor, model, min_reliability, &page).await?;
    let next = found.next_cursor.map(|cursor| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("model", &filter.model)
            .append_pair("min_reliability", &filter.min_reliability)
            .append_pair("after", &cursor)
            .finish();
        format!("{PAGE}?{query}#market-h")
    });
    Ok((found.items, next))
}

async fn render(
    state: &AppState,
    v: &Visitor,
    filter: CostakeMarketFilter,
    after: Option<&str>,
    mut x: Extras,
    mut status: StatusCode,
) -> Response {
    let market = match market_page(state, &v.actor, &filter, after).await {
        Ok(found) => found,
        Err(e) => match refusal(&e) {
            // A form's own refusal says more than the filters (which it did not send).
            Some((refused, words)) => {
                if x.error.is_none() {
                    x.error = Some(words);
                    status = refused;
                }
                (Vec::new(), None)
            }
            None => return failed(v, e),
        },
    };
    show(
        state,
        v,
        status,
        view(state, &v.actor, filter, market, x),
        iocloud_web::app::costaking_page,
    )
    .await
}

/// Every page of a list the organisation holds, oldest first.
async fn every<T, F, Fut>(mut next: F) -> iocloud_control::Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = iocloud_control::Result<iocloud_control::Page<T>>>,
{
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = next(page).await?;
        out.extend(found.items);
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => return Ok(out),
        }
    }
}

async fn view(
    state: &AppState,
    actor: &Actor,
    filter: CostakeMarketFilter,
    (market, next_market): (Vec<CostakeOffer>, Option<String>),
    x: Extras,
) -> iocloud_control::Result<CostakingView> {
    let c = &state.control;
    let devices = all_devices(state, actor).await?;
    let names: HashMap<&str, &str> = devices
        .iter()
        .map(|d| (d.id.as_str(), d.name.as_str()))
        .collect();
    let money = actor.authorize(Action::BillingRead).is_ok();
    let (offers, positions, available) = if money {
        let mut offers =
            every(move |page| async move { c.costaking.my_offers(actor, &page).await }).await?;
        let mut positions =
            every(move |page| async move { c.costaking.positions(actor, &page).await }).await?;
        offers.reverse();
        positions.reverse();
        let available = super::super::billing::balances(state, actor)
            .await?
            .into_iter()
            .find(|b| b.currency == "IO")
            .map_or_else(|| "0.00".to_string(), |b| b.available);
        (Some(offers), Some(positions), Some(available))
    } else {
        (None, None, None)
    };
    let (take_id, take_amount) = x.take.unwrap_or_default();
    let (models, _) = super::super::catalog_choices(state);
    Ok(CostakingView {
        offers: offers.map(|offers| {
            offers
                .into_iter()
                .map(|o| CostakeOfferLine {
                    device_name: names
                        .get(o.device_id.as_str())
                        .map_or_else(|| o.device_id.clone(), |n| (*n).to_string()),
                    share: share(o.reward_share_bps),
                    created_at: o.created_at.to_rfc3339(),
                    withdrawable: o.status == "open",
                    id: o.id,
                    device_id: o.device_id,
                    amount: o.amount,
                    term_days: o.term_days,
                    status: o.status,
                })
                .collect()
        }),
        positions: positions.map(|positions| {
            positions
                .into_iter()
                .map(|p| {
                    let (state_words, until) = state_words(&p);
                    CostakePositionLine {
                        state_words,
                        until,
                        share: share(p.reward_share_bps),
                        created_at: p.created_at.to_rfc3339(),
                        term_ends_at: p.term_ends_at.to_rfc3339(),
                        can_unstake: p.state == "active",
                        can_withdraw: p.state == "withdrawable",
                        id: p.id,
                        device_id: p.device_id,
                        amount: p.amount,
                        state: p.state,
                        earned: p.earned,
                    }
                })
                .collect()
        }),
        available,
        devices: devices
            .iter()
            .filter(|d| d.status != DeviceStatus::Retired)
            .map(|d| Choice {
                value: d.id.clone(),
                label: match d.gpu_count {
                    0 => format!("{} · CPU only · needs {} $IO", d.name, d.required_stake),
                    n => format!(
                        "{} · {} × {n} · needs {} $IO",
                        d.name,
                        model_name(state, d.gpu_model.as_deref()),
                        d.required_stake
                    ),
                },
            })
            .collect(),
        form: x.form.unwrap_or_default(),
        // Others' offers only: the organisation's own are listed above, and it cannot take them.
        market: market
            .into_iter()
            .filter(|o| !names.contains_key(o.device_id.as_str()))
            .map(|o| CostakeMarketLine {
                model: model_name(state, o.gpu_model.as_deref()),
                reliability: percent(o.reliability),
                share: share(o.reward_share_bps),
                take_amount: if o.id == take_id {
                    take_amount.clone()
                } else {
                    o.amount.clone()
                },
                id: o.id,
                gpu_count: o.gpu_count,
                region: o.region,
                amount: o.amount,
                term_days: o.term_days,
            })
            .collect(),
        next_market,
        models,
        filter,
        can_manage: actor.authorize(Action::BillingManage).is_ok(),
        notice: x.notice,
        error: x.error,
    })
}

// The forms.

/// Back to the page saying `done`, or the page again saying why not, with the status REST
/// answers; another organisation's offer, device or co-stake answers 404.
async fn after(
    state: &AppState,
    v: &Visitor,
    result: iocloud_control::Result<()>,
    done: &str,
    x: Extras,
) -> Response {
    match result {
        Ok(()) => v.answer(Redirect::to(&format!("{PAGE}?done={done}")).into_response()),
        Err(e @ DomainError::NotFound(_)) => failed(v, e),
        Err(e) => match refusal(&e) {
            Some((status, words)) => {
                let x = Extras {
                    error: Some(words),
                    ..x
                };
                render(state, v, CostakeMarketFilter::default(), None, x, status).await
            }
            None => failed(v, e),
        },
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(in crate::app) struct OfferAsk {
    device_id: String,
    amount: String,
    share: String,
    term_days: String,
}

/// Offers a device's stake as `POST /v1/costaking/offers` does.
pub(super) async fn offer(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<OfferAsk>,
) -> Response {
    let typed = CostakeOfferForm {
        device_id: f.device_id,
        amount: f.amount,
        share: f.share,
        term_days: f.term_days,
    };
    let c = &state.control.costaking;
    let result = match new_offer(&typed) {
        Ok(request) => c.offer(&v.actor, &request).await.map(drop),
        Err(e) => Err(e),
    };
    let x = Extras {
        form: Some(typed),
        ..Extras::default()
    };
    after(&state, &v, result, "offered", x).await
}

/// Withdraws an open offer, as `POST /v1/costaking/offers/{id}/withdraw` does.
pub(super) async fn withdraw_offer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let c = &state.control.costaking;
    let result = c.withdraw_offer(&v.actor, &id).await.map(drop);
    after(&state, &v, result, "offer_withdrawn", Extras::default()).await
}

#[derive(Deserialize)]
pub(in crate::app) struct TakeAsk {
    #[serde(default)]
    amount: String,
}

/// Takes another provider's offer, as `POST /v1/costaking/offers/{id}/take` does.
pub(super) async fn take(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form: f }: Posted<TakeAsk>,
) -> Response {
    let request = TakeOffer {
        amount: f.amount.trim().to_string(),
    };
    let c = &state.control.costaking;
    let result = c.take(&v.actor, &id, &request).await.map(drop);
    let x = Extras {
        take: Some((id, f.amount)),
        ..Extras::default()
    };
    after(&state, &v, result, "taken", x).await
}

/// Starts a co-stake's notice, as `POST /v1/costaking/positions/{id}/unstake` does.
pub(super) async fn unstake(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let c = &state.control.costaking;
    let result = c.unstake(&v.actor, &id).await.map(drop);
    after(&state, &v, result, "unstaking", Extras::default()).await
}

/// Returns a co-stake whose cooldown is over, as `POST /v1/costaking/positions/{id}/withdraw`
/// does.
pub(super) async fn withdraw(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let c = &state.control.costaking;
    let result = c.withdraw(&v.actor, &id).await.map(drop);
    after(&state, &v, result, "withdrawn", Extras::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_read_and_write_as_percentages() {
        assert_eq!(share_bps("20"), Some(2_000));
        assert_eq!(share_bps("12.5"), Some(1_250));
        assert_eq!(share_bps(" 0.01 % "), Some(1));
        assert_eq!(share_bps("100"), Some(10_000));
        assert_eq!(share_bps(".5"), Some(50));
        for bad in ["", ".", "abc", "1.234", "-5", "1e3", "99999999999999999999"] {
            assert_eq!(share_bps(bad), None, "{bad}");
        }
        assert_eq!(share(5_000), "50 %");
        assert_eq!(share(1_250), "12.5 %");
        assert_eq!(share(1), "0.01 %");
    }
}
