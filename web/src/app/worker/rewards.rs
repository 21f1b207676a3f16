//! Block rewards, the $IO an organisation's devices earn from the hourly blocks: what they
//! earned in all, over a day and a week, per day as a chart, by device over the week, and the
//! rules that decide an hour; and, on a device's page, its last hours each with what it earned
//! or the rule it failed and the evidence. Amounts are for the roles that may read billing; a
//! device's hours for everyone who may see the device, as over REST.

use maud::{Markup, html};

use super::super::chart::{Counted, DailySeries, daily_chart};
use super::super::layout::{Shell, page};

/// What one of the organisation's devices earned over the devices table's span.
pub struct DeviceRewardLine {
    pub id: String,
    pub name: String,
    /// $IO earned.
    pub earned: String,
    /// Hours it earned in, of the hours the blocks considered it.
    pub eligible_hours: i64,
    pub hours: i64,
}

/// The organisation's block rewards, for the roles that may read billing.
pub struct RewardsMoney {
    /// $IO earned by block rewards ever, in the last 24 hours and in the last 7 days.
    pub total: String,
    pub last_24h: String,
    pub last_7d: String,
    /// $IO the next block mints for the whole network.
    pub next_emission: String,
    /// The hour the last block covers (RFC 3339); `None` before the network's first block.
    pub last_block: Option<String>,
    /// $IO earned per day over the last 30 days, oldest first, every day present.
    pub by_day: DailySeries,
    /// Days the devices table spans.
    pub devices_days: i64,
    /// What each device earned over those days, most first.
    pub devices: Vec<DeviceRewardLine>,
}

/// The figures of the rules in force, for the page's explanation.
pub struct RewardRules {
    /// Hours a device must have been heard without a break before an hour counts.
    pub streak_hours: i64,
    /// The idle rule: the most CPU, and GPU (datacenter and workstation models, then consumer
    /// ones), a listed device not serving a rental may use, percent.
    pub idle_cpu_pct: i64,
    pub idle_gpu_pct: i64,
    pub idle_gpu_pct_consumer: i64,
    /// The GPU and CPU pools' shares of a block, e.g. `80 %`.
    pub gpu_share: String,
    pub cpu_share: String,
    /// What serving a rental multiplies a score by, e.g. `1.25`.
    pub rented_bonus: String,
}

pub struct RewardsView {
    /// `None` when the visitor's role may not read billing.
    pub money: Option<RewardsMoney>,
    pub rules: RewardRules,
}

/// The rule a device failed in an hour.
pub struct FailedRule {
    /// The reason's code, as REST says it: `not_heard`.
    pub code: String,
    /// The same in words: `Not heard`.
    pub words: String,
    /// What happened, with its figures.
    pub evidence: Option<String>,
}

/// One block as a device's page lists it.
pub struct RewardHourLine {
    /// The hour's start (RFC 3339); the block covers the hour that follows.
    pub hour: String,
    /// $IO earned; `None` when the device earned nothing.
    pub earned: Option<String>,
    /// Served a rental in the hour: no proof asked, no idle rule, a bonus on its score.
    pub rented: bool,
    /// Why it earned nothing.
    pub failed: Option<FailedRule>,
}

/// An hour's start as a row shows it: `14:00 UTC`, and the day under it.
fn hour_cell(rfc3339: &str) -> Markup {
    let day = rfc3339.get(..10).unwrap_or(rfc3339);
    let minute = rfc3339.get(11..16).unwrap_or_default();
    html! {
        time datetime=(rfc3339) { (minute) " UTC" }
        br;
        span class="muted" { (day) }
    }
}

