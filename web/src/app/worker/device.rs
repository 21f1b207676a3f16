//! A device's page: what it is and how it is doing (its uptime per day as a chart, what it
//! earned in each of its last blocks or why nothing), what is rented on it now (never whose
//! cluster it is), what its stake asks, its recent status changes, and the forms that change
//! its price, take it out for maintenance and back, replace its agent's token and retire it.

use maud::{Markup, html};

use super::super::chart::{UptimeSeries, uptime_chart};
use super::super::layout::{Shell, page};
use super::rewards::{RewardHourLine, device_hours};
use super::{
    AgentToken, RentalLine, csrf, device_badge, moment, rented_gpus, said, subnav, token_box,
};

/// A status change of the device.
pub struct DeviceEventLine {
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
}

pub struct DevicePage {
    pub id: String,
    pub name: String,
    /// The model's name, or `CPU only`.
    pub model: String,
    pub gpu_count: i64,
    pub gpus_free: i64,
    pub vram_gib: Option<i64>,
    pub cpu_cores: i64,
    pub ram_gib: i64,
    pub disk_gib: i64,
    pub region: String,
    pub country: String,
    pub location: String,
    pub bandwidth_up: i64,
    pub bandwidth_down: i64,
    pub status: String,
    pub status_reason: Option<String>,
    /// USD per GPU-hour (per node-hour without GPUs).
    pub price: String,
    /// The model's price bounds, for the price form's hint.
    pub price_bounds: Option<String>,
    /// Percentages, e.g. `99.2 %`.
    pub reliability: String,
    pub provider_reliability: String,
    pub uptime_24h: String,
    pub uptime_7d: String,
    pub uptime_30d: String,
    /// Uptime per day over the last 30 days, oldest first.
    pub uptime_days: UptimeSeries,
    /// Its last blocks, newest first: what it earned in each hour, or why nothing.
    pub reward_hours: Vec<RewardHourLine>,
    /// The nodes of customers' clusters on it now.
    pub rentals: Vec<RentalLine>,
    pub nodes_ok: i64,
    pub nodes_failed: i64,
    pub last_heartbeat: Option<String>,
    pub agent_version: Option<String>,
    pub utilization_pct: Option<i64>,
    pub temperature_c: Option<i64>,
    pub verified_at: Option<String>,
    pub created_at: String,
    /// $IO of active stake the device needs to be listed.
    pub required_stake: String,
    /// Whether the organisation's stake covers it, in words.
    pub stake_covered: String,
    /// Newest first.
    pub events: Vec<DeviceEventLine>,
    /// Whether the visitor may change it.
    pub can_write: bool,
    /// In maintenance now (the form ends it), or able to go into it.
    pub in_maintenance: bool,
    pub can_maintain: bool,
    pub retired: bool,
    /// The price form's value as typed (the current price at first).
    pub price_form: String,
    pub new_token: Option<AgentToken>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn facts(d: &DevicePage) -> Markup {
    html! {
        dl class="facts" data-testid="device-facts" {
            dt { "Status" }
            dd {
                (device_badge(&d.status))
                @if let Some(r) = &d.status_reason { " " span class="muted" { (r) } }
            }
            dt { "GPUs" }
            dd {
                @if d.gpu_count > 0 {
                    (d.gpu_count) " × " (d.model)
                    @if let Some(v) = d.vram_gib { " (" (v) " GiB each)" }
                    " · " (d.gpus_free) " free"
                } @else { (d.model) }
            }
            dt { "Price" } dd data-testid="device-price" { (d.price) " USD per " @if d.gpu_count > 0 { "GPU-hour" } @else { "node-hour" } }
            dt { "Machine" } dd { (d.cpu_cores) " CPU cores · " (d.ram_gib) " GiB RAM · " (d.disk_gib) " GiB disk" }
            dt { "Region" } dd { (d.region) " · " (d.country) " · " span class="mono" { (d.location) } }
            dt { "Bandwidth" } dd { (d.bandwidth_up) " Mbit/s up · " (d.bandwidth_down) " Mbit/s down" }
            dt { "Reliability" }
            dd {
                (d.reliability) span class="muted" { " (this provider overall: " (d.provider_reliability) ")" }
            }
            dt { "Uptime" } dd { (d.uptime_24h) " in 24 h · " (d.uptime_7d) " in 7 days · " (d.uptime_30d) " in 30 days" }
            dt { "Nodes" } dd { (d.nodes_ok) " ran to their end · " (d.nodes_failed) " failed" }
            dt { "Last heartbeat" } dd { (moment(d.last_heartbeat.as_deref())) }
            @if let Some(v) = &d.agent_version { dt { "Agent" } dd { "version " (v) } }
            @if d.utilization_pct.is_some() || d.temperature_c.is_some() {
                dt { "Last reported" }
                dd {
                    @if let Some(u) = d.utilization_pct { (u) " % busy" }
                    @if d.utilization_pct.is_some() && d.temperature_c.is_some() { " · " }
                    @if let Some(t) = d.temperature_c { (t) " °C" }
                }
            }
            dt { "Verified" } dd { (moment(d.verified_at.as_deref())) }
            dt { "Added" } dd { (super::super::when(&d.created_at)) }
            dt { "Stake required" } dd { (d.required_stake) " $IO" }
            dt { "Stake" } dd data-testid="stake-covered" { (d.stake_covered) }
        }
    }
}

fn uptime(d: &DevicePage) -> Markup {
    html! {
        section aria-labelledby="uptime-h" data-testid="device-uptime" {
            h2 id="uptime-h" { "Uptime per day, last " (d.uptime_days.days.len()) " days" }
            (uptime_chart(&d.uptime_days))
        }
    }
}

fn rentals(d: &DevicePage) -> Markup {
    let unit = if d.gpu_count > 0 {
        "GPU-hour"
    } else {
        "node-hour"
    };
    html! {
        section aria-labelledby="rented-h" data-testid="device-rentals" {
            h2 id="rented-h" { "Rented now" }
            @if d.rentals.is_empty() {
                p class="muted" { "Nothing runs on this device now." }
            } @else {
                p class="muted" { "Nodes of customers' clusters on this device; whose clusters they are is theirs to know." }
                table tabindex="0" {
                    thead { tr {
                        th scope="col" { "Node" } th scope="col" { "State" } th scope="col" { "GPUs" }
                        th scope="col" { "Since" } th scope="col" { "Until" }
                        th scope="col" class="n" { "USD per " (unit) }
                    } }
                    tbody {
                        @for r in &d.rentals {
                            tr data-node=(r.node_id) {
                                td class="mono" { (r.node_id) }
                                td { (r.status.replace('_', " ")) }
                                td { (rented_gpus(r, d.gpu_count)) }
                                td { (super::super::when(&r.since)) }
                                td {
                                    @match (&r.until, r.hours) {
                                        (Some(t), _) => (super::super::when(t)),
                                        (None, Some(h)) => span class="muted" { (h) " h once it runs" },
                                        (None, None) => span class="muted" { "—" },
                                    }
                                }
                                td class="n" { (r.price) }
                            }
                        }
                    }
                }
                p class="hint" { "Prices are before the platform fee." }
            }
        }
    }
}

fn events(d: &DevicePage) -> Markup {
    html! {
        section aria-labelledby="events-h" {
            h2 id="events-h" { "Recent status changes" }
            @if d.events.is_empty() {
                p class="muted" { "None yet." }
            } @else {
                table tabindex="0" data-testid="device-events" {
                    thead { tr { th scope="col" { "When" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Why" } } }
                    tbody {
                        @for e in &d.events {
                            tr {
                                td { (super::super::when(&e.at)) }
                                td { @match &e.from { Some(f) => (device_badge(f)), None => span class="muted" { "—" } } }
                                td { (device_badge(&e.to)) }
                                td { (e.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn forms(shell: &Shell<'_>, d: &DevicePage) -> Markup {
    let base = format!("/app/worker/devices/{}", d.id);
    let unit = if d.gpu_count > 0 {
        "GPU-hour"
    } else {
        "node-hour"
    };
    html! {
        section aria-labelledby="manage-h" {
            h2 id="manage-h" { "Manage" }
            form method="post" action=(format!("{base}/price")) class="inline-form" {
                (csrf(shell))
                div {
                    label for="price" { "Price, USD per " (unit) }
                    input id="price" name="price_per_gpu_hour" inputmode="decimal" size="8" required
                        value=(d.price_form) aria-describedby=[d.price_bounds.as_ref().map(|_| "price-hint")];
                }
                button type="submit" class="btn btn-secondary" { "Change price of " (d.name) }
                @if let Some(b) = &d.price_bounds { span class="hint" id="price-hint" { (b) } }
            }
            @if d.in_maintenance {
                form method="post" action=(format!("{base}/maintenance/end")) class="inline-form" {
                    (csrf(shell))
                    button type="submit" class="btn btn-secondary" { "End maintenance of " (d.name) }
                    span class="hint" { "It is listed again at once." }
                }
            } @else if d.can_maintain {
                form method="post" action=(format!("{base}/maintenance/start")) class="inline-form" {
                    (csrf(shell))
                    div {
                        label for="maintenance-reason" { "Reason (optional)" }
                        input id="maintenance-reason" name="reason" maxlength="200" size="30";
                    }
                    button type="submit" class="btn btn-secondary" { "Start maintenance of " (d.name) }
                    span class="hint" { "No new nodes are placed on it; nodes on it keep running." }
                }
            }
            form method="post" action=(format!("{base}/rotate")) class="inline-form" {
                (csrf(shell))
                button type="submit" class="btn btn-secondary" { "Replace the agent token of " (d.name) }
                span class="hint" { "The old token stops working at once; the new one is shown once." }
            }
            form method="post" action=(format!("{base}/retire")) class="inline-form" {
                (csrf(shell))
                button type="submit" class="btn btn-danger" { "Retire " (d.name) " for good" }
                span class="hint" { "Its token stops working and it is never listed again. Refused while nodes run on it." }
            }
        }
    }
}

pub fn device_page(shell: &Shell<'_>, d: &DevicePage) -> Markup {
    let body = html! {
        (subnav("Devices"))
        p { a href="/app/worker" { "← All devices" } " " span class="muted mono" { (d.id) } }
        (said(d.notice.as_deref(), d.error.as_deref()))
        @if let Some(t) = &d.new_token { (token_box(t)) }
        (facts(d))
        (rentals(d))
        (uptime(d))
        (device_hours(&d.reward_hours))
        @if d.can_write && !d.retired { (forms(shell, d)) }
        @if d.retired { p class="muted" { "This device is retired: nothing about it can change any more." } }
        (events(d))
    };
    page("Worker", &d.name, shell, body)
}
