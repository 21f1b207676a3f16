//! IO Explorer's pages: public, no sign-in. The network (tiles, a world map of the regions, GPUs
//! listed and rented by hour, day and month, models and regions, the latest blocks), the device
//! directory with its filters, a device's page and its verification history, the blocks with
//! the emission schedule, and a block's page; `staking.rs` has staking and slashing,
//! `bookings.rs` the rentals and payments. The views are plain figures already in words; the
//! server fills them from the explorer's calls.

mod bookings;
mod governance;
mod staking;

use maud::{DOCTYPE, Markup, html};

use crate::app::layout_head;

pub use bookings::{BookingsView, PaymentLine, RentalLine, bookings_page};
pub use governance::{
    Ballot, GovernanceView, ProposalLine, ProposalView, VersionLine, governance_page, proposal_page,
};
pub use staking::{CaseLine, OfferLine, StakingView, staking_page};

/// An instant as a reader wants it: to the minute, UTC (the `datetime` attribute keeps it
/// whole).
fn when(rfc3339: &str) -> String {
    match rfc3339.get(..16) {
        Some(minute) => format!("{} UTC", minute.replace('T', " ")),
        None => rfc3339.to_string(),
    }
}

/// A figure and what it is.
pub struct Tile {
    pub label: String,
    pub value: String,
}

/// A region on the map and in the table.
pub struct MapRegion {
    pub code: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    pub devices: i64,
    pub gpus: i64,
    pub gpus_hired: i64,
}

/// A GPU model's line.
pub struct ModelLine {
    pub name: String,
    pub devices: i64,
    pub gpus: i64,
    pub gpus_hired: i64,
}

/// A bar of a chart: its whole and, darker, the part of it (zero for none), with what it says
/// in words when pointed at.
pub struct Bar {
    pub whole: f64,
    pub part: f64,
    pub tip: String,
}

/// A day or a month of the network.
pub struct PeriodLine {
    pub period: String,
    pub devices: i64,
    pub gpus: i64,
    pub rented_gpu_hours: i64,
    pub utilisation: String,
    pub emission: String,
    pub staked: String,
}

/// A block's line.
pub struct BlockLine {
    /// RFC 3339.
    pub hour: String,
    pub emission: String,
    pub paid: String,
    pub eligible: i64,
    pub ineligible: i64,
    pub listed_gpus: i64,
}

/// The network page.
pub struct NetworkView {
    pub tiles: Vec<Tile>,
    pub supply: Vec<Tile>,
    pub regions: Vec<MapRegion>,
    pub models: Vec<ModelLine>,
    /// GPUs listed (whole) and rented (part) by hour over the last week.
    pub hours: Vec<Bar>,
    /// The last 30 days, and the last 12 months.
    pub days: Vec<PeriodLine>,
    pub months: Vec<PeriodLine>,
    pub blocks: Vec<BlockLine>,
}

/// A device's line in the directory.
pub struct DeviceLine {
    pub id: String,
    pub model: String,
    pub gpus: String,
    pub region: String,
    pub country: String,
    pub status: String,
    pub reliability: String,
    pub price: String,
}

/// The directory: the filters as asked, the choices, the devices and the next page's query.
pub struct DirectoryView {
    pub models: Vec<(String, String)>,
    pub regions: Vec<(String, String)>,
    pub statuses: Vec<String>,
    pub model: String,
    pub region: String,
    pub status: String,
    pub hired: String,
    pub devices: Vec<DeviceLine>,
    /// The query string of the next page, if there is one.
    pub next: Option<String>,
}

/// An hour of a device: a proof's or a block's outcome.
pub struct HourLine {
    pub hour: String,
    pub outcome: String,
    pub amount: Option<String>,
}

/// A device's page.
pub struct DeviceView {
    pub id: String,
    pub facts: Vec<Tile>,
    /// Hourly proofs over 30 days by outcome.
    pub proofs_30d: Vec<Tile>,
    /// (day, minutes heard).
    pub uptime: Vec<(String, i64)>,
    pub proofs: Vec<HourLine>,
    pub blocks: Vec<HourLine>,
}

/// A year of the emission schedule.
pub struct EmissionLine {
    pub year: i64,
    pub starts: String,
    pub emitted: String,
    pub supply_at_end: String,
    /// Micro-$IO emitted, for the bar's height.
    pub emitted_units: f64,
    pub current: bool,
}

