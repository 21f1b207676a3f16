//! IO Explorer's pages: public, no sign-in. The network (tiles, a world map of the regions, GPUs
//! listed and rented by hour, models and regions, the latest blocks), the device directory with
//! its filters, a device's page, and a block's page. The views are plain figures already in
//! words; the server fills them from the explorer's calls.

use maud::{DOCTYPE, Markup, html};

use crate::app::layout_head;

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

/// An hour of the history: GPUs listed, and of them rented.
pub struct HourBar {
    pub hour: String,
    pub gpus: i64,
    pub rented_gpus: i64,
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
    pub hours: Vec<HourBar>,
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
    /// (day, minutes heard).
    pub uptime: Vec<(String, i64)>,
    pub proofs: Vec<HourLine>,
    pub blocks: Vec<HourLine>,
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

/// GPUs listed and rented by hour, as bars; the table after it has the same figures.
fn hours_chart(hours: &[HourBar]) -> Markup {
    let (w, h) = (720.0_f64, 160.0_f64);
    let most = hours.iter().map(|b| b.gpus).max().unwrap_or(0).max(1) as f64;
    let step = w / hours.len().max(1) as f64;
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-labelledby="hours-title" {
                title id="hours-title" { "GPUs listed and rented, by hour" }
                @for (i, b) in hours.iter().enumerate() {
                    @let listed = b.gpus as f64 / most * (h - 10.0);
                    @let rented = b.rented_gpus as f64 / most * (h - 10.0);
                    rect x=(format!("{:.1}", i as f64 * step)) y=(format!("{:.1}", h - listed)) width=(format!("{:.1}", (step - 1.0).max(1.0))) height=(format!("{listed:.1}")) fill="currentColor" fill-opacity="0.25" {}
                    rect x=(format!("{:.1}", i as f64 * step)) y=(format!("{:.1}", h - rented)) width=(format!("{:.1}", (step - 1.0).max(1.0))) height=(format!("{rented:.1}")) fill="currentColor" fill-opacity="0.8" {
                        title { (b.hour) ": " (b.rented_gpus) " of " (b.gpus) " GPUs rented" }
                    }
                }
            }
            figcaption { "GPUs listed (light) and rented (dark) in each hour with a block, oldest first." }
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
                (hours_chart(&v.hours))
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
pub fn blocks_page(blocks: &[BlockLine], next: Option<&str>) -> Markup {
    frame(
        "Blocks",
        "Hourly blocks",
        html! {
            p { "Each hour mints its share of the emission and pays it to the devices that earned it; what no device earned stays in the rewards pool." }
            (blocks_table(blocks))
            @if let Some(next) = next {
                p { a href=(format!("/explorer/blocks?cursor={next}")) { "Older blocks" } }
            }
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
                table tabindex="0" {
                    thead { tr { th { "Day" } th class="n" { "Hours heard" } } }
                    tbody {
                        @for (day, minutes) in &v.uptime {
                            tr { td { (day) } td class="n" { (format!("{:.1}", *minutes as f64 / 60.0)) } }
                        }
                    }
                }
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
