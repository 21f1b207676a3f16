//! Two replicas on one database (and one Redis, when the suite has one): 100 simultaneous
//! creates for scarce GPUs split between them book no GPU twice and pass no quota, and a
//! follower on either replica hears what happens through the other.

use std::time::{Duration, Instant};

use futures::future::join_all;
use iocloud_tests::{
    Backend, GPU_BOOKS_WRONG, QUOTAS_WRONG, cluster, fleet, follow, gpus_free, ledger_balances,
    machine, on_both_engines, redis_url,
};
use serde_json::json;

on_both_engines!(two_replicas_share_scarce_gpus_quota_and_events);

async fn two_replicas_share_scarce_gpus_quota_and_events(b: Backend) {
    let redis = redis_url();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let shared = |c: &mut iocloud_api::Config| {
        if let Some(r) = &redis {
            c.redis_url = Some(iocloud_db::DatabaseUrl::new(r.clone()));
            c.redis_prefix = prefix.clone();
        }
        c.quota_max_gpus = 48;
        // Bookings under a burst are the point here, not admission (`overload.rs`): every
        // create is let in, however slow the machine.
        c.max_in_flight = 10_000;
        c.admission_wait_ms = 60_000;
    };
    // Ten machines of 8 H100s: 80 GPUs, of which the quota lets the customer have 48.
    let machines = (0..10)
        .map(|i| machine(&format!("m{i}"), "h100-sxm", 8, "eu-central", "2.00"))
        .collect();
    let f = fleet(b, machines, false, shared).await;
    let (app, s) = (&f.app, &f.customer);
    let other = app.replica(shared).await;
    let bases = [app.base.clone(), other.base.clone()];

    let creates = (0..100).map(|i| {
        let req = app
            .client
            .post(format!("{}/v1/clusters", bases[i % 2]))
            .bearer_auth(&s.access)
            .json(
                &json!({"name": format!("c{i}"), "kind": "container", "image": "busybox",
                          "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
            );
        async move { iocloud_tests::TestApp::answer(req.send().await.unwrap()).await }
    });
    let answers = join_all(creates).await;
    let mut created = Vec::new();
    for a in &answers {
        match a.status.as_u16() {
            201 => created.push(a.body["id"].as_str().unwrap().to_string()),
            403 => assert_eq!(a.code(), "quota_exceeded", "{}", a.text),
            _ => panic!("unexpected answer: {}", a.text),
        }
    }
    assert_eq!(created.len(), 6, "48 GPUs of quota hold six 8-GPU clusters");
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["gpus_in_use"], 48);
    assert_eq!(quota.body["clusters_in_use"], 6);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM node_assignments WHERE status <> 'released'")
            .await,
        6
    );

    // A follower on each replica; each cluster is terminated through the other one.
    for (i, id) in created.iter().take(2).enumerate() {
        let (watch, act) = (&bases[i % 2], &bases[(i + 1) % 2]);
        let version = cluster(app, s, id).await["resource_version"].to_string();
        let mut events = follow(&app.client, watch, &s.access, id, &version).await;
        let asked = Instant::now();
        let gone = app
            .client
            .delete(format!("{act}/v1/clusters/{id}"))
            .bearer_auth(&s.access)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 200);
        let mut kinds = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
            kinds.push(e["kind"].as_str().unwrap().to_string());
            if e["kind"] == "terminated" {
                break;
            }
        }
        assert_eq!(kinds, ["terminating", "terminated"], "seen on {watch}");
        if redis.is_some() {
            // Through Redis, not the followers' five-second look at the database.
            assert!(
                asked.elapsed() < Duration::from_secs(3),
                "took {:?}",
                asked.elapsed()
            );
        }
    }
    // The rest, half through each replica; then every GPU and all quota are back.
    for (i, id) in created.iter().enumerate().skip(2) {
        let r = app
            .client
            .delete(format!("{}/v1/clusters/{id}", bases[i % 2]))
            .bearer_auth(&s.access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    assert_eq!(gpus_free(app, &f.provider).await, 80);
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["gpus_in_use"], 0);
    assert_eq!(quota.body["clusters_in_use"], 0);
    assert_eq!(app.count(QUOTAS_WRONG).await, 0);
    ledger_balances(app).await;
    other.server.stop().await;
}
