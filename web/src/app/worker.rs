//! IO Worker, the providers' side: the overview of an organisation's devices (counts, GPUs,
//! earnings, stake, the devices table with each device's uptime and what is rented on it,
//! earnings per day and by device as charts) with the form that adds a device; a device's page
//! ([`device`]); payouts and stake ([`money`]); block rewards ([`rewards`]); slashing cases
//! ([`cases`]); co-staking ([`costaking`]). A token for a device's agent is shown on the
//! answer that made it and never again. What is rented on a device never says whose cluster it
//! is: that is another organisation's.

mod cases;
mod costaking;
mod device;
mod money;
mod rewards;

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::chart::{ByName, Counted, bar_chart};
use super::layout::{Shell, page};
use super::offers::Choice;

pub use super::chart::{DayShare, NamedAmount, NamedSeries, UptimeSeries};
pub use cases::{
    CaseEvidence, CaseStepLine, SlashingCaseLine, SlashingCasePage, SlashingCasesView,
    slashing_case_page, slashing_cases_page,
};
pub use costaking::{
    CostakeMarketFilter, CostakeMarketLine, CostakeOfferForm, CostakeOfferLine,
    CostakePositionLine, CostakingView, costaking_page,
};
pub use device::{DeviceEventLine, DevicePage, device_page};
pub use money::{
    EarningsBalance, PayoutForm, PayoutLine, PayoutsView, StakeLine, StakePage, WalletLine,
    payouts_page, stake_page,
};
pub use rewards::{
    DeviceRewardLine, FailedRule, RewardHourLine, RewardRules, RewardsMoney, RewardsView,
    rewards_page,
};

/// A device as the overview lists it.
pub struct DeviceLine {
    pub id: String,
    pub name: String,
    /// The model's name, or `CPU only`.
    pub model: String,
    pub gpu_count: i64,
    pub gpus_free: i64,
    pub region: String,
    pub status: String,
    pub status_reason: Option<String>,
    /// USD per GPU-hour (per node-hour without GPUs).
    pub price: String,
    /// Learned reliability as a percentage, e.g. `97.5 %`.
    pub reliability: Option<String>,
    /// Uptime over the last 24 hours, 7 and 30 days as percentages, e.g. `99.2 %`.
    pub uptime_24h: String,
    pub uptime_7d: String,
    pub uptime_30d: String,
    /// The nodes of customers' clusters on it now.
    pub rentals: Vec<RentalLine>,
    pub last_heartbeat: Option<String>,
}

/// A node of a customer's cluster on one of the organisation's devices, as its provider sees
/// it: never whose cluster it is.
pub struct RentalLine {
    pub node_id: String,
    /// `waiting`, `assigned`, `starting` or `ready`.
    pub status: String,
    /// GPUs of the device it holds (0 on a CPU-only device: all of the machine).
    pub gpus: i64,
    /// When it was placed (RFC 3339).
    pub since: String,
    /// When its cluster ends (RFC 3339); `None` until the cluster runs.
    pub until: Option<String>,
    /// Hours its cluster was rented for, which `until` counts from once it runs.
    pub hours: Option<i64>,
    /// USD per GPU-hour (per node-hour without GPUs) it is rented at, before the platform fee.
    pub price: String,
}

/// The organisation's earnings by device, a series per currency earned in.
pub struct EarningsByDevice {
    /// The first day counted, e.g. `2026-11-01`.
    pub since: String,
    pub series: Vec<NamedSeries>,
}

/// The figures at the top of the overview.
#[derive(Default)]
pub struct WorkerTiles {
    /// Available or busy: placement may use them.
    pub listed: i64,
    pub busy: i64,
    pub offline: i64,
    /// Waiting for their agent's proof or for stake.
    pub waiting: i64,
    pub gpus_total: i64,
    pub gpus_rented: i64,
    /// Earnings that can be paid out, per currency (`None`: the visitor's role may not read
    /// billing).
    pub earnings: Option<Vec<(String, String)>>,
    /// $IO staked and active, and $IO in cooldown.
    pub staked: Option<String>,
    pub cooling_down: Option<String>,
}

/// The add-a-device form as typed; field names are `POST /v1/devices`' own where they can be.
#[derive(Clone, Default)]
pub struct NewDeviceForm {
    pub name: String,
    pub gpu_model: String,
    pub gpu_count: String,
    pub cpu_cores: String,
    pub ram_gib: String,
    pub disk_gib: String,
    pub region: String,
    pub country: String,
    pub lat: String,
    pub lon: String,
    pub bandwidth_up: String,
    pub bandwidth_down: String,
    pub price_per_gpu_hour: String,
}

