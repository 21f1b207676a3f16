//! IO Worker in the console, for providers: the overview of the organisation's devices (with
//! each device's uptime and what is rented on it now) and the form that adds one, from the same
//! services as `/v1/devices`, `/v1/earnings`, `/v1/balances` and `/v1/stake`. A device's page
//! and its forms are in [`device`]; payouts, wallets and stake in [`money`]; block rewards in
//! [`rewards`]; slashing cases in [`cases`]; co-staking in [`costaking`]. Every form checks its
//! CSRF token before anything else; a refusal shows the page again saying why, with the status
//! REST would answer.

mod cases;
mod costaking;
mod device;
mod money;
mod rewards;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use iocloud_billing::{Currency, Money};
use iocloud_control::providers::devices::{Bandwidth, Location, Rental};
use iocloud_control::providers::stake::StakeView;
use iocloud_control::providers::{DeviceSpec, DeviceStatus, DeviceView};
use iocloud_control::types::device_id;
use iocloud_control::{Action, Actor, Error as DomainError, PageRequest};
use iocloud_web::app::{Counted, DeviceLine, NewDeviceForm, RentalLine, WorkerTiles, WorkerView};
use serde::Deserialize;

use super::session::{Posted, Visitor};
use super::show;
use crate::state::AppState;

/// Devices in a page of the overview's table.
const DEVICES: u32 = 50;

/// What a form did, by the key its redirect carries: only these words are ever shown, so a
/// link cannot make a page say anything else.
const DONE: [(&str, &str); 11] = [
    ("price", "The price was changed."),
    (
        "maintenance_started",
        "The device is in maintenance: no new nodes are placed on it.",
    ),
    (
        "maintenance_ended",
        "The device is back from maintenance and listed again.",
    ),
    (
        "retired",
        "The device is retired; its token no longer works.",
    ),
    (
        "payout",
        "The payout was asked for; its earnings are set aside until it is paid.",
    ),
    (
        "payout_canceled",
        "The payout was canceled; its earnings are back.",
    ),
    ("wallet_default", "That wallet is now the default."),
    ("wallet_removed", "The wallet was removed."),
    ("staked", "The $IO was staked."),
    (
        "unstaked",
        "The stake's 14-day cooldown began; withdraw it once it ends.",
    ),
    ("withdrawn", "The stake is back in your balance."),
];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/app/worker", get(overview))
        .route("/app/worker/devices", post(add_device))
        .route("/app/worker/devices/{id}", get(device::page))
        .route("/app/worker/devices/{id}/price", post(device::price))
        .route(
            "/app/worker/devices/{id}/maintenance/start",
            post(device::start_maintenance),
        )
        .route(
            "/app/worker/devices/{id}/maintenance/end",
            post(device::end_maintenance),
        )
        .route("/app/worker/devices/{id}/rotate", post(device::rotate))
        .route("/app/worker/devices/{id}/retire", post(device::retire))
        .route(
            "/app/worker/payouts",
            get(money::payouts).post(money::ask_payout),
        )
        .route(
            "/app/worker/payouts/{id}/cancel",
            post(money::cancel_payout),
        )
        .route(
            "/app/worker/wallets/{id}/default",
            post(money::default_wallet),
        )
        .route(
            "/app/worker/wallets/{id}/remove",
            post(money::remove_wallet),
        )
        .route(
            "/app/worker/stake",
            get(money::stake_page).post(money::stake),
        )
        .route("/app/worker/unstake", post(money::unstake))
        .route("/app/worker/withdraw", post(money::withdraw))
        .route("/app/worker/rewards", get(rewards::page))
        .route("/app/worker/cases", get(cases::list))
        .route("/app/worker/cases/{id}", get(cases::page))
        .route("/app/worker/cases/{id}/appeal", post(cases::appeal))
        .route("/app/worker/costaking", get(costaking::page))
        .route("/app/worker/costaking/offers", post(costaking::offer))
        .route(
            "/app/worker/costaking/offers/{id}/withdraw",
            post(costaking::withdraw_offer),
        )
        .route(
            "/app/worker/costaking/offers/{id}/take",
            post(costaking::take),
        )
        .route(
            "/app/worker/costaking/positions/{id}/unstake",
            post(costaking::unstake),
        )
        .route(
            "/app/worker/costaking/positions/{id}/withdraw",
            post(costaking::withdraw),
        )
}

/// What the last form did, and which page of devices.
#[derive(Deserialize, Default)]
pub(super) struct WorkerQuery {
    done: Option<String>,
    after: Option<String>,
}

/// The words of a `?done=` key, if it is one of [`DONE`].
fn notice(done: Option<&str>) -> Option<String> {
    crate::app::said_done(done, &DONE)
}

