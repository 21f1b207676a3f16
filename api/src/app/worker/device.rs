//! A device's page and its forms, through the same calls as `GET|PATCH|DELETE
//! /v1/devices/{id}`, `/v1/devices/{id}/events`, `/blocks`, `/maintenance` and `/token`, with
//! its uptime per day, its last blocks and what is rented on it now. Another organisation's
//! device reads as missing (404), as it does over REST.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use iocloud_billing::{Currency, Money};
use iocloud_control::providers::catalog::{CPU_PRICE_CEILING, CPU_PRICE_FLOOR};
use iocloud_control::providers::devices::DayUptime;
use iocloud_control::providers::{DeviceEvent, DeviceStatus, DeviceUpdate, GpuModelView};
use iocloud_control::types::device_id;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_db::ids::DeviceId;
use iocloud_web::app::{AgentToken, DayShare, DeviceEventLine, DevicePage, UptimeSeries};
use serde::Deserialize;

use super::super::session::{NoFields, Posted, Visitor};
use super::super::{failed, show};
use super::{WorkerQuery, model_name, notice, percent, refusal, rental_line};
use crate::state::AppState;

/// Status changes the page shows, newest first.
const EVENTS: usize = 20;

/// Days the uptime chart spans, today included.
const UPTIME_DAYS: i64 = 30;

/// Blocks the page lists, newest first: the last day's hours.
const REWARD_HOURS: u32 = 24;

/// What a form's answer adds to the page.
#[derive(Default)]
pub(in crate::app) struct Extras {
    pub notice: Option<String>,
    pub error: Option<String>,
    pub new_token: Option<AgentToken>,
    /// The price as typed, when the form was refused.
    pub price_form: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Path(id): Path<String>,
    Query(q): Query<WorkerQuery>,
) -> Response {
    let extras = Extras {
        notice: notice(q.done.as_deref()),
        ..Extras::default()
    };
    render(&state, &v, &id, extras, StatusCode::OK).await
}

pub(super) async fn render(
    state: &AppState,
    v: &Visitor,
    id: &str,
    x: Extras,
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, id, x),
        iocloud_web::app::device_page,
    )
    .await
}

/// The device's last [`EVENTS`] status changes, newest first (the list pages oldest first).
async fn recent_events(
    state: &AppState,
    actor: &Actor,
    id: &DeviceId,
) -> iocloud_control::Result<Vec<DeviceEvent>> {
    let mut kept: Vec<DeviceEvent> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = state.control.devices.events(actor, id, &page).await?;
        kept.extend(found.items);
        if kept.len() > EVENTS {
            kept.drain(..kept.len() - EVENTS);
        }
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    kept.reverse();
    Ok(kept)
}

/// A device's uptime per day as the chart shows it: a day it could not be heard in (before it
/// was added) has no percentage.
fn uptime_series(days: Vec<DayUptime>) -> UptimeSeries {
    UptimeSeries {
        days: days
            .into_iter()
            .map(|d| {
                let share = d.share();
                DayShare {
                    percent: (d.possible_minutes > 0).then(|| percent(share)),
                    basis_points: (share * 10_000.0).round() as i64,
                    day: d.day,
                }
            })
            .collect(),
    }
}

/// The price bounds of the device's model, in words.
fn price_bounds(state: &AppState, gpu_model: Option<&str>) -> String {
    let usd = |micros: i64| Money::from_micros(micros, Currency::Usd).to_decimal();
    match gpu_model.and_then(|m| state.control.catalog.gpu_model(m)) {
        Some(m) => {
            let view = GpuModelView::from(m);
            format!(
                "Between {} and {} USD for {}.",
                view.price_floor, view.price_ceiling, m.name
            )
        }
        None => format!(
            "Between {} and {} USD per node-hour for a CPU-only device.",
            usd(CPU_PRICE_FLOOR),
            usd(CPU_PRICE_CEILING)
        ),
    }
}

