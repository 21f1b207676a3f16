//! The console's invoices and refunds, on SQLite and Postgres: the organisation's months, a
//! month's statement with its clusters by name and its totals, its usage lines as a CSV file
//! and a printable page; a month that is not one is said to be missing, never a failure.
//! Refunds: what is refundable, refusals in words with nothing changed (no card rail, nothing
//! paid by card, too much, a role that may not), and against localstripe a refund of a card
//! payment listed with the balance lower. Another organisation sees none of it; a forged form
//! does nothing.

use iocloud_billing::metering::NewUsage;
use iocloud_billing::{Currency, Money};
use iocloud_db::time::{month_bounds, month_of, now_micros};
use iocloud_tests::{
    Backend, CardApp, Session, TestApp, balance, fleet, frankfurt, on_both_engines,
    provider_devices, units,
};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::json;

use super::console_client::{csrf_of, open, page, post_form as post, sign_in};

on_both_engines!(invoices_from_the_console, refunds_from_the_console);

const HOUR: i64 = 3_600_000_000;

/// A CSRF token for [`jar_of`]: any 32 characters or more, the same in cookie and form.
const CSRF: &str = "5f0c7a1e9b2d4c6e8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f";

/// The cookies of a browser signed in as `s`, in the organisation its tokens are for: the
/// console keeps the API's own tokens in its cookies.
fn jar_of(s: &Session) -> String {
    format!(
        "csrf={CSRF}; iocloud_access={}; iocloud_refresh={}",
        s.access, s.refresh
    )
}

async fn invoices_from_the_console(b: Backend) {
    let f = fleet(b, frankfurt(2), false, |_| {}).await;
    let app = &f.app;
    let s = &f.customer;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "nightly-train", "kind": "ray", "gpu_model": "h100-sxm",
                "gpu_count": 8, "gpus_per_node": 8, "duration_hours": 2}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cluster = created.body["id"].as_str().unwrap().to_string();
    let device = provider_devices(app, &f.provider).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Two hours of the cluster's 8-GPU node at 2.10 per GPU-hour in October 2026, metered and
    // charged: 16 GPU-hours, 33.60 USD.
    let ledger = &app.server.state.control.ledger;
    let (start, _) = month_bounds("2026-10").unwrap();
    let t0 = start + HOUR;
    let hold = ledger
        .place_hold(
            &s.org_id,
            Money::from_micros(100_000_000, Currency::Usd),
            &cluster,
            "hold-statement-test",
        )
        .await
        .unwrap();
    let record = ledger
        .start_usage(NewUsage {
            org_id: &s.org_id,
            cluster_id: &cluster,
            node_id: "nod_statement",
            device_id: &device,
            provider_org_id: &f.provider.org_id,
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

    let jar = sign_in(app, "ada@example.com").await;

    // The Billing page leads to the statements.
    let (status, html) = page(app, &jar, "/app/billing").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("href=\"/app/billing/invoices\"")
            && html.contains("href=\"/app/billing/refunds\""),
        "{html}"
    );

    // The months since the organisation began: this one only, still running.
    let now = month_of(now_micros());
    let before = month_of(month_bounds(&now).unwrap().0 - 1);
    let (status, html) = page(app, &jar, "/app/billing/invoices").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!("href=\"/app/billing/invoices/{now}\"")),
        "{html}"
    );
    assert!(html.contains("(so far)"), "{html}");
    assert!(
        !html.contains(&format!("href=\"/app/billing/invoices/{before}\"")),
        "no month before the organisation began: {html}"
    );
    let (status, html) = page(app, &jar, &format!("/app/billing/invoices/{now}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("No usage in this month."), "{html}");

    // October's statement: the cluster by name beside its id, its hours, rate and amount, the
    // total.
    let (status, html) = page(app, &jar, "/app/billing/invoices/2026-10").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<h1>Invoice October 2026</h1>") && html.contains("Acme"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<a href=\"/app/clusters/{cluster}\">nightly-train</a>"
        )) && html.contains(&cluster),
        "the cluster by name: {html}"
    );
    assert!(
        html.contains("<td class=\"n\">16.00</td>") && html.contains("2.10 USD"),
        "{html}"
    );
    let totals = html
        .split("data-testid=\"invoice-totals\"")
        .nth(1)
        .expect("a totals table");
    assert!(totals.contains("33.60 USD"), "{html}");
    assert!(
        html.contains("href=\"/app/billing/invoices/2026-10/csv\""),
        "{html}"
    );

    // Its usage lines as a file to save.
    let res = open(app, &jar, "/app/billing/invoices/2026-10/csv").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv"),
        "{:?}",
        res.headers()
    );
    let disposition = res.headers()[CONTENT_DISPOSITION].to_str().unwrap();
    assert_eq!(disposition, "attachment; filename=\"usage-2026-10.csv\"");
    let text = res.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 2, "a header and a line per pass: {text}");
    assert!(lines[0].starts_with("cluster_id,"), "{text}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with(&format!("{cluster},nod_statement,{device},USD,8,16.80,"))),
        "{text}"
    );

    // A printable page of the same, under a policy that lets nothing load.
    let res = open(app, &jar, "/app/billing/invoices/2026-10/print").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains(&format!("nightly-train ({cluster})")) && text.contains("33.60 USD"),
        "{text}"
    );

    // A month that is not one: said to be missing, for the page, its file and its print.
    for bad in ["2026-13", "october", "2026-1", "2026-10-01", "0000-01"] {
        for tail in ["", "/csv", "/print"] {
            let path = format!("/app/billing/invoices/{bad}{tail}");
            let (status, html) = page(app, &jar, &path).await;
            assert_eq!(status, 404, "{path}: {html}");
            assert!(html.contains("No such month"), "{path}: {html}");
        }
    }

    // Another organisation (the provider that ran the node) sees none of the customer's.
    let theirs = sign_in(app, "provider@example.com").await;
    let (status, html) = page(app, &theirs, "/app/billing/invoices/2026-10").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("No usage in this month.") && !html.contains(&cluster),
        "{html}"
    );
    assert!(
        html.contains("GPU Farm") && !html.contains("33.60"),
        "{html}"
    );
    let text = open(app, &theirs, "/app/billing/invoices/2026-10/csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 1, "the header only: {text}");

    // A role that may not read billing is told so.
    let viewer = app.add_member(s, "viewer@example.com", "viewer").await;
    for path in ["/app/billing/invoices", "/app/billing/invoices/2026-10"] {
        let (status, html) = page(app, &jar_of(&viewer), path).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("Not allowed"), "{path}: {html}");
    }
    f.app.stop().await;
}

