//! Bar charts drawn on the server: money per day (a provider's earnings, a customer's spend),
//! a device's uptime per day (0 to 100 %), and money by name (a provider's earnings by device,
//! as horizontal bars). Inline SVG markup (colours as presentation attributes, since the page's
//! policy allows no inline style), a title per bar for pointers, and the same numbers as a
//! table for screen readers and text browsers.

use maud::{Markup, html};

/// What one day came to.
pub struct DayAmount {
    /// `2026-11-25`.
    pub day: String,
    /// As a decimal, e.g. `31.92`.
    pub amount: String,
    /// The same in micro-units, for the bar's height.
    pub micros: i64,
}

/// Money in one currency over consecutive days, oldest first.
pub struct DailySeries {
    pub currency: String,
    pub total: String,
    pub days: Vec<DayAmount>,
}

/// One day of a device's uptime.
pub struct DayShare {
    /// `2026-11-25`.
    pub day: String,
    /// The share of the day's minutes in which the device was heard, e.g. `99.2 %`; `None`
    /// for a day before the device was added, when there was nothing to hear.
    pub percent: Option<String>,
    /// The same in basis points (10 000: every minute), for the bar's height.
    pub basis_points: i64,
}

/// A device's uptime over consecutive days, oldest first.
pub struct UptimeSeries {
    pub days: Vec<DayShare>,
}

/// What one name (a device) came to.
pub struct NamedAmount {
    pub label: String,
    /// As a decimal, e.g. `31.92`.
    pub amount: String,
    /// The same in micro-units, for the bar's length.
    pub micros: i64,
}

/// Money in one currency by name, largest first.
pub struct NamedSeries {
    pub currency: String,
    pub total: String,
    pub rows: Vec<NamedAmount>,
}

/// What a chart of money by name counts, by what, and over when, in its words.
#[derive(Clone, Copy)]
pub struct ByName<'a> {
    pub counted: Counted,
    /// What the names are, as a table's column heads them: `Device`.
    pub by: &'a str,
    /// Over when, as a phrase: `since 2026-11-01`.
    pub span: &'a str,
}

/// What a chart counts, in its words.
#[derive(Clone, Copy)]
pub enum Counted {
    /// A provider's earnings, after the platform fee.
    Earnings,
    /// A customer's spend on clusters.
    Spend,
    /// A provider's $IO from hourly blocks (no fee is taken from them).
    Rewards,
}

impl Counted {
    fn noun(self) -> &'static str {
        match self {
            Counted::Earnings => "Earnings",
            Counted::Spend => "Spend",
            Counted::Rewards => "Block rewards",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Counted::Earnings => "earned",
            Counted::Spend => "spent",
            Counted::Rewards => "earned",
        }
    }
}

/// The drawing's size in its own units; it scales to the page's width.
const WIDTH: i64 = 600;
const HEIGHT: i64 = 170;
/// The baseline, and the room above the tallest bar.
const BASE: i64 = 145;
const TOP: i64 = 12;

const BAR: &str = "#1f4fd6";
const EMPTY: &str = "#d9dce1";
const INK: &str = "#5b616b";

/// A whole day heard, in basis points: the top of the uptime chart.
const FULL_DAY: i64 = 10_000;

/// Names a chart of money by name draws at most (the largest); its table lists every one.
const MAX_NAMED: usize = 12;
/// A named bar's row, the room for names left of the bars and for amounts right of them.
const ROW: i64 = 22;
const LABEL: i64 = 160;
const AMOUNT: i64 = 110;
/// Characters of a name drawn beside its bar (its title and the table have it whole).
const LABEL_CHARS: usize = 22;

/// A bar's height for `micros` out of the series' largest: at least one unit, so a day with
/// nothing earned still shows as a line.
fn bar_height(micros: i64, max: i64) -> i64 {
    if micros <= 0 || max <= 0 {
        return 1;
    }
    let h = i128::from(micros) * i128::from(BASE - TOP) / i128::from(max);
    (h as i64).max(2)
}

/// A bar's length for `micros` out of the largest, in `room` units: at least one, so a name
/// that came to nothing still shows as a line.
fn bar_length(micros: i64, max: i64, room: i64) -> i64 {
    if micros <= 0 || max <= 0 {
        return 1;
    }
    let l = i128::from(micros) * i128::from(room) / i128::from(max);
    (l as i64).max(2).min(room)
}

