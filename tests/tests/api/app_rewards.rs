//! Block rewards in the console: the rewards page before the first block (saying when it
//! comes) and after a stretch of simulated hours (what was earned in all, equal to the rows,
//! per day as a chart and by device with the hours earned of those considered); a device's
//! page with its last hours, an hour it earned nothing in saying why in words with the
//! evidence REST gives; a member without billing rights seeing the rules but no amounts; and
//! another organisation's device not found.

use iocloud_billing::{Currency, Money};
use iocloud_control::providers::agent::Heartbeat;
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::{now_micros, to_rfc3339};
use iocloud_tests::{Backend, PASSWORD, TestApp, on_both_engines, verified_rig};
use reqwest::header::CONTENT_SECURITY_POLICY;
use serde_json::json;

use super::console_client::{open, page, sign_in};

on_both_engines!(rewards_in_the_console);

const H: i64 = MICROS_PER_HOUR;
const MINUTE: i64 = 60_000_000;

/// A listed, idle 8-GPU rig's heartbeat.
fn idle_beat() -> Heartbeat {
    serde_json::from_value(json!({"free_gpus": 8, "utilization_pct": 1,
        "cpu_utilization_pct": 5, "running_nodes": 0, "temperature_c": 60,
        "agent_version": "1.4.2"}))
    .unwrap()
}

/// Stores the hour's passed proof of a device as its agent's answer would have.
async fn passed_proof(app: &TestApp, device: &str, org: &str, hour: i64) {
    let at = hour * H + 10 * MINUTE;
    let sql = format!(
        "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline, answered_at, outcome, detail) \
         VALUES ($1, {hour}, '{org}', 'n', 18, 80, {at}, {}, {}, 'passed', NULL)",
        at + 30_000_000,
        at + 1_000_000,
    );
    app.exec(&sql, device).await;
}

/// Text as a page writes it, escaped.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// $IO as the pages write it.
fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// The part of `html` from `marker` to the first `end` after it (included).
fn part<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