/// A refusal's status (the one REST answers) and its words, naming a field as the form labels
/// it; `None` for a failure of ours, which [`super::failed`] logs and words without its cause.
fn refusal(e: &DomainError) -> Option<(StatusCode, String)> {
    match e {
        DomainError::Validation { field, message, .. } => Some((
            crate::error::domain_status(e),
            sentence(&format!("{}: {message}", field_label(field))),
        )),
        _ => super::team::refusal(e),
    }
}

/// The form field a validation error names, as its label says it.
fn field_label(field: &str) -> &str {
    match field {
        "name" => "Name",
        "gpu_model" => "GPU model",
        "gpu_count" => "GPUs",
        "vram_gib" => "VRAM",
        "cpu_cores" => "CPU cores",
        "ram_gib" => "RAM",
        "disk_gib" => "Disk",
        "region" => "Region",
        "country" => "Country",
        "location.lat" => "Latitude",
        "location.lon" => "Longitude",
        "bandwidth_mbps.up" => "Upload",
        "bandwidth_mbps.down" => "Download",
        "price_per_gpu_hour" => "Price",
        "reason" => "Reason",
        "amount" => "Amount",
        "currency" => "Currency",
        "token" => "Paid as",
        "wallet_id" => "Wallet",
        "reference" => "Reference",
        "statement" => "Statement",
        "device_id" => "Device",
        "reward_share_bps" => "Co-staker's share",
        "term_days" => "Term",
        "model" => "GPU model",
        "min_reliability" => "Minimum reliability",
        other => other,
    }
}

/// `text` as a sentence: a capital first, a full stop last.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut s: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

/// A share of 0 to 1 as a percentage, e.g. `97.5 %`.
fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The model's name for a device, or `CPU only`.
fn model_name(state: &AppState, gpu_model: Option<&str>) -> String {
    match gpu_model {
        Some(id) => state
            .control
            .catalog
            .gpu_model(id)
            .map_or_else(|| id.to_string(), |m| m.name.clone()),
        None => "CPU only".to_string(),
    }
}

/// A node on one of the organisation's devices, as the pages show it.
fn rental_line(r: Rental) -> RentalLine {
    RentalLine {
        node_id: r.node_id,
        status: r.status,
        gpus: r.gpus,
        since: r.since.to_rfc3339(),
        until: r.until.map(|t| t.to_rfc3339()),
        hours: r.duration_hours,
        price: r.price_per_gpu_hour,
    }
}

/// $IO of the stakes in their cooldown.
fn cooling_down(stakes: &[StakeView]) -> String {
    let micros: i64 = stakes
        .iter()
        .filter(|s| s.status == "unbonding")
        .filter_map(|s| Money::parse(&s.amount, Currency::Io).ok())
        .map(Money::micros)
        .fold(0, i64::saturating_add);
    Money::from_micros(micros, Currency::Io).to_decimal()
}

async fn overview(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<WorkerQuery>,
) -> Response {
    let form = fresh_form(&state);
    let said = Said {
        notice: notice(q.done.as_deref()),
        error: None,
    };
    render(&state, &v, q.after.as_deref(), form, said, StatusCode::OK).await
}

/// What the page says above everything else.
#[derive(Default)]
struct Said {
    notice: Option<String>,
    error: Option<String>,
}

async fn render(
    state: &AppState,
    v: &Visitor,
    after: Option<&str>,
    form: NewDeviceForm,
    said: Said,
    status: StatusCode,
) -> Response {
    show(
        state,
        v,
        status,
        view(state, &v.actor, after, form, said),
        iocloud_web::app::worker_page,
    )
    .await
}

/// Every device of the organisation, for the counts.
async fn all_devices(state: &AppState, actor: &Actor) -> iocloud_control::Result<Vec<DeviceView>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = PageRequest::parse(after.as_deref(), Some(iocloud_control::page::MAX_LIMIT))?;
        let found = state.control.devices.list(actor, &page, None).await?;
        out.extend(found.items);
        match found.next_cursor {
            Some(c) => after = Some(c),
            None => return Ok(out),
        }
    }
}

fn count(devices: &[DeviceView]) -> WorkerTiles {
    let mut t = WorkerTiles::default();
    for d in devices {
        match d.status {
            DeviceStatus::Available => t.listed += 1,
            DeviceStatus::Busy => {
                t.listed += 1;
                t.busy += 1;
            }
            DeviceStatus::Offline => t.offline += 1,
            DeviceStatus::PendingVerification
            | DeviceStatus::VerificationFailed
            | DeviceStatus::PendingStake => t.waiting += 1,
            _ => {}
        }
        if d.status != DeviceStatus::Retired {
            t.gpus_total += d.gpu_count;
            t.gpus_rented += (d.gpu_count - d.gpus_free).max(0);
        }
    }
    t
}

