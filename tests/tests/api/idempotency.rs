//! `Idempotency-Key`: replay with the same body, 422 with another, 409 while in flight.

use iocloud_tests::{TestApp, on_both_engines};
use sha2::{Digest, Sha256};

on_both_engines!(idempotent_replay_and_conflicts);

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &str) -> iocloud_tests::Answer {
    let res = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    TestApp::answer(res).await
}

async fn idempotent_replay_and_conflicts(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let body = r#"{"name": "deploy", "scopes": ["read"]}"#;

    let first = post_with_key(&app, &s.access, "k-1", body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let replay = post_with_key(&app, &s.access, "k-1", body).await;
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.body["api_key"], first.body["api_key"],
        "the first answer"
    );
    assert!(first.body["secret"].is_string());
    assert!(
        replay.body["secret"].is_null(),
        "a secret is shown once, never replayed: {}",
        replay.text
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys").await,
        1,
        "created once"
    );

    let other = post_with_key(
        &app,
        &s.access,
        "k-1",
        r#"{"name": "other", "scopes": ["read"]}"#,
    )
    .await;
    other.assert_problem(422, "idempotency_key_reused");
    assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 1);

    // Refusals are kept too: a retry sees the same answer.
    let bad = post_with_key(&app, &s.access, "k-2", r#"{"name": "x", "scopes": []}"#).await;
    bad.assert_problem(422, "validation_failed");
    let bad_again = post_with_key(&app, &s.access, "k-2", r#"{"name": "x", "scopes": []}"#).await;
    assert_eq!(bad_again.body, bad.body);
    assert_eq!(bad_again.header("idempotent-replayed"), Some("true"));

    // A request still running with the key: 409, and nothing is created.
    let mut h = Sha256::new();
    h.update(format!("POST /v1/api-keys\n{body}"));
    let hash = hex::encode(h.finalize());
    let sql = format!(
        "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_at) VALUES ($1, 'k-3', '{hash}', 'in_flight', {now}, {now})",
        now = iocloud_db::time::now_micros()
    );
    app.exec(&sql, &format!("org:{}:user:{}", s.org_id, s.user_id))
        .await;
    post_with_key(&app, &s.access, "k-3", body)
        .await
        .assert_problem(409, "idempotency_key_in_flight");
    assert_eq!(app.count("SELECT COUNT(*) FROM api_keys").await, 1);

    // A claim abandoned (its replica crashed) is taken over after its lease.
    app.exec(
        "UPDATE idempotency_keys SET locked_at = 1 WHERE key = $1",
        "k-3",
    )
    .await;
    assert_eq!(
        post_with_key(&app, &s.access, "k-3", body).await.status,
        201
    );

    // Another member of the organisation reusing the key is not answered with ours.
    let viewer = app.add_member(&s, "viewer@example.com", "viewer").await;
    let theirs = post_with_key(&app, &viewer.access, "k-1", body).await;
    theirs.assert_problem(403, "forbidden");
    assert!(theirs.header("idempotent-replayed").is_none());

    // Keys are per organisation: another tenant's "k-1" is a new request.
    let bee = app.signup("bee@example.com", "Bee").await;
    let theirs = post_with_key(&app, &bee.access, "k-1", body).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["api_key"]["id"], first.body["api_key"]["id"]);
    assert!(theirs.header("idempotent-replayed").is_none());

    // Kept for 24 hours, then the key is free again.
    app.exec(
        "UPDATE idempotency_keys SET created_at = 1 WHERE scope = $1",
        &format!("org:{}:user:{}", s.org_id, s.user_id),
    )
    .await;
    let later = post_with_key(
        &app,
        &s.access,
        "k-1",
        r#"{"name": "new day", "scopes": ["read"]}"#,
    )
    .await;
    assert_eq!(later.status, 201, "{}", later.text);
    app.stop().await;
}
