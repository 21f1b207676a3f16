use iocloud_control::jwt::Claims;
use iocloud_tests::{PASSWORD, TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(
    signup_login_me,
    wrong_email_and_wrong_password_answer_alike,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_revokes,
    expired_and_forged_tokens_are_refused,
    switching_organisation
);

async fn signup_login_me(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    assert!(s.access.contains('.'), "a JWT");
    assert!(s.refresh.starts_with("iort_"));

    let me = app.get("/v1/me", &s.access).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["kind"], "user");
    assert_eq!(me.body["user"]["email"], "ada@example.com");
    assert_eq!(me.body["organization"]["name"], "Acme");
    assert_eq!(me.body["role"], "owner");
    assert_eq!(me.body["memberships"].as_array().unwrap().len(), 1);
    assert!(me.body["user"].get("password_hash").is_none());

    // Emails are case-insensitive; login lands in the same organisation.
    let login = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ADA@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["organization"]["id"], s.org_id.as_str());
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);

    // The same email cannot sign up twice.
    let again = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "ada@example.com", "password": PASSWORD, "name": "A", "org_name": "B"}),
        )
        .await;
    again.assert_problem(409, "email_taken");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM organizations").await,
        1,
        "the refused sign-up created nothing"
    );
    app.stop().await;
}

async fn wrong_email_and_wrong_password_answer_alike(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    app.signup("ada@example.com", "Acme").await;
    let wrong_pw = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "not the password"}),
        )
        .await;
    let wrong_email = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "bob@example.com", "password": PASSWORD}),
        )
        .await;
    let bad_email = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    wrong_pw.assert_problem(401, "invalid_credentials");
    for other in [&wrong_email, &bad_email] {
        assert_eq!(other.status, wrong_pw.status);
        assert_eq!(
            other.body, wrong_pw.body,
            "no hint about which accounts exist"
        );
    }
    app.stop().await;
}

async fn refresh_rotates_and_reuse_revokes_the_family(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;

    let first = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let r2 = first.body["refresh_token"].as_str().unwrap().to_string();
    let a2 = first.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(r2, s.refresh, "refresh tokens rotate");
    assert_eq!(app.get("/v1/me", &a2).await.status, 200);

    // The first token again: a thief or a replay. The whole family is revoked.
    let reuse = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": s.refresh}),
        )
        .await;
    reuse.assert_problem(401, "refresh_token_reused");
    let after = app
        .post("/v1/auth/refresh", None, json!({"refresh_token": r2}))
        .await;
    after.assert_problem(401, "invalid_token");
    app.get("/v1/me", &a2)
        .await
        .assert_problem(401, "invalid_token");
    app.get("/v1/me", &s.access)
        .await
        .assert_problem(401, "invalid_token");

    // Other sessions of the same user are untouched.
    let other = app.login("ada@example.com", None).await;
    assert_eq!(app.get("/v1/me", &other.access).await.status, 200);

    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": "iort_nope"}),
    )
    .await
    .assert_problem(401, "invalid_token");
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": "garbage"}),
    )
    .await
    .assert_problem(401, "invalid_token");
    app.stop().await;
}

async fn logout_revokes(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let out = app
        .request(
            reqwest::Method::POST,
            "/v1/auth/logout",
            Some(&s.access),
            None,
        )
        .await;
    assert_eq!(out.status, 204, "{}", out.text);
    app.get("/v1/me", &s.access)
        .await
        .assert_problem(401, "invalid_token");
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": s.refresh}),
    )
    .await
    .assert_problem(401, "invalid_token");
    app.stop().await;
}

async fn expired_and_forged_tokens_are_refused(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    // The signing key, as a replica sharing the database loads it.
    let keys = &iocloud_control::jwt::JwtKeys::load(&app.server.state.control.db, None)
        .await
        .unwrap();
    let claims = keys.verify(&s.access).unwrap();
    let expired = keys
        .sign_claims(&Claims {
            iat: claims.iat - 3600,
            exp: claims.iat - 1800,
            ..claims
        })
        .unwrap();
    app.get("/v1/me", &expired)
        .await
        .assert_problem(401, "token_expired");

    // Tampered payload: the signature no longer matches.
    let mut parts: Vec<String> = s.access.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    app.get("/v1/me", &parts.join("."))
        .await
        .assert_problem(401, "invalid_token");
    app.get("/v1/me", "not-a-token")
        .await
        .assert_problem(401, "invalid_token");
    let basic = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic YWRhOnB3")
        .send()
        .await
        .unwrap();
    TestApp::answer(basic)
        .await
        .assert_problem(401, "invalid_token");
    app.stop().await;
}

async fn switching_organisation(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let created = app
        .post("/v1/orgs", Some(&s.access), json!({"name": "Second"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let second = created.body["id"].as_str().unwrap();
    let switched = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": s.refresh, "org_id": second}),
        )
        .await;
    assert_eq!(switched.status, 200, "{}", switched.text);
    assert_eq!(switched.body["organization"]["id"], second);
    let me = app
        .get("/v1/me", switched.body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.body["organization"]["id"], second);
    assert_eq!(me.body["memberships"].as_array().unwrap().len(), 2);

    // An organisation the user is not in is answered as missing.
    let other = app.signup("bob@example.com", "Bobco").await;
    let r = switched.body["refresh_token"].as_str().unwrap();
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": r, "org_id": other.org_id}),
    )
    .await
    .assert_problem(404, "not_found");
    app.stop().await;
}