async fn view(
    state: &AppState,
    actor: &Actor,
    after: Option<&str>,
    form: NewDeviceForm,
    said: Said,
) -> iocloud_control::Result<WorkerView> {
    let c = &state.control;
    let all = all_devices(state, actor).await?;
    let mut tiles = count(&all);
    let money = actor.authorize(Action::BillingRead).is_ok();
    let (earnings, earnings_by_device) = if money {
        let balances = super::billing::balances(state, actor).await?;
        tiles.earnings = Some(
            balances
                .into_iter()
                .filter(|b| b.earnings.bytes().any(|d| matches!(d, b'1'..=b'9')))
                .map(|b| (b.currency, b.earnings))
                .collect(),
        );
        let stake = c.stake.summary(actor).await?;
        tiles.cooling_down = Some(cooling_down(&stake.stakes));
        tiles.staked = Some(stake.active);
        // Every device of the organisation by id, retired ones too: they earned while they ran.
        let names: HashMap<&str, String> = all
            .iter()
            .map(|d| {
                let name = if d.status == DeviceStatus::Retired {
                    format!("{} (retired)", d.name)
                } else {
                    d.name.clone()
                };
                (d.id.as_str(), name)
            })
            .collect();
        let name_of = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
        (
            Some(super::chart::by_day(state, actor, Counted::Earnings).await?),
            Some(super::chart::earnings_by_device(state, actor, name_of).await?),
        )
    } else {
        (None, None)
    };
    // A cursor this console did not make starts at the first page.
    let page = PageRequest::parse(after, Some(DEVICES)).unwrap_or(PageRequest {
        after: None,
        limit: DEVICES,
    });
    let first_page = page.after.is_none();
    let listed = c.devices.list(actor, &page, None).await?;
    let ids = listed
        .items
        .iter()
        .map(|d| device_id(&d.id))
        .collect::<iocloud_control::Result<Vec<_>>>()?;
    // What is rented on the page's devices, in one read.
    let mut rented: HashMap<String, Vec<RentalLine>> = HashMap::new();
    for r in c.devices.rentals(actor, &ids).await? {
        rented
            .entry(r.device_id.to_string())
            .or_default()
            .push(rental_line(r));
    }
    let mut devices = Vec::with_capacity(listed.items.len());
    for (d, id) in listed.items.into_iter().zip(&ids) {
        let uptime = c.devices.uptime(actor, id).await?;
        devices.push(DeviceLine {
            model: model_name(state, d.gpu_model.as_deref()),
            status: d.status.as_str().to_string(),
            reliability: Some(percent(uptime.reliability)),
            uptime_24h: percent(uptime.last_24h),
            uptime_7d: percent(uptime.last_7d),
            uptime_30d: percent(uptime.last_30d),
            rentals: rented.remove(&d.id).unwrap_or_default(),
            last_heartbeat: d.telemetry.last_heartbeat_at.map(|t| t.to_rfc3339()),
            id: d.id,
            name: d.name,
            gpu_count: d.gpu_count,
            gpus_free: d.gpus_free,
            region: d.region,
            status_reason: d.status_reason,
            price: d.price_per_gpu_hour,
        });
    }
    let (models, regions) = super::catalog_choices(state);
    Ok(WorkerView {
        tiles,
        devices,
        next_devices: listed.next_cursor,
        first_page,
        earnings,
        earnings_by_device,
        can_write: actor.authorize(Action::ResourcesWrite).is_ok(),
        models,
        regions,
        form,
        notice: said.notice,
        error: said.error,
    })
}

/// The add form before anything is typed: a common machine, to be corrected.
fn fresh_form(state: &AppState) -> NewDeviceForm {
    let c = &state.control.catalog;
    NewDeviceForm {
        gpu_model: c
            .gpu_models
            .first()
            .map(|m| m.id.clone())
            .unwrap_or_default(),
        gpu_count: "1".into(),
        cpu_cores: "8".into(),
        ram_gib: "32".into(),
        disk_gib: "500".into(),
        region: c
            .regions
            .first()
            .map(|r| r.code.clone())
            .unwrap_or_default(),
        bandwidth_up: "1000".into(),
        bandwidth_down: "1000".into(),
        ..NewDeviceForm::default()
    }
}

