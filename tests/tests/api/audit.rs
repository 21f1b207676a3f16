//! The audit log: who did what, where and how it ended; owners and admins read it; no secrets.

use iocloud_tests::{PASSWORD, TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(state_changes_are_audited_without_secrets);
on_both_engines!(a_request_dropped_after_its_work_is_still_audited);

async fn state_changes_are_audited_without_secrets(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&s.access),
            json!({"name": "ci", "scopes": ["read"]}),
        )
        .await;
    let request_id = created.header("x-request-id").unwrap().to_string();
    let key_id = created.body["api_key"]["id"].as_str().unwrap().to_string();
    let secret = created.body["secret"].as_str().unwrap().to_string();
    app.delete(&format!("/v1/api-keys/{key_id}"), &s.access)
        .await;
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    app.patch("/v1/org", &viewer.access, json!({"name": "Hijacked"}))
        .await
        .assert_problem(403, "forbidden");
    app.graphql(
        Some(&s.access),
        "mutation { updateOrganization(name: \"Acme Corp\") { id } }",
        json!({}),
    )
    .await;
    app.graphql(
        Some(&viewer.access),
        "mutation { updateOrganization(name: \"Nope\") { id } }",
        json!({}),
    )
    .await;
    app.graphql(Some(&s.access), "{ me { kind } }", json!({}))
        .await; // a read: not audited

    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    assert_eq!(events.status, 200, "{}", events.text);
    let items = events.body["items"].as_array().unwrap();
    let find = |action: &str| {
        items
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} in {}", events.text))
    };

    let signup = find("POST /v1/auth/signup");
    assert_eq!(signup["actor_type"], "user");
    assert_eq!(signup["actor_id"], s.user_id.as_str());
    let create = find("POST /v1/api-keys");
    assert_eq!(create["request_id"], request_id.as_str());
    assert_eq!(create["status"], 201);
    assert_eq!(create["outcome"], "success");
    let revoke = find("DELETE /v1/api-keys/{id}");
    assert_eq!(revoke["target"], key_id.as_str());
    let denied = find("PATCH /v1/org");
    assert_eq!(denied["outcome"], "denied");
    assert_eq!(denied["actor_id"], viewer.user_id.as_str());
    let gql = items
        .iter()
        .filter(|e| e["action"] == "graphql mutation updateOrganization")
        .collect::<Vec<_>>();
    assert!(
        gql.iter()
            .any(|e| e["outcome"] == "success" && e["actor_id"] == s.user_id.as_str()),
        "{}",
        events.text
    );
    assert!(
        gql.iter().any(|e| e["outcome"] == "denied"
            && e["status"] == 403
            && e["actor_id"] == viewer.user_id.as_str()),
        "{}",
        events.text
    );

    assert!(
        !items
            .iter()
            .any(|e| e["action"].as_str().unwrap().contains("graphql")
                && e["action"].as_str().unwrap().contains("me"))
    );

    // No secret is ever written there.
    for needle in [
        secret.as_str(),
        PASSWORD,
        s.refresh.as_str(),
        s.access.as_str(),
    ] {
        assert!(!events.text.contains(needle));
    }
    assert!(items.len() >= 6, "{}", events.text);

    // Viewers may not read it; pages walk it.
    app.get("/v1/audit-events", &viewer.access)
        .await
        .assert_problem(403, "forbidden");
    let first = app.get("/v1/audit-events?limit=2", &s.access).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/v1/audit-events?limit=2&cursor={cursor}"),
            &s.access,
        )
        .await;
    assert_ne!(second.body["items"][0]["id"], first.body["items"][0]["id"]);
    app.stop().await;
}

/// A client hanging up (or the time limit) drops the request's future; when that happens after
/// the work was done, the audit row must still be written.
async fn a_request_dropped_after_its_work_is_still_audited(b: iocloud_tests::Backend) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;

    let app = TestApp::spawn(b).await;
    let state = app.server.state.clone();
    let (worked, work_done) = tokio::sync::oneshot::channel::<()>();
    let req = Request::post("/v1/anything")
        .header("x-request-id", "req-dropped-1")
        .body(Body::empty())
        .unwrap();
    let request = iocloud_api::middleware::audit::record(&state, req, move |_req| async move {
        // The work is done (committed); the answer is still being put together.
        let _ = worked.send(());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        StatusCode::CREATED.into_response()
    });
    tokio::select! {
        _ = request => panic!("the request was to be dropped before its answer"),
        _ = work_done => {}
    }
    // `request` is dropped here, as when the client goes away.

    let written = async {
        while app
            .count("SELECT COUNT(*) FROM audit_events WHERE request_id = 'req-dropped-1'")
            .await
            == 0
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), written)
        .await
        .expect("the dropped request's audit row is written");
    assert_eq!(
        app.scalar(
            "SELECT CAST(status AS TEXT) FROM audit_events WHERE request_id = $1",
            "req-dropped-1"
        )
        .await,
        "201",
        "with the answer the work gave"
    );
    app.stop().await;
}