/// A block's page.
pub struct BlockView {
    pub hour: String,
    pub facts: Vec<Tile>,
    /// (reason, devices).
    pub reasons: Vec<(String, i64)>,
    /// (device id, model, region, amount).
    pub earners: Vec<(String, String, String, String)>,
}

/// The explorer's frame: its sections, and a way into the console.
fn frame(section: &str, title: &str, body: Markup) -> Markup {
    let sections = [
        ("/explorer", "Network"),
        ("/explorer/devices", "Devices"),
        ("/explorer/blocks", "Blocks"),
        ("/explorer/staking", "Staking"),
        ("/explorer/bookings", "Bookings"),
        ("/explorer/governance", "Governance"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (layout_head(title))
            body {
                a class="skip-link" href="#main" { "Skip to content" }
                header class="topbar" {
                    a class="brand" href="/explorer" { "IO Explorer" }
                    nav aria-label="Sections" {
                        ul {
                            @for (href, name) in sections {
                                li { a href=(href) aria-current=[(section == name).then_some("page")] { (name) } }
                            }
                        }
                    }
                    div class="who" { a href="/app/login" { "Sign in to IO Cloud" } }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn tiles(tiles: &[Tile]) -> Markup {
    html! {
        div class="tiles" {
            @for t in tiles {
                div class="tile" {
                    p class="tile-label" { (t.label) }
                    p class="tile-value" { (t.value) }
                }
            }
        }
    }
}

/// The regions on an equirectangular map: a dot per region, its area by GPUs listed, filled as
/// far as they are hired. The table below says the same in numbers.
fn world_map(regions: &[MapRegion]) -> Markup {
    let (w, h) = (720.0_f64, 360.0_f64);
    let most = regions.iter().map(|r| r.gpus).max().unwrap_or(0).max(1) as f64;
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="map-title" {
                title id="map-title" { "Regions with devices, sized by GPUs listed" }
                rect x="0" y="0" width=(w) height=(h) fill="none" stroke="currentColor" stroke-opacity="0.2" {}
                // Parallels every 30° and meridians every 60°, the equator and the prime
                // meridian stronger, for bearings.
                @for lat in [-60.0_f64, -30.0, 0.0, 30.0, 60.0] {
                    line x1="0" y1=(format!("{:.1}", (90.0 - lat) / 180.0 * h)) x2=(w) y2=(format!("{:.1}", (90.0 - lat) / 180.0 * h))
                        stroke="currentColor" stroke-opacity=(if lat == 0.0 { "0.3" } else { "0.1" }) {}
                }
                @for lon in [-120.0_f64, -60.0, 0.0, 60.0, 120.0] {
                    line x1=(format!("{:.1}", (lon + 180.0) / 360.0 * w)) y1="0" x2=(format!("{:.1}", (lon + 180.0) / 360.0 * w)) y2=(h)
                        stroke="currentColor" stroke-opacity=(if lon == 0.0 { "0.3" } else { "0.1" }) {}
                }
                @for r in regions {
                    @let x = (r.lon + 180.0) / 360.0 * w;
                    @let y = (90.0 - r.lat) / 180.0 * h;
                    @let radius = 4.0 + 16.0 * (r.gpus as f64 / most).sqrt();
                    circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(format!("{radius:.1}"))
                        fill="currentColor" fill-opacity=(format!("{:.2}", 0.25 + 0.6 * r.gpus_hired as f64 / r.gpus.max(1) as f64)) {
                        title { (r.name) ": " (r.gpus) " GPUs, " (r.gpus_hired) " hired" }
                    }
                }
            }
            figcaption { "Regions with devices on the market: the larger the dot, the more GPUs; the darker, the more of them hired." }
        }
    }
}

/// Bars of a whole and, darker, a part of it, oldest first; a table near it has the same
/// figures.
fn bar_chart(id: &str, title: &str, caption: &str, bars: &[Bar]) -> Markup {
    let (w, h) = (720.0_f64, 160.0_f64);
    let most = bars.iter().map(|b| b.whole).fold(0.0_f64, f64::max);
    let most = if most > 0.0 { most } else { 1.0 };
    let step = w / bars.len().max(1) as f64;
    let width = format!("{:.1}", (step - 1.0).max(1.0));
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby=(id) {
                title id=(id) { (title) }
                @for (i, b) in bars.iter().enumerate() {
                    @let x = format!("{:.1}", i as f64 * step);
                    @let whole = b.whole / most * (h - 10.0);
                    @let part = b.part / most * (h - 10.0);
                    rect x=(x) y=(format!("{:.1}", h - whole)) width=(width) height=(format!("{whole:.1}")) fill="currentColor" fill-opacity="0.25" {
                        title { (b.tip) }
                    }
                    @if b.part > 0.0 {
                        rect x=(x) y=(format!("{:.1}", h - part)) width=(width) height=(format!("{part:.1}")) fill="currentColor" fill-opacity="0.8" {
                            title { (b.tip) }
                        }
                    }
                }
            }
            figcaption { (caption) }
        }
    }
}

fn periods_table(caption: &str, periods: &[PeriodLine]) -> Markup {
    html! {
        table tabindex="0" {
            caption { (caption) }
            thead { tr { th { "Period" } th class="n" { "Devices" } th class="n" { "GPUs" } th class="n" { "GPU-hours rented" } th class="n" { "Utilisation" } th class="n" { "Minted $IO" } th class="n" { "Staked $IO" } } }
            tbody {
                @for p in periods {
                    tr {
                        td { (p.period) }
                        td class="n" { (p.devices) } td class="n" { (p.gpus) } td class="n" { (p.rented_gpu_hours) }
                        td class="n" { (p.utilisation) } td class="n" { (p.emission) } td class="n" { (p.staked) }
                    }
                }
            }
        }
    }
}

fn blocks_table(blocks: &[BlockLine]) -> Markup {
    if blocks.is_empty() {
        return html! { p class="muted" { "No block has been written yet." } };
    }
    html! {
        table tabindex="0" {
            thead { tr { th { "Hour" } th class="n" { "Minted $IO" } th class="n" { "Paid $IO" } th class="n" { "Earning" } th class="n" { "Not earning" } th class="n" { "GPUs listed" } } }
            tbody {
                @for b in blocks {
                    tr {
                        td { a href=(format!("/explorer/blocks/{}", b.hour)) { time datetime=(b.hour) { (b.hour) } } }
                        td class="n" { (b.emission) }
                        td class="n" { (b.paid) }
                        td class="n" { (b.eligible) }
                        td class="n" { (b.ineligible) }
                        td class="n" { (b.listed_gpus) }
                    }
                }
            }
        }
    }
}

/// The network page (`/explorer`).
pub fn network_page(v: &NetworkView) -> Markup {
    frame(
        "Network",
        "The IO network",
        html! {
            (tiles(&v.tiles))
            h2 { "Where the GPUs are" }
            (world_map(&v.regions))
            table tabindex="0" {
                caption { "Regions" }
                thead { tr { th { "Region" } th class="n" { "Devices" } th class="n" { "GPUs" } th class="n" { "Hired" } } }
                tbody {
                    @for r in &v.regions {
                        tr {
                            td { a href=(format!("/explorer/devices?region={}", r.code)) { (r.name) } }
                            td class="n" { (r.devices) } td class="n" { (r.gpus) } td class="n" { (r.gpus_hired) }
                        }
                    }
                }
            }
            h2 { "Models" }
            table tabindex="0" {
                thead { tr { th { "Model" } th class="n" { "Devices" } th class="n" { "GPUs" } th class="n" { "Hired" } } }
                tbody {
                    @for m in &v.models {
                        tr { td { (m.name) } td class="n" { (m.devices) } td class="n" { (m.gpus) } td class="n" { (m.gpus_hired) } }
                    }
                }
            }
            h2 { "Over the last week" }
            @if v.hours.is_empty() {
                p class="muted" { "No block has been written yet." }
            } @else {
                (bar_chart("hours-title", "GPUs listed and rented, by hour", "GPUs listed (light) and rented (dark) in each hour with a block, oldest first.", &v.hours))
            }
            @if !v.days.is_empty() {
                h2 { "By day and by month" }
                @let days: Vec<Bar> = v.days.iter().map(|d| Bar {
                    whole: d.gpus as f64 * 24.0,
                    part: d.rented_gpu_hours as f64,
                    tip: format!("{}: {} GPU-hours rented of about {} listed", d.period, d.rented_gpu_hours, d.gpus * 24),
                }).collect();
                (bar_chart("days-title", "GPU-hours listed and rented, by day", "GPU-hours listed (light) and rented (dark) each day over the last 30 days.", &days))
                (periods_table("The last 30 days", &v.days))
                (periods_table("The last 12 months", &v.months))
            }
            h2 { "Supply of $IO" }
            (tiles(&v.supply))
            h2 { "Latest blocks" }
            (blocks_table(&v.blocks))
            p { a href="/explorer/blocks" { "Every block" } }
        },
    )
}

/// The blocks page (`/explorer/blocks`).
pub fn blocks_page(blocks: &[BlockLine], next: Option<&str>, emission: &[EmissionLine]) -> Markup {
    frame(
        "Blocks",
        "Hourly blocks",
        html! {
            p { "Each hour mints its share of the emission and pays it to the devices that earned it; what no device earned stays in the rewards pool." }
            (blocks_table(blocks))
            @if let Some(next) = next {
                p { a href=(format!("/explorer/blocks?cursor={next}")) { "Older blocks" } }
            }
            h2 { "The emission schedule" }
            p { "Each month mints a little less than the month before until the supply reaches its cap; the year the network is in is darker." }
            @let bars: Vec<Bar> = emission.iter().map(|y| Bar {
                whole: y.emitted_units,
                part: if y.current { y.emitted_units } else { 0.0 },
                tip: format!("Year {}: {} $IO minted", y.year, y.emitted),
            }).collect();
            (bar_chart("emission-title", "$IO minted each year to the cap", "$IO minted in each year from launch; the darker bar is this year.", &bars))
            table tabindex="0" {
                thead { tr { th class="n" { "Year" } th { "From" } th class="n" { "Minted $IO" } th class="n" { "Supply at its end $IO" } } }
                tbody {
                    @for y in emission {
                        tr {
                            td class="n" { (y.year) @if y.current { " (now)" } }
                            td { time datetime=(y.starts) { (y.starts[..10]) } }
                            td class="n" { (y.emitted) } td class="n" { (y.supply_at_end) }
                        }
                    }
                }
            }
        },
    )
}

/// A device's verification history (`/explorer/devices/{id}/proofs`).
pub fn proofs_page(id: &str, proofs: &[HourLine], next: Option<&str>) -> Markup {
    frame(
        "Devices",
        &format!("Hourly proofs of device {id}"),
        html! {
            p { "Every hour a listed device serving no rental answers a proof of work sized to its GPUs; these are its answers, newest first." }
            @if proofs.is_empty() {
                p class="muted" { "No proof yet." }
            } @else {
                (hours_table("Hourly proofs", proofs, false))
            }
            @if let Some(next) = next {
                p { a href=(format!("/explorer/devices/{id}/proofs?cursor={next}")) { "Older proofs" } }
            }
            p { a href=(format!("/explorer/devices/{id}")) { "The device" } }
        },
    )
}

/// The device directory (`/explorer/devices`).
pub fn directory_page(v: &DirectoryView) -> Markup {
    frame(
        "Devices",
        "Devices",
        html! {
            form method="get" action="/explorer/devices" class="filters" {
                label for="f-model" { "Model" }
                select id="f-model" name="gpu_model" {
                    option value="" selected[v.model.is_empty()] { "Any" }
                    @for (id, name) in &v.models {
                        option value=(id) selected[v.model == *id] { (name) }
                    }
                }
                label for="f-region" { "Region" }
                select id="f-region" name="region" {
                    option value="" selected[v.region.is_empty()] { "Any" }
                    @for (code, name) in &v.regions {
                        option value=(code) selected[v.region == *code] { (name) }
                    }
                }
                label for="f-status" { "Status" }
                select id="f-status" name="status" {
                    option value="" selected[v.status.is_empty()] { "Any" }
                    @for s in &v.statuses {
                        option value=(s) selected[v.status == *s] { (s) }
                    }
                }
                label for="f-hired" { "Hired" }
                select id="f-hired" name="hired" {
                    option value="" selected[v.hired.is_empty()] { "Either" }
                    option value="true" selected[v.hired == "true"] { "Hired" }
                    option value="false" selected[v.hired == "false"] { "Idle" }
                }
                button type="submit" class="btn" { "Filter" }
            }
            @if v.devices.is_empty() {
                p class="muted" { "No device matches." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Device" } th { "Model" } th class="n" { "GPUs free / all" } th { "Region" } th { "Status" } th class="n" { "Reliability" } th class="n" { "USD per GPU-hour" } } }
                    tbody {
                        @for d in &v.devices {
                            tr {
                                td class="mono" { a href=(format!("/explorer/devices/{}", d.id)) { (d.id) } }
                                td { (d.model) }
                                td class="n" { (d.gpus) }
                                td { (d.region) " (" (d.country) ")" }
                                td { span class=(format!("badge badge-{}", d.status)) { (d.status) } }
                                td class="n" { (d.reliability) }
                                td class="n" { (d.price) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next {
                p { a href=(format!("/explorer/devices?{next}")) { "More devices" } }
            }
        },
    )
}

fn hours_table(caption: &str, hours: &[HourLine], amounts: bool) -> Markup {
    html! {
        table tabindex="0" {
            caption { (caption) }
            thead { tr { th { "Hour" } th { "Outcome" } @if amounts { th class="n" { "$IO" } } } }
            tbody {
                @for h in hours {
                    tr {
                        td { time datetime=(h.hour) { (h.hour) } }
                        td { (h.outcome) }
                        @if amounts { td class="n" { (h.amount.as_deref().unwrap_or("")) } }
                    }
                }
            }
        }
    }
}

/// A device's page (`/explorer/devices/{id}`).
pub fn device_page(v: &DeviceView) -> Markup {
    frame(
        "Devices",
        &format!("Device {}", v.id),
        html! {
            (tiles(&v.facts))
            h2 { "Uptime, last 30 days" }
            @if v.uptime.is_empty() {
                p class="muted" { "Not heard from in the last 30 days." }
            } @else {
                @let bars: Vec<Bar> = v.uptime.iter().map(|(day, minutes)| Bar {
                    whole: 1440.0,
                    part: *minutes as f64,
                    tip: format!("{day}: {:.1} hours heard", *minutes as f64 / 60.0),
                }).collect();
                (bar_chart("uptime-title", "Hours heard each day", "Each day's 24 hours (light) and the hours the device was heard (dark).", &bars))
                table tabindex="0" {
                    thead { tr { th { "Day" } th class="n" { "Hours heard" } } }
                    tbody {
                        @for (day, minutes) in &v.uptime {
                            tr { td { (day) } td class="n" { (format!("{:.1}", *minutes as f64 / 60.0)) } }
                        }
                    }
                }
            }
            h2 { "Verification, last 30 days" }
            (tiles(&v.proofs_30d))
            p {
                a href=(format!("/explorer/devices/{}/proofs", v.id)) { "Every hourly proof" }
                " · "
                a href=(format!("/explorer/staking?device_id={}", v.id)) { "Its slashing cases" }
            }
            h2 { "Last 48 hours" }
            (hours_table("Hourly proofs", &v.proofs, false))
            (hours_table("Blocks", &v.blocks, true))
        },
    )
}

/// A block's page (`/explorer/blocks/{hour}`).
pub fn block_page(v: &BlockView) -> Markup {
    frame(
        "Blocks",
        &format!("Block {}", v.hour),
        html! {
            (tiles(&v.facts))
            h2 { "Not earning, by rule" }
            @if v.reasons.is_empty() {
                p class="muted" { "Every device judged earned." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Rule" } th class="n" { "Devices" } } }
                    tbody { @for (reason, n) in &v.reasons { tr { td { (reason) } td class="n" { (n) } } } }
                }
            }
            h2 { "Top earners" }
            @if v.earners.is_empty() {
                p class="muted" { "No device earned in this block." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Device" } th { "Model" } th { "Region" } th class="n" { "$IO" } } }
                    tbody {
                        @for (id, model, region, amount) in &v.earners {
                            tr {
                                td class="mono" { a href=(format!("/explorer/devices/{id}")) { (id) } }
                                td { (model) } td { (region) } td class="n" { (amount) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A page the explorer could not find.
pub fn not_found_page(what: &str) -> Markup {
    frame(
        "",
        "Not found",
        html! { p { (what) " is not in the explorer." } p { a href="/explorer" { "The network" } } },
    )
}
