//! A replica stops in a bounded time (on SIGTERM as here through `Server::stop`): `/readyz`
//! says it is draining, a follower's event stream ends at once instead of holding the stop,
//! the follower resumes on another replica from its last event, and the replica's leases are
//! free for another replica the moment it stops.

use std::time::{Duration, Instant};

use iocloud_tests::{
    Backend, Fleet, create, fleet, follow, frankfurt, on_both_engines, wait_status,
};
use serde_json::json;

on_both_engines!(a_stopping_replica_ends_its_streams_and_gives_up_its_leases);

async fn a_stopping_replica_ends_its_streams_and_gives_up_its_leases(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let spec = json!({"name": "followed", "kind": "container", "image": "busybox",
        "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1});
    let id = create(&app, &s, spec).await;
    let running = wait_status(&app, &s, &id, "running").await;
    let stored = running["resource_version"].as_i64().unwrap();

    // A replica that is draining is not ready, whatever its stores say.
    let other = app.replica(|_| {}).await;
    other.server.state.drain.start();
    let ready = app
        .client
        .get(format!("{}/readyz", other.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "draining"
    );
    other.server.stop().await;

    // A follower on a replica, and a lease it holds.
    let replica = app.replica(|_| {}).await;
    let mut events = follow(&app.client, &replica.base, &s.access, &id, "0").await;
    let mut last = 0;
    while last < stored {
        let e = tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("the stored events come at once")
            .expect("the stream is open");
        last = e["seq"].as_i64().unwrap();
    }
    let lease = Duration::from_secs(600);
    let leases = &replica.server.state.control.leases;
    assert!(leases.acquire("drain-check", lease).await.unwrap());
    let mine = &app.server.state.control.leases;
    assert!(!mine.acquire("drain-check", lease).await.unwrap(), "held");

    // The stop does not wait for the follower; the stream ends, the lease is free.
    let asked = Instant::now();
    replica.server.stop().await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped in {:?} with a follower open",
        asked.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("the stream ends with the replica");
    assert!(ended.is_none(), "no event after the stop: {ended:?}");
    assert!(
        mine.acquire("drain-check", lease).await.unwrap(),
        "given up"
    );

    // The follower comes back to the replica left and resumes after its last event.
    let mut resumed = follow(&app.client, &app.base, &s.access, &id, &last.to_string()).await;
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let mut seqs = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), resumed.recv()).await {
        seqs.push(e["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs.first(), Some(&(last + 1)), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}
