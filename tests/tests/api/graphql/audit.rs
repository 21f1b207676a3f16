//! The audit of GraphQL mutations: one row per mutation field with its own outcome, over the
//! socket as over HTTP.

use iocloud_tests::{PASSWORD, TestApp, answer_to, connect, error_code, on_both_engines, send_op};
use serde_json::json;

on_both_engines!(
    socket_mutations_are_audited,
    each_mutation_field_is_audited_with_its_outcome,
);

async fn socket_mutations_are_audited(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let mut ws = connect(&app, &s.access).await;
    send_op(
        &mut ws,
        "1",
        "mutation { updateOrganization(name: \"Acme Corp\") { name } }",
    )
    .await;
    let answer = answer_to(&mut ws, "1").await;
    assert_eq!(
        answer["payload"]["data"]["updateOrganization"]["name"], "Acme Corp",
        "{answer}"
    );
    send_op(
        &mut ws,
        "2",
        "mutation { revokeApiKey(id: \"key_missing\") { id } }",
    )
    .await;
    let refused = answer_to(&mut ws, "2").await;
    assert_eq!(error_code(&refused), "not_found", "{refused}");

    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    let items = events.body["items"].as_array().unwrap();
    let renamed = items
        .iter()
        .find(|e| e["action"] == "graphql mutation updateOrganization")
        .unwrap_or_else(|| panic!("the rename over the socket is audited: {}", events.text));
    assert_eq!(renamed["actor_id"], s.user_id.as_str());
    assert_eq!(renamed["outcome"], "success");
    assert!(
        renamed["ip"].as_str().is_some_and(|ip| !ip.is_empty()),
        "{renamed}"
    );
    let missing = items
        .iter()
        .find(|e| e["action"] == "graphql mutation revokeApiKey")
        .unwrap_or_else(|| panic!("{}", events.text));
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["outcome"], "failure");
    app.stop().await;
}

async fn each_mutation_field_is_audited_with_its_outcome(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let answer = app
        .graphql(
            Some(&s.access),
            "mutation { ... on MutationRoot { updateOrganization(name: \"Acme Corp\") { name } } revokeApiKey(id: \"key_missing\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(
        answer.body["data"]["updateOrganization"]["name"], "Acme Corp",
        "{}",
        answer.text
    );
    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    let items = events.body["items"].as_array().unwrap();
    let find = |action: &str| {
        items
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action} in {}", events.text))
    };
    let renamed = find("graphql mutation updateOrganization");
    assert_eq!(
        (renamed["status"].as_i64(), renamed["outcome"].as_str()),
        (Some(200), Some("success"))
    );
    let missing = find("graphql mutation revokeApiKey");
    assert_eq!(
        (missing["status"].as_i64(), missing["outcome"].as_str()),
        (Some(404), Some("failure"))
    );
    assert_eq!(missing["request_id"], renamed["request_id"]);
    assert!(
        !items
            .iter()
            .any(|e| e["action"].as_str().unwrap().contains(',')),
        "one row per field: {}",
        events.text
    );

    // A refused login records the login and its outcome, not an unnamed mutation.
    app.graphql(
        None,
        "mutation { logIn(email: \"ada@example.com\", password: \"wrong one\") { accessToken } }",
        json!({}),
    )
    .await;
    let ok = app.graphql(None, &format!("mutation {{ ... on MutationRoot {{ logIn(email: \"ada@example.com\", password: \"{PASSWORD}\") {{ accessToken }} }} }}"), json!({})).await;
    assert!(
        ok.body["data"]["logIn"]["accessToken"].is_string(),
        "{}",
        ok.text
    );
    let events = app.get("/v1/audit-events?limit=200", &s.access).await;
    let logins: Vec<(i64, String)> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "graphql mutation logIn")
        .map(|e| {
            (
                e["status"].as_i64().unwrap(),
                e["actor_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        logins.contains(&(200, s.user_id.clone())),
        "{}",
        events.text
    );
    app.stop().await;
}
