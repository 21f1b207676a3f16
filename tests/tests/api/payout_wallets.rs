//! Payout wallets, on both engines: added only with the wallet's signature of a fresh
//! challenge of this organisation's; a challenge is good once; another organisation's
//! wallets and challenges read as missing.

use iocloud_tests::{Backend, Session, TestApp, on_both_engines};
use serde_json::{Value, json};
use solana_keypair::Keypair;
use solana_signer::Signer;

on_both_engines!(wallets_are_proved_by_their_signature);

async fn challenge(app: &TestApp, s: &Session, address: &str) -> Value {
    let c = app
        .post(
            "/v1/payouts/wallets/challenges",
            Some(&s.access),
            json!({ "address": address }),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    c.body
}

fn sign(wallet: &Keypair, challenge: &Value) -> String {
    wallet
        .sign_message(challenge["message"].as_str().unwrap().as_bytes())
        .to_string()
}

async fn wallets_are_proved_by_their_signature(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("owner@example.com", "Provider").await;
    let other = app.signup("other@example.com", "Other Provider").await;
    let wallet = Keypair::new();
    let address = wallet.pubkey().to_string();

    for bad in [
        "",
        "not-an-address",
        "0OIl0OIl0OIl0OIl0OIl0OIl0OIl0OIl",
        &"1".repeat(45),
    ] {
        let a = app
            .post(
                "/v1/payouts/wallets/challenges",
                Some(&s.access),
                json!({ "address": bad }),
            )
            .await;
        a.assert_problem(422, "validation_failed");
        assert_eq!(a.body["field"], "address");
    }
    let c = challenge(&app, &s, &address).await;
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(&s.org_id) && message.contains(&address),
        "{message}"
    );

    // Another key's signature proves nothing, and spends the challenge.
    let impostor = Keypair::new();
    let add = |body: Value, token: String| {
        let app = &app;
        async move { app.post("/v1/payouts/wallets", Some(&token), body).await }
    };
    add(
        json!({"challenge_id": c["id"], "signature": sign(&impostor, &c)}),
        s.access.clone(),
    )
    .await
    .assert_problem(422, "validation_failed");
    add(
        json!({"challenge_id": c["id"], "signature": sign(&wallet, &c)}),
        s.access.clone(),
    )
    .await
    .assert_problem(409, "no_challenge");

    // Another organisation cannot use this organisation's challenge.
    let c = challenge(&app, &s, &address).await;
    add(
        json!({"challenge_id": c["id"], "signature": sign(&wallet, &c)}),
        other.access.clone(),
    )
    .await
    .assert_problem(409, "no_challenge");
    add(
        json!({"challenge_id": c["id"], "signature": "garbage"}),
        s.access.clone(),
    )
    .await
    .assert_problem(422, "validation_failed");

    // The wallet's own signature of a fresh challenge adds it; the first is the default.
    let c = challenge(&app, &s, &address).await;
    let added = add(
        json!({"challenge_id": c["id"], "signature": sign(&wallet, &c), "label": "cold"}),
        s.access.clone(),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.body["address"], address.as_str());
    assert_eq!(added.body["is_default"], true);
    let first = added.body["id"].as_str().unwrap().to_string();
    // Used once only.
    add(
        json!({"challenge_id": c["id"], "signature": sign(&wallet, &c)}),
        s.access.clone(),
    )
    .await
    .assert_problem(409, "no_challenge");

    // A second wallet, made the default; the other organisation sees none of them.
    let second_key = Keypair::new();
    let c = challenge(&app, &s, &second_key.pubkey().to_string()).await;
    let second = add(
        json!({"challenge_id": c["id"], "signature": sign(&second_key, &c)}),
        s.access.clone(),
    )
    .await;
    assert_eq!(second.body["is_default"], false, "{}", second.text);
    let second = second.body["id"].as_str().unwrap().to_string();
    let made = app
        .post(
            &format!("/v1/payouts/wallets/{second}/default"),
            Some(&s.access),
            json!({}),
        )
        .await;
    assert_eq!(made.body["is_default"], true, "{}", made.text);
    assert_eq!(
        app.get("/v1/payouts/wallets", &other.access).await.body,
        json!([])
    );
    app.post(
        &format!("/v1/payouts/wallets/{second}/default"),
        Some(&other.access),
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
    app.delete(&format!("/v1/payouts/wallets/{second}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    // Removing the default makes the one left the default.
    let gone = app
        .delete(&format!("/v1/payouts/wallets/{second}"), &s.access)
        .await;
    assert_eq!(gone.status, 204);
    let left = app.get("/v1/payouts/wallets", &s.access).await.body;
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], first.as_str());
    assert_eq!(left[0]["is_default"], true);

    // A member may not add wallets; GraphQL asks the same service.
    let member = app.add_member(&s, "member@example.com", "member").await;
    app.post(
        "/v1/payouts/wallets/challenges",
        Some(&member.access),
        json!({ "address": address }),
    )
    .await
    .assert_problem(403, "forbidden");
    let g = app
        .graphql(
            Some(&s.access),
            "{ wallets { id address isDefault } }",
            json!({}),
        )
        .await;
    assert_eq!(
        g.body["data"]["wallets"][0]["id"],
        first.as_str(),
        "{}",
        g.text
    );
    app.stop().await;
}