/// A device's last blocks, newest first, for its page.
pub(super) fn device_hours(hours: &[RewardHourLine]) -> Markup {
    html! {
        section aria-labelledby="rewards-h" data-testid="device-rewards" {
            h2 id="rewards-h" { "Rewards by hour" }
            @if hours.is_empty() {
                p class="muted" {
                    "No block has considered this device yet: blocks consider it from the hour it "
                    "is verified, each written a few minutes after its hour ends."
                }
            } @else {
                table tabindex="0" data-testid="reward-hours" {
                    caption class="muted" {
                        "The last " (hours.len()) @if hours.len() == 1 { " block" } @else { " blocks" }
                        ", newest first"
                    }
                    thead { tr {
                        th scope="col" { "Hour" }
                        th scope="col" class="n" { "Earned, $IO" }
                        th scope="col" { "Why nothing" }
                    } }
                    tbody {
                        @for h in hours {
                            tr data-hour=(h.hour) data-reason=[h.failed.as_ref().map(|f| f.code.as_str())] {
                                th scope="row" { (hour_cell(&h.hour)) }
                                td class="n" {
                                    @match &h.earned {
                                        Some(amount) => (amount),
                                        None => span class="muted" { "nothing" },
                                    }
                                    @if h.rented { " " span class="badge badge-busy" { "rented" } }
                                }
                                td {
                                    @match &h.failed {
                                        Some(f) => {
                                            strong { (f.words) }
                                            @if let Some(e) = &f.evidence { br; span class="muted" data-testid="evidence" { (e) } }
                                        },
                                        None => span class="muted" { "—" },
                                    }
                                }
                            }
                        }
                    }
                }
                p class="hint" { "How an hour is decided: " a href="/app/worker/rewards#rules-h" { "the rules of block rewards" } "." }
            }
        }
    }
}

fn tiles(m: &RewardsMoney) -> Markup {
    html! {
        div class="tiles" data-testid="rewards-tiles" {
            div class="tile" {
                p class="tile-label" { "Earned in total" }
                p class="tile-value" data-testid="rewards-total" { (m.total) }
                p class="muted" { "$IO from blocks" }
            }
            div class="tile" {
                p class="tile-label" { "Last 24 hours" }
                p class="tile-value" data-testid="rewards-24h" { (m.last_24h) }
                p class="muted" { "$IO" }
            }
            div class="tile" {
                p class="tile-label" { "Last 7 days" }
                p class="tile-value" data-testid="rewards-7d" { (m.last_7d) }
                p class="muted" { "$IO" }
            }
            div class="tile" {
                p class="tile-label" { "Next block" }
                p class="tile-value" data-testid="rewards-next" { (m.next_emission) }
                p class="muted" { "$IO for the whole network" }
            }
            div class="tile" {
                p class="tile-label" { "Last block" }
                @match &m.last_block {
                    Some(h) => {
                        p class="tile-value" data-testid="rewards-last-block" { (hour_cell(h)) }
                        p class="muted" { "the hour it covers" }
                    },
                    None => p class="tile-value" { "none yet" },
                }
            }
        }
    }
}

