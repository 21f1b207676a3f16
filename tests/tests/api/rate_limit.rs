//! GCRA rate limits per client address and per API key: 429 with Retry-After and RateLimit
//! headers, shared by replicas through Redis.

use iocloud_tests::{Backend, TestApp, TestDb, redis_url};
use serde_json::json;

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

/// Wrong passwords are counted per account, whatever address they come from: after the limit,
/// even the right password waits for the window to end, and another account is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_paused_after_too_many_wrong_passwords() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.login_max_attempts = 5).await;
    app.signup("ada@example.com", "Acme").await;
    app.signup("bob@example.com", "Bobs").await;
    let login = |email: &'static str, password: &'static str| {
        app.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
    };
    // A right password clears the count, so a user who mistypes now and then is never paused.
    login("ada@example.com", "wrong")
        .await
        .assert_problem(401, "invalid_credentials");
    assert_eq!(
        login("ada@example.com", iocloud_tests::PASSWORD)
            .await
            .status,
        200
    );
    for i in 0..5 {
        let a = login("ADA@example.com", "wrong").await;
        assert_eq!(a.status, 401, "guess {i}: {}", a.text);
    }
    let paused = login("ada@example.com", iocloud_tests::PASSWORD).await;
    paused.assert_problem(429, "too_many_login_attempts");
    let retry: u64 = paused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // The GraphQL login counts against the same account.
    let gql = app
        .post(
            "/graphql",
            None,
            json!({"query": format!(
                "mutation {{ logIn(email: \"ada@example.com\", password: \"{}\") {{ accessToken }} }}",
                iocloud_tests::PASSWORD
            )}),
        )
        .await;
    assert_eq!(
        gql.body["errors"][0]["extensions"]["code"], "too_many_login_attempts",
        "{}",
        gql.text
    );
    assert_eq!(
        login("bob@example.com", iocloud_tests::PASSWORD)
            .await
            .status,
        200
    );
    app.stop().await;
}

/// Replicas share the count through Redis: guesses spread over two servers add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_login_attempts_through_redis() {
    let Some(redis) = redis_url() else {
        eprintln!("IOCLOUD_TEST_REDIS_URL is not set: skipping");
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let tweak = |c: &mut iocloud_api::Config| {
        c.login_max_attempts = 4;
        c.redis_url = Some(iocloud_db::DatabaseUrl::new(redis.clone()));
        c.redis_prefix = prefix.clone();
    };
    let one = TestApp::spawn_with(Backend::Sqlite, tweak).await;
    let two = TestApp::spawn_on(TestDb::create(&Backend::Sqlite).await, tweak).await;
    one.signup("ada@example.com", "Acme").await;
    let wrong = json!({"email": "ada@example.com", "password": "wrong"});
    for app in [&one, &two, &one, &two] {
        app.post("/v1/auth/login", None, wrong.clone())
            .await
            .assert_problem(401, "invalid_credentials");
    }
    two.post("/v1/auth/login", None, wrong.clone())
        .await
        .assert_problem(429, "too_many_login_attempts");
    one.post(
        "/v1/auth/login",
        None,
        json!({"email": "ada@example.com", "password": iocloud_tests::PASSWORD}),
    )
    .await
    .assert_problem(429, "too_many_login_attempts");
    one.stop().await;
    two.stop().await;
}
