//! A cluster's event stream (`GET /v1/clusters/{id}/events?follow=true`): the stored events,
//! then the live ones, each once and in order, ending at `terminated`.

use std::time::{Duration, Instant};

use iocloud_tests::{
    Backend, Fleet, create, fleet, follow, frankfurt, on_both_engines, wait_status,
};
use serde_json::json;

on_both_engines!(a_follower_sees_every_event_once_through_terminated);

/// A follower from the start gets the stored events as one page, then only what the channel
/// brings: every event exactly once, in order, and the stream ends at `terminated` without
/// waiting for the five-second look at the database.
async fn a_follower_sees_every_event_once_through_terminated(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(2), true, |_| {}).await;
    let spec = json!({"name": "watched", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 16,
                      "gpus_per_node": 8, "duration_hours": 1});
    let id = create(&app, &s, spec).await;
    let running = wait_status(&app, &s, &id, "running").await;
    let stored = running["resource_version"].as_i64().unwrap();
    let mut events = follow(&app.client, &app.base, &s.access, &id, "0").await;
    let mut seqs = Vec::new();
    while (seqs.len() as i64) < stored {
        let e = tokio::time::timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("the stored events come at once")
            .expect("the stream is open");
        seqs.push(e["seq"].as_i64().unwrap());
    }
    // A follower may start after any number, the largest too: live events must not overflow
    // its arithmetic (the stream stays sound, it just has nothing to send).
    let mut beyond = app
        .client
        .get(app.url(&format!(
            "/v1/clusters/{id}/events?follow=true&after={}",
            i64::MAX
        )))
        .bearer_auth(&s.access)
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 200);
    let asked = Instant::now();
    let gone = app.delete(&format!("/v1/clusters/{id}"), &s.access).await;
    assert_eq!(gone.status, 200, "{}", gone.text);
    let mut last = String::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
        seqs.push(e["seq"].as_i64().unwrap());
        last = e["kind"].as_str().unwrap().to_string();
    }
    assert_eq!(last, "terminated");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "the stream ended {:?} after the delete",
        asked.elapsed()
    );
    let broken = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match beyond.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(e) => return Some(e),
            }
        }
    })
    .await;
    assert!(
        !matches!(broken, Ok(Some(_))),
        "the stream after the largest number broke: {broken:?}"
    );
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "each event once, in order, none missing");

    // Following an ended cluster from its last event (by id or by name) ends at once
    // instead of waiting for news that will never come.
    let final_seq = seqs.len().to_string();
    for key in [id.as_str(), "watched"] {
        let mut events = follow(&app.client, &app.base, &s.access, key, &final_seq).await;
        let end = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
        assert!(
            matches!(end, Ok(None)),
            "following {key} after its last event: {end:?}"
        );
    }
}