/// `label` cut to [`LABEL_CHARS`] characters, an ellipsis saying so.
fn short(label: &str) -> String {
    if label.chars().count() <= LABEL_CHARS {
        return label.to_string();
    }
    let mut s: String = label.chars().take(LABEL_CHARS - 1).collect();
    s.push('…');
    s
}

/// One bar of a chart over days: the day, its height in the chart's units, and what its title
/// says after the day.
struct DayBar<'a> {
    day: &'a str,
    value: i64,
    words: String,
}

/// The drawing of a chart over days: a bar per day scaled to `max`, titled for pointers, what
/// the top stands for (`scale`) over its left, and the first and last day under it. `id` is
/// unique on the page; `what` says what the whole drawing shows.
fn day_bars(id: &str, what: &str, scale: &str, bars: &[DayBar<'_>], max: i64) -> Markup {
    let slot = WIDTH / (bars.len().max(1) as i64);
    let bar = (slot - 4).max(1);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
            width="100%" role="img" aria-labelledby=(format!("{id}-title")) focusable="false" {
            title id=(format!("{id}-title")) { (what) }
            text x="0" y="10" font-size="11" fill=(INK) { (scale) }
            line x1="0" y1=(BASE) x2=(WIDTH) y2=(BASE) stroke=(INK) stroke-width="1" {}
            @for (i, b) in bars.iter().enumerate() {
                @let h = bar_height(b.value, max);
                rect x=(i as i64 * slot + 2) y=(BASE - h) width=(bar) height=(h)
                    fill=(if b.value > 0 { BAR } else { EMPTY }) {
                    title { (b.day) ": " (b.words) }
                }
            }
            @if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
                text x="0" y=(HEIGHT - 6) font-size="11" fill=(INK) { (first.day) }
                text x=(WIDTH) y=(HEIGHT - 6) font-size="11" fill=(INK) text-anchor="end" { (last.day) }
            }
        }
    }
}

pub fn daily_chart(s: &DailySeries, counted: Counted) -> Markup {
    let max = s.days.iter().map(|d| d.micros).max().unwrap_or(0);
    let id = format!("{}-{}", counted.past(), s.currency.to_ascii_lowercase());
    let top_amount = s
        .days
        .iter()
        .find(|d| d.micros == max)
        .map_or("0.00", |d| d.amount.as_str());
    let title = format!(
        "{} per day in {} over the last {} days: {} in all",
        counted.noun(),
        s.currency,
        s.days.len(),
        s.total
    );
    let bars: Vec<DayBar<'_>> = s
        .days
        .iter()
        .map(|d| DayBar {
            day: &d.day,
            value: d.micros,
            words: format!("{} {}", d.amount, s.currency),
        })
        .collect();
    let scale = format!("max {top_amount} {}", s.currency);
    html! {
        figure class="chart" data-testid=(format!("chart-{}", s.currency)) {
            (day_bars(&id, &title, &scale, &bars, max))
            figcaption class="muted" {
                (s.total) " " (s.currency) " " (counted.past()) " in these " (s.days.len()) " days"
                @if matches!(counted, Counted::Earnings) { ", after the platform fee" } "."
            }
        }
        details {
            summary { (counted.noun()) " per day in " (s.currency) " as a table" }
            table tabindex="0" {
                thead { tr { th scope="col" { "Day" } th scope="col" class="n" { (counted.noun()) ", " (s.currency) } } }
                tbody {
                    @for d in &s.days {
                        tr { th scope="row" { (d.day) } td class="n" { (d.amount) } }
                    }
                }
            }
        }
    }
}

