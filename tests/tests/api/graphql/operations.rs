//! GraphQL over HTTP: the same operations as REST with the same error codes, depth and
//! complexity limits that GraphiQL's introspection fits within, problem documents for bodies
//! that are not GraphQL, and GraphiQL itself.

use iocloud_tests::{PASSWORD, TestApp, on_both_engines};
use serde_json::json;

on_both_engines!(graphql_operations_and_errors);

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