/// A device's agent token, on the one answer that shows it.
pub struct AgentToken {
    pub device_id: String,
    pub device_name: String,
    pub token: String,
    /// A replacement: the old token stopped working.
    pub rotated: bool,
    /// How often the agent is expected to send a heartbeat.
    pub heartbeat_secs: u64,
    /// The command that runs the device's agent on the machine, token included.
    pub command: String,
}

pub struct WorkerView {
    pub tiles: WorkerTiles,
    /// A page of the organisation's devices, oldest first.
    pub devices: Vec<DeviceLine>,
    /// The cursor of the next page of devices.
    pub next_devices: Option<String>,
    /// Whether this is the first page (tiles count every device either way).
    pub first_page: bool,
    /// Earnings per day over the last 30 days, a series per currency earned in; `None` when
    /// the visitor's role may not read billing.
    pub earnings: Option<Vec<super::chart::DailySeries>>,
    /// Earnings by device over the same days' months; `None` as for `earnings`.
    pub earnings_by_device: Option<EarningsByDevice>,
    /// Whether the visitor may add and change devices.
    pub can_write: bool,
    pub models: Vec<Choice>,
    pub regions: Vec<Choice>,
    pub form: NewDeviceForm,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// The Worker pages' own navigation; `current` is one of `Devices`, `Payouts`, `Stake`.
fn subnav(current: &str) -> Markup {
    const PAGES: [(&str, &str); 3] = [
        ("/app/worker", "Devices"),
        ("/app/worker/payouts", "Payouts"),
        ("/app/worker/stake", "Stake"),
    ];
    html! {
        nav aria-label="Worker" class="filters" {
            @for (href, name) in PAGES {
                a href=(href) aria-current=[(current == name).then_some("page")] { (name) }
            }
        }
    }
}

/// What the last form did, or why it was refused.
fn said(notice: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p class="error" role="alert" data-testid="worker-error" { (error) }
        }
        @if let Some(notice) = notice {
            p class="notice" role="status" { (notice) }
        }
    }
}

/// The hidden field every form carries.
fn csrf(shell: &Shell<'_>) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(shell.csrf); }
}

/// A device's status as a badge, in words.
fn device_badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) data-status=(status) { (status.replace('_', " ")) } }
}

/// A moment, or a dash for none.
fn moment(t: Option<&str>) -> Markup {
    html! {
        @match t {
            Some(t) => (super::when(t)),
            None => span class="muted" { "never" },
        }
    }
}

/// A node's GPUs out of its device's `gpu_count`, in words.
fn rented_gpus(r: &RentalLine, gpu_count: i64) -> String {
    if r.gpus > 0 {
        format!("{} of {gpu_count} GPUs", r.gpus)
    } else {
        "the whole machine".to_string()
    }
}

/// Until when a node's cluster runs, or for how long once it does.
fn rented_until(r: &RentalLine) -> Markup {
    html! {
        @match (&r.until, r.hours) {
            (Some(t), _) => { "until " (super::when(t)) },
            (None, Some(h)) => span class="muted" { "for " (h) " h once it runs" },
            (None, None) => {},
        }
    }
}

/// The token of a device just added, or just replaced, and how its agent uses it.
fn token_box(t: &AgentToken) -> Markup {
    let hello = format!("/agent/v1/devices/{}/hello", t.device_id);
    html! {
        section class="secret-box" aria-labelledby="token-h" {
            h2 id="token-h" {
                @if t.rotated { "New agent token for " } @else { "Agent token for " }
                (t.device_name)
            }
            p {
                strong { "Copy the token now: it is shown this once, and nobody can show it again." }
                @if t.rotated { " The old token stopped working." }
            }
            label for="agent-token" { "Agent token" }
            input id="agent-token" class="mono secret" type="text" readonly autocomplete="off"
                spellcheck="false" value=(t.token) data-testid="agent-token";
            h3 { "Start the agent" }
            p { "On the machine, run (the token is in it, so run it where only you can read the shell's history):" }
            pre class="spec" tabindex="0" aria-label="The command that starts the agent" {
                code data-testid="agent-command" { (t.command) }
            }
            p class="hint" {
                "The agent answers the device's proof-of-work challenge (then the device is verified, and listed "
                "once your stake covers it), sends a heartbeat about every " (t.heartbeat_secs) " s and brings up "
                "the nodes placed on it. This build's agent simulates its nodes; an agent of your own speaks the "
                "same protocol: " code { "Authorization: Bearer <token>" } " to " code { "POST " (hello) } ", then "
                code { "GET /agent/v1/devices/" (t.device_id) "/assignments" } "."
            }
        }
    }
}

