//! IO Explorer's pages (`/explorer…`): public, from the same calls as `/v1/explorer`, each
//! figure put in words here and laid out by `iocloud_web::explorer`. Cacheable by anyone for a
//! little while, like the REST answers: nothing on them belongs to a visitor.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use iocloud_control::Error as DomainError;
use iocloud_control::explorer::{
    CaseFilter, DeviceFilter, ExplorerBlock, ExplorerCase, ExplorerDevice, HourOutcome,
    NetworkPeriod, Payment, Period, Rental,
};
use iocloud_control::page::PageRequest;
use iocloud_db::Timestamp;
use iocloud_web::explorer::{
    Bar, BlockLine, BlockView, BookingsView, CaseLine, DeviceLine, DeviceView, DirectoryView,
    EmissionLine, HourLine, MapRegion, ModelLine, NetworkView, OfferLine, PaymentLine, PeriodLine,
    RentalLine, StakingView, Tile,
};

use crate::state::AppState;

/// Statuses the directory filters by.
const STATUSES: [&str; 5] = ["available", "busy", "offline", "maintenance", "suspended"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/explorer", get(network))
        .route("/explorer/devices", get(directory))
        .route("/explorer/devices/{id}", get(device))
        .route("/explorer/devices/{id}/proofs", get(device_proofs))
        .route("/explorer/blocks", get(blocks))
        .route("/explorer/blocks/{hour}", get(block))
        .route("/explorer/staking", get(staking))
        .route("/explorer/bookings", get(bookings))
}

/// A public page: the console's CSP, cacheable for 15 seconds.
pub(super) fn page(status: StatusCode, markup: iocloud_web::app::Markup) -> Response {
    let mut res = (status, markup).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(iocloud_web::app::APP_CSP),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=15"),
    );
    res
}

/// What a call refused, as a page: not found, a bad filter, or our failure (logged).
pub(super) fn refused(e: DomainError) -> Response {
    match e {
        DomainError::NotFound(what) => page(
            StatusCode::NOT_FOUND,
            iocloud_web::explorer::not_found_page(&format!("This {what}")),
        ),
        DomainError::Validation { field, message, .. } => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            iocloud_web::explorer::not_found_page(&format!("A {field} that is {message}")),
        ),
        other => {
            tracing::error!(error = %other, "an explorer page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                iocloud_web::explorer::not_found_page("What you asked for"),
            )
        }
    }
}

pub(super) fn tile(label: &str, value: impl ToString) -> Tile {
    Tile {
        label: label.to_string(),
        value: value.to_string(),
    }
}

