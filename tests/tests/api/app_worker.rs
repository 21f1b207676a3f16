//! IO Worker in the console: a provider's devices listed with their status, uptime and
//! earnings per day and by device, a device added from the form (its agent token shown once,
//! and working), its price, maintenance, token and retirement changed from its page, each seen
//! over REST; a device's uptime per day as a chart, and what a customer's cluster rents of it
//! (never whose cluster it is); payouts (said in words when the chain is not configured,
//! refused in words when too small) and stake (refused in words, staked once however often
//! the form is sent, unstaked into its cooldown). Forged forms and another organisation's ids
//! change nothing.
//!
//! One file, though a long one: it is IO Worker's pages as one provider goes through them, on
//! one fleet and its helpers; split, each part would set the same fleet up again.

use iocloud_billing::metering::NewUsage;
use iocloud_billing::{Currency, Money};
use iocloud_db::time::{MICROS_PER_DAY, day_string, now_micros};
use iocloud_tests::{
    Backend, ChainApp, Session, TestApp, agent, create, current_nodes, earn, fleet, frankfurt,
    on_both_engines, provider_devices, wait_status,
};
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION};
use serde_json::{Value, json};

use super::console_client::{browser, csrf_of, page, post_form as post, sign_in};

on_both_engines!(
    a_provider_runs_devices_from_the_console,
    uptime_and_rentals_of_each_device,
    payouts_and_stake_from_the_console,
    payouts_on_chain_from_the_console,
);

const HOUR: i64 = 3_600_000_000;

async fn device_named(app: &TestApp, s: &Session, name: &str) -> Value {
    provider_devices(app, s)
        .await
        .into_iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no device named {name}"))
}

async fn device(app: &TestApp, s: &Session, id: &str) -> Value {
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.status, 200, "{}", d.text);
    d.body
}

/// The agent token a page shows.
fn token_in(html: &str) -> String {
    let at = html
        .find("value=\"iodt_")
        .expect("an agent token on the page")
        + 7;
    html[at..].split('"').next().unwrap().to_string()
}

async fn hello(app: &TestApp, token: &str, id: &str) -> u16 {
    agent(
        app,
        token,
        "POST",
        &format!("/agent/v1/devices/{id}/hello"),
        json!({"agent_version": "1.0.0"}),
    )
    .await
    .status
    .as_u16()
}

/// The part of `html` from `marker` to the first `end` after it (included).
fn part<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[at..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

/// A percentage as a page writes it (`97.5 %`), as a number.
fn percentage(text: &str) -> f64 {
    text.trim()
        .strip_suffix(" %")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {text:?}"))
}

/// A device row's uptime over `window` (`24h`, `7d`, `30d`), as the table shows it.
fn uptime_in<'a>(row: &'a str, window: &str) -> &'a str {
    let marker = format!("data-uptime=\"{window}\">");
    let at = row
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in {row}"))
        + marker.len();
    let rest = &row[at..];
    &rest[..rest.find("</span>").unwrap()]
}

/// The text of the cell that follows `marker` in `html`, up to its `</td>`.
fn cell<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"))
        + marker.len();
    let rest = &html[at..];
    &rest[..rest.find("</td>").unwrap()]
}

/// Two hours of an 8-GPU node at 2.10 per GPU-hour on `device_id`, two days ago, metered
/// and charged: 31.92 USD earned after the 5 % fee, on one day (answered).
async fn two_hours_of_use(
    app: &TestApp,
    customer: &Session,
    provider: &Session,
    device_id: &str,
) -> String {
    let ledger = &app.server.state.control.ledger;
    let day = now_micros().div_euclid(MICROS_PER_DAY) - 2;
    let t0 = day * MICROS_PER_DAY + HOUR;
    let hold = ledger
        .place_hold(
            &customer.org_id,
            Money::from_micros(100_000_000, Currency::Usd),
            "clu_chart",
            "hold-clu_chart",
        )
        .await
        .unwrap();
    let record = ledger
        .start_usage(NewUsage {
            org_id: &customer.org_id,
            cluster_id: "clu_chart",
            node_id: "nod_chart",
            device_id,
            provider_org_id: &provider.org_id,
            hold_id: &hold.id,
            gpus: 8,
            rate_per_hour: Money::from_micros(8 * 2_100_000, Currency::Usd),
            started_at: t0,
        })
        .await
        .unwrap();
    ledger.stop_usage(&record.id, t0 + 2 * HOUR).await.unwrap();
    ledger.accrue(t0 + HOUR, 60_000_000, 500).await.unwrap();
    ledger.accrue(t0 + 3 * HOUR, 60_000_000, 500).await.unwrap();
    day_string(day)
}