/// Whether the organisation's stake covers the device, in words.
async fn stake_words(
    state: &AppState,
    actor: &Actor,
    status: DeviceStatus,
) -> iocloud_control::Result<String> {
    let words = match status {
        DeviceStatus::Retired => "Not needed: the device is retired.",
        DeviceStatus::PendingVerification | DeviceStatus::VerificationFailed => {
            "Weighed once its agent has proved the machine."
        }
        DeviceStatus::PendingStake => "Not covered yet: it is listed once your stake covers it.",
        _ => "Covered by your stake.",
    };
    if actor.authorize(Action::BillingRead).is_err() {
        return Ok(words.to_string());
    }
    let summary = state.control.stake.summary(actor).await?;
    Ok(format!(
        "{words} {} $IO of your {} $IO active stake is free.",
        summary.free, summary.active
    ))
}

async fn view(
    state: &AppState,
    actor: &Actor,
    id: &str,
    x: Extras,
) -> iocloud_control::Result<DevicePage> {
    let c = &state.control;
    let id = device_id(id)?;
    let d = c.devices.get(actor, &id).await?;
    let uptime = c.devices.uptime(actor, &id).await?;
    let uptime_days = c.devices.uptime_by_day(actor, &id, UPTIME_DAYS).await?;
    let rentals = c.devices.rentals(actor, std::slice::from_ref(&id)).await?;
    let events = recent_events(state, actor, &id).await?;
    let blocks = c
        .rewards
        .device_blocks(
            actor,
            &id,
            &PageRequest {
                after: None,
                limit: REWARD_HOURS,
            },
        )
        .await?;
    let stake_covered = stake_words(state, actor, d.status).await?;
    let model = d.gpu_model.as_deref().and_then(|m| c.catalog.gpu_model(m));
    Ok(DevicePage {
        model: model_name(state, d.gpu_model.as_deref()),
        vram_gib: model.map(|m| m.vram_gib),
        price_bounds: Some(price_bounds(state, d.gpu_model.as_deref())),
        location: format!("{:.2}, {:.2}", d.location.lat, d.location.lon),
        status: d.status.as_str().to_string(),
        reliability: percent(uptime.reliability),
        provider_reliability: percent(uptime.provider_reliability),
        uptime_24h: percent(uptime.last_24h),
        uptime_7d: percent(uptime.last_7d),
        uptime_30d: percent(uptime.last_30d),
        uptime_days: uptime_series(uptime_days),
        reward_hours: {
            let rules = c.rewards.params();
            blocks
                .items
                .into_iter()
                .map(|b| super::rewards::hour_line(b, &rules))
                .collect()
        },
        rentals: rentals.into_iter().map(rental_line).collect(),
        nodes_ok: uptime.nodes_ok,
        nodes_failed: uptime.nodes_failed,
        last_heartbeat: d.telemetry.last_heartbeat_at.map(|t| t.to_rfc3339()),
        agent_version: d.telemetry.agent_version.clone(),
        utilization_pct: d.telemetry.utilization_pct,
        temperature_c: d.telemetry.temperature_c,
        verified_at: d.verified_at.map(|t| t.to_rfc3339()),
        created_at: d.created_at.to_rfc3339(),
        required_stake: d.required_stake.clone(),
        stake_covered,
        events: events
            .into_iter()
            .map(|e| DeviceEventLine {
                at: e.created_at.to_rfc3339(),
                from: e.from_status,
                to: e.to_status,
                reason: e.reason,
            })
            .collect(),
        can_write: actor.authorize(Action::ResourcesWrite).is_ok(),
        in_maintenance: d.status == DeviceStatus::Maintenance,
        can_maintain: matches!(
            d.status,
            DeviceStatus::Available | DeviceStatus::Busy | DeviceStatus::Offline
        ),
        retired: d.status == DeviceStatus::Retired,
        price_form: x.price_form.unwrap_or_else(|| d.price_per_gpu_hour.clone()),
        new_token: x.new_token,
        notice: x.notice,
        error: x.error,
        id: d.id,
        name: d.name,
        gpu_count: d.gpu_count,
        gpus_free: d.gpus_free,
        cpu_cores: d.cpu_cores,
        ram_gib: d.ram_gib,
        disk_gib: d.disk_gib,
        region: d.region,
        country: d.country,
        bandwidth_up: d.bandwidth_mbps.up,
        bandwidth_down: d.bandwidth_mbps.down,
        status_reason: d.status_reason,
        price: d.price_per_gpu_hour,
    })
}