/// The refunds that `s`'s organisation asked, over REST.
async fn refunds_of(app: &TestApp, s: &Session) -> Vec<serde_json::Value> {
    app.items("/v1/billing/refunds", &s.access).await
}

async fn refunds_from_the_console(b: Backend) {
    // Without the card rail: nothing is refundable, and asking is refused in words.
    let plain = TestApp::spawn(b.clone()).await;
    let s = plain.signup("owner@example.com", "Render Farm").await;
    plain.grant_credit(&s.org_id, "100", "USD").await;
    let jar = sign_in(&plain, "owner@example.com").await;
    let csrf = csrf_of(&jar);
    let (status, html) = page(&plain, &jar, "/app/billing/refunds").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<p data-testid=\"refundable\"><strong>0.00 USD</strong></p>"),
        "{html}"
    );
    assert!(html.contains("Card payments are not configured"), "{html}");
    assert!(html.contains("No refunds yet."), "{html}");
    // A forged form, or one without its token, does nothing.
    for form in [
        vec![("csrf", "forged"), ("amount", "10.00")],
        vec![("amount", "10.00")],
    ] {
        let (status, _, _) = post(&plain, &jar, "/app/billing/refunds", &form).await;
        assert_eq!(status, 403);
    }
    let (status, _, html) = post(
        &plain,
        &jar,
        "/app/billing/refunds",
        &[("csrf", &csrf), ("amount", "")],
    )
    .await;
    assert_eq!(status, 503, "{html}");
    assert!(
        html.contains("role=\"alert\"")
            && html.contains("Card payments are not configured on this deployment."),
        "{html}"
    );
    assert!(refunds_of(&plain, &s).await.is_empty());
    assert_eq!(balance(&plain, &s, "USD").await.0, units(100));
    // Who may read billing sees the page; only an owner or the billing role may ask.
    let viewer = plain.add_member(&s, "viewer@example.com", "viewer").await;
    let (status, html) = page(&plain, &jar_of(&viewer), "/app/billing/refunds").await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Not allowed"), "{html}");
    let admin = plain.add_member(&s, "admin@example.com", "admin").await;
    let (status, _, html) = post(
        &plain,
        &jar_of(&admin),
        "/app/billing/refunds",
        &[("csrf", CSRF), ("amount", "1.00")],
    )
    .await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Your role does not allow"), "{html}");
    assert!(refunds_of(&plain, &s).await.is_empty());
    plain.stop().await;

    let Some(cards) = CardApp::spawn(b).await else {
        return;
    };
    let app = &cards.app;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    app.signup("other@example.com", "Quiet Neighbours").await;
    let jar = sign_in(app, "owner@example.com").await;
    let csrf = csrf_of(&jar);

    // Nothing paid by card: nothing to refund, said in words.
    let (status, html) = page(app, &jar, "/app/billing/refunds").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("data-testid=\"refund-form\""), "{html}");
    let (status, _, html) = post(
        app,
        &jar,
        "/app/billing/refunds",
        &[("csrf", &csrf), ("amount", "")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Amount: 0.00 USD is refundable now"),
        "{html}"
    );
    assert!(refunds_of(app, &owner).await.is_empty());

    // A card payment of 30.00.
    let paid = app
        .post(
            "/v1/billing/top-ups",
            Some(&owner.access),
            json!({"amount": "30.00", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.body["status"], "succeeded", "{}", paid.text);
    let top_up = paid.body["id"].as_str().unwrap().to_string();
    assert_eq!(balance(app, &owner, "USD").await.0, units(30));
    let (_, html) = page(app, &jar, "/app/billing/refunds").await;
    assert!(
        html.contains("<p data-testid=\"refundable\"><strong>30.00 USD</strong></p>"),
        "{html}"
    );

    // Forged, or more than is refundable: refused, nothing moves; the amount typed is kept.
    let (status, _, _) = post(
        app,
        &jar,
        "/app/billing/refunds",
        &[("csrf", "forged"), ("amount", "10.00")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, html) = post(
        app,
        &jar,
        "/app/billing/refunds",
        &[("csrf", &csrf), ("amount", "50.00")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Amount: 30.00 USD is refundable now") && html.contains("value=\"50.00\""),
        "{html}"
    );
    assert!(refunds_of(app, &owner).await.is_empty());
    assert_eq!(balance(app, &owner, "USD").await.0, units(30));

    // 10.00 back to the card: listed, the balance lower, the rest still refundable.
    let (status, to, _) = post(
        app,
        &jar,
        "/app/billing/refunds",
        &[("csrf", &csrf), ("amount", "10.00")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(to.as_deref(), Some("/app/billing/refunds?done=refund"));
    let listed = refunds_of(app, &owner).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["amount"], "10.00");
    assert_eq!(balance(app, &owner, "USD").await.0, units(20));
    let (status, html) = page(app, &jar, "/app/billing/refunds?done=refund").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("class=\"notice\"") && html.contains("The refund was asked for"),
        "{html}"
    );
    let table = html
        .split("data-testid=\"refunds\"")
        .nth(1)
        .expect("the refunds listed");
    assert!(
        table.contains(&format!("href=\"/app/billing/refunds/{id}\""))
            && table.contains("10.00 USD")
            && table.contains("data-status=\"succeeded\""),
        "{html}"
    );
    assert!(
        html.contains("<p data-testid=\"refundable\"><strong>20.00 USD</strong></p>"),
        "{html}"
    );
    // Only the words the page knows: a link cannot make it say anything else.
    let (_, html) = page(app, &jar, "/app/billing/refunds?done=hacked").await;
    assert!(!html.contains("class=\"notice\""), "{html}");
    // Its page: the card payment it goes back to.
    let (status, html) = page(app, &jar, &format!("/app/billing/refunds/{id}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(&format!("href=\"/app/billing/top-ups/{top_up}\"")),
        "{html}"
    );

    // Another organisation sees none of it.
    let theirs = sign_in(app, "other@example.com").await;
    let (status, _) = page(app, &theirs, &format!("/app/billing/refunds/{id}")).await;
    assert_eq!(status, 404);
    let (status, html) = page(app, &theirs, "/app/billing/refunds").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains(&id) && html.contains("No refunds yet."),
        "{html}"
    );
    assert_eq!(refunds_of(app, &owner).await.len(), 1);
    cards.stop().await;
}
