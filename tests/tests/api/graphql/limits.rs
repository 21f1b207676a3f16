//! Limits that hold on the socket as over HTTP: oversized queries, the per-address rate limit,
//! the bound on a connection's subscriptions, and one login per request however it is hidden.

use futures::{SinkExt, StreamExt};
use iocloud_tests::{
    PASSWORD, Socket, TestApp, answer_to, connect, error_code, next_json, on_both_engines, send_op,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

on_both_engines!(logins_hidden_in_fragments_are_refused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_operations_pass_the_per_address_rate_limit() {
    // The per-account login limit is set out of the way: this is about the per-address one.
    let app = TestApp::spawn_with(iocloud_tests::Backend::Sqlite, |c| {
        c.rate_limit_per_ip = 20;
        c.login_max_attempts = 1000;
    })
    .await;
    let s = app.signup("ada@example.com", "Acme").await;
    let mut ws = connect(&app, &s.access).await;
    let login = |password: &str| {
        format!(
            "mutation {{ logIn(email: \"ada@example.com\", password: \"{password}\") {{ accessToken }} }}"
        )
    };
    let mut codes = Vec::new();
    for i in 0..40 {
        let id = format!("guess{i}");
        send_op(&mut ws, &id, &login(&format!("guess {i}"))).await;
        codes.push(error_code(&answer_to(&mut ws, &id).await));
    }
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert!(
        limited >= 20,
        "the upgrade and the sign-up took two of twenty: {codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "rate_limited" || c == "invalid_credentials"),
        "{codes:?}"
    );
    send_op(&mut ws, "right", &login(PASSWORD)).await;
    let answer = answer_to(&mut ws, "right").await;
    assert_eq!(error_code(&answer), "rate_limited", "{answer}");
    assert!(answer["payload"]["data"].is_null(), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_queries_are_refused_on_both_transports() {
    let app = TestApp::spawn(iocloud_tests::Backend::Sqlite).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let aliases = |n: usize| {
        let fields: String = (0..n).map(|i| format!("a{i}: __typename ")).collect();
        format!("{{ {fields}}}")
    };
    // Under the body limit, but far more fields than any real query selects.
    let flood = aliases(50_000);
    assert!(flood.len() < 1024 * 1024);
    let http = app.graphql(Some(&s.access), &flood, json!({})).await;
    assert_eq!(
        http.body["errors"][0]["extensions"]["code"],
        "query_too_complex",
        "{}",
        &http.text[..http.text.len().min(300)]
    );
    assert!(http.body["data"].is_null());
    let mut ws = connect(&app, &s.access).await;
    send_op(&mut ws, "flood", &flood).await;
    let refused = answer_to(&mut ws, "flood").await;
    assert_eq!(error_code(&refused), "query_too_complex");

    // Over the body limit: the socket is closed before the message is read as GraphQL.
    let huge = aliases(400_000);
    assert!(huge.len() > 7_000_000);
    send_op(&mut ws, "huge", &huge).await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.starts_with("body_too_large"), "{reason}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_a_bounded_number_of_subscriptions() {
    let app = TestApp::spawn(iocloud_tests::Backend::Sqlite).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let mut ws = connect(&app, &s.access).await;
    // The default bound is 32 operations at a time.
    for i in 0..40 {
        send_op(
            &mut ws,
            &format!("s{i}"),
            "subscription { auditEvents { action } }",
        )
        .await;
    }
    let mut refused = Vec::new();
    while refused.len() < 8 {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "next" {
            assert_eq!(error_code(&msg), "too_many_subscriptions", "{msg}");
            refused.push(msg["id"].as_str().unwrap().to_string());
        }
    }
    refused.sort();
    let mut expected: Vec<String> = (32..40).map(|i| format!("s{i}")).collect();
    expected.sort();
    assert_eq!(refused, expected);

    // Ending one makes room for another, which then streams.
    ws.send(Message::Text(
        json!({"id": "s0", "type": "complete"}).to_string().into(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send_op(&mut ws, "again", "subscription { auditEvents { action } }").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.patch("/v1/org", &s.access, json!({"name": "Acme Corp"}))
        .await;
    loop {
        let msg = next_json(&mut ws).await;
        assert_ne!(error_code(&msg), "too_many_subscriptions", "{msg}");
        if msg["id"] == "again" {
            assert_eq!(
                msg["payload"]["data"]["auditEvents"]["action"],
                "PATCH /v1/org"
            );
            break;
        }
    }
    app.stop().await;
}

async fn logins_hidden_in_fragments_are_refused(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    app.signup("ada@example.com", "Acme").await;
    let login = |alias: &str, password: &str| {
        format!(
            "{alias}: logIn(email: \"ada@example.com\", password: \"{password}\") {{ accessToken }}"
        )
    };
    let inline = format!(
        "mutation {{ ... on MutationRoot {{ {} {} {} }} }}",
        login("a", "guess one"),
        login("b", "guess two"),
        login("ok", PASSWORD)
    );
    let named = format!(
        "mutation {{ ...Guesses }} fragment Guesses on MutationRoot {{ {} ...More }} fragment More on MutationRoot {{ {} }}",
        login("a", "guess one"),
        login("ok", PASSWORD)
    );
    let one_each = format!(
        "mutation {{ {} ... on MutationRoot {{ {} }} }}",
        login("a", "guess one"),
        "logOut"
    );
    for query in [inline, named, one_each] {
        let answer = app.graphql(None, &query, json!({})).await;
        assert_eq!(
            answer.body["errors"][0]["extensions"]["code"], "one_auth_mutation_per_request",
            "{query}: {}",
            answer.text
        );
        assert!(answer.body["data"].is_null(), "{}", answer.text);
    }
    // A single login in a fragment is still a login.
    let alone = format!(
        "mutation {{ ...L }} fragment L on MutationRoot {{ {} }}",
        login("ok", PASSWORD)
    );
    let answer = app.graphql(None, &alone, json!({})).await;
    assert!(
        answer.body["data"]["ok"]["accessToken"].is_string(),
        "{}",
        answer.text
    );
    app.stop().await;
}

/// Reads until the server closes the socket: its close code and reason.
async fn close_frame(ws: &mut Socket) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
            .await
            .expect("a message in time")
            .expect("a close frame before the end")
            .expect("ok");
        if let Message::Close(frame) = msg {
            let frame = frame.expect("a close frame with a code");
            return (u16::from(frame.code), frame.reason.to_string());
        }
    }
}