async fn rewards_in_the_console(b: Backend) {
    let app = TestApp::spawn(b).await;
    let control = &app.server.state.control;
    let p = app.signup("farm@example.com", "GPU Farm").await;
    let jar = sign_in(&app, "farm@example.com").await;

    // Before any block: a page that says when the first comes, under the strict policy, its
    // section marked in the top bar.
    let res = open(&app, &jar, "/app/worker/rewards").await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("style-src 'self'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains("data-testid=\"rewards-empty\""), "{html}");
    assert!(
        html.contains("The first block is written an hour after your first device is verified."),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"/app/worker/rewards\" aria-current=\"page\">Rewards</a>"),
        "{html}"
    );
    assert!(html.contains("data-testid=\"reward-rules\""), "{html}");
    assert!(!html.contains("data-testid=\"rewards-total\""), "{html}");
    assert!(!html.contains(" style="), "{html}");

    // Two staked rigs, heard every minute from just before the next hour for six hours (five
    // of streak, then one judged), each hour's proof passed; B silent for three minutes in the
    // judged hour.
    app.grant_credit(&p.org_id, "40000", "IO").await;
    app.post("/v1/stake", Some(&p.access), json!({"amount": "40000"}))
        .await;
    let (a, _) = verified_rig(&app, &p, "rig-a").await;
    let (b_id, _) = verified_rig(&app, &p, "rig-b").await;
    let first = now_micros().div_euclid(H) + 1;
    let judged = first + 5;
    for minute in -1..6 * 60 {
        let at = first * H + minute * MINUTE + 1_000_000;
        let silent = at.div_euclid(H) == judged && (10..13).contains(&(minute % 60));
        control.devices.heartbeats().push(&a, idle_beat(), at);
        if !silent {
            control.devices.heartbeats().push(&b_id, idle_beat(), at);
        }
        control.devices.flush_heartbeats().await.unwrap();
    }
    for hour in first..=judged {
        passed_proof(&app, &a, &p.org_id, hour).await;
        passed_proof(&app, &b_id, &p.org_id, hour).await;
    }
    for hour in first..=judged {
        let r = control.rewards.run_block(hour).await.unwrap();
        assert!(r.written);
        assert_eq!(r.devices, 2);
    }
    let sum = |device: &str| {
        format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM block_rewards WHERE device_id = '{device}'"
        )
    };
    let earned_a = app.count(&sum(&a)).await;
    let earned_b = app.count(&sum(&b_id)).await;
    assert!(earned_a > 0, "A earned the judged hour");
    assert_eq!(earned_b, 0, "B earned nothing");
    let total = app
        .count(&format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM block_rewards WHERE org_id = '{}'",
            p.org_id
        ))
        .await;
    assert_eq!(total, earned_a);

    // The page: the total equal to the rows, the last block's hour, the chart, each device
    // with its $IO and the hours it earned of those considered.
    let (status, html) = page(&app, &jar, "/app/worker/rewards").await;
    assert_eq!(status, 200);
    assert!(!html.contains("data-testid=\"rewards-empty\""), "{html}");
    assert!(
        html.contains(&format!("data-testid=\"rewards-total\">{}<", io(total))),
        "{html}"
    );
    let last = part(&html, "data-testid=\"rewards-last-block\"", "</p>");
    assert!(
        last.contains(&format!("datetime=\"{}\"", to_rfc3339(judged * H))),
        "{last}"
    );
    assert!(html.contains("data-testid=\"chart-IO\""), "{html}");
    assert!(html.contains("<svg"), "{html}");
    assert!(!html.contains(" style="), "{html}");
    let row_a = part(&html, &format!("data-device=\"{a}\""), "</tr>");
    assert!(
        row_a.contains(&format!("href=\"/app/worker/devices/{a}\">rig-a</a>")),
        "{row_a}"
    );
    assert!(
        row_a.contains(&format!("<td class=\"n\">{}</td>", io(earned_a))),
        "{row_a}"
    );
    assert!(row_a.contains("1 of 6 h"), "{row_a}");
    let row_b = part(&html, &format!("data-device=\"{b_id}\""), "</tr>");
    assert!(row_b.contains("0 of 6 h"), "{row_b}");

    // B's page: the judged hour says why in words, with the evidence REST gives, and the
    // hours before it that the streak was short.
    let hours = app
        .get(&format!("/v1/devices/{b_id}/blocks?limit=1"), &p.access)
        .await;
    assert_eq!(hours.status, 200, "{}", hours.text);
    assert_eq!(
        hours.body["items"][0]["reason"], "not_heard",
        "{}",
        hours.text
    );
    let evidence = hours.body["items"][0]["evidence"].as_str().unwrap();
    let (status, html) = page(&app, &jar, &format!("/app/worker/devices/{b_id}")).await;
    assert_eq!(status, 200);
    let section = part(&html, "data-testid=\"device-rewards\"", "</section>");
    assert!(section.contains("Rewards by hour"), "{section}");
    assert_eq!(section.matches("<tr data-hour=").count(), 6, "{section}");
    let row = part(
        section,
        &format!("data-hour=\"{}\"", to_rfc3339(judged * H)),
        "</tr>",
    );
    assert!(row.contains("data-reason=\"not_heard\""), "{row}");
    assert!(row.contains("<strong>Not heard</strong>"), "{row}");
    assert!(row.contains(&escaped(evidence)), "{evidence} in {row}");
    assert!(row.contains(">nothing<"), "{row}");
    let early = part(
        section,
        &format!("data-hour=\"{}\"", to_rfc3339(first * H)),
        "</tr>",
    );
    assert!(early.contains("Uptime under 5 h"), "{early}");
    assert!(!html.contains(" style="), "{html}");

    // A's page: the judged hour's $IO, no reason.
    let (_, html) = page(&app, &jar, &format!("/app/worker/devices/{a}")).await;
    let section = part(&html, "data-testid=\"device-rewards\"", "</section>");
    let row = part(
        section,
        &format!("data-hour=\"{}\"", to_rfc3339(judged * H)),
        "</tr>",
    );
    assert!(!row.contains("data-reason"), "{row}");
    assert!(row.contains(&io(earned_a)), "{row}");

    // A member without billing rights: the rules and the device's hours, no amounts.
    let invited = app
        .post(
            "/v1/invitations",
            Some(&p.access),
            json!({"email": "sam@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text);
    let token = app.invitation_token("sam@example.com").await;
    let joined = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "sam@example.com", "password": PASSWORD, "name": "Sam", "invitation": token}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    let sam = sign_in(&app, "sam@example.com").await;
    let (status, html) = page(&app, &sam, "/app/worker/rewards").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-testid=\"money-hidden\""), "{html}");
    assert!(html.contains("data-testid=\"reward-rules\""), "{html}");
    assert!(!html.contains("data-testid=\"rewards-total\""), "{html}");
    assert!(!html.contains(&io(total)), "no amounts: {html}");
    let (status, html) = page(&app, &sam, &format!("/app/worker/devices/{b_id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("data-reason=\"not_heard\""), "{html}");

    // Another organisation: none of these devices, and their pages not found.
    app.signup("other@example.com", "Other").await;
    let other = sign_in(&app, "other@example.com").await;
    let (status, html) = page(&app, &other, "/app/worker/rewards").await;
    assert_eq!(status, 200);
    assert!(html.contains("data-testid=\"no-reward-devices\""), "{html}");
    assert!(!html.contains(&a), "{html}");
    for id in [&a, &b_id] {
        let (status, html) = page(&app, &other, &format!("/app/worker/devices/{id}")).await;
        assert_eq!(status, 404, "{html}");
        assert!(!html.contains("Rewards by hour"), "{html}");
    }
}
