//! Block rewards in the console, from the same calls as `GET /v1/rewards` and
//! `/v1/devices/{id}/blocks`: what the organisation's devices earned from the hourly blocks in
//! all, per day and by device, with the rules in force; and a device's last hours for its page,
//! each reason in words. Amounts are for the roles that may read billing, as over REST.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use iocloud_billing::rewards::{Reason, RewardParams};
use iocloud_billing::{Currency, Money};
use iocloud_control::rewards::{DeviceBlockView, DeviceEarnings};
use iocloud_control::{Action, Actor};
use iocloud_web::app::{
    DailySeries, DayAmount, DeviceRewardLine, FailedRule, RewardHourLine, RewardRules,
    RewardsMoney, RewardsView,
};

use super::super::chart::DAYS;
use super::super::session::Visitor;
use super::super::show;
use crate::state::AppState;

/// Days the devices table spans.
const DEVICE_DAYS: i64 = 7;

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

pub(super) async fn page(State(state): State<AppState>, v: Visitor) -> Response {
    show(
        &state,
        &v,
        StatusCode::OK,
        view(&state, &v.actor),
        iocloud_web::app::rewards_page,
    )
    .await
}

async fn view(state: &AppState, actor: &Actor) -> iocloud_control::Result<RewardsView> {
    let rewards = &state.control.rewards;
    // Amounts are for the roles that may read billing; the rules for every member.
    let money = if actor.authorize(Action::BillingRead).is_ok() {
        let summary = rewards.summary(actor).await?;
        let by_day = rewards.earned_by_day(actor, DAYS).await?;
        let devices = rewards.earned_by_device(actor, DEVICE_DAYS * 24).await?;
        Some(RewardsMoney {
            total: summary.total,
            last_24h: summary.last_24h,
            last_7d: summary.last_7d,
            next_emission: summary.next_emission,
            last_block: summary.last_block.map(|t| t.to_rfc3339()),
            by_day: daily(by_day),
            devices_days: DEVICE_DAYS,
            devices: devices.into_iter().map(device_line).collect(),
        })
    } else {
        None
    };
    Ok(RewardsView {
        money,
        rules: rules(&rewards.params()),
    })
}

/// Micro-$IO per day as the chart draws it.
fn daily(days: Vec<(String, i64)>) -> DailySeries {
    let total = days.iter().map(|(_, m)| *m).fold(0, i64::saturating_add);
    DailySeries {
        currency: Currency::Io.code().to_string(),
        total: io(total),
        days: days
            .into_iter()
            .map(|(day, micros)| DayAmount {
                day,
                amount: io(micros),
                micros,
            })
            .collect(),
    }
}

fn device_line(d: DeviceEarnings) -> DeviceRewardLine {
    DeviceRewardLine {
        earned: io(d.earned),
        id: d.device_id,
        name: d.name,
        eligible_hours: d.eligible_hours,
        hours: d.hours,
    }
}

/// A whole number of hundredths or thousandths as a decimal without trailing zeros: `8000`
/// hundredths is `80`, `1250` thousandths `1.25`.
fn decimal(value: i64, places: u32) -> String {
    let scale = 10_i64.pow(places);
    let digits = format!(
        "{}.{:0width$}",
        value / scale,
        (value % scale).abs(),
        width = places as usize
    );
    digits
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// The rules' figures from the parameters in force.
fn rules(p: &RewardParams) -> RewardRules {
    let gpu_bps = i64::from(p.gpu_share_bps);
    RewardRules {
        streak_hours: p.min_streak_hours,
        idle_cpu_pct: p.idle_cpu_pct,
        idle_gpu_pct: p.idle_gpu_pct_high_end,
        idle_gpu_pct_consumer: p.idle_gpu_pct_consumer,
        gpu_share: format!("{} %", decimal(gpu_bps, 2)),
        cpu_share: format!("{} %", decimal(10_000 - gpu_bps, 2)),
        rented_bonus: decimal(p.rented_bonus_permille, 3),
    }
}

/// A rule a device failed, in a few words.
fn reason_words(reason: Reason, p: &RewardParams) -> String {
    match reason {
        Reason::NotListed => "Not listed".to_string(),
        Reason::StakeShort => "Stake short".to_string(),
        Reason::SlashingCase => "Slashing case open".to_string(),
        Reason::NotHeard => "Not heard".to_string(),
        Reason::ShortUptime => format!("Uptime under {} h", p.min_streak_hours),
        Reason::NoProof => "No hourly proof".to_string(),
        Reason::ProofFailed => "Proof failed".to_string(),
        Reason::IdleRule => "Idle rule broken".to_string(),
    }
}

/// One of a device's blocks as its page lists it.
pub(super) fn hour_line(b: DeviceBlockView, p: &RewardParams) -> RewardHourLine {
    let failed = b.reason.map(|r| FailedRule {
        code: r.as_str().to_string(),
        words: reason_words(r, p),
        evidence: b.evidence,
    });
    RewardHourLine {
        hour: b.hour.to_rfc3339(),
        earned: failed.is_none().then_some(b.amount),
        rented: b.rented,
        failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_bonuses_read_as_decimals() {
        assert_eq!(decimal(8_000, 2), "80");
        assert_eq!(decimal(2_000, 2), "20");
        assert_eq!(decimal(7_550, 2), "75.5");
        assert_eq!(decimal(1_250, 3), "1.25");
        assert_eq!(decimal(1_000, 3), "1");
        let r = rules(&RewardParams::default());
        assert_eq!(
            (r.gpu_share.as_str(), r.cpu_share.as_str()),
            ("80 %", "20 %")
        );
        assert_eq!(r.rented_bonus, "1.25");
    }

    #[test]
    fn every_reason_has_words() {
        let p = RewardParams::default();
        for r in Reason::ALL {
            assert!(!reason_words(r, &p).is_empty(), "{}", r.as_str());
        }
        assert_eq!(reason_words(Reason::ShortUptime, &p), "Uptime under 5 h");
    }
}
