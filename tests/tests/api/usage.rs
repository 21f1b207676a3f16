//! Usage, invoices, CSV export and provider earnings, read from what metering charged.

use iocloud_billing::metering::NewUsage;
use iocloud_billing::{Currency, Money};
use iocloud_tests::{TestApp, on_both_engines};

on_both_engines!(usage_invoices_and_earnings);
on_both_engines!(a_line_opened_ahead_for_an_hour_never_run_is_not_shown);

async fn usage_invoices_and_earnings(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.demo = true).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let provider = app.signup("gpus@example.com", "GPU Farm").await;
    let ledger = &app.server.state.control.ledger;
    let (start, _) = iocloud_db::time::month_bounds("2026-10").unwrap();
    let t0 = start + 3_600_000_000; // 01:00 on 1 October
    let hold = ledger
        .place_hold(
            &s.org_id,
            Money::from_micros(100_000_000, Currency::Usd),
            "clu_train",
            "hold-clu_train",
        )
        .await
        .unwrap();
    // An 8-GPU node at $2.10 per GPU-hour for two hours.
    let record = ledger
        .start_usage(NewUsage {
            org_id: &s.org_id,
            cluster_id: "clu_train",
            node_id: "nod_1",
            device_id: "dev_rig1",
            provider_org_id: &provider.org_id,
            hold_id: &hold.id,
            gpus: 8,
            rate_per_hour: Money::from_micros(8 * 2_100_000, Currency::Usd),
            started_at: t0,
        })
        .await
        .unwrap();
    ledger
        .stop_usage(&record.id, t0 + 2 * 3_600_000_000)
        .await
        .unwrap();
    // Two passes: one an hour in, one catching up long after the node stopped.
    ledger
        .accrue(t0 + 3_600_000_000, 60_000_000, 500)
        .await
        .unwrap();
    ledger
        .accrue(t0 + 3 * 3_600_000_000, 60_000_000, 500)
        .await
        .unwrap();

    let by_cluster = app
        .get("/v1/usage?group_by=cluster&month=2026-10", &s.access)
        .await;
    assert_eq!(by_cluster.status, 200, "{}", by_cluster.text);
    assert_eq!(by_cluster.body[0]["key"], "clu_train");
    assert_eq!(by_cluster.body[0]["gpu_hours"], "16.00");
    assert_eq!(by_cluster.body[0]["amount"], "33.60");
    let by_day = app
        .get("/v1/usage?group_by=day&month=2026-10", &s.access)
        .await;
    assert_eq!(by_day.body[0]["key"], "2026-10-01", "{}", by_day.text);
    assert_eq!(
        app.get("/v1/usage?month=2026-11", &s.access).await.body,
        serde_json::json!([])
    );

    let invoice = app.get("/v1/invoices/2026-10", &s.access).await;
    assert_eq!(invoice.body["organization"], "Acme", "{}", invoice.text);
    assert_eq!(invoice.body["lines"][0]["rate"], "2.10");
    assert_eq!(invoice.body["lines"][0]["gpu_hours"], "16.00");
    assert_eq!(invoice.body["totals"][0]["amount"], "33.60");
    let html = app.get("/v1/invoices/2026-10?format=html", &s.access).await;
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.text.contains("33.60 USD") && html.text.contains("clu_train"));

    let csv = app.get("/v1/usage/export?month=2026-10", &s.access).await;
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines.len(),
        1 + 2,
        "a header and a line per pass: {}",
        csv.text
    );
    assert_eq!(
        lines[1],
        "clu_train,nod_1,dev_rig1,USD,8,16.80,2026-10-01T01:00:00.000000Z,2026-10-01T02:00:00.000000Z,3600.00,16.80,0.00,1"
    );

    // The provider sees its earnings after the 5% fee; the customer sees none.
    let earned = app
        .get(
            "/v1/earnings?group_by=device&month=2026-10",
            &provider.access,
        )
        .await;
    assert_eq!(earned.body[0]["key"], "dev_rig1", "{}", earned.text);
    assert_eq!(earned.body[0]["amount"], "31.92");
    assert_eq!(
        app.get("/v1/earnings?month=2026-10", &s.access).await.body,
        serde_json::json!([])
    );
    assert_eq!(
        app.get("/v1/usage?month=2026-10", &provider.access)
            .await
            .body,
        serde_json::json!([])
    );

    // GraphQL reads the same figures.
    let g = app
        .graphql(Some(&s.access), "{ invoice(month: \"2026-10\") { totals { currency amount } } usage(groupBy: \"day\", month: \"2026-10\") { key amount } }", serde_json::json!({}))
        .await;
    assert_eq!(
        g.body["data"]["invoice"]["totals"][0]["amount"], "33.60",
        "{}",
        g.text
    );
    assert_eq!(g.body["data"]["usage"][0]["key"], "2026-10-01");

    // Bad input.
    app.get("/v1/usage?month=2026-13", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/usage?group_by=device", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/invoices/october", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/v1/invoices/2026-10?format=pdf", &s.access)
        .await
        .assert_problem(422, "validation_failed");
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.get("/v1/invoices/2026-10", &viewer.access)
        .await
        .assert_problem(403, "forbidden");
    assert!(ledger.verify().await.unwrap().is_balanced());
    app.stop().await;
}