/// A decimal amount in whole units with thousands separated: `499000000.25` is
/// `499,000,000`. The supply's figures are read at a glance, not to the cent.
pub(super) fn whole(decimal: &str) -> String {
    let units = decimal.split('.').next().unwrap_or(decimal);
    let (sign, digits) = units.strip_prefix('-').map_or(("", units), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn block_line(b: ExplorerBlock) -> BlockLine {
    BlockLine {
        hour: b.hour.to_rfc3339(),
        emission: b.emission,
        paid: b.paid,
        eligible: b.eligible_devices,
        ineligible: b.ineligible_devices,
        listed_gpus: b.listed_gpus,
    }
}

fn period_line(p: NetworkPeriod) -> PeriodLine {
    PeriodLine {
        period: p.period,
        devices: p.devices,
        gpus: p.gpus,
        rented_gpu_hours: p.rented_gpu_hours,
        utilisation: format!("{} %", p.utilisation_pct),
        emission: whole(&p.emission),
        staked: whole(&p.staked),
    }
}

async fn network(State(s): State<AppState>) -> Response {
    let x = &s.control.explorer;
    let loaded = async {
        let now = x.network().await?;
        let hours = x.network_hours(7 * 24).await?;
        let days = x.network_history(Period::Day, 30).await?;
        let months = x.network_history(Period::Month, 12).await?;
        let blocks = x.blocks(&PageRequest::parse(None, Some(5))?).await?;
        let supply = s.control.rewards.supply(None).await?;
        Ok::<_, DomainError>((now, hours, days, months, blocks, supply))
    }
    .await;
    let (now, hours, days, months, blocks, supply) = match loaded {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let view = NetworkView {
        tiles: vec![
            tile("Devices on the market", now.devices),
            tile("GPUs", now.gpus),
            tile("GPUs hired", now.gpus_hired),
            tile("Utilisation", format!("{} %", now.utilisation_pct)),
            tile("Countries", now.countries),
        ],
        supply: vec![
            tile("Circulating $IO", whole(&supply.circulating)),
            tile("Total supply $IO", whole(&supply.total)),
            tile("Staked $IO", whole(&supply.staked)),
            tile("Burned $IO", whole(&supply.burned)),
            tile("Cap $IO", whole(&supply.cap)),
        ],
        regions: now
            .by_region
            .into_iter()
            .map(|r| MapRegion {
                code: r.region,
                name: r.name,
                lat: r.lat,
                lon: r.lon,
                devices: r.devices,
                gpus: r.gpus,
                gpus_hired: r.gpus_hired,
            })
            .collect(),
        models: now
            .by_model
            .into_iter()
            .map(|m| ModelLine {
                name: m.name,
                devices: m.devices,
                gpus: m.gpus,
                gpus_hired: m.gpus_hired,
            })
            .collect(),
        hours: hours
            .into_iter()
            .map(|h| Bar {
                whole: h.gpus as f64,
                part: h.rented_gpus as f64,
                tip: format!(
                    "{}: {} of {} GPUs rented",
                    h.hour.to_rfc3339(),
                    h.rented_gpus,
                    h.gpus
                ),
            })
            .collect(),
        days: days.into_iter().map(period_line).collect(),
        months: months.into_iter().map(period_line).collect(),
        blocks: blocks.items.into_iter().map(block_line).collect(),
    };
    page(StatusCode::OK, iocloud_web::explorer::network_page(&view))
}

#[derive(Debug, Default, serde::Deserialize)]
struct DirectoryQuery {
    gpu_model: Option<String>,
    region: Option<String>,
    status: Option<String>,
    hired: Option<String>,
    cursor: Option<String>,
}

/// An empty field of the form is no filter.
pub(super) fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

fn device_line(d: ExplorerDevice) -> DeviceLine {
    DeviceLine {
        model: d.gpu_model.unwrap_or_else(|| "CPU-only".into()),
        gpus: format!("{} / {}", d.gpus_free, d.gpu_count),
        region: d.region,
        country: d.country,
        status: d.status,
        reliability: format!("{:.0} %", d.reliability * 100.0),
        price: d.price_per_gpu_hour,
        id: d.id,
    }
}

async fn directory(State(s): State<AppState>, Query(q): Query<DirectoryQuery>) -> Response {
    let hired = match given(&q.hired).as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return refused(DomainError::validation("hired", "true or false"));
        }
    };
    let filter = DeviceFilter {
        gpu_model: given(&q.gpu_model),
        region: given(&q.region),
        status: given(&q.status),
        hired,
        min_reliability: None,
    };
    let found = match PageRequest::parse(given(&q.cursor).as_deref(), None) {
        Ok(p) => s.control.explorer.devices(&filter, &p).await,
        Err(e) => Err(e),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return refused(e),
    };
    let catalog = &s.control.catalog;
    let mut models: Vec<(String, String)> = catalog
        .gpu_models
        .iter()
        .map(|m| (m.id.clone(), m.name.clone()))
        .collect();
    models.push(("cpu".into(), "CPU-only".into()));
    let regions = catalog
        .regions
        .iter()
        .map(|r| (r.code.clone(), r.name.clone()))
        .collect();
    let next = found.next_cursor.map(|c| {
        let mut pairs = vec![format!("cursor={c}")];
        for (k, v) in [
            ("gpu_model", &filter.gpu_model),
            ("region", &filter.region),
            ("status", &filter.status),
        ] {
            if let Some(v) = v {
                pairs.push(format!("{k}={v}"));
            }
        }
        if let Some(h) = filter.hired {
            pairs.push(format!("hired={h}"));
        }
        pairs.join("&")
    });
    let view = DirectoryView {
        models,
        regions,
        statuses: STATUSES.iter().map(|s| s.to_string()).collect(),
        model: filter.gpu_model.unwrap_or_default(),
        region: filter.region.unwrap_or_default(),
        status: filter.status.unwrap_or_default(),
        hired: filter.hired.map(|h| h.to_string()).unwrap_or_default(),
        devices: found.items.into_iter().map(device_line).collect(),
        next,
    };
    page(StatusCode::OK, iocloud_web::explorer::directory_page(&view))
}

async fn device(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let d = match s.control.explorer.device(&id).await {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    let hour = hour_line;
    let dev = &d.device;
    let view = DeviceView {
        id: dev.id.clone(),
        facts: vec![
            tile(
                "Model",
                dev.gpu_model.clone().unwrap_or_else(|| "CPU-only".into()),
            ),
            tile(
                "GPUs free / all",
                format!("{} / {}", dev.gpus_free, dev.gpu_count),
            ),
            tile("Region", format!("{} ({})", dev.region, dev.country)),
            tile("Status", &dev.status),
            tile("Reliability", format!("{:.0} %", dev.reliability * 100.0)),
            tile("USD per GPU-hour", &dev.price_per_gpu_hour),
            tile("Stake needed $IO", &d.required_stake),
            tile("Co-staked $IO", &d.co_staked),
        ],
        proofs_30d: vec![
            tile("Proofs passed", d.proofs_30d.passed),
            tile("Proofs failed", d.proofs_30d.failed),
            tile("Proofs unanswered", d.proofs_30d.unanswered),
        ],
        uptime: d
            .uptime
            .iter()
            .map(|u| (u.day.clone(), u.minutes))
            .collect(),
        proofs: d.proofs.into_iter().map(hour).collect(),
        blocks: d.blocks.into_iter().map(hour).collect(),
    };
    page(StatusCode::OK, iocloud_web::explorer::device_page(&view))
}

#[derive(Debug, Default, serde::Deserialize)]
struct BlocksQuery {
    cursor: Option<String>,
}

fn hour_line(h: HourOutcome) -> HourLine {
    HourLine {
        hour: h.hour.to_rfc3339(),
        outcome: h.outcome.replace('_', " "),
        amount: h.amount,
    }
}

async fn device_proofs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<BlocksQuery>,
) -> Response {
    let found = match PageRequest::parse(given(&q.cursor).as_deref(), None) {
        Ok(p) => s.control.explorer.device_proofs(&id, &p).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(f) => {
            let lines: Vec<HourLine> = f.items.into_iter().map(hour_line).collect();
            page(
                StatusCode::OK,
                iocloud_web::explorer::proofs_page(&id, &lines, f.next_cursor.as_deref()),
            )
        }
        Err(e) => refused(e),
    }
}

async fn blocks(State(s): State<AppState>, Query(q): Query<BlocksQuery>) -> Response {
    let found = match PageRequest::parse(given(&q.cursor).as_deref(), None) {
        Ok(p) => s.control.explorer.blocks(&p).await,
        Err(e) => Err(e),
    };
    let schedule = s.control.explorer.emission_schedule();
    let emission: Vec<EmissionLine> = schedule
        .years
        .into_iter()
        .map(|y| EmissionLine {
            emitted_units: y.emitted.parse().unwrap_or(0.0),
            current: y.year == schedule.current_year,
            year: y.year,
            starts: y.starts_at.to_rfc3339(),
            emitted: whole(&y.emitted),
            supply_at_end: whole(&y.supply_at_end),
        })
        .collect();
    match found {
        Ok(f) => {
            let lines: Vec<BlockLine> = f.items.into_iter().map(block_line).collect();
            page(
                StatusCode::OK,
                iocloud_web::explorer::blocks_page(&lines, f.next_cursor.as_deref(), &emission),
            )
        }
        Err(e) => refused(e),
    }
}

async fn block(State(s): State<AppState>, Path(hour): Path<String>) -> Response {
    let Some(at) = Timestamp::parse_rfc3339(hour.trim()) else {
        return refused(DomainError::validation("hour", "not an RFC 3339 time"));
    };
    let b = match s.control.explorer.block(at).await {
        Ok(b) => b,
        Err(e) => return refused(e),
    };
    let k = &b.block;
    let view = BlockView {
        hour: k.hour.to_rfc3339(),
        facts: vec![
            tile("Minted $IO", &k.emission),
            tile("GPU pool $IO", &k.gpu_pool),
            tile("CPU pool $IO", &k.cpu_pool),
            tile("Paid $IO", &k.paid),
            tile("Devices earning", k.eligible_devices),
            tile("Devices not earning", k.ineligible_devices),
            tile("GPUs listed", k.listed_gpus),
            tile("GPUs rented", k.rented_gpus),
        ],
        reasons: b
            .ineligible_by_reason
            .iter()
            .map(|r| (r.reason.replace('_', " "), r.devices))
            .collect(),
        earners: b
            .top_earners
            .iter()
            .map(|e| {
                (
                    e.device_id.clone(),
                    e.gpu_model.clone(),
                    e.region.clone(),
                    e.amount.clone(),
                )
            })
            .collect(),
    };
    page(StatusCode::OK, iocloud_web::explorer::block_page(&view))
}

#[derive(Debug, Default, serde::Deserialize)]
struct StakingQuery {
    device_id: Option<String>,
    cursor: Option<String>,
}

fn case_line(c: ExplorerCase) -> CaseLine {
    let evidence: Vec<String> = c
        .evidence
        .iter()
        .map(|e| format!("{} {}", e.count, e.kind.replace('_', " ")))
        .collect();
    CaseLine {
        opened: c.opened_at.to_rfc3339(),
        device_id: c.device_id,
        model: c.gpu_model,
        rule: c.rule.replace('_', " "),
        status: c.status,
        amount: c.amount,
        evidence: evidence.join(", "),
        appealed: c.appealed,
    }
}

async fn staking(State(s): State<AppState>, Query(q): Query<StakingQuery>) -> Response {
    let x = &s.control.explorer;
    let filter = CaseFilter {
        device_id: given(&q.device_id),
        ..CaseFilter::default()
    };
    let loaded = async {
        let now = x.staking().await?;
        let days = x.network_history(Period::Day, 30).await?;
        let offers = x
            .open_offers(None, &PageRequest::parse(None, Some(20))?)
            .await?;
        let cases = x
            .cases(
                &filter,
                &PageRequest::parse(given(&q.cursor).as_deref(), None)?,
            )
            .await?;
        Ok::<_, DomainError>((now, days, offers, cases))
    }
    .await;
    let (now, days, offers, cases) = match loaded {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let next = cases.next_cursor.map(|c| match &filter.device_id {
        Some(d) => format!("device_id={d}&cursor={c}"),
        None => format!("cursor={c}"),
    });
    let view = StakingView {
        tiles: vec![
            tile("Staked $IO", whole(&now.staked)),
            tile("Unbonding $IO", whole(&now.unbonding)),
            tile("Co-staked $IO", whole(&now.co_staked)),
            tile("Open co-staking offers", now.open_offers),
            tile("In slashing escrow $IO", whole(&now.in_escrow)),
            tile("Burned to date $IO", whole(&now.burned)),
        ],
        bonded: now
            .bonded_by_model
            .into_iter()
            .map(|m| (m.name, m.devices, m.gpus, whole(&m.bonded)))
            .collect(),
        by_status: now
            .cases
            .into_iter()
            .map(|c| (c.status, c.cases, c.amount))
            .collect(),
        staked_days: days
            .into_iter()
            .map(|d| (d.period, d.staked.parse().unwrap_or(0.0), whole(&d.staked)))
            .collect(),
        offers: offers
            .items
            .into_iter()
            .map(|o| OfferLine {
                device_id: o.device_id,
                model: o.gpu_model.unwrap_or_else(|| "CPU-only".into()),
                region: o.region,
                amount: whole(&o.amount),
                share: format!("{:.2} %", o.reward_share_bps as f64 / 100.0),
                term_days: o.term_days,
            })
            .collect(),
        cases: cases.items.into_iter().map(case_line).collect(),
        device_id: filter.device_id,
        next,
    };
    page(StatusCode::OK, iocloud_web::explorer::staking_page(&view))
}

#[derive(Debug, Default, serde::Deserialize)]
struct BookingsQuery {
    rentals: Option<String>,
    payments: Option<String>,
}

fn rental_line(r: Rental) -> RentalLine {
    RentalLine {
        started: r.started_at.to_rfc3339(),
        ended: r
            .ended_at
            .map_or_else(|| "running".to_string(), |t| t.to_rfc3339()),
        device_id: r.device_id,
        model: r.gpu_model,
        region: r.region,
        gpu_hours: r.gpu_hours,
        amount: format!("{} {}", r.amount, r.currency),
    }
}

fn payment_line(p: Payment) -> PaymentLine {
    let what = match (p.rail.as_str(), p.direction.as_str()) {
        ("card", _) => "Card top-up",
        (_, "out") => "Payout on Solana",
        _ => "Deposit on Solana",
    };
    let amount = match &p.token {
        Some(t) if *t != p.currency => format!("{} {} (sent as {t})", p.amount, p.currency),
        _ => format!("{} {}", p.amount, p.currency),
    };
    PaymentLine {
        at: p.at.to_rfc3339(),
        what: what.to_string(),
        amount,
        signature: p.signature,
    }
}

async fn bookings(State(s): State<AppState>, Query(q): Query<BookingsQuery>) -> Response {
    let x = &s.control.explorer;
    let loaded = async {
        let rentals = x
            .rentals(&PageRequest::parse(given(&q.rentals).as_deref(), None)?)
            .await?;
        let payments = x
            .payments(&PageRequest::parse(given(&q.payments).as_deref(), None)?)
            .await?;
        Ok::<_, DomainError>((rentals, payments))
    }
    .await;
    let (rentals, payments) = match loaded {
        Ok(l) => l,
        Err(e) => return refused(e),
    };
    let view = BookingsView {
        next_rentals: rentals.next_cursor.map(|c| format!("rentals={c}")),
        next_payments: payments.next_cursor.map(|c| format!("payments={c}")),
        rentals: rentals.items.into_iter().map(rental_line).collect(),
        payments: payments.items.into_iter().map(payment_line).collect(),
    };
    page(StatusCode::OK, iocloud_web::explorer::bookings_page(&view))
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_units_read_at_a_glance() {
        assert_eq!(super::whole("499000000.25"), "499,000,000");
        assert_eq!(super::whole("1000.00"), "1,000");
        assert_eq!(super::whole("999"), "999");
        assert_eq!(super::whole("-1234567.5"), "-1,234,567");
        assert_eq!(super::whole("0.00"), "0");
    }
}
