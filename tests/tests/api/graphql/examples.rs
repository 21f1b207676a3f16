//! The example operations GraphiQL opens with (`web/assets/pages/graphiql-examples.graphql`):
//! each is served, fits the schema, and the queries answer data for a signed-in user.

use futures::SinkExt;
use iocloud_tests::{Backend, TestApp};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_examples_fit_the_schema() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.signup("owner@example.com", "Examples").await;
    let served = app
        .client
        .get(app.url("/assets/pages/graphiql-examples.graphql"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let document = served.text().await.unwrap();
    let names: Vec<&str> = document
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            ["query ", "mutation ", "subscription "]
                .iter()
                .find_map(|k| l.strip_prefix(k))
                .and_then(|rest| rest.split(['(', ' ', '{']).next())
        })
        .collect();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        if name == "ClusterEvents" {
            // A subscription: over the WebSocket, authenticated by connection_init.
            let mut ws = iocloud_tests::connect(&app, &s.access).await;
            let msg = json!({"id": "1", "type": "subscribe", "payload": {
                "query": document, "operationName": name, "variables": {"id": "cls_none"}}});
            ws.send(Message::Text(msg.to_string().into()))
                .await
                .unwrap();
            let answer = iocloud_tests::next_json(&mut ws).await;
            let code = answer["payload"]["errors"][0]["extensions"]["code"]
                .as_str()
                .or_else(|| answer["payload"][0]["extensions"]["code"].as_str())
                .unwrap_or("");
            assert_eq!(code, "not_found", "{name}: {answer}");
            continue;
        }
        let answer = app
            .post(
                "/graphql",
                Some(&s.access),
                json!({"query": document, "operationName": name, "variables": {"id": "cls_none"}}),
            )
            .await;
        let errors: Vec<&Value> = answer.body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        // The document is valid for every operation; what an operation then meets (no
        // capacity here, a subscription over HTTP) is the API's answer, not a mistake in it.
        for e in &errors {
            assert_ne!(
                e["extensions"]["code"], "invalid_query",
                "{name}: {}",
                answer.text
            );
        }
        if name == "Me" || name == "Balances" || name == "Clusters" {
            assert!(errors.is_empty(), "{name}: {}", answer.text);
        }
    }
}
