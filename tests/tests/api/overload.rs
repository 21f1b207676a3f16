//! A replica at capacity turns requests away at once (503 `overloaded` with `Retry-After`)
//! before any of them runs, keeps answering its probes and agents' long polls, and the CLI
//! waits and tries again; a burst far beyond capacity leaves only whole work behind: every
//! cluster answered 201 exists, no other does, no GPU is booked twice, the ledger balances.

use std::time::{Duration, Instant};

use futures::future::join_all;
use iocloud_tests::{
    Backend, GPU_BOOKS_WRONG, QUOTAS_WRONG, TestApp, fleet, frankfurt, iocloud_with_key,
    ledger_balances, on_both_engines,
};
use serde_json::json;

on_both_engines!(a_replica_at_capacity_sheds_at_once_and_leaves_nothing_half_done);

async fn a_replica_at_capacity_sheds_at_once_and_leaves_nothing_half_done(b: Backend) {
    let f = fleet(b, frankfurt(1), true, |c| {
        c.max_in_flight = 4;
        c.admission_wait_ms = 100;
    })
    .await;
    let (app, s) = (&f.app, &f.customer);
    let (_, key) = app.api_key(&s.access, &["read", "write"]).await;
    let spec = json!({"name": "c", "kind": "container", "image": "busybox",
        "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1});

    // Every turn taken, as by four slow requests.
    let busy = app
        .server
        .state
        .admission
        .occupy()
        .expect("no request runs");
    let asked = Instant::now();
    let shed = app
        .post("/v1/clusters", Some(&s.access), spec.clone())
        .await;
    shed.assert_problem(503, "overloaded");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clusters").await,
        0,
        "nothing of it ran"
    );
    let gql = app
        .graphql(Some(&s.access), "{ clusters { items { id } } }", json!({}))
        .await;
    gql.assert_problem(503, "overloaded");
    // Probes and agents' long polls take no turn.
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(app.get_public(probe).await.status, 200, "{probe}");
    }
    let device = &f.devices[0];
    let poll = app
        .client
        .get(app.url(&format!(
            "/agent/v1/devices/{}/assignments?wait_secs=0",
            device.id
        )))
        .bearer_auth(&device.token)
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 200);
    // (The simulated agents' heartbeats meanwhile are shed too.)
    let metrics = app.get_public("/metrics").await.text;
    let shed_total: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("iocloud_requests_shed_total "))
        .expect("the shed count")
        .parse()
        .unwrap();
    assert!(shed_total >= 2, "{metrics}");
    assert!(
        metrics.contains("iocloud_requests_in_flight 4"),
        "{metrics}"
    );

    // The CLI is told to come back in a second, and does, until the replica has room.
    let cli = {
        let (app, key) = (app, key.clone());
        async move {
            let started = Instant::now();
            let code = iocloud_with_key(app, &["list", "--output", "json"], &key).await;
            (code, started.elapsed())
        }
    };
    let free = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(busy);
    };
    let ((code, took), ()) = tokio::join!(cli, free);
    assert_eq!(code, 0);
    assert!(
        took >= Duration::from_millis(1500),
        "answered before there was room: {took:?}"
    );

    // Forty creates at once at a replica that works on two at a time and lets none wait.
    let tight = app
        .replica(|c| {
            c.max_in_flight = 2;
            c.admission_wait_ms = 0;
        })
        .await;
    let creates = (0..40).map(|i| {
        let mut spec = spec.clone();
        spec["name"] = json!(format!("burst-{i}"));
        let req = app
            .client
            .post(format!("{}/v1/clusters", tight.base))
            .bearer_auth(&s.access)
            .json(&spec);
        async move { TestApp::answer(req.send().await.unwrap()).await }
    });
    let answers = join_all(creates).await;
    let (mut created, mut overloaded) = (0, 0);
    for a in &answers {
        match a.status.as_u16() {
            201 => created += 1,
            503 => {
                assert_eq!(a.code(), "overloaded", "{}", a.text);
                overloaded += 1;
            }
            // One machine of 8 GPUs and a quota of 20 clusters: the rest are refused whole.
            403 | 422 => assert!(
                matches!(a.code(), "quota_exceeded" | "insufficient_capacity"),
                "{}",
                a.text
            ),
            _ => panic!("unexpected answer: {}", a.text),
        }
    }
    assert!(overloaded > 0, "nothing was shed");
    assert!(created > 0, "nothing was admitted");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clusters WHERE name LIKE 'burst-%'")
            .await,
        created,
        "exactly the clusters answered 201 exist"
    );
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    assert_eq!(app.count(QUOTAS_WRONG).await, 0, "quotas count what runs");
    ledger_balances(app).await;
    tight.server.stop().await;
}
