//! One replica loses Redis (its connections cut through a proxy; the Redis the other tests share
//! stays up): it stays ready, degraded, and serves at its usual speed; a key revoked through
//! another replica stops working on it at once, though it cannot hear the invalidation; its
//! event follower misses nothing, and when Redis is back it hears again.

use std::time::{Duration, Instant};

use iocloud_tests::{
    Backend, Proxy, TestApp, address_of, create, fleet, follow, frankfurt, on_both_engines,
    redis_url, wait_status,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

on_both_engines!(a_replica_without_redis_serves_and_misses_nothing);

async fn a_replica_without_redis_serves_and_misses_nothing(b: Backend) {
    let Some(redis) = redis_url() else {
        eprintln!("skipped: a Redis outage needs Redis (IOCLOUD_TEST_REDIS_URL)");
        return;
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let proxy = Proxy::start(address_of(&redis).unwrap()).await.unwrap();
    let (direct, cut_off) = (redis.clone(), proxy.url_for(&redis));
    let p = prefix.clone();
    let f = fleet(b, frankfurt(1), true, move |c| {
        c.redis_url = Some(iocloud_db::DatabaseUrl::new(direct));
        c.redis_prefix = p;
    })
    .await;
    let (app, s) = (&f.app, &f.customer);
    let other = app
        .replica(|c| {
            c.redis_url = Some(iocloud_db::DatabaseUrl::new(cut_off));
            c.redis_prefix = prefix.clone();
        })
        .await;
    let get = |base: &str, path: &str, token: &str| {
        app.client
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
    };
    let ready = |base: String| async move {
        let r = app
            .client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(ready(other.base.clone()).await.1["redis"], "ok");

    let spec = json!({"name": "c", "kind": "container", "image": "busybox",
        "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1});
    let id = create(app, s, spec).await;
    let running = wait_status(app, s, &id, "running").await;
    let version = running["resource_version"].as_i64().unwrap();
    let mut events = follow(
        &app.client,
        &other.base,
        &s.access,
        &id,
        &version.to_string(),
    )
    .await;
    // A key the replica has cached.
    let (key_id, key) = app.api_key(&s.access, &["read"]).await;
    assert_eq!(
        get(&other.base, "/v1/clusters", &key)
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = ready(other.base.clone()).await;
        if body["redis"] == "unavailable" {
            assert_eq!(status, 200, "degraded is still ready: {body}");
            assert_eq!(body["status"], "degraded");
            assert_eq!(body["database"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never reported away: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Requests do not wait for Redis: each is answered as fast as with it.
    for _ in 0..20 {
        let asked = Instant::now();
        let r = get(&other.base, "/v1/clusters", &s.access).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "took {:?}",
            asked.elapsed()
        );
    }

    // Revoked through the replica that hears Redis: refused on the one that does not.
    let revoked = app
        .delete(&format!("/v1/api-keys/{key_id}"), &s.access)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let refused = get(&other.base, "/v1/clusters", &key).await.unwrap();
    assert_eq!(refused.status(), 401);

    // Changes made through the other replica reach the follower, from the database.
    let extended = extend(app, &s.access, &id).await;
    let got = next_events(&mut events, version, extended, Duration::from_secs(5)).await;
    assert!(got.iter().any(|e| e["kind"] == "extended"), "{got:?}");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready(other.base.clone()).await.1["redis"] != "ok" {
        assert!(Instant::now() < deadline, "Redis never reported back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = extended;
    let extended = extend(app, &s.access, &id).await;
    next_events(&mut events, before, extended, Duration::from_secs(5)).await;
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let mut last = extended;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        let seq = e["seq"].as_i64().unwrap();
        assert_eq!(seq, last + 1, "no event skipped: {e}");
        last = seq;
        if e["kind"] == "terminated" {
            break;
        }
    }
    let stored = iocloud_tests::cluster(app, s, &id).await["resource_version"]
        .as_i64()
        .unwrap();
    assert_eq!(last, stored, "the follower saw every event to the end");
    other.server.stop().await;
}

/// Extends the cluster by an hour; its version after.
async fn extend(app: &TestApp, token: &str, id: &str) -> i64 {
    let r = app
        .post(
            &format!("/v1/clusters/{id}/extend"),
            Some(token),
            json!({"hours": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["resource_version"].as_i64().unwrap()
}

/// The events after `from` up to the one numbered `until`, each the one after the last, all
/// within `limit`.
async fn next_events(
    events: &mut mpsc::Receiver<Value>,
    from: i64,
    until: i64,
    limit: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut got: Vec<Value> = Vec::new();
    let mut last = from;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("event {until} not seen within {limit:?}; got {got:?}"))
            .expect("the stream is open");
        let seq = e["seq"].as_i64().unwrap();
        assert_eq!(seq, last + 1, "no event skipped: {e}");
        last = seq;
        got.push(e);
        if seq >= until {
            return got;
        }
    }
}
