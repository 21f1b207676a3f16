//! $IO is priced from a feed (static or HTTP); every rate used is stored; quotes lock a rate.

use axum::Router;
use axum::routing::get;
use iocloud_tests::{Backend, TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(static_rate_quotes);

async fn static_rate_quotes(b: Backend) {
    let app = TestApp::spawn_with(b, |c| c.io_usd_rate = "0.42".into()).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let rate = app.get("/v1/fx/io-usd", &s.access).await;
    assert_eq!(rate.body["usd_per_io"], "0.42", "{}", rate.text);
    assert_eq!(rate.body["source"], "static");
    let q = app
        .post(
            "/v1/price-quotes",
            Some(&s.access),
            json!({"amount_usd": "10.00", "currency": "IO"}),
        )
        .await;
    assert_eq!(q.status, 201, "{}", q.text);
    assert_eq!(
        q.body["amount"], "23.809523",
        "$10 at $0.42, rounded down to the micro-IO"
    );
    assert_eq!(q.body["rate_id"], rate.body["id"]);
    let id = q.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/price-quotes/{id}"), &s.access)
            .await
            .body["amount"],
        "23.809523"
    );
    let iosd = app
        .post(
            "/v1/price-quotes",
            Some(&s.access),
            json!({"amount_usd": "10", "currency": "IOSD"}),
        )
        .await;
    assert_eq!(iosd.body["amount"], "10.00");
    // Stored rates: the one used is there with its source.
    assert_eq!(app.count("SELECT COUNT(*) FROM fx_rates").await, 1);
    // Expired, foreign and malformed.
    app.exec("UPDATE price_quotes SET expires_at = 1 WHERE id = $1", id)
        .await;
    app.get(&format!("/v1/price-quotes/{id}"), &s.access)
        .await
        .assert_problem(410, "quote_expired");
    let other = app.signup("bob@example.com", "Bob").await;
    let theirs = app
        .post(
            "/v1/price-quotes",
            Some(&other.access),
            json!({"amount_usd": "1", "currency": "IO"}),
        )
        .await;
    app.get(
        &format!("/v1/price-quotes/{}", theirs.body["id"].as_str().unwrap()),
        &s.access,
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        "/v1/price-quotes",
        Some(&s.access),
        json!({"amount_usd": "-1", "currency": "IO"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post(
        "/v1/price-quotes",
        Some(&s.access),
        json!({"amount_usd": "1", "currency": "DOGE"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_price_feed() {
    // A feed on loopback, as an exchange's ticker would answer.
    let feed = Router::new()
        .route(
            "/io-usd",
            get(|| async { axum::Json(json!({"usd_per_io": "0.8125"})) }),
        )
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, feed).await });

    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.price_feed_url = Some(format!("http://{addr}/io-usd"))
    })
    .await;
    let s = app.signup("ada@example.com", "Acme").await;
    let rate = app.get("/v1/fx/io-usd", &s.access).await;
    assert_eq!(rate.body["usd_per_io"], "0.8125", "{}", rate.text);
    assert_eq!(rate.body["source"], format!("http://{addr}/io-usd"));
    app.stop().await;

    let broken = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.price_feed_url = Some(format!("http://{addr}/broken"))
    })
    .await;
    let s = broken.signup("ada@example.com", "Acme").await;
    broken
        .get("/v1/fx/io-usd", &s.access)
        .await
        .assert_problem(503, "price_feed_unavailable");
    // USD and IOSD need no feed.
    let q = broken
        .post(
            "/v1/price-quotes",
            Some(&s.access),
            json!({"amount_usd": "5", "currency": "USD"}),
        )
        .await;
    assert_eq!(q.status, 201, "{}", q.text);
    broken.stop().await;
}
