//! Another tenant's ids answer exactly like missing ones, and nothing changes.

use iocloud_tests::{TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(cross_tenant_ids_answer_404);

async fn cross_tenant_ids_answer_404(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.signup("a@example.com", "Org A").await;
    let bee = app.signup("b@example.com", "Org B").await;
    let (key_id, key_secret) = app.api_key(&a.access, &["admin"]).await;
    let inv = app
        .post(
            "/v1/invitations",
            Some(&a.access),
            json!({"email": "c@example.com", "role": "member"}),
        )
        .await;
    let inv_id = inv.body["id"].as_str().unwrap().to_string();
    let (_, b_admin_key) = app.api_key(&bee.access, &["admin"]).await;

    let missing_key = app
        .get("/v1/api-keys/key_01m895zsp3j0egad3np6hsx3xb", &bee.access)
        .await;
    missing_key.assert_problem(404, "not_found");
    for token in [&bee.access, &b_admin_key] {
        let foreign_key = app.get(&format!("/v1/api-keys/{key_id}"), token).await;
        foreign_key.assert_problem(404, "not_found");
        assert_eq!(
            foreign_key.body, missing_key.body,
            "a foreign id reads exactly like a missing one"
        );
        app.delete(&format!("/v1/api-keys/{key_id}"), token)
            .await
            .assert_problem(404, "not_found");
        app.get(&format!("/v1/invitations/{inv_id}"), token)
            .await
            .assert_problem(404, "not_found");
        app.delete(&format!("/v1/invitations/{inv_id}"), token)
            .await
            .assert_problem(404, "not_found");
        app.get(&format!("/v1/members/{}", a.user_id), token)
            .await
            .assert_problem(404, "not_found");
        app.patch(
            &format!("/v1/members/{}", a.user_id),
            token,
            json!({"role": "viewer"}),
        )
        .await
        .assert_problem(404, "not_found");
        app.delete(&format!("/v1/members/{}", a.user_id), token)
            .await
            .assert_problem(404, "not_found");
    }
    // Lists show only the caller's own.
    let b_keys = app.get("/v1/api-keys", &bee.access).await;
    assert!(!b_keys.text.contains(&key_id));
    let b_members = app.get("/v1/members", &bee.access).await;
    assert_eq!(b_members.body["items"].as_array().unwrap().len(), 1);
    assert!(
        app.get("/v1/audit-events", &bee.access).await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor_id"] != a.user_id.as_str())
    );

    // Nothing of A's changed.
    assert_eq!(app.get("/v1/me", &key_secret).await.status, 200);
    assert_eq!(
        app.get(&format!("/v1/invitations/{inv_id}"), &a.access)
            .await
            .body["status"],
        "pending"
    );
    assert_eq!(
        app.get(&format!("/v1/members/{}", a.user_id), &a.access)
            .await
            .body["role"],
        "owner"
    );

    // An invitation token addressed to someone else is unknown to you.
    let token = app.invitation_token("c@example.com").await;
    app.post(
        "/v1/invitations/accept",
        Some(&bee.access),
        json!({"token": token}),
    )
    .await
    .assert_problem(404, "not_found");
    app.stop().await;
}