/// A device's uptime per day, as bars from 0 to 100 % and as a table.
pub fn uptime_chart(s: &UptimeSeries) -> Markup {
    let bars: Vec<DayBar<'_>> = s
        .days
        .iter()
        .map(|d| DayBar {
            day: &d.day,
            value: d.basis_points.clamp(0, FULL_DAY),
            words: match &d.percent {
                Some(p) => format!("{p} of the day heard"),
                None => "before the device was added".to_string(),
            },
        })
        .collect();
    let title = format!(
        "Uptime per day over the last {} days, as the share of each day's minutes heard",
        s.days.len()
    );
    html! {
        figure class="chart" data-testid="uptime-chart" {
            (day_bars("uptime", &title, "100 %", &bars, FULL_DAY))
            figcaption class="muted" {
                "The share of each day's minutes (UTC) in which the device's agent was heard; today so far."
            }
        }
        details {
            summary { "Uptime per day as a table" }
            table tabindex="0" data-testid="uptime-days" {
                thead { tr { th scope="col" { "Day" } th scope="col" class="n" { "Uptime" } } }
                tbody {
                    @for d in &s.days {
                        tr { th scope="row" { (d.day) } td class="n" { (d.percent.as_deref().unwrap_or("—")) } }
                    }
                }
            }
        }
    }
}