/// Metering opens a running node's line for the next hour ahead of time. A node that ends at
/// the hour leaves that line empty: it must not show in the next month's statements.
async fn a_line_opened_ahead_for_an_hour_never_run_is_not_shown(b: iocloud_tests::Backend) {
    const HOUR: i64 = 3_600_000_000;
    let app = TestApp::spawn_with(b, |c| c.demo = true).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let provider = app.signup("gpus@example.com", "GPU Farm").await;
    let ledger = &app.server.state.control.ledger;
    let (november, _) = iocloud_db::time::month_bounds("2026-11").unwrap();
    let hold = ledger
        .place_hold(
            &s.org_id,
            Money::from_micros(100_000_000, Currency::Usd),
            "clu_late",
            "hold-clu_late",
        )
        .await
        .unwrap();
    // 23:00 to midnight on 31 October, one GPU at $2.10.
    let record = ledger
        .start_usage(NewUsage {
            org_id: &s.org_id,
            cluster_id: "clu_late",
            node_id: "nod_1",
            device_id: "dev_rig1",
            provider_org_id: &provider.org_id,
            hold_id: &hold.id,
            gpus: 1,
            rate_per_hour: Money::from_micros(2_100_000, Currency::Usd),
            started_at: november - HOUR,
        })
        .await
        .unwrap();
    // The pass at midnight charges the hour and, the node still running, opens its
    // November line; then the node stops at midnight.
    ledger.accrue(november, 60_000_000, 500).await.unwrap();
    let lines = |db: iocloud_db::Db, id: String| async move {
        iocloud_db::db_run!(&db, |p| sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT hour_start, period_end - period_start, amount FROM usage_lines WHERE record_id = $1 ORDER BY hour_start"
        )
        .bind(&id)
        .fetch_all(p)
        .await)
        .unwrap()
    };
    assert_eq!(
        lines(ledger.db().clone(), record.id.clone()).await,
        vec![(november - HOUR, HOUR, 2_100_000), (november, 0, 0)],
        "October's line charged, November's opened empty"
    );
    ledger.stop_usage(&record.id, november).await.unwrap();
    ledger
        .accrue(november + HOUR, 60_000_000, 500)
        .await
        .unwrap();
    assert_eq!(lines(ledger.db().clone(), record.id.clone()).await.len(), 2);

    let october = app.get("/v1/invoices/2026-10", &s.access).await;
    assert_eq!(
        october.body["totals"][0]["amount"], "2.10",
        "{}",
        october.text
    );
    let november_invoice = app.get("/v1/invoices/2026-11", &s.access).await;
    assert_eq!(november_invoice.status, 200, "{}", november_invoice.text);
    assert_eq!(november_invoice.body["lines"], serde_json::json!([]));
    assert_eq!(november_invoice.body["totals"], serde_json::json!([]));
    assert_eq!(
        app.get("/v1/usage?month=2026-11", &s.access).await.body,
        serde_json::json!([])
    );
    assert_eq!(
        app.get("/v1/earnings?month=2026-11", &provider.access)
            .await
            .body,
        serde_json::json!([])
    );
    let csv = |month: &'static str| {
        let (app, access) = (&app, s.access.clone());
        async move {
            app.get(&format!("/v1/usage/export?month={month}"), &access)
                .await
                .text
                .lines()
                .count()
        }
    };
    assert_eq!(csv("2026-10").await, 2, "a header and October's line");
    assert_eq!(csv("2026-11").await, 1, "a header only");
    assert!(ledger.verify().await.unwrap().is_balanced());
    app.stop().await;
}
