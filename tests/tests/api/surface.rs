//! What every deployment serves: OpenAPI, the reference page, GraphiQL, the console, metrics,
//! health, request ids, CORS and compression.

use iocloud_tests::{Backend, TestApp, on_both_engines};

on_both_engines!(documents_pages_and_probes);

async fn documents_pages_and_probes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    app.get("/v1/me", &s.access).await;

    let doc: serde_json::Value = app.get_public("/openapi.json").await.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/org",
        "/v1/members",
        "/v1/invitations",
        "/v1/invitations/accept",
        "/v1/api-keys",
        "/v1/api-keys/{id}",
        "/v1/audit-events",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    for (path, needle) in [
        ("/docs", "/assets/vendor/redoc.standalone.js"),
        ("/app/login", "/assets/app/app.css"),
        ("/console/", "/assets/app/app.css"),
        ("/graphql", "graphiql"),
    ] {
        let page = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let text = page.text().await.unwrap();
        assert!(text.contains(needle), "{path} has {needle}");
        assert!(
            !text.contains("src=\"https://") && !text.contains("href=\"https://"),
            "{path} loads nothing remote"
        );
    }
    // The console moved to /app/; old links, invitations' included, still land.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (old, new) in [
        ("/", "/app/"),
        ("/console/", "/app/"),
        ("/console/members", "/app/"),
        (
            "/console/accept?token=ioinv_x",
            "/app/invitations/accept?token=ioinv_x",
        ),
    ] {
        let res = no_follow.get(app.url(old)).send().await.unwrap();
        assert!(res.status().is_redirection(), "{old}");
        assert_eq!(res.headers()["location"], new, "{old}");
    }
    for asset in [
        "/assets/vendor/redoc.standalone.js",
        "/assets/vendor/graphiql.min.js",
        "/assets/app/app.css",
        "/assets/vendor/htmx.min.js",
        "/assets/vendor/htmx-ext-sse.min.js",
    ] {
        assert_eq!(
            app.client
                .get(app.url(asset))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{asset}"
        );
    }

    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: serde_json::Value = app.get_public("/readyz").await.body;
    assert_eq!(ready["database"], "ok");
    let metrics = app.get_public("/metrics").await.text;
    assert!(
        metrics.contains(
            "iocloud_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("iocloud_http_request_duration_seconds_bucket{route=\"/v1/auth/signup\"")
    );

    // Request ids: made up when absent, echoed when given.
    let made = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(made.headers()["x-request-id"].len(), 36);
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "req-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-abc");

    // A client that takes the body as it comes (reqwest would otherwise unpack it and drop
    // the header).
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let gz = raw
        .get(app.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        gz.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_configuration() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.cors_origins = vec!["https://console.example".into()]
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://console.example").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "https://console.example"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // A browser client may read that an answer was replayed, and what it withheld.
    let answer = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://console.example")
        .send()
        .await
        .unwrap();
    let exposed = answer
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in ["idempotent-replayed", "idempotent-withheld"] {
        assert!(exposed.contains(header), "{header} in {exposed:?}");
    }
    app.stop().await;
}

/// Pages carry a strict Content-Security-Policy; every answer refuses sniffing, framing and
/// referrers; API answers may load nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/app/login", "/graphql", "/docs"] {
        let page = app.client.get(app.url(path)).send().await.unwrap();
        let h = page.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("object-src 'none'"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    for path in ["/openapi.json", "/v1/me", "/healthz", "/no-such-route"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    app.stop().await;
}

/// With a metrics token set, `/metrics` answers only to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_restricted_to_a_token() {
    const TOKEN: &str = "scrape-me-0123456789abcdef";
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.metrics_token = Some(TOKEN.parse().unwrap())
    })
    .await;
    app.get_public("/metrics")
        .await
        .assert_problem(401, "unauthenticated");
    let wrong = app.get("/metrics", "scrape-me-0123456789abcdeX").await;
    wrong.assert_problem(401, "unauthenticated");
    let ok = app.get("/metrics", TOKEN).await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.text.contains("iocloud_http_requests_total"),
        "{}",
        ok.text
    );
    assert!(
        "short"
            .parse::<iocloud_api::config::MetricsToken>()
            .is_err(),
        "a guessable token is refused at startup"
    );
    app.stop().await;
}