/// Money in one currency by name as horizontal bars, the [`MAX_NAMED`] largest drawn (the
/// caller orders them), and every one as a table.
pub fn bar_chart(s: &NamedSeries, words: ByName<'_>) -> Markup {
    let drawn = &s.rows[..s.rows.len().min(MAX_NAMED)];
    let max = drawn.iter().map(|r| r.micros).max().unwrap_or(0);
    let room = WIDTH - LABEL - AMOUNT;
    let height = drawn.len().max(1) as i64 * ROW + 8;
    let by = words.by.to_lowercase();
    let counted = words.counted;
    let id = format!(
        "{}-by-{by}-{}",
        counted.past(),
        s.currency.to_ascii_lowercase()
    );
    html! {
        figure class="chart" data-testid=(format!("by-{by}-{}", s.currency)) {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {height}"))
                width="100%" role="img" aria-labelledby=(format!("{id}-title")) focusable="false" {
                title id=(format!("{id}-title")) {
                    (counted.noun()) " by " (by) " in " (s.currency) " " (words.span) ": " (s.total) " in all"
                }
                @for (i, r) in drawn.iter().enumerate() {
                    @let y = i as i64 * ROW + 4;
                    @let len = bar_length(r.micros, max, room);
                    text x=(LABEL - 6) y=(y + 15) font-size="12" fill=(INK) text-anchor="end" { (short(&r.label)) }
                    rect x=(LABEL) y=(y + 3) width=(len) height=(ROW - 6)
                        fill=(if r.micros > 0 { BAR } else { EMPTY }) {
                        title { (r.label) ": " (r.amount) " " (s.currency) }
                    }
                    text x=(LABEL + len + 6) y=(y + 15) font-size="12" fill=(INK) { (r.amount) }
                }
                line x1=(LABEL) y1="0" x2=(LABEL) y2=(height) stroke=(INK) stroke-width="1" {}
            }
            figcaption class="muted" {
                (s.total) " " (s.currency) " " (counted.past()) " " (words.span)
                @if matches!(counted, Counted::Earnings) { ", after the platform fee" }
                @if s.rows.len() > drawn.len() {
                    "; the " (drawn.len()) " largest of " (s.rows.len()) " drawn, every one in the table"
                }
                "."
            }
        }
        details {
            summary { (counted.noun()) " by " (by) " in " (s.currency) " as a table" }
            table tabindex="0" {
                thead { tr { th scope="col" { (words.by) } th scope="col" class="n" { (counted.noun()) ", " (s.currency) } } }
                tbody {
                    @for r in &s.rows {
                        tr { th scope="row" { (r.label) } td class="n" { (r.amount) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_day_and_never_vanish() {
        assert_eq!(bar_height(0, 10), 1);
        assert_eq!(bar_height(10, 10), BASE - TOP);
        assert_eq!(bar_height(1, 1_000_000_000), 2);
        assert_eq!(bar_height(i64::MAX, i64::MAX), BASE - TOP);
    }

    #[test]
    fn every_day_has_a_titled_bar_and_a_row() {
        let s = DailySeries {
            currency: "USD".into(),
            total: "3.00".into(),
            days: vec![
                DayAmount {
                    day: "2026-11-01".into(),
                    amount: "0.00".into(),
                    micros: 0,
                },
                DayAmount {
                    day: "2026-11-02".into(),
                    amount: "3.00".into(),
                    micros: 3_000_000,
                },
            ],
        };
        let html = daily_chart(&s, Counted::Spend).into_string();
        assert_eq!(html.matches("<rect").count(), 2);
        assert!(
            html.contains("<title>2026-11-02: 3.00 USD</title>"),
            "{html}"
        );
        assert!(html.contains("<th scope=\"row\">2026-11-02</th>"), "{html}");
        assert!(
            !html.contains("style="),
            "the policy allows no inline style"
        );
    }

    #[test]
    fn named_bars_scale_to_the_largest_and_never_vanish() {
        assert_eq!(bar_length(0, 10, 330), 1);
        assert_eq!(bar_length(10, 10, 330), 330);
        assert_eq!(bar_length(5, 10, 330), 165);
        assert_eq!(bar_length(1, 1_000_000_000, 330), 2);
        assert_eq!(bar_length(i64::MAX, i64::MAX, 330), 330);
    }

    #[test]
    fn long_names_are_cut_beside_their_bar_only() {
        assert_eq!(short("fra-0"), "fra-0");
        let long = "a-very-long-device-name-indeed";
        let cut = short(long);
        assert_eq!(cut.chars().count(), LABEL_CHARS);
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
    }

    fn day(day: &str, percent: Option<&str>, basis_points: i64) -> DayShare {
        DayShare {
            day: day.into(),
            percent: percent.map(String::from),
            basis_points,
        }
    }

    #[test]
    fn uptime_bars_reach_the_top_at_a_whole_day() {
        let s = UptimeSeries {
            days: vec![
                day("2026-11-01", None, 0),
                day("2026-11-02", Some("50.0 %"), 5_000),
                day("2026-11-03", Some("100.0 %"), 10_000),
            ],
        };
        let html = uptime_chart(&s).into_string();
        assert_eq!(html.matches("<rect").count(), 3);
        let top = BASE - TOP;
        assert!(
            html.contains(&format!("y=\"{TOP}\" width=\"196\" height=\"{top}\"")),
            "a whole day is the full height: {html}"
        );
        let half = bar_height(5_000, FULL_DAY);
        assert_eq!(half, top / 2);
        assert!(
            html.contains(&format!("height=\"{half}\"")),
            "half a day is half of it: {html}"
        );
        assert!(
            html.contains("<title>2026-11-02: 50.0 % of the day heard</title>"),
            "{html}"
        );
        assert!(
            html.contains("<title>2026-11-01: before the device was added</title>"),
            "{html}"
        );
        assert!(
            html.contains("<th scope=\"row\">2026-11-03</th><td class=\"n\">100.0 %</td>"),
            "{html}"
        );
        assert!(
            html.contains("<th scope=\"row\">2026-11-01</th><td class=\"n\">—</td>"),
            "{html}"
        );
        assert!(!html.contains("style="), "{html}");
    }

    #[test]
    fn money_by_name_draws_the_largest_and_tables_them_all() {
        let rows: Vec<NamedAmount> = (0..15)
            .map(|i| NamedAmount {
                label: format!("rig-{i}"),
                amount: format!("{}.00", 15 - i),
                micros: (15 - i) * 1_000_000,
            })
            .collect();
        let s = NamedSeries {
            currency: "USD".into(),
            total: "120.00".into(),
            rows,
        };
        let words = ByName {
            counted: Counted::Earnings,
            by: "Device",
            span: "since 2026-11-01",
        };
        let html = bar_chart(&s, words).into_string();
        assert!(html.contains("data-testid=\"by-device-USD\""), "{html}");
        assert_eq!(html.matches("<rect").count(), MAX_NAMED, "{html}");
        let full = WIDTH - LABEL - AMOUNT;
        assert!(
            html.contains(&format!("width=\"{full}\"")),
            "the largest fills the room: {html}"
        );
        assert!(html.contains("<title>rig-0: 15.00 USD</title>"), "{html}");
        assert!(!html.contains("<title>rig-14:"), "not drawn: {html}");
        assert!(
            html.contains("<th scope=\"row\">rig-14</th><td class=\"n\">1.00</td>"),
            "every name in the table: {html}"
        );
        assert!(html.contains("the 12 largest of 15 drawn"), "{html}");
        assert!(!html.contains("style="), "{html}");
    }
}
