use iocloud_tests::{TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(api_key_life_cycle, api_key_expiry);

async fn api_key_life_cycle(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&s.access),
            json!({"name": "ci", "scopes": ["write", "read", "read"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.body["secret"].as_str().unwrap().to_string();
    let id = created.body["api_key"]["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ioc_") && secret.len() > 40);
    assert_eq!(created.body["api_key"]["scopes"], json!(["read", "write"]));
    assert_eq!(created.body["api_key"]["status"], "active");
    assert!(secret.starts_with(created.body["api_key"]["prefix"].as_str().unwrap()));

    // The secret is stored hashed and never shown again.
    let stored: String = app
        .scalar("SELECT key_hash FROM api_keys WHERE id = $1", &id)
        .await;
    assert_ne!(stored, secret);
    let list = app.get("/v1/api-keys", &s.access).await;
    assert!(!list.text.contains(&secret));
    assert_eq!(
        list.body["items"][0]["last_used_at"],
        serde_json::Value::Null
    );

    // The key authenticates as itself, in its organisation.
    let me = app.get("/v1/me", &secret).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["kind"], "api_key");
    assert_eq!(me.body["api_key"]["id"], id.as_str());
    assert_eq!(me.body["organization"]["id"], s.org_id.as_str());
    let shown = app.get(&format!("/v1/api-keys/{id}"), &s.access).await;
    assert!(
        shown.body["last_used_at"].is_string(),
        "last_used_at is recorded: {}",
        shown.text
    );

    // Revoke: it stops at once; revoking again changes nothing.
    let revoked = app.delete(&format!("/v1/api-keys/{id}"), &s.access).await;
    assert_eq!(revoked.body["status"], "revoked", "{}", revoked.text);
    app.get("/v1/me", &secret)
        .await
        .assert_problem(401, "invalid_token");
    let again = app.delete(&format!("/v1/api-keys/{id}"), &s.access).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);

    // Bad input is refused and creates nothing.
    let before = app.count("SELECT COUNT(*) FROM api_keys").await;
    for body in [
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x", "scopes": ["read"], "expires_in_days": 0}),
    ] {
        let a = app
            .post("/v1/api-keys", Some(&s.access), body.clone())
            .await;
        a.assert_problem(422, "validation_failed");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, before);
    app.get("/v1/me", "ioc_notakeyatall")
        .await
        .assert_problem(401, "invalid_token");
    app.stop().await;
}

async fn api_key_expiry(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&s.access),
            json!({"name": "short", "scopes": ["read"], "expires_in_days": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.body["api_key"]["expires_at"].is_string());
    let secret = created.body["secret"].as_str().unwrap();
    assert_eq!(app.get("/v1/me", secret).await.status, 200);
    // A day passes.
    app.exec(
        "UPDATE api_keys SET expires_at = 1 WHERE id = $1",
        created.body["api_key"]["id"].as_str().unwrap(),
    )
    .await;
    // The replica cached the key with its real expiry, a day off: drop it, as a day would.
    app.server
        .state
        .control
        .cache
        .forget(&iocloud_control::cache::Forget::All);
    app.get("/v1/me", secret)
        .await
        .assert_problem(401, "token_expired");
    let listed = app.get("/v1/api-keys", &s.access).await;
    assert_eq!(listed.body["items"][0]["status"], "expired");
    app.stop().await;
}