pub fn worker_page(shell: &Shell<'_>, v: &WorkerView) -> Markup {
    let body = html! {
        (subnav("Devices"))
        (said(v.notice.as_deref(), v.error.as_deref()))
        (tiles(&v.tiles))
        section aria-labelledby="devices-h" {
            h2 id="devices-h" { "Devices" }
            @if v.devices.is_empty() && v.first_page {
                div class="card" data-testid="worker-empty" {
                    p { strong { "No devices yet." } " IO Worker lets this organisation rent out its GPU (or CPU) machines:" }
                    ol {
                        li {
                            @if v.can_write { a href="#add-h" { "Add a device" } " below" } @else { "Someone whose role changes devices adds one" }
                            ": the answer holds a token for its agent, shown once."
                        }
                        li { "Run the agent on the machine: it proves the machine answers, then sends heartbeats." }
                        li { a href="/app/worker/stake" { "Stake $IO" } ": 200 $IO per GPU, times the model's multiplier, lists the device for rent." }
                        li { "Earnings arrive as customers' clusters run on it; " a href="/app/worker/payouts" { "pay them out" } " to a wallet." }
                    }
                }
            } @else {
                (device_table(&v.devices))
                @if let Some(next) = &v.next_devices {
                    p { a href=(format!("/app/worker?after={next}#devices-h")) { "More devices" } }
                }
            }
        }
        @if v.earnings.is_some() || v.earnings_by_device.is_some() {
            div class="chart-pair" {
                @if let Some(series) = &v.earnings {
                    section aria-labelledby="earned-h" {
                        h2 id="earned-h" { "Earnings per day, last 30 days" }
                        @if series.is_empty() {
                            p class="muted" data-testid="no-earnings" { "No earnings in the last 30 days." }
                        }
                        @for s in series { (super::chart::daily_chart(s, Counted::Earnings)) }
                    }
                }
                @if let Some(by) = &v.earnings_by_device {
                    (by_device(by))
                }
            }
        }
        @if v.can_write {
            (add_form(shell, v))
        }
    };
    page("Worker", "IO Worker", shell, body)
}

/// Earnings by device as bars, a chart per currency.
fn by_device(by: &EarningsByDevice) -> Markup {
    let span = format!("since {}", by.since);
    let words = ByName {
        counted: Counted::Earnings,
        by: "Device",
        span: &span,
    };
    html! {
        section aria-labelledby="by-device-h" {
            h2 id="by-device-h" { "Earnings by device since " (by.since) }
            @if by.series.is_empty() {
                p class="muted" data-testid="no-device-earnings" { "No earnings since then." }
            }
            @for s in &by.series { (bar_chart(s, words)) }
        }
    }
}

fn tiles(t: &WorkerTiles) -> Markup {
    html! {
        div class="tiles" data-testid="worker-tiles" {
            div class="tile" {
                p class="tile-label" { "Devices listed" }
                p class="tile-value" data-testid="tile-listed" { (t.listed) }
                p class="muted" { (t.busy) " busy · " (t.offline) " offline · " (t.waiting) " waiting" }
            }
            div class="tile" {
                p class="tile-label" { "GPUs rented" }
                p class="tile-value" data-testid="tile-gpus" { (t.gpus_rented) " / " (t.gpus_total) }
                p class="muted" { "rented now, of all GPUs" }
            }
            @if let Some(earnings) = &t.earnings {
                div class="tile" {
                    p class="tile-label" { "Earnings to pay out" }
                    @if earnings.is_empty() {
                        p class="tile-value" { "0.00" }
                        p class="muted" { "none yet" }
                    }
                    @for (currency, amount) in earnings {
                        p class="tile-value" { (amount) " " span class="muted" { (currency) } }
                    }
                }
            }
            @if let Some(staked) = &t.staked {
                div class="tile" {
                    p class="tile-label" { "Staked $IO" }
                    p class="tile-value" data-testid="tile-staked" { (staked) }
                    @if let Some(c) = &t.cooling_down { p class="muted" { (c) " in cooldown" } }
                }
            }
        }
    }
}