async fn a_provider_runs_devices_from_the_console(b: Backend) {
    let fleet = fleet(b, frankfurt(2), true, |_| {}).await;
    let app = &fleet.app;
    let provider = &fleet.provider;
    let jar = sign_in(app, "provider@example.com").await;
    let csrf = csrf_of(&jar);
    let fra0 = device_named(app, provider, "fra-0").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let fra1 = device_named(app, provider, "fra-1").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let day = two_hours_of_use(app, &fleet.customer, provider, &fra1).await;

    // The overview: both devices with their status, the counts, earnings per day as a chart
    // with the same numbers as a table.
    let (status, html) = page(app, &jar, "/app/worker").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<nav aria-label=\"Worker\""), "{html}");
    for id in [&fra0, &fra1] {
        assert!(
            html.contains(&format!("href=\"/app/worker/devices/{id}\"")),
            "{html}"
        );
    }
    assert!(html.contains("fra-0") && html.contains("fra-1"), "{html}");
    assert_eq!(
        html.matches("data-status=\"available\"").count(),
        2,
        "{html}"
    );
    assert!(html.contains("data-testid=\"tile-listed\">2<"), "{html}");
    assert!(html.contains("data-testid=\"tile-gpus\">0 / 16<"), "{html}");
    assert!(html.contains("data-testid=\"chart-USD\""), "{html}");
    assert!(
        html.contains(&format!("<title>{day}: 31.92 USD</title>")),
        "a titled bar for the day: {html}"
    );
    assert!(
        html.contains(&format!(
            "<th scope=\"row\">{day}</th><td class=\"n\">31.92</td>"
        )),
        "the same as a table: {html}"
    );
    assert!(!html.contains("style="), "no inline style under the policy");

    // Each device's uptime in the table, and earnings by device beside those per day, by the
    // device's name.
    for col in [">Uptime<br>", ">24 h · 7 d · 30 d<", ">Rented now</th>"] {
        assert!(html.contains(col), "{col}: {html}");
    }
    let row = part(&html, &format!("data-device=\"{fra1}\""), "</tr>");
    for window in ["24h", "7d", "30d"] {
        let share = percentage(uptime_in(row, window));
        assert!((0.0..=100.0).contains(&share), "{window}: {row}");
    }
    assert!(
        percentage(uptime_in(row, "24h")) > 0.0,
        "its agent was heard: {row}"
    );
    assert!(
        cell(row, "data-testid=\"rented\">").contains("—"),
        "nothing rented: {row}"
    );
    let by_device = part(&html, "data-testid=\"by-device-USD\"", "</section>");
    assert!(by_device.contains("<svg"), "{by_device}");
    assert!(
        by_device.contains("<title>fra-1: 31.92 USD</title>"),
        "a titled bar named for the device: {by_device}"
    );
    assert!(
        by_device.contains("<th scope=\"row\">fra-1</th><td class=\"n\">31.92</td>"),
        "the same as a table: {by_device}"
    );
    assert!(
        !by_device.contains(&fra1) && !by_device.contains("fra-0"),
        "names, not ids, and only devices that earned: {by_device}"
    );

    // A device added from the form: its token shown on the answer only, and it works.
    let mut spec = vec![
        ("name", "rig-9"),
        ("gpu_model", "rtx-4090"),
        ("gpu_count", "2"),
        ("cpu_cores", "16"),
        ("ram_gib", "64"),
        ("disk_gib", "1000"),
        ("region", "eu-central"),
        ("country", "de"),
        ("lat", ""),
        ("lon", ""),
        ("bandwidth_up", "1000"),
        ("bandwidth_down", "1000"),
        ("price_per_gpu_hour", "0.01"),
    ];
    let mut with_csrf = spec.clone();
    with_csrf.push(("csrf", &csrf));
    let (status, _, html) = post(app, &jar, "/app/worker/devices", &with_csrf).await;
    assert_eq!(status, 422, "a price under the floor: {html}");
    assert!(html.contains("Price: must be between"), "{html}");
    assert!(
        html.contains("value=\"rig-9\""),
        "the form keeps what was typed: {html}"
    );
    let mut forged = spec.clone();
    forged.push(("csrf", "forged"));
    assert_eq!(post(app, &jar, "/app/worker/devices", &forged).await.0, 403);
    assert_eq!(
        provider_devices(app, provider).await.len(),
        2,
        "nothing added"
    );

    spec.last_mut().unwrap().1 = "0.40";
    spec.push(("csrf", &csrf));
    let res = browser()
        .post(app.url("/app/worker/devices"))
        .header(COOKIE, &jar)
        .form(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "shown, not redirected");
    assert!(res.headers().get(LOCATION).is_none());
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    let html = res.text().await.unwrap();
    let token = token_in(&html);
    assert!(token.starts_with("iodt_") && token.len() > 20, "{token}");
    // On this answer only: in its field, and in the one command that starts the agent.
    assert_eq!(html.matches(&token).count(), 2, "{html}");
    assert!(
        html.contains("/agent/v1/devices/"),
        "how the agent uses it: {html}"
    );
    let rig = device_named(app, provider, "rig-9").await;
    let rig_id = rig["id"].as_str().unwrap().to_string();
    assert_eq!(rig["status"], "pending_verification");
    assert_eq!(rig["country"], "DE");
    assert_eq!(rig["price_per_gpu_hour"], "0.40");
    assert!(
        rig["location"]["lat"].as_f64().unwrap() > 40.0,
        "the region's place: {rig}"
    );
    assert!(
        html.contains(&format!(
            "iocloud agent run --server {} --device {rig_id} --gpus 2 --token {token}",
            app.base
        )),
        "the command, with this server's address: {html}"
    );
    assert_eq!(hello(app, &token, &rig_id).await, 200, "the token works");
    let (_, html) = page(app, &jar, &format!("/app/worker/devices/{rig_id}")).await;
    assert!(!html.contains(&token), "never shown again");

    // The price, changed from the device's page (refused in words out of bounds, and when
    // the form is forged).
    let at = |what: &str| format!("/app/worker/devices/{fra1}/{what}");
    let (status, _, html) = post(
        app,
        &jar,
        &at("price"),
        &[("csrf", &csrf), ("price_per_gpu_hour", "99")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("Price: must be between"), "{html}");
    assert!(html.contains("value=\"99\""), "{html}");
    let (status, to, _) = post(
        app,
        &jar,
        &at("price"),
        &[("csrf", &csrf), ("price_per_gpu_hour", "2.25")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        to.as_deref(),
        Some(format!("/app/worker/devices/{fra1}?done=price").as_str())
    );
    assert_eq!(
        device(app, provider, &fra1).await["price_per_gpu_hour"],
        "2.25"
    );
    let (_, html) = page(app, &jar, to.as_deref().unwrap()).await;
    assert!(html.contains("The price was changed."), "{html}");
    let (status, _, _) = post(
        app,
        &jar,
        &at("price"),
        &[("csrf", "forged"), ("price_per_gpu_hour", "3.00")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        device(app, provider, &fra1).await["price_per_gpu_hour"],
        "2.25"
    );
    // A notice is one of the page's own sentences, never text from the link.
    let (status, html) = page(
        app,
        &jar,
        &format!("/app/worker/devices/{fra1}?done=%3Cb%3Epwned%3C%2Fb%3E"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!html.contains("pwned"), "{html}");

    // Maintenance, started and ended.
    let (status, _, _) = post(
        app,
        &jar,
        &at("maintenance/start"),
        &[("csrf", &csrf), ("reason", "fan swap")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(device(app, provider, &fra1).await["status"], "maintenance");
    let (_, html) = page(app, &jar, &format!("/app/worker/devices/{fra1}")).await;
    assert!(html.contains("End maintenance of fra-1"), "{html}");
    assert!(html.contains("maintenance: fan swap"), "its event: {html}");
    let (status, _, _) = post(app, &jar, &at("maintenance/end"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(device(app, provider, &fra1).await["status"], "available");

    // A new token, shown once: the old one stops working.
    let (status, to, html) = post(
        app,
        &jar,
        &format!("/app/worker/devices/{rig_id}/rotate"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!((status, to), (200, None));
    let fresh = token_in(&html);
    assert_ne!(fresh, token);
    assert!(html.contains("The old token stopped working."), "{html}");
    assert_eq!(hello(app, &token, &rig_id).await, 401, "the old token");
    assert_eq!(hello(app, &fresh, &rig_id).await, 200, "the new token");

    // Another organisation: the provider's devices are missing, and its forms change nothing.
    let theirs = sign_in(app, "ada@example.com").await;
    let their_csrf = csrf_of(&theirs);
    let (status, html) = page(app, &theirs, "/app/worker").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("data-testid=\"worker-empty\"") && html.contains("Add a device"),
        "how to start providing: {html}"
    );
    assert!(!html.contains("fra-0"), "{html}");
    assert_eq!(
        page(app, &theirs, &format!("/app/worker/devices/{fra1}"))
            .await
            .0,
        404
    );
    for (what, form) in [
        (
            "price",
            vec![
                ("csrf", their_csrf.as_str()),
                ("price_per_gpu_hour", "3.00"),
            ],
        ),
        ("maintenance/start", vec![("csrf", their_csrf.as_str())]),
        ("rotate", vec![("csrf", their_csrf.as_str())]),
        ("retire", vec![("csrf", their_csrf.as_str())]),
    ] {
        assert_eq!(post(app, &theirs, &at(what), &form).await.0, 404, "{what}");
    }
    let still = device(app, provider, &fra1).await;
    assert_eq!(still["price_per_gpu_hour"], "2.25");
    assert_eq!(still["status"], "available");

    // Retired: a forged form first, then the real one; its token stops working.
    assert_eq!(
        post(
            app,
            &jar,
            &format!("/app/worker/devices/{rig_id}/retire"),
            &[("csrf", "forged")]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        device(app, provider, &rig_id).await["status"],
        "pending_verification"
    );
    let (status, to, _) = post(
        app,
        &jar,
        &format!("/app/worker/devices/{rig_id}/retire"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(device(app, provider, &rig_id).await["status"], "retired");
    assert_eq!(
        hello(app, &fresh, &rig_id).await,
        403,
        "a retired device's token"
    );
    let (_, html) = page(app, &jar, to.as_deref().unwrap()).await;
    assert!(html.contains("The device is retired"), "{html}");
    assert!(
        !html.contains("Retire rig-9"),
        "nothing left to change: {html}"
    );
}

async fn payouts_and_stake_from_the_console(b: Backend) {
    let fleet = fleet(b, frankfurt(2), false, |_| {}).await;
    let app = &fleet.app;
    let provider = &fleet.provider;
    earn(app, &provider.org_id, "5.00", Currency::Usd).await;
    let jar = sign_in(app, "provider@example.com").await;
    let csrf = csrf_of(&jar);

    // Payouts: the earnings, and a deployment without the chain says so, before and after a
    // request (refused with the status REST gives, nothing moved).
    let (status, html) = page(app, &jar, "/app/worker/payouts").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<td class=\"n\">5.00</td>"), "{html}");
    assert!(html.contains("data-testid=\"payouts-off\""), "{html}");
    assert!(
        html.contains("POST /v1/payouts/wallets/challenges"),
        "{html}"
    );
    let (status, _, html) = post(
        app,
        &jar,
        "/app/worker/payouts",
        &[
            ("csrf", &csrf),
            ("amount", "1"),
            ("currency", "USD"),
            ("token", ""),
            ("wallet_id", ""),
        ],
    )
    .await;
    assert_eq!(status, 503, "{html}");
    assert!(
        html.contains("Payouts on Solana are not configured on this deployment."),
        "{html}"
    );
    let balances = app.get("/v1/balances", &provider.access).await;
    let usd = balances
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "USD")
        .cloned()
        .unwrap();
    assert_eq!(usd["earnings"], "5.00", "{}", balances.text);

    // Stake: what is staked and what the devices need; a bad amount, and an unstake the
    // devices still need, refused in words.
    let (status, html) = page(app, &jar, "/app/worker/stake").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("data-testid=\"stake-active\">1000000.00<"),
        "{html}"
    );
    assert!(
        html.contains("32000.00"),
        "two H100 machines' stake: {html}"
    );
    for (amount, words) in [("lots", "is not an amount"), ("0", "must be positive")] {
        let (status, _, html) = post(
            app,
            &jar,
            "/app/worker/stake",
            &[("csrf", &csrf), ("amount", amount)],
        )
        .await;
        assert_eq!(status, 422, "{amount}: {html}");
        assert!(
            html.contains("Amount: ") && html.contains(words),
            "{amount}: {html}"
        );
    }
    let stakes = |v: &Value| v["stakes"].as_array().unwrap().clone();
    let summary = app.get("/v1/stake", &provider.access).await.body;
    let big = stakes(&summary)[0]["id"].as_str().unwrap().to_string();
    let (status, _, html) = post(
        app,
        &jar,
        "/app/worker/unstake",
        &[("csrf", &csrf), ("stake_id", &big)],
    )
    .await;
    assert_eq!(status, 409, "{html}");
    assert!(
        html.contains("listed devices need 32000.00 $IO staked"),
        "{html}"
    );

    // A good stake, sent twice (a double click), stakes once; a forged one not at all.
    app.grant_credit(&provider.org_id, "500", "IO").await;
    let (_, html) = page(app, &jar, "/app/worker/stake").await;
    let at = html.find("name=\"reference\" value=\"").unwrap() + 24;
    let reference = html[at..].split('"').next().unwrap().to_string();
    let form = [
        ("csrf", csrf.as_str()),
        ("amount", "500"),
        ("reference", reference.as_str()),
    ];
    for _ in 0..2 {
        let (status, to, _) = post(app, &jar, "/app/worker/stake", &form).await;
        assert_eq!(status, 303);
        assert_eq!(to.as_deref(), Some("/app/worker/stake?done=staked"));
    }
    let forged = [("csrf", "forged"), ("amount", "1"), ("reference", "")];
    assert_eq!(post(app, &jar, "/app/worker/stake", &forged).await.0, 403);
    let summary = app.get("/v1/stake", &provider.access).await.body;
    let all = stakes(&summary);
    assert_eq!(all.len(), 2, "{summary}");
    let small = all
        .iter()
        .find(|s| s["amount"] == "500.00")
        .expect("the stake of 500")["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Another organisation cannot touch it.
    let theirs = sign_in(app, "ada@example.com").await;
    let their_csrf = csrf_of(&theirs);
    let (status, _, _) = post(
        app,
        &theirs,
        "/app/worker/unstake",
        &[("csrf", &their_csrf), ("stake_id", &small)],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(page(app, &theirs, "/app/worker/stake").await.0, 200);

    // Unstaked: its cooldown shows, with when it ends; withdrawing before then is refused.
    let (status, to, _) = post(
        app,
        &jar,
        "/app/worker/unstake",
        &[("csrf", &csrf), ("stake_id", &small)],
    )
    .await;
    assert_eq!(status, 303);
    let (_, html) = page(app, &jar, to.as_deref().unwrap()).await;
    assert!(html.contains("cooldown began"), "{html}");
    assert!(
        html.contains("data-testid=\"stake-cooling\">500.00<"),
        "{html}"
    );
    let row = &html[html.find(&format!("data-stake=\"{small}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("data-status=\"unbonding\"") && row.contains("<time"),
        "{row}"
    );
    assert!(row.contains("in cooldown"), "{row}");
    let (status, _, _) = post(
        app,
        &jar,
        "/app/worker/withdraw",
        &[("csrf", &csrf), ("stake_id", &small)],
    )
    .await;
    assert_eq!(status, 409, "still cooling down");
}

/// With a Solana peer (skipped without one): a proved wallet listed, a payout under the
/// minimum refused in words, one asked for, listed and taken back.
async fn payouts_on_chain_from_the_console(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (wallet, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "100.00", Currency::Usd).await;
    let jar = sign_in(app, "owner@example.com").await;
    let csrf = csrf_of(&jar);

    let (status, html) = page(app, &jar, "/app/worker/payouts").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-testid=\"payout-form\""), "{html}");
    assert!(
        html.contains(&address) && html.contains("default"),
        "{html}"
    );
    let ask = |amount: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("amount", amount.to_string()),
            ("currency", "USD".to_string()),
            ("token", "IOSD".to_string()),
            ("wallet_id", wallet.clone()),
        ]
    };
    let small = ask("5");
    let small: Vec<(&str, &str)> = small.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = post(app, &jar, "/app/worker/payouts", &small).await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Amount: the smallest payout is 10.00 USD"),
        "{html}"
    );

    let good = ask("25");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, to, _) = post(app, &jar, "/app/worker/payouts", &good).await;
    assert_eq!(status, 303);
    assert_eq!(to.as_deref(), Some("/app/worker/payouts?done=payout"));
    let listed = app.get("/v1/payouts", &s.access).await;
    let id = listed.body["items"][0]["id"].as_str().unwrap().to_string();
    let (_, html) = page(app, &jar, "/app/worker/payouts").await;
    assert!(html.contains(&format!("data-payout=\"{id}\"")), "{html}");
    assert!(
        html.contains(&format!("/app/worker/payouts/{id}/cancel")),
        "{html}"
    );

    let (status, to, _) = post(
        app,
        &jar,
        &format!("/app/worker/payouts/{id}/cancel"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        to.as_deref(),
        Some("/app/worker/payouts?done=payout_canceled")
    );
    let p = app.get(&format!("/v1/payouts/{id}"), &s.access).await;
    assert_eq!(p.body["status"], "canceled", "{}", p.text);
    chain.stop().await;
}

/// A device's uptime per day as a chart on its page, and what a customer's cluster rents of it,
/// on its page and in the devices table, without whose cluster it is.
async fn uptime_and_rentals_of_each_device(b: Backend) {
    let fleet = fleet(b, frankfurt(1), true, |_| {}).await;
    let app = &fleet.app;
    let provider = &fleet.provider;
    let jar = sign_in(app, "provider@example.com").await;
    let fra0 = device_named(app, provider, "fra-0").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let at = format!("/app/worker/devices/{fra0}");

    // Heard from since it was added: every one of the 30 days drawn and tabled, today with a
    // real share, the days before it was added with none.
    app.server
        .state
        .control
        .devices
        .flush_heartbeats()
        .await
        .unwrap();
    let (status, html) = page(app, &jar, &at).await;
    assert_eq!(status, 200, "{html}");
    let uptime = part(&html, "data-testid=\"device-uptime\"", "</section>");
    assert!(
        uptime.contains("<svg") && uptime.contains("data-testid=\"uptime-chart\""),
        "{uptime}"
    );
    assert_eq!(uptime.matches("<rect").count(), 30, "a bar a day: {uptime}");
    let rows: Vec<&str> = uptime.split("<tr><th scope=\"row\">").skip(1).collect();
    assert_eq!(rows.len(), 30, "a row a day: {uptime}");
    let today = rows[29];
    let heard = percentage(cell(today, "<td class=\"n\">"));
    assert!(heard > 0.0 && heard <= 100.0, "today: {today}");
    assert!(
        uptime.contains(&format!("{heard:.1} % of the day heard</title>")),
        "today's bar says the same: {uptime}"
    );
    assert_eq!(
        cell(rows[0], "<td class=\"n\">"),
        "—",
        "before it was added: {}",
        rows[0]
    );
    assert!(!html.contains("style="), "no inline style under the policy");
    let rented = part(&html, "data-testid=\"device-rentals\"", "</section>");
    assert!(
        rented.contains("Nothing runs on this device now."),
        "{rented}"
    );

    // A customer's cluster placed on it: the node, its GPUs of the device's, until when and
    // at what price, on its page and in the table; the customer's organisation and cluster
    // never.
    let cluster_id = create(
        app,
        &fleet.customer,
        json!({"name": "secret-project", "kind": "container", "image": "busybox",
            "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 2}),
    )
    .await;
    let running = wait_status(app, &fleet.customer, &cluster_id, "running").await;
    let nodes = current_nodes(&running);
    assert_eq!(nodes.len(), 1, "{running}");
    assert_eq!(nodes[0]["device_id"], fra0.as_str(), "{running}");
    let node = nodes[0]["id"].as_str().unwrap().to_string();
    let until = running["expires_at"].as_str().unwrap().to_string();
    let day = two_hours_of_use(app, &fleet.customer, provider, &fra0).await;

    let (status, html) = page(app, &jar, &at).await;
    assert_eq!(status, 200, "{html}");
    let rented = part(&html, "data-testid=\"device-rentals\"", "</section>");
    let line = part(rented, &format!("data-node=\"{node}\""), "</tr>");
    assert!(line.contains("8 of 8 GPUs"), "{line}");
    assert!(
        line.contains(&format!("datetime=\"{until}\"")),
        "until: {line}"
    );
    assert!(
        line.contains("<td class=\"n\">2.00</td>"),
        "its price: {line}"
    );
    assert!(line.contains(">ready<"), "{line}");
    for secret in ["Acme", "secret-project", cluster_id.as_str()] {
        assert!(
            !html.contains(secret),
            "{secret} on the device's page: {html}"
        );
    }

    let (status, html) = page(app, &jar, "/app/worker").await;
    assert_eq!(status, 200, "{html}");
    let row = part(&html, &format!("data-device=\"{fra0}\""), "</tr>");
    let rented = cell(row, "data-testid=\"rented\">");
    assert!(
        rented.contains(&format!("data-node=\"{node}\"")) && rented.contains("8 of 8 GPUs"),
        "{row}"
    );
    assert!(rented.contains(&format!("datetime=\"{until}\"")), "{row}");
    assert!(percentage(uptime_in(row, "24h")) > 0.0, "{row}");
    let by_device = part(&html, "data-testid=\"by-device-USD\"", "</section>");
    assert!(by_device.contains("<title>fra-0: "), "{by_device}");
    assert!(
        by_device.contains("<th scope=\"row\">fra-0</th>"),
        "{by_device}"
    );
    assert!(
        html.contains(&format!("<title>{day}: ")),
        "earnings per day beside it: {html}"
    );
    for secret in ["Acme", "secret-project", cluster_id.as_str(), "clu_chart"] {
        assert!(!html.contains(secret), "{secret} on the overview: {html}");
    }

    // Another organisation: the device's page, chart and all, is missing.
    let theirs = sign_in(app, "ada@example.com").await;
    let (status, html) = page(app, &theirs, &at).await;
    assert_eq!(status, 404);
    assert!(
        !html.contains("device-uptime") && !html.contains(&node),
        "{html}"
    );
    let (_, html) = page(app, &theirs, "/app/worker").await;
    assert!(!html.contains("fra-0"), "{html}");
}
