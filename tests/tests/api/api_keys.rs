use iocloud_tests::{Answer, TestApp, on_both_engines, redis_url, rig};
use reqwest::Method;
use serde_json::{Value, json};

on_both_engines!(
    api_key_life_cycle,
    api_key_expiry,
    keys_follow_their_makers_role
);

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
    let keys = || async { app.items("/v1/api-keys", &s.access).await.len() };
    let before = keys().await;
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
    assert_eq!(keys().await, before);
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

/// A key's rights follow its maker's current role on every use, on every replica: a demoted
/// owner's admin key and a demoted admin's write key lose what the new role lacks at once, and a
/// removed member's keys (and the keys those keys made) stop working.
async fn keys_follow_their_makers_role(b: iocloud_tests::Backend) {
    let redis = redis_url();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let shared = |c: &mut iocloud_api::Config| {
        if let Some(r) = &redis {
            c.redis_url = Some(iocloud_db::DatabaseUrl::new(r.clone()));
            c.redis_prefix = prefix.clone();
        }
    };
    let app = TestApp::spawn_with(b, shared).await;
    // Without a shared Redis a second replica hears of no change; the test then uses one.
    let other = match &redis {
        Some(_) => Some(app.replica(shared).await),
        None => None,
    };
    let mut bases = vec![app.base.clone()];
    bases.extend(other.iter().map(|r| r.base.clone()));
    let call = |base: String, method: Method, path: &'static str, key: String, body: Value| {
        let req = app
            .client
            .request(method, format!("{base}{path}"))
            .bearer_auth(key)
            .json(&body);
        async move { TestApp::answer(req.send().await.unwrap()).await }
    };
    let on_all = |method: Method, path: &'static str, key: &str, body: Value| {
        let calls: Vec<_> = bases
            .iter()
            .map(|base| {
                call(
                    base.clone(),
                    method.clone(),
                    path,
                    key.to_string(),
                    body.clone(),
                )
            })
            .collect();
        async move { futures::future::join_all(calls).await }
    };
    fn statuses(answers: &[Answer]) -> Vec<u16> {
        answers.iter().map(|a| a.status.as_u16()).collect()
    }

    let owner = app.signup("owner@example.com", "Acme").await;
    let second = app.add_member(&owner, "second@example.com", "owner").await;
    let admin = app.add_member(&owner, "admin@example.com", "admin").await;
    let (_, second_key) = app.api_key(&second.access, &["admin"]).await;
    let (_, child_key) = app.api_key(&second_key, &["write"]).await;
    let (_, admin_key) = app.api_key(&admin.access, &["write"]).await;
    // Every key is used (and so cached) on every replica before anyone is demoted.
    for key in [&second_key, &child_key, &admin_key] {
        let n = bases.len();
        assert_eq!(
            statuses(&on_all(Method::GET, "/v1/org", key, Value::Null).await),
            vec![200; n]
        );
    }

    for (user, role) in [(&second.user_id, "member"), (&admin.user_id, "viewer")] {
        let a = app
            .patch(
                &format!("/v1/members/{user}"),
                &owner.access,
                json!({"role": role}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let n = bases.len();
    // The demoted owner's admin key may no longer do what a member may not...
    for (method, path, body) in [
        (Method::PATCH, "/v1/org", json!({"name": "Taken over"})),
        (
            Method::POST,
            "/v1/api-keys",
            json!({"name": "escalate", "scopes": ["admin"]}),
        ),
        (
            Method::PUT,
            "/v1/billing/preference",
            json!({"currency": "iosd"}),
        ),
    ] {
        for a in on_all(method.clone(), path, &second_key, body).await {
            a.assert_problem(403, "forbidden");
        }
    }
    // ...and still does what a member may.
    assert_eq!(
        statuses(&on_all(Method::GET, "/v1/members", &second_key, Value::Null).await),
        vec![200; n]
    );
    // The demoted admin's write key reads like the viewer its maker now is, and writes nothing.
    for a in on_all(Method::POST, "/v1/devices", &admin_key, rig("rig-1")).await {
        a.assert_problem(403, "forbidden");
    }
    assert_eq!(
        statuses(&on_all(Method::GET, "/v1/org", &admin_key, Value::Null).await),
        vec![200; n]
    );
    assert_eq!(app.get("/v1/org", &owner.access).await.body["name"], "Acme");

    // Removing the maker ends their keys, and the keys their keys made.
    let a = app
        .delete(&format!("/v1/members/{}", second.user_id), &owner.access)
        .await;
    assert_eq!(a.status, 204, "{}", a.text);
    for key in [&second_key, &child_key] {
        for a in on_all(Method::GET, "/v1/org", key, Value::Null).await {
            a.assert_problem(401, "invalid_token");
        }
    }
    if let Some(r) = other {
        r.server.stop().await;
    }
    app.stop().await;
}