fn device_table(devices: &[DeviceLine]) -> Markup {
    html! {
        table tabindex="0" data-testid="devices" {
            thead { tr {
                th scope="col" { "Device" } th scope="col" { "Machine" }
                th scope="col" { "Status" } th scope="col" class="n" { "GPUs free" }
                th scope="col" class="n" { "USD/GPU-h" } th scope="col" class="n" { "Reliability" }
                th scope="col" class="n" { "Uptime" br; span class="muted" { "24 h · 7 d · 30 d" } }
                th scope="col" { "Rented now" }
                th scope="col" { "Last heartbeat" }
            } }
            tbody {
                @for d in devices {
                    tr data-device=(d.id) {
                        th scope="row" {
                            a href=(format!("/app/worker/devices/{}", d.id)) { (d.name) }
                            br; span class="muted mono" { (d.id) }
                        }
                        td { (d.model) @if d.gpu_count > 0 { " × " (d.gpu_count) } br; span class="muted" { (d.region) } }
                        td {
                            (device_badge(&d.status))
                            @if let Some(r) = &d.status_reason { br; span class="muted" { (r) } }
                        }
                        td class="n" { (d.gpus_free) }
                        td class="n" { (d.price) }
                        td class="n" { (d.reliability.as_deref().unwrap_or("—")) }
                        td class="n" {
                            span data-uptime="24h" { (d.uptime_24h) } " · "
                            span data-uptime="7d" { (d.uptime_7d) } " · "
                            span data-uptime="30d" { (d.uptime_30d) }
                        }
                        td data-testid="rented" {
                            @for (i, r) in d.rentals.iter().enumerate() {
                                @if i > 0 { br; }
                                span data-node=(r.node_id) {
                                    (rented_gpus(r, d.gpu_count)) " " (rented_until(r))
                                }
                            }
                            @if d.rentals.is_empty() { span class="muted" { "—" } }
                        }
                        td { (moment(d.last_heartbeat.as_deref())) }
                    }
                }
            }
        }
    }
}

/// A labelled text field of the add form.
fn field(id: &str, name: &str, label: &str, value: &str, hint: Option<&str>) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div class="field" {
            label for=(id) { (label) }
            input id=(id) name=(name) value=(value) aria-describedby=[hint.map(|_| hint_id.as_str())];
            @if let Some(h) = hint { span class="hint" id=(hint_id) { (h) } }
        }
    }
}

fn add_form(shell: &Shell<'_>, v: &WorkerView) -> Markup {
    let f = &v.form;
    html! {
        section aria-labelledby="add-h" {
            h2 id="add-h" { "Add a device" }
            p class="muted" {
                "Describe the machine as its agent will find it. The device waits for its agent's proof, "
                "then for stake, before customers can rent it."
            }
            form method="post" action="/app/worker/devices" class="card" data-testid="add-device" {
                (csrf(shell))
                (field("d-name", "name", "Name", &f.name, Some("1 to 100 characters, unique among your devices")))
                div class="field" {
                    label for="d-model" { "GPU model" }
                    select id="d-model" name="gpu_model" {
                        option value="" selected[f.gpu_model.is_empty()] { "No GPU (CPU only)" }
                        @for m in &v.models { option value=(m.value) selected[f.gpu_model == m.value] { (m.label) } }
                    }
                }
                (field("d-gpus", "gpu_count", "GPUs", &f.gpu_count, Some("0 for a CPU-only machine")))
                (field("d-cpus", "cpu_cores", "CPU cores", &f.cpu_cores, None))
                (field("d-ram", "ram_gib", "RAM, GiB", &f.ram_gib, None))
                (field("d-disk", "disk_gib", "Disk, GiB", &f.disk_gib, None))
                div class="field" {
                    label for="d-region" { "Region" }
                    select id="d-region" name="region" {
                        @for r in &v.regions { option value=(r.value) selected[f.region == r.value] { (r.label) } }
                    }
                }
                (field("d-country", "country", "Country", &f.country, Some("two letters, e.g. DE")))
                (field("d-lat", "lat", "Latitude (optional)", &f.lat, Some("empty: the region's own")))
                (field("d-lon", "lon", "Longitude (optional)", &f.lon, Some("empty: the region's own")))
                (field("d-up", "bandwidth_up", "Upload, Mbit/s", &f.bandwidth_up, None))
                (field("d-down", "bandwidth_down", "Download, Mbit/s", &f.bandwidth_down, None))
                (field("d-price", "price_per_gpu_hour", "Price, USD per GPU-hour", &f.price_per_gpu_hour,
                    Some("within the model's floor and ceiling; per node-hour without GPUs")))
                div class="actions" {
                    button type="submit" class="btn" { "Add device" }
                }
            }
        }
    }
}