#[derive(Deserialize)]
pub(super) struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    gpu_model: String,
    #[serde(default)]
    gpu_count: String,
    #[serde(default)]
    cpu_cores: String,
    #[serde(default)]
    ram_gib: String,
    #[serde(default)]
    disk_gib: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    lat: String,
    #[serde(default)]
    lon: String,
    #[serde(default)]
    bandwidth_up: String,
    #[serde(default)]
    bandwidth_down: String,
    #[serde(default)]
    price_per_gpu_hour: String,
}

/// The spec `POST /v1/devices` takes, from the form: numbers read, an empty location taken
/// as the region's own coordinates; the domain checks the rest.
fn spec_of(state: &AppState, f: &NewDeviceForm) -> iocloud_control::Result<DeviceSpec> {
    let whole = |field: &'static str, text: &str| {
        text.trim()
            .parse::<i64>()
            .map_err(|_| DomainError::validation(field, "a whole number, like 8"))
    };
    let gpu_model = match f.gpu_model.trim() {
        "" => None,
        m => Some(m.to_string()),
    };
    let gpu_count = match f.gpu_count.trim() {
        "" if gpu_model.is_none() => 0,
        text => whole("gpu_count", text)?,
    };
    let region = f.region.trim();
    let (lat, lon) = state
        .control
        .catalog
        .region(region)
        .map_or((0.0, 0.0), |r| (r.lat, r.lon));
    let degrees = |field: &'static str, text: &str, default: f64| match text.trim() {
        "" => Ok(default),
        t => t
            .parse::<f64>()
            .map_err(|_| DomainError::validation(field, "degrees as a number, like 50.11")),
    };
    Ok(DeviceSpec {
        name: f.name.clone(),
        gpu_model,
        gpu_count,
        vram_gib: None,
        cpu_cores: whole("cpu_cores", &f.cpu_cores)?,
        ram_gib: whole("ram_gib", &f.ram_gib)?,
        disk_gib: whole("disk_gib", &f.disk_gib)?,
        region: region.to_string(),
        country: f.country.trim().to_ascii_uppercase(),
        location: Location {
            lat: degrees("location.lat", &f.lat, lat)?,
            lon: degrees("location.lon", &f.lon, lon)?,
        },
        bandwidth_mbps: Bandwidth {
            up: whole("bandwidth_mbps.up", &f.bandwidth_up)?,
            down: whole("bandwidth_mbps.down", &f.bandwidth_down)?,
        },
        price_per_gpu_hour: f.price_per_gpu_hour.trim().to_string(),
    })
}

/// Adds a device as `POST /v1/devices` does. Its agent token is shown on this answer only
/// (never cached, never in a URL): the device's page, with the token and how to use it.
async fn add_device(
    State(state): State<AppState>,
    Posted { v, form: f }: Posted<AddForm>,
) -> Response {
    let typed = NewDeviceForm {
        name: f.name,
        gpu_model: f.gpu_model,
        gpu_count: f.gpu_count,
        cpu_cores: f.cpu_cores,
        ram_gib: f.ram_gib,
        disk_gib: f.disk_gib,
        region: f.region,
        country: f.country,
        lat: f.lat,
        lon: f.lon,
        bandwidth_up: f.bandwidth_up,
        bandwidth_down: f.bandwidth_down,
        price_per_gpu_hour: f.price_per_gpu_hour,
    };
    let created = match spec_of(&state, &typed) {
        Ok(spec) => state.control.devices.register(&v.actor, spec).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(created) => {
            let token = agent_token(&state, &created, false);
            let extras = device::Extras {
                notice: Some(format!("{} was added.", created.device.name)),
                new_token: Some(token),
                ..device::Extras::default()
            };
            device::render(&state, &v, &created.device.id, extras, StatusCode::OK).await
        }
        Err(e) => match refusal(&e) {
            Some((status, words)) => {
                let said = Said {
                    notice: None,
                    error: Some(words),
                };
                render(&state, &v, None, typed, said, status).await
            }
            None => super::failed(&v, e),
        },
    }
}

/// A device's new token as its box shows it, with the one command that starts its agent on
/// the machine (this server's public address in it).
fn agent_token(
    state: &AppState,
    created: &iocloud_control::providers::CreatedDevice,
    rotated: bool,
) -> iocloud_web::app::AgentToken {
    let server = state
        .config
        .public_url()
        .unwrap_or_else(|_| format!("http://{}", state.config.listen));
    iocloud_web::app::AgentToken {
        device_id: created.device.id.clone(),
        device_name: created.device.name.clone(),
        token: created.token.clone(),
        rotated,
        heartbeat_secs: state.config.heartbeat_interval_secs,
        command: format!(
            "iocloud agent run --server {server} --device {} --gpus {} --token {}",
            created.device.id, created.device.gpu_count, created.token
        ),
    }
}
