//! Subscriptions over WebSocket: the audit feed, and a cluster's events (not found for other
//! tenants); feeds end when their session or key is revoked or their member's role changes.

use futures::SinkExt;
use iocloud_tests::{
    Fleet, Socket, TestApp, answer_to, connect, error_code, fleet, frankfurt, next_json,
    on_both_engines, send_op,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

on_both_engines!(
    graphql_subscription_streams_audit_events,
    cluster_events_are_followed_over_graphql_and_hidden_from_other_tenants,
    revocation_ends_the_socket_and_its_subscriptions,
    a_change_of_role_ends_subscriptions,
);

async fn graphql_subscription_streams_audit_events(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let mut ws = connect(&app, &s.access).await;
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { auditEvents { action actorId outcome } }"}}))).await.unwrap();
    // Give the subscription a moment to be registered before the event happens.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&s.access),
            json!({"name": "watched", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(created.status, 201);
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(
        event["payload"]["data"]["auditEvents"]["action"],
        "POST /v1/api-keys"
    );
    assert_eq!(
        event["payload"]["data"]["auditEvents"]["actorId"],
        s.user_id.as_str()
    );
    app.stop().await;
}

async fn cluster_events_are_followed_over_graphql_and_hidden_from_other_tenants(
    b: iocloud_tests::Backend,
) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "watched", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();

    // The history first, then each new event as it happens, in order, through running.
    let mut ws = connect(&app, &s.access).await;
    follow_cluster(&mut ws, "1", &id).await;
    let mut seen: Vec<(i64, String)> = Vec::new();
    while seen.last().is_none_or(|(_, kind)| kind != "running") {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["type"], "next", "{msg}");
        let event = &msg["payload"]["data"]["clusterEvents"];
        assert_eq!(event["clusterId"], id.as_str(), "{msg}");
        seen.push((
            event["seq"].as_i64().unwrap(),
            event["kind"].as_str().unwrap().to_string(),
        ));
    }
    let seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "every event once, in order: {seen:?}"
    );
    assert_eq!(seen[0].1, "created", "{seen:?}");

    // Another organisation's member is told the cluster is not found, as over REST.
    let eve = app.signup("eve@example.com", "Elsewhere").await;
    let mut theirs = connect(&app, &eve.access).await;
    follow_cluster(&mut theirs, "2", &id).await;
    let refused = next_json(&mut theirs).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "not_found",
        "{refused}"
    );
    assert!(refused["payload"]["data"].is_null(), "{refused}");
    app.stop().await;
}

async fn revocation_ends_the_socket_and_its_subscriptions(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let other = app.login("ada@example.com", None).await;

    // A user's session: logging out ends its subscriptions and its socket answers no more.
    let mut ws = connect(&app, &s.access).await;
    send_op(&mut ws, "feed", "subscription { auditEvents { action } }").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = app
        .post("/v1/auth/logout", Some(&s.access), json!({}))
        .await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(ended_with(&mut ws, "feed").await, "invalid_token");
    send_op(&mut ws, "me", "{ me { kind } }").await;
    let me = answer_to(&mut ws, "me").await;
    assert_eq!(error_code(&me), "invalid_token", "{me}");
    assert!(me["payload"]["data"].is_null(), "{me}");

    // An API key: revoking it ends its subscriptions.
    let (key_id, secret) = app.api_key(&other.access, &["admin"]).await;
    let mut by_key = connect(&app, &secret).await;
    send_op(
        &mut by_key,
        "feed",
        "subscription { auditEvents { action } }",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let revoked = app
        .delete(&format!("/v1/api-keys/{key_id}"), &other.access)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(ended_with(&mut by_key, "feed").await, "invalid_token");
    app.stop().await;
}

async fn a_change_of_role_ends_subscriptions(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.graphql_ws_recheck_secs = 1).await;
    let owner = app.signup("ada@example.com", "Acme").await;
    let admin = app.add_member(&owner, "bob@example.com", "admin").await;
    let mut ws = connect(&app, &admin.access).await;
    send_op(&mut ws, "feed", "subscription { auditEvents { action } }").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let demoted = app
        .patch(
            &format!("/v1/members/{}", admin.user_id),
            &owner.access,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    // A viewer may not read the audit log: the feed stops within the recheck period.
    assert_eq!(ended_with(&mut ws, "feed").await, "role_changed");
    send_op(&mut ws, "again", "subscription { auditEvents { action } }").await;
    assert_eq!(error_code(&answer_to(&mut ws, "again").await), "forbidden");
    app.stop().await;
}

/// Subscribes to a cluster's events as operation `op`.
async fn follow_cluster(ws: &mut Socket, op: &str, id: &str) {
    let subscribe = json!({"id": op, "type": "subscribe", "payload": {
        "query": "subscription($id: String!) { clusterEvents(id: $id) { clusterId seq kind status } }",
        "variables": {"id": id}}});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
}

/// Reads until operation `id` answers an error, which must be its last word: the error's code.
async fn ended_with(ws: &mut Socket, id: &str) -> String {
    loop {
        let msg = next_json(ws).await;
        if msg["id"] != id {
            continue;
        }
        let code = error_code(&msg);
        if code.is_empty() {
            continue; // an event that raced the revocation
        }
        let complete = next_json(ws).await;
        assert_eq!(
            (complete["type"].as_str(), complete["id"].as_str()),
            (Some("complete"), Some(id)),
            "{complete}"
        );
        return code;
    }
}
