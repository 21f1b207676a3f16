//! Money for the console's charts: per day over the last [`DAYS`] days, a series per currency
//! that moved any, summed from the same per-day rows as `/v1/usage?group_by=day` (spend) and
//! `/v1/earnings?group_by=day` (earnings) of each month the days fall in; and a provider's
//! earnings by device over those months, from the rows of `/v1/earnings?group_by=device`.

use std::collections::HashMap;

use iocloud_billing::{Currency, Money};
use iocloud_control::Actor;
use iocloud_db::time::{MICROS_PER_DAY, day_string, month_bounds, month_of, now_micros};
use iocloud_web::app::{
    Counted, DailySeries, DayAmount, EarningsByDevice, NamedAmount, NamedSeries,
};

use crate::state::AppState;

/// Days a chart spans, today included.
pub(super) const DAYS: i64 = 30;

/// The last [`DAYS`] days (day numbers, oldest first) and the months they fall in, `2026-11`.
fn last_days() -> (Vec<i64>, Vec<String>) {
    let today = now_micros().div_euclid(MICROS_PER_DAY);
    let days: Vec<i64> = (today - (DAYS - 1)..=today).collect();
    let mut months: Vec<String> = Vec::new();
    for d in &days {
        let m = month_of(d * MICROS_PER_DAY);
        if !months.contains(&m) {
            months.push(m);
        }
    }
    (days, months)
}

pub(super) async fn by_day(
    state: &AppState,
    actor: &Actor,
    counted: Counted,
) -> iocloud_control::Result<Vec<DailySeries>> {
    let (days, months) = last_days();
    let billing = &state.control.billing;
    let mut summed: HashMap<(Currency, String), i64> = HashMap::new();
    for m in &months {
        let rows = match counted {
            Counted::Earnings => billing.earnings(actor, Some("day"), Some(m)).await?,
            Counted::Spend => billing.usage(actor, Some("day"), Some(m)).await?,
            // Block rewards are not in the statements: their page reads them by day from the
            // rewards service and builds its series itself.
            Counted::Rewards => Vec::new(),
        };
        for row in rows {
            let micros = Money::parse(&row.amount, row.currency).map_or(0, Money::micros);
            let slot = summed.entry((row.currency, row.key)).or_insert(0);
            *slot = slot.saturating_add(micros);
        }
    }
    let mut series = Vec::new();
    for currency in Currency::ALL {
        let line: Vec<DayAmount> = days
            .iter()
            .map(|d| {
                let day = day_string(*d);
                let micros = summed.get(&(currency, day.clone())).copied().unwrap_or(0);
                DayAmount {
                    amount: Money::from_micros(micros, currency).to_decimal(),
                    day,
                    micros,
                }
            })
            .collect();
        let total = line.iter().map(|d| d.micros).fold(0, i64::saturating_add);
        if total > 0 {
            series.push(DailySeries {
                currency: currency.code().to_string(),
                total: Money::from_micros(total, currency).to_decimal(),
                days: line,
            });
        }
    }
    Ok(series)
}

/// What the organisation earned by device over the months the last [`DAYS`] days fall in (so
/// from the first of the earliest), a series per currency earned in, the largest first; each
/// device by the name `name_of` gives its id.
pub(super) async fn earnings_by_device(
    state: &AppState,
    actor: &Actor,
    name_of: impl Fn(&str) -> String,
) -> iocloud_control::Result<EarningsByDevice> {
    let (_, months) = last_days();
    let billing = &state.control.billing;
    let mut summed: HashMap<(Currency, String), i64> = HashMap::new();
    for m in &months {
        for row in billing.earnings(actor, Some("device"), Some(m)).await? {
            let micros = Money::parse(&row.amount, row.currency).map_or(0, Money::micros);
            let slot = summed.entry((row.currency, row.key)).or_insert(0);
            *slot = slot.saturating_add(micros);
        }
    }
    let since = months
        .first()
        .and_then(|m| month_bounds(m))
        .map_or_else(String::new, |(from, _)| {
            day_string(from.div_euclid(MICROS_PER_DAY))
        });
    let mut series = Vec::new();
    for currency in Currency::ALL {
        let mut rows: Vec<NamedAmount> = summed
            .iter()
            .filter(|((c, _), micros)| *c == currency && **micros > 0)
            .map(|((_, device), micros)| NamedAmount {
                label: name_of(device.as_str()),
                amount: Money::from_micros(*micros, currency).to_decimal(),
                micros: *micros,
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by(|a, b| b.micros.cmp(&a.micros).then_with(|| a.label.cmp(&b.label)));
        let total = rows.iter().map(|r| r.micros).fold(0, i64::saturating_add);
        series.push(NamedSeries {
            currency: currency.code().to_string(),
            total: Money::from_micros(total, currency).to_decimal(),
            rows,
        });
    }
    Ok(EarningsByDevice { since, series })
}
