//! Invitations: accept, expire, revoke, and who may use a token.

use iocloud_tests::{TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(
    invitation_life_cycle,
    email_left_waiting_is_delivered_at_start
);

/// An email written but not delivered (its replica stopped in between) goes out when a replica
/// starts, with its token, and its row keeps no token afterwards.
async fn email_left_waiting_is_delivered_at_start(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    app.exec(
        "INSERT INTO email_outbox (id, recipient, subject, body, secret, created_at) \
         VALUES ('eml_waiting', $1, 'Invited', 'open /app/invitations/accept?token={secret}', 'ioinv_left_waiting', 0)",
        "late@example.com",
    )
    .await;
    let replica = app.replica(|_| {}).await;
    let waiting = "SELECT COUNT(*) FROM email_outbox WHERE secret IS NOT NULL OR sent_at IS NULL";
    let mut delivered = None;
    // Up to 20 s: the replica delivers in a task of its own, on a machine the suite shares.
    for _ in 0..400 {
        // Sent first, then marked in the same transaction's commit: wait for both.
        delivered = replica
            .server
            .state
            .control
            .outbox
            .mailbox()
            .latest_to("late@example.com");
        if delivered.is_some() && app.count(waiting).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mail = delivered.expect("the waiting email is delivered");
    assert_eq!(
        mail.body,
        "open /app/invitations/accept?token=ioinv_left_waiting"
    );
    assert_eq!(app.count(waiting).await, 0, "the row keeps no token");
    replica.server.stop().await;
    app.stop().await;
}

async fn invitation_life_cycle(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Acme").await;
    let invited = app
        .post(
            "/v1/invitations",
            Some(&owner.access),
            json!({"email": "Bee@Example.com", "role": "member"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text);
    assert_eq!(invited.body["email"], "bee@example.com");
    assert_eq!(invited.body["status"], "pending");
    // No mail server here: the inviter is given the link to pass on, once.
    assert_eq!(invited.body["emailed"], false);
    assert!(
        invited.body["accept_link"]
            .as_str()
            .is_some_and(|l| l.contains("ioinv_")),
        "{}",
        invited.text
    );
    assert!(
        !app.get("/v1/invitations", &owner.access)
            .await
            .text
            .contains("ioinv_")
    );
    let id = invited.body["id"].as_str().unwrap().to_string();
    app.post(
        "/v1/invitations",
        Some(&owner.access),
        json!({"email": "bee@example.com", "role": "viewer"}),
    )
    .await
    .assert_problem(409, "invitation_pending");
    let token = app.invitation_token("bee@example.com").await;
    assert!(token.starts_with("ioinv_") && token.len() > 40, "{token}");
    // The database keeps only the token's hash: the delivered email's row holds no token.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM email_outbox WHERE body LIKE '%{token}%' OR subject LIKE '%{token}%'"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE body LIKE '%ioinv_%'")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE secret IS NOT NULL OR sent_at IS NULL")
            .await,
        0,
        "delivered, and its secret cleared"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM invitations WHERE token_hash = '{token}'"
        ))
        .await,
        0
    );

    // Someone else cannot use it; the invitee can, once.
    let other = app.signup("mallory@example.com", "Mal").await;
    app.post(
        "/v1/invitations/accept",
        Some(&other.access),
        json!({"token": token}),
    )
    .await
    .assert_problem(404, "not_found");
    let bee = app.signup("bee@example.com", "Bee's own").await;
    let accepted = app
        .post(
            "/v1/invitations/accept",
            Some(&bee.access),
            json!({"token": token}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["organization"]["id"], owner.org_id.as_str());
    assert_eq!(accepted.body["role"], "member");
    app.post(
        "/v1/invitations/accept",
        Some(&bee.access),
        json!({"token": token}),
    )
    .await
    .assert_problem(409, "invitation_used");
    assert_eq!(
        app.get(&format!("/v1/invitations/{id}"), &owner.access)
            .await
            .body["status"],
        "accepted"
    );
    app.post(
        "/v1/invitations",
        Some(&owner.access),
        json!({"email": "bee@example.com", "role": "viewer"}),
    )
    .await
    .assert_problem(409, "already_member");

    // Expired and revoked invitations cannot be accepted.
    app.post(
        "/v1/invitations",
        Some(&owner.access),
        json!({"email": "late@example.com", "role": "viewer"}),
    )
    .await;
    let late_token = app.invitation_token("late@example.com").await;
    app.exec(
        "UPDATE invitations SET expires_at = 1 WHERE email = $1",
        "late@example.com",
    )
    .await;
    let late = app.signup("late@example.com", "Late").await;
    app.post(
        "/v1/invitations/accept",
        Some(&late.access),
        json!({"token": late_token}),
    )
    .await
    .assert_problem(409, "invitation_expired");
    let listed = app.get("/v1/invitations", &owner.access).await;
    assert!(
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "expired"),
        "{}",
        listed.text
    );

    let rev = app
        .post(
            "/v1/invitations",
            Some(&owner.access),
            json!({"email": "gone@example.com", "role": "viewer"}),
        )
        .await;
    let rev_id = rev.body["id"].as_str().unwrap();
    let rev_token = app.invitation_token("gone@example.com").await;
    let revoked = app
        .delete(&format!("/v1/invitations/{rev_id}"), &owner.access)
        .await;
    assert_eq!(revoked.body["status"], "revoked", "{}", revoked.text);
    let gone = app.signup("gone@example.com", "Gone").await;
    app.post(
        "/v1/invitations/accept",
        Some(&gone.access),
        json!({"token": rev_token}),
    )
    .await
    .assert_problem(409, "invitation_revoked");
    // An accepted invitation cannot be revoked.
    app.delete(&format!("/v1/invitations/{id}"), &owner.access)
        .await
        .assert_problem(409, "invitation_used");
    app.stop().await;
}
