//! GCRA rate limits per client address and per API key: 429 with Retry-After and RateLimit
//! headers, shared by replicas through Redis.

use iocloud_tests::{Backend, TestApp, redis_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_answers_429_with_headers() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.rate_limit_per_ip = 5).await;
    let s = app.signup("ada@example.com", "Acme").await; // one of the five
    for i in 0..4 {
        let a = app.get("/v1/org", &s.access).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.text);
        let rl = a.header("ratelimit").expect("RateLimit header");
        assert!(rl.starts_with("limit=5, remaining="), "{rl}");
        assert_eq!(a.header("ratelimit-policy"), Some("5;w=60"));
    }
    let refused = app.get("/v1/org", &s.access).await;
    refused.assert_problem(429, "rate_limited");
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=12).contains(&retry),
        "a request frees up every 12 s: {retry}"
    );
    assert!(refused.header("ratelimit").unwrap().contains("remaining=0"));
    // Health checks are never limited.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_limit_is_separate_for_each_key() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.rate_limit_per_key = 3).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let (_, k1) = app.api_key(&s.access, &["read"]).await;
    let (_, k2) = app.api_key(&s.access, &["read"]).await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/me", &k1).await.status, 200);
    }
    app.get("/v1/me", &k1)
        .await
        .assert_problem(429, "rate_limited");
    assert_eq!(
        app.get("/v1/me", &k2).await.status,
        200,
        "another key has its own bucket"
    );
    assert_eq!(
        app.get("/v1/me", &s.access).await.status,
        200,
        "user tokens are limited by address only"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_limits_through_redis() {
    let Some(redis) = redis_url() else {
        eprintln!("IOCLOUD_TEST_REDIS_URL is not set: skipping");
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let tweak = |c: &mut iocloud_api::Config| {
        c.rate_limit_per_ip = 6;
        c.redis_url = Some(iocloud_db::DatabaseUrl::new(redis.clone()));
        c.redis_prefix = prefix.clone();
    };
    let one = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let two = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let ready = one.get_public("/readyz").await.text;
    assert!(ready.contains("\"redis\":\"ok\""), "{ready}");
    for (i, app) in [&one, &two, &one, &two, &one, &two].into_iter().enumerate() {
        let a = TestApp::answer(app.client.get(app.url("/v1/org")).send().await.unwrap()).await;
        assert_eq!(
            a.status, 401,
            "request {i} allowed through (and then refused for want of a token): {:?} {}",
            a.headers, a.text
        );
    }
    let over = TestApp::answer(two.client.get(two.url("/v1/org")).send().await.unwrap()).await;
    over.assert_problem(429, "rate_limited");
    let over = TestApp::answer(one.client.get(one.url("/v1/org")).send().await.unwrap()).await;
    over.assert_problem(429, "rate_limited");
    one.stop().await;
    two.stop().await;
}
