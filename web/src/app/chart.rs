//! Money per day as a bar chart drawn on the server (a provider's earnings, a customer's
//! spend): inline SVG markup (colours as presentation attributes, since the page's policy
//! allows no inline style), a title per bar for pointers, and the same numbers as a table for
//! screen readers and text browsers.

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

/// What a chart counts, in its words.
#[derive(Clone, Copy)]
pub enum Counted {
    /// A provider's earnings, after the platform fee.
    Earnings,
    /// A customer's spend on clusters.
    Spend,
}

impl Counted {
    fn noun(self) -> &'static str {
        match self {
            Counted::Earnings => "Earnings",
            Counted::Spend => "Spend",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Counted::Earnings => "earned",
            Counted::Spend => "spent",
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

/// A bar's height for `micros` out of the series' largest: at least one unit, so a day with
/// nothing earned still shows as a line.
fn bar_height(micros: i64, max: i64) -> i64 {
    if micros <= 0 || max <= 0 {
        return 1;
    }
    let h = i128::from(micros) * i128::from(BASE - TOP) / i128::from(max);
    (h as i64).max(2)
}

pub fn daily_chart(s: &DailySeries, counted: Counted) -> Markup {
    let max = s.days.iter().map(|d| d.micros).max().unwrap_or(0);
    let slot = WIDTH / (s.days.len().max(1) as i64);
    let bar = (slot - 4).max(1);
    let id = format!("{}-{}", counted.past(), s.currency.to_ascii_lowercase());
    let top_amount = s
        .days
        .iter()
        .find(|d| d.micros == max)
        .map_or("0.00", |d| d.amount.as_str());
    html! {
        figure class="chart" data-testid=(format!("chart-{}", s.currency)) {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
                width="100%" role="img" aria-labelledby=(format!("{id}-title")) focusable="false" {
                title id=(format!("{id}-title")) {
                    (counted.noun()) " per day in " (s.currency) " over the last " (s.days.len()) " days: " (s.total) " in all"
                }
                text x="0" y="10" font-size="11" fill=(INK) { "max " (top_amount) " " (s.currency) }
                line x1="0" y1=(BASE) x2=(WIDTH) y2=(BASE) stroke=(INK) stroke-width="1" {}
                @for (i, d) in s.days.iter().enumerate() {
                    @let h = bar_height(d.micros, max);
                    rect x=(i as i64 * slot + 2) y=(BASE - h) width=(bar) height=(h)
                        fill=(if d.micros > 0 { BAR } else { EMPTY }) {
                        title { (d.day) ": " (d.amount) " " (s.currency) }
                    }
                }
                @if let (Some(first), Some(last)) = (s.days.first(), s.days.last()) {
                    text x="0" y=(HEIGHT - 6) font-size="11" fill=(INK) { (first.day) }
                    text x=(WIDTH) y=(HEIGHT - 6) font-size="11" fill=(INK) text-anchor="end" { (last.day) }
                }
            }
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
}
