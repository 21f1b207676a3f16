//! Invitations by email through a real SMTP server on loopback (`IOCLOUD_TEST_SMTP_URL`, the
//! aiosmtpd peer `infra/scripts/services.sh` starts): the invitee reads the token in the email
//! and joins by signing up with it, with no organisation of their own. Without a mail server
//! the inviter is told so and given the link to pass on.

use iocloud_tests::{Backend, TestApp, on_both_engines, smtp_peer};
use serde_json::{Value, json};

on_both_engines!(
    an_invitee_joins_from_the_email,
    without_a_mail_server_the_inviter_gets_the_link
);

/// The messages the SMTP peer received for `to`, waiting up to ten seconds for one.
async fn inbox(peer: &str, to: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let messages: Vec<Value> = client
            .get(format!("{peer}/messages"))
            .query(&[("to", to)])
            .send()
            .await
            .expect("the SMTP peer answers")
            .json()
            .await
            .expect("JSON");
        if !messages.is_empty() {
            return messages;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Vec::new()
}

fn token_in(body: &str) -> String {
    let start = body.find("ioinv_").expect("a token in the email");
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

async fn an_invitee_joins_from_the_email(b: Backend) {
    let Some((smtp, peer)) = smtp_peer() else {
        return;
    };
    let app = TestApp::spawn_with(b, move |c| {
        c.smtp_url = Some(smtp.parse().unwrap());
    })
    .await;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    // The peer is shared by every test: an address of this run's own.
    let invitee = format!("dev-{}@example.com", &owner.org_id[4..]);
    let sent = app
        .post(
            "/v1/invitations",
            Some(&owner.access),
            json!({"email": invitee, "role": "member"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["emailed"], true);
    assert!(sent.body.get("accept_link").is_none(), "{}", sent.text);

    let mail = inbox(&peer, &invitee).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0]["subject"].as_str().unwrap().contains("Render Farm"),
        "{}",
        mail[0]
    );
    assert!(
        mail[0]["from"]
            .as_str()
            .unwrap()
            .contains("iocloud.localhost")
    );
    let token = token_in(mail[0]["body"].as_str().unwrap());
    // The link opens from a mail client: this server's address in front.
    assert!(
        mail[0]["body"]
            .as_str()
            .unwrap()
            .contains(&app.url(&format!("/app/invitations/accept?token={token}"))),
        "{}",
        mail[0]
    );
    // The log and the outbox keep no token once it is sent.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM email_outbox WHERE secret IS NOT NULL OR sent_at IS NULL")
            .await,
        0
    );

    // Another email cannot use it; the invitee signs up with it, and is a member with no
    // organisation of their own.
    let wrong = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "someone-else@example.com", "password": "correct horse battery", "name": "Eve", "invitation": token}),
        )
        .await;
    wrong.assert_problem(404, "not_found");
    let joined = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": invitee, "password": "correct horse battery", "name": "Dev", "invitation": token}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    assert_eq!(joined.body["organization"]["id"], owner.org_id.as_str());
    assert_eq!(joined.body["role"], "member");
    let access = joined.body["access_token"].as_str().unwrap();
    let orgs = app.get("/v1/me", access).await;
    assert_eq!(
        orgs.body["memberships"].as_array().map(Vec::len),
        Some(1),
        "{}",
        orgs.text
    );
    // Spent.
    app.post(
        "/v1/auth/signup",
        None,
        json!({"email": format!("x{invitee}"), "password": "correct horse battery", "name": "X", "invitation": token}),
    )
    .await
    .assert_problem(404, "not_found");
    app.stop().await;
}

async fn without_a_mail_server_the_inviter_gets_the_link(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("owner@example.com", "Render Farm").await;
    let sent = app
        .post(
            "/v1/invitations",
            Some(&owner.access),
            json!({"email": "dev@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    assert_eq!(sent.body["emailed"], false);
    // A link the invitee can open: this server's address in front.
    let link = sent.body["accept_link"].as_str().unwrap();
    assert!(
        link.starts_with(&app.url("/app/invitations/accept?token=ioinv_")),
        "{link}"
    );
    // Listing never shows it again.
    let listed = app.get("/v1/invitations", &owner.access).await;
    assert!(!listed.text.contains("ioinv_"), "{}", listed.text);
    // Both an organisation and an invitation, or neither: refused.
    for body in [
        json!({"email": "dev@example.com", "password": "correct horse battery", "name": "Dev"}),
        json!({"email": "dev@example.com", "password": "correct horse battery", "name": "Dev", "org_name": "Mine", "invitation": token_in(link)}),
    ] {
        app.post("/v1/auth/signup", None, body)
            .await
            .assert_problem(422, "validation_failed");
    }
    let joined = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "dev@example.com", "password": "correct horse battery", "name": "Dev", "invitation": token_in(link)}),
        )
        .await;
    assert_eq!(joined.status, 201, "{}", joined.text);
    assert_eq!(joined.body["role"], "viewer");
    app.stop().await;
}
