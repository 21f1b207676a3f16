//! GraphQL: the same operations as REST, the same error codes, depth and complexity limits,
//! and subscriptions over WebSocket.
//!
//! One file per surface is this suite's convention; the WebSocket client helpers serve every test.

use futures::{SinkExt, StreamExt};
use iocloud_tests::{Fleet, PASSWORD, TestApp, fleet, frankfurt, on_both_engines};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

on_both_engines!(
    graphql_operations_and_errors,
    graphql_subscription_streams_audit_events,
    cluster_events_are_followed_over_graphql_and_hidden_from_other_tenants,
    socket_mutations_are_audited,
    revocation_ends_the_socket_and_its_subscriptions,
    a_change_of_role_ends_subscriptions,
    logins_hidden_in_fragments_are_refused,
    each_mutation_field_is_audited_with_its_outcome
);

async fn graphql_operations_and_errors(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let signup = app
        .graphql(
            None,
            "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p, name: \"Ada\", orgName: \"Acme\") { accessToken refreshToken role user { email } organization { id name } } }",
            json!({"e": "ada@example.com", "p": PASSWORD}),
        )
        .await;
    assert_eq!(signup.status, 200, "{}", signup.text);
    let data = &signup.body["data"]["signUp"];
    assert_eq!(data["role"], "OWNER");
    let token = data["accessToken"].as_str().unwrap().to_string();

    let me = app.graphql(Some(&token), "{ me { kind user { email } organization { name } memberships { role organization { id } } } }", json!({})).await;
    assert_eq!(
        me.body["data"]["me"]["user"]["email"], "ada@example.com",
        "{}",
        me.text
    );
    assert_eq!(me.body["data"]["me"]["memberships"][0]["role"], "OWNER");

    let key = app.graphql(Some(&token), "mutation { createApiKey(name: \"ci\", scopes: [\"read\"]) { secret apiKey { id scopes status } } }", json!({})).await;
    let secret = key.body["data"]["createApiKey"]["secret"]
        .as_str()
        .expect(&key.text)
        .to_string();
    let via_key = app
        .graphql(
            Some(&secret),
            "{ me { kind apiKey { id } } apiKeys { items { id } nextCursor } }",
            json!({}),
        )
        .await;
    assert_eq!(
        via_key.body["data"]["me"]["kind"], "api_key",
        "{}",
        via_key.text
    );
    assert_eq!(
        via_key.body["data"]["apiKeys"]["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The same stable codes as REST, in extensions.
    let code = |a: &iocloud_tests::Answer| {
        a.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let anon = app.graphql(None, "{ me { kind } }", json!({})).await;
    assert_eq!(code(&anon), "unauthenticated", "{}", anon.text);
    let invalid = app
        .graphql(
            Some(&token),
            "mutation { createApiKey(name: \"x\", scopes: []) { secret } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&invalid), "validation_failed", "{}", invalid.text);
    assert_eq!(invalid.body["errors"][0]["extensions"]["field"], "scopes");
    let forbidden = app
        .graphql(
            Some(&secret),
            "mutation { updateOrganization(name: \"x\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&forbidden), "forbidden", "{}", forbidden.text);
    let wrong = app.graphql(None, "mutation { logIn(email: \"ada@example.com\", password: \"wrong password\") { accessToken } }", json!({})).await;
    assert_eq!(code(&wrong), "invalid_credentials", "{}", wrong.text);
    let aliased = app
        .graphql(None, "mutation { a: logIn(email: \"ada@example.com\", password: \"guess one\") { accessToken } b: logIn(email: \"ada@example.com\", password: \"guess two\") { accessToken } }", json!({}))
        .await;
    assert_eq!(
        code(&aliased),
        "one_auth_mutation_per_request",
        "{}",
        aliased.text
    );
    let garbage = app
        .graphql(Some(&token), "{ me { nope } }", json!({}))
        .await;
    assert_eq!(code(&garbage), "invalid_query", "{}", garbage.text);

    // Depth and complexity limits.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(14),
        "} ".repeat(14)
    );
    let too_deep = app.graphql(Some(&token), &deep, json!({})).await;
    assert_eq!(code(&too_deep), "query_too_deep", "{}", too_deep.text);
    let heavy = "{ a: auditEvents(limit: 200) { items { id actorType actorId action target status outcome requestId ip createdAt } } }";
    let too_complex = app.graphql(Some(&token), heavy, json!({})).await;
    assert_eq!(
        code(&too_complex),
        "query_too_complex",
        "{}",
        too_complex.text
    );
    assert!(too_complex.body["data"].is_null());

    // The introspection query GraphiQL sends fits within both limits.
    let introspection = app.graphql(Some(&token), INTROSPECTION, json!({})).await;
    assert!(
        introspection.body["errors"].is_null(),
        "{}",
        &introspection.text[..introspection.text.len().min(500)]
    );
    assert!(
        introspection.body["data"]["__schema"]["types"]
            .as_array()
            .unwrap()
            .len()
            > 10
    );

    // A body that is not a GraphQL request is a problem document, like REST's.
    app.post_raw("/graphql", None, "application/json", "{\"query\": ")
        .await
        .assert_problem(400, "malformed_json");
    let big = format!(
        "{{\"query\": \"{{ me {{ kind }} }}\", \"pad\": \"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(big)];
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    app.post_raw("/graphql", None, "application/json", streamed)
        .await
        .assert_problem(413, "body_too_large");

    // GraphiQL for browsers, served from our own assets.
    let page = app.get_public("/graphql").await.text;
    assert!(page.contains("/assets/vendor/graphiql.min.js"));
    app.stop().await;
}

async fn graphql_subscription_streams_audit_events(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let mut ws = connect(&app, &s.access).await;
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { auditEvents { action actorId outcome } }"}}))).await.unwrap();
    // Give the subscription a moment to be registered before the event happens.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&s.access),
            json!({"name": "watched", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(created.status, 201);
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "next", "{event}");
    assert_eq!(
        event["payload"]["data"]["auditEvents"]["action"],
        "POST /v1/api-keys"
    );
    assert_eq!(
        event["payload"]["data"]["auditEvents"]["actorId"],
        s.user_id.as_str()
    );
    app.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A GraphQL WebSocket (graphql-transport-ws) acknowledged for the holder of `access`.
async fn connect(app: &TestApp, access: &str) -> Socket {
    let mut req = format!("ws://{}/graphql/ws", app.server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {access}")}});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

/// Subscribes to a cluster's events as operation `op`.
async fn follow_cluster(ws: &mut Socket, op: &str, id: &str) {
    let subscribe = json!({"id": op, "type": "subscribe", "payload": {
        "query": "subscription($id: String!) { clusterEvents(id: $id) { clusterId seq kind status } }",
        "variables": {"id": id}}});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
}

async fn cluster_events_are_followed_over_graphql_and_hidden_from_other_tenants(
    b: iocloud_tests::Backend,
) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "watched", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();

    // The history first, then each new event as it happens, in order, through running.
    let mut ws = connect(&app, &s.access).await;
    follow_cluster(&mut ws, "1", &id).await;
    let mut seen: Vec<(i64, String)> = Vec::new();
    while seen.last().is_none_or(|(_, kind)| kind != "running") {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["type"], "next", "{msg}");
        let event = &msg["payload"]["data"]["clusterEvents"];
        assert_eq!(event["clusterId"], id.as_str(), "{msg}");
        seen.push((
            event["seq"].as_i64().unwrap(),
            event["kind"].as_str().unwrap().to_string(),
        ));
    }
    let seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "every event once, in order: {seen:?}"
    );
    assert_eq!(seen[0].1, "created", "{seen:?}");

    // Another organisation's member is told the cluster is not found, as over REST.
    let eve = app.signup("eve@example.com", "Elsewhere").await;
    let mut theirs = connect(&app, &eve.access).await;
    follow_cluster(&mut theirs, "2", &id).await;
    let refused = next_json(&mut theirs).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "not_found",
        "{refused}"
    );
    assert!(refused["payload"]["data"].is_null(), "{refused}");
    app.stop().await;
}

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

async fn revocation_ends_the_socket_and_its_subscriptions(b: iocloud_tests::Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("ada@example.com", "Acme").await;
    let other = app.login("ada@example.com", None).await;

    // A user's session: logging out ends its subscriptions and its socket answers no more.
    let mut ws = connect(&app, &s.access).await;
    send_op(&mut ws, "feed", "subscription { auditEvents { action } }").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = app
        .post("/v1/auth/logout", Some(&s.access), json!({}))
        .await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_eq!(ended_with(&mut ws, "feed").await, "invalid_token");
    send_op(&mut ws, "me", "{ me { kind } }").await;
    let me = answer_to(&mut ws, "me").await;
    assert_eq!(error_code(&me), "invalid_token", "{me}");
    assert!(me["payload"]["data"].is_null(), "{me}");

    // An API key: revoking it ends its subscriptions.
    let (key_id, secret) = app.api_key(&other.access, &["admin"]).await;
    let mut by_key = connect(&app, &secret).await;
    send_op(
        &mut by_key,
        "feed",
        "subscription { auditEvents { action } }",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let revoked = app
        .delete(&format!("/v1/api-keys/{key_id}"), &other.access)
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(ended_with(&mut by_key, "feed").await, "invalid_token");
    app.stop().await;
}

async fn a_change_of_role_ends_subscriptions(b: iocloud_tests::Backend) {
    let app = TestApp::spawn_with(b, |c| c.graphql_ws_recheck_secs = 1).await;
    let owner = app.signup("ada@example.com", "Acme").await;
    let admin = app.add_member(&owner, "bob@example.com", "admin").await;
    let mut ws = connect(&app, &admin.access).await;
    send_op(&mut ws, "feed", "subscription { auditEvents { action } }").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let demoted = app
        .patch(
            &format!("/v1/members/{}", admin.user_id),
            &owner.access,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text);
    // A viewer may not read the audit log: the feed stops within the recheck period.
    assert_eq!(ended_with(&mut ws, "feed").await, "role_changed");
    send_op(&mut ws, "again", "subscription { auditEvents { action } }").await;
    assert_eq!(error_code(&answer_to(&mut ws, "again").await), "forbidden");
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

/// Sends one operation (graphql-transport-ws `subscribe`) with id `id`.
async fn send_op(ws: &mut Socket, id: &str, query: &str) {
    let msg = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// Reads until operation `id` answers (`next`), passing over other messages.
async fn answer_to(ws: &mut Socket, id: &str) -> Value {
    loop {
        let msg = next_json(ws).await;
        if msg["type"] == "next" && msg["id"] == id {
            return msg;
        }
    }
}

/// The `code` of an answer's first error, or "" when it has none.
fn error_code(msg: &Value) -> String {
    msg["payload"]["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Reads until operation `id` answers an error, which must be its last word: the error's code.
async fn ended_with(ws: &mut Socket, id: &str) -> String {
    loop {
        let msg = next_json(ws).await;
        if msg["id"] != id {
            continue;
        }
        let code = error_code(&msg);
        if code.is_empty() {
            continue; // an event that raced the revocation
        }
        let complete = next_json(ws).await;
        assert_eq!(
            (complete["type"].as_str(), complete["id"].as_str()),
            (Some("complete"), Some(id)),
            "{complete}"
        );
        return code;
    }
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

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = std::time::Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ping" && v["type"] != "pong" {
                return v;
            }
        }
    }
}

/// graphql-js's `getIntrospectionQuery()`, which GraphiQL sends on load.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;