/// After a form: back to the device's page saying `done`, or the page again saying why not.
/// A device that is not the organisation's (or not at all) answers 404, as REST does.
async fn after(
    state: &AppState,
    v: &Visitor,
    id: &str,
    result: iocloud_control::Result<String>,
    done: &str,
    price_form: Option<String>,
) -> Response {
    match result {
        // The id the domain answered with, so the redirect holds nothing the form sent.
        Ok(device) => v.answer(
            Redirect::to(&format!("/app/worker/devices/{device}?done={done}")).into_response(),
        ),
        Err(e) => refused(state, v, id, e, price_form).await,
    }
}

async fn refused(
    state: &AppState,
    v: &Visitor,
    id: &str,
    e: DomainError,
    price_form: Option<String>,
) -> Response {
    if matches!(e, DomainError::NotFound(_)) {
        return failed(v, e);
    }
    match refusal(&e) {
        Some((status, words)) => {
            let extras = Extras {
                error: Some(words),
                price_form,
                ..Extras::default()
            };
            render(state, v, id, extras, status).await
        }
        None => failed(v, e),
    }
}

#[derive(Deserialize)]
pub(in crate::app) struct PriceForm {
    #[serde(default)]
    price_per_gpu_hour: String,
}

pub(super) async fn price(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form: f }: Posted<PriceForm>,
) -> Response {
    let update = DeviceUpdate {
        name: None,
        price_per_gpu_hour: Some(f.price_per_gpu_hour.trim().to_string()),
    };
    let result = match device_id(&id) {
        Ok(did) => state
            .control
            .devices
            .update(&v.actor, &did, update)
            .await
            .map(|d| d.id),
        Err(e) => Err(e),
    };
    after(&state, &v, &id, result, "price", Some(f.price_per_gpu_hour)).await
}

#[derive(Deserialize)]
pub(in crate::app) struct ReasonForm {
    #[serde(default)]
    reason: String,
}

pub(super) async fn start_maintenance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, form: f }: Posted<ReasonForm>,
) -> Response {
    let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
    let result = match device_id(&id) {
        Ok(did) => state
            .control
            .devices
            .set_maintenance(&v.actor, &did, true, reason)
            .await
            .map(|d| d.id),
        Err(e) => Err(e),
    };
    after(&state, &v, &id, result, "maintenance_started", None).await
}

pub(super) async fn end_maintenance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = match device_id(&id) {
        Ok(did) => state
            .control
            .devices
            .set_maintenance(&v.actor, &did, false, None)
            .await
            .map(|d| d.id),
        Err(e) => Err(e),
    };
    after(&state, &v, &id, result, "maintenance_ended", None).await
}

/// A new agent token, as `POST /v1/devices/{id}/token` gives: shown on this answer only.
pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let rotated = match device_id(&id) {
        Ok(did) => state.control.devices.rotate_token(&v.actor, &did).await,
        Err(e) => Err(e),
    };
    match rotated {
        Ok(created) => {
            let extras = Extras {
                notice: Some("A new agent token was issued; the old one no longer works.".into()),
                new_token: Some(super::agent_token(&state, &created, true)),
                ..Extras::default()
            };
            render(&state, &v, &created.device.id, extras, StatusCode::OK).await
        }
        Err(e) => refused(&state, &v, &id, e, None).await,
    }
}

pub(super) async fn retire(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { v, .. }: Posted<NoFields>,
) -> Response {
    let result = match device_id(&id) {
        Ok(did) => state
            .control
            .devices
            .retire(&v.actor, &did)
            .await
            .map(|d| d.id),
        Err(e) => Err(e),
    };
    after(&state, &v, &id, result, "retired", None).await
}