fn devices(m: &RewardsMoney) -> Markup {
    html! {
        section aria-labelledby="reward-devices-h" {
            h2 id="reward-devices-h" { "By device, last " (m.devices_days) " days" }
            @if m.devices.is_empty() {
                p class="muted" data-testid="no-reward-devices" {
                    "None of your devices was in a block in the last " (m.devices_days) " days."
                }
            } @else {
                table tabindex="0" data-testid="reward-devices" {
                    caption class="muted" { "Most earned first" }
                    thead { tr {
                        th scope="col" { "Device" }
                        th scope="col" class="n" { "Earned, $IO" }
                        th scope="col" class="n" { "Hours earned" br; span class="muted" { "of the hours considered" } }
                    } }
                    tbody {
                        @for d in &m.devices {
                            tr data-device=(d.id) {
                                th scope="row" {
                                    a href=(format!("/app/worker/devices/{}", d.id)) { (d.name) }
                                    br; span class="muted mono" { (d.id) }
                                }
                                td class="n" { (d.earned) }
                                td class="n" { (d.eligible_hours) " of " (d.hours) " h" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rules(r: &RewardRules) -> Markup {
    html! {
        section aria-labelledby="rules-h" data-testid="reward-rules" {
            h2 id="rules-h" { "How a block pays" }
            p {
                "Once an hour a block mints that hour's $IO and shares it among the devices that earned "
                "the hour: " (r.gpu_share) " among GPU devices and " (r.cpu_share) " among CPU-only ones, "
                "each by its score (the model's multiplier × its GPUs, or a CPU-only machine's cores, × its "
                "connectivity, × " (r.rented_bonus) " when it served a rental)."
            }
            p { "A device earns an hour only if, for the whole hour:" }
            ul {
                li { "it was listed (available or busy) and your active stake covered your listed devices;" }
                li { "no slashing case against it was open;" }
                li { "it was heard with no silence longer than the heartbeat timeout, and without a break for the "
                    (r.streak_hours) " hours before;" }
                li { "unless it served a rental: it answered the hour's proof of work and VRAM, and while idle "
                    "used at most " (r.idle_cpu_pct) " % CPU and " (r.idle_gpu_pct) " % GPU (" (r.idle_gpu_pct_consumer)
                    " % for consumer GPUs)." }
            }
            p {
                "Why a device earned nothing in an hour, and the evidence, is on its page: open it from "
                a href="/app/worker" { "your devices" } "."
            }
        }
    }
}

pub fn rewards_page(shell: &Shell<'_>, v: &RewardsView) -> Markup {
    let body = html! {
        @match &v.money {
            None => p class="muted" data-testid="money-hidden" {
                "What your devices earned is shown to owners, admins and billing members; each device's "
                "page shows its hours."
            },
            Some(m) => {
                @if m.last_block.is_none() {
                    div class="card" data-testid="rewards-empty" {
                        p { strong { "No block yet." } " The first block is written an hour after your first device is verified." }
                        p class="muted" { "The network's next block mints " (m.next_emission) " $IO." }
                    }
                } @else {
                    (tiles(m))
                    section aria-labelledby="reward-days-h" {
                        h2 id="reward-days-h" { "$IO earned per day, last " (m.by_day.days.len()) " days" }
                        (daily_chart(&m.by_day, Counted::Rewards))
                    }
                    (devices(m))
                }
            },
        }
        (rules(&v.rules))
    };
    page("Rewards", "Block rewards", shell, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_with_nothing_says_why_and_the_evidence() {
        let hours = vec![
            RewardHourLine {
                hour: "2026-12-06T14:00:00Z".into(),
                earned: None,
                rented: false,
                failed: Some(FailedRule {
                    code: "not_heard".into(),
                    words: "Not heard".into(),
                    evidence: Some("silent for 3 min <from 14:10>".into()),
                }),
            },
            RewardHourLine {
                hour: "2026-12-06T13:00:00Z".into(),
                earned: Some("12.5".into()),
                rented: true,
                failed: None,
            },
        ];
        let html = device_hours(&hours).into_string();
        assert!(html.contains("data-reason=\"not_heard\""), "{html}");
        assert!(html.contains("<strong>Not heard</strong>"), "{html}");
        assert!(
            html.contains("silent for 3 min &lt;from 14:10&gt;"),
            "escaped: {html}"
        );
        assert!(
            html.contains("<time datetime=\"2026-12-06T14:00:00Z\">14:00 UTC</time>"),
            "{html}"
        );
        assert!(html.contains("2026-12-06</span>"), "{html}");
        assert!(html.contains(">nothing<"), "{html}");
        assert!(
            html.contains("12.5 <span class=\"badge badge-busy\">rented</span>"),
            "{html}"
        );
        assert!(html.contains("<caption"), "{html}");
        assert!(
            !html.contains("style="),
            "the policy allows no inline style"
        );
    }

    #[test]
    fn a_device_without_blocks_says_when_they_start() {
        let html = device_hours(&[]).into_string();
        assert!(
            html.contains("No block has considered this device yet"),
            "{html}"
        );
        assert!(!html.contains("<table"), "{html}");
    }
}
