//! A cluster's admin credential: served apart from the cluster to those who may change
//! clusters, over REST and GraphQL alike, and every read audited.

use iocloud_tests::{Backend, on_both_engines, running_cluster};
use serde_json::json;

on_both_engines!(credentials_need_write_rights_and_every_read_is_audited);

/// Reading a cluster shows how to reach it, never its admin credential; the kubeconfig is
/// served apart to those who may change clusters, REST and GraphQL alike, and every read (and
/// refused attempt) is in the audit log.
async fn credentials_need_write_rights_and_every_read_is_audited(b: Backend) {
    let (fleet, id, running) = running_cluster(b, 2, "kubernetes").await;
    let (app, s) = (&fleet.app, &fleet.customer);
    let path = format!("/v1/clusters/{id}/credentials");
    let owner_read = app.get(&path, &s.access).await;
    assert_eq!(owner_read.status, 200, "{}", owner_read.text);
    assert_eq!(owner_read.header("cache-control"), Some("no-store"));
    let token = owner_read.body["token"].as_str().unwrap().to_string();
    let server = running["connection"]["api_server"].as_str().unwrap();
    let kubeconfig = owner_read.body["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains(&format!("server: {server}")),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains(&format!("token: {token}")),
        "{kubeconfig}"
    );
    assert_eq!(owner_read.body["api_server"], server);

    let viewer = app.add_member(s, "viewer@example.com", "viewer").await;
    let (_, read_key) = app.api_key(&s.access, &["read"]).await;
    let (_, write_key) = app.api_key(&s.access, &["write"]).await;
    for who in [&s.access, &viewer.access, &read_key] {
        let plain = app.get(&format!("/v1/clusters/{id}"), who).await;
        assert_eq!(plain.status, 200, "{}", plain.text);
        assert!(!plain.text.contains(&token), "{}", plain.text);
        assert!(plain.body["connection"].get("kubeconfig").is_none());
        assert_eq!(plain.body["connection"]["api_server"], server);
        let listed = app.get("/v1/clusters", who).await;
        assert!(!listed.text.contains(&token), "{}", listed.text);
    }
    for who in [&viewer.access, &read_key] {
        app.get(&path, who).await.assert_problem(403, "forbidden");
    }
    let by_key = app.get(&path, &write_key).await;
    assert_eq!(by_key.body["token"], token.as_str(), "{}", by_key.text);

    let query = "query($id: String!) { clusterCredentials(id: $id) { clusterId apiServer token kubeconfig } }";
    let g = app.graphql(Some(&s.access), query, json!({"id": id})).await;
    assert_eq!(
        g.body["data"]["clusterCredentials"]["token"],
        token.as_str(),
        "{}",
        g.text
    );
    let g = app
        .graphql(Some(&viewer.access), query, json!({"id": id}))
        .await;
    assert_eq!(
        g.body["errors"][0]["extensions"]["code"], "forbidden",
        "{}",
        g.text
    );
    let g = app
        .graphql(
            Some(&s.access),
            "query($id: String!) { cluster(id: $id) { connection } }",
            json!({"id": id}),
        )
        .await;
    assert!(!g.text.contains(&token), "{}", g.text);

    // Another organisation's cluster is not found; it has nothing to audit in this one.
    let stranger = app.signup("stranger@example.com", "Elsewhere").await;
    app.get(&path, &stranger.access)
        .await
        .assert_problem(404, "not_found");

    let log = app.items("/v1/audit-events", &s.access).await;
    let audited = |status: i64| {
        log.iter()
            .filter(|e| {
                e["action"] == "read cluster credentials"
                    && e["target"] == id.as_str()
                    && e["status"] == status
            })
            .count()
    };
    assert_eq!(audited(200), 3, "owner, write key, GraphQL");
    assert_eq!(audited(403), 3, "viewer, read key, GraphQL viewer");
    // The new read is documented: its path parameter, its answer and each refusal.
    let doc = app.get_public("/openapi.json").await.body;
    let op = &doc["paths"]["/v1/clusters/{id}/credentials"]["get"];
    assert!(
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "id" && p["in"] == "path")),
        "{op}"
    );
    for status in ["200", "401", "403", "404", "409"] {
        assert!(op["responses"].get(status).is_some(), "{status}: {op}");
    }
    assert!(doc["components"]["schemas"]["ClusterCredentials"].is_object());

    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    assert!(
        events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "read cluster credentials" && e["request_id"] != ""),
        "{}",
        events.text
    );
}
