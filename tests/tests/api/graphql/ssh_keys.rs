//! SSH keys over GraphQL, with the same codes and fields as REST, and a container cluster's
//! command, ports, environment (a `JSON` object, as labels are) and keys given through
//! `ClusterInput`, reaching the agent and the connection it answers with.

use iocloud_tests::{Answer, Backend, Fleet, fleet, frankfurt, on_both_engines, wait_status};
use serde_json::json;

on_both_engines!(ssh_keys_and_a_containers_workload_over_graphql);

// Made by `ssh-keygen`, with the fingerprint `ssh-keygen -l` printed for it.
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZ18vQjB/JOrHVQGYEtqRNr8WT0xxxBKBU4GvwpXVtO ada@laptop";
const ED25519_FINGERPRINT: &str = "SHA256:iONZVzoqQeXkW0AW5eYZVxgHQcbYyI9hpja/N6KbZI0";
const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCybK8SyqYZV8ocDGBhbsaaaPLX08THIgbrmT6TOvepkxHBzZpTu+4Gm01aab1xJPiZqyt+S2NaLYatRF4cOBDF1Y+PcdXhajDXVWJhxBs1n23KAGz1MGY9CePDZg30cyWsu+hczXWcEb7+JjwWGtF4EzMcoTB16CWJPuame7t33Q== t";

fn code(a: &Answer) -> &str {
    a.body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn field(a: &Answer) -> &str {
    a.body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or("")
}

async fn ssh_keys_and_a_containers_workload_over_graphql(b: Backend) {
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(1), true, |_| {}).await;
    let add = "mutation($name: String!, $key: String!) { addSshKey(name: $name, publicKey: $key) \
               { id name keyType fingerprint publicKey createdBy createdAt } }";
    let added = app
        .graphql(
            Some(&s.access),
            add,
            json!({"name": "laptop", "key": ED25519}),
        )
        .await;
    let key = &added.body["data"]["addSshKey"];
    assert_eq!(key["keyType"], "ssh-ed25519", "{}", added.text);
    assert_eq!(key["fingerprint"], ED25519_FINGERPRINT);
    assert_eq!(key["createdBy"], s.user_id.as_str());
    assert!(key["createdAt"].is_string());
    let id = key["id"].as_str().unwrap().to_string();

    let again = app
        .graphql(
            Some(&s.access),
            add,
            json!({"name": "other", "key": ED25519}),
        )
        .await;
    assert_eq!(code(&again), "ssh_key_exists", "{}", again.text);
    let short = app
        .graphql(
            Some(&s.access),
            add,
            json!({"name": "old", "key": RSA_1024}),
        )
        .await;
    assert_eq!(code(&short), "validation_failed", "{}", short.text);
    assert_eq!(field(&short), "public_key");
    let listed = app
        .graphql(
            Some(&s.access),
            "{ sshKeys { items { id name } nextCursor } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.body["data"]["sshKeys"]["items"],
        json!([{"id": id, "name": "laptop"}]),
        "{}",
        listed.text
    );

    // A container's workload through `ClusterInput`: refused on its field when it is wrong.
    let create = "mutation($input: ClusterInput!) { createCluster(input: $input) { id spec } }";
    let input = json!({"name": "serve", "kind": "CONTAINER", "image": "busybox", "gpuModel": "h100-sxm",
        "gpuCount": 8, "durationHours": 1, "command": ["python", "-m", "http.server", "8080"],
        "ports": [8080], "env": {"MODEL": "llama-3"}, "sshKeyIds": [id]});
    for (name, value, refused_on) in [
        ("env", json!({"IOCLOUD_X": "1"}), "env"),
        ("ports", json!([0]), "ports"),
        ("command", json!([]), "command"),
        ("sshKeyIds", json!(["ssh_nope"]), "ssh_key_ids"),
    ] {
        let mut bad = input.clone();
        bad[name] = value;
        let refused = app
            .graphql(Some(&s.access), create, json!({"input": bad}))
            .await;
        assert_eq!(code(&refused), "validation_failed", "{}", refused.text);
        assert_eq!(field(&refused), refused_on, "{}", refused.text);
    }
    let made = app
        .graphql(Some(&s.access), create, json!({"input": input}))
        .await;
    let cluster = &made.body["data"]["createCluster"];
    assert_eq!(
        cluster["spec"]["env"],
        json!({"MODEL": "llama-3"}),
        "{}",
        made.text
    );
    assert_eq!(cluster["spec"]["command"], input["command"]);
    assert_eq!(cluster["spec"]["ports"], json!([8080]));
    assert_eq!(cluster["spec"]["ssh_key_ids"], json!([id]));
    let cluster_id = cluster["id"].as_str().unwrap().to_string();

    // The simulated agent opens the port it was told; the connection says how to log in.
    wait_status(&app, &s, &cluster_id, "running").await;
    let read = app
        .graphql(
            Some(&s.access),
            "query($id: String!) { cluster(id: $id) { connection } }",
            json!({"id": cluster_id}),
        )
        .await;
    let conn = &read.body["data"]["cluster"]["connection"];
    let node = &conn["nodes"][0];
    assert!(
        node["ssh_command"]
            .as_str()
            .is_some_and(|c| c.starts_with("ssh -i ~/.ssh/laptop root@")),
        "{}",
        read.text
    );
    assert!(node["endpoints"]["port-8080"].is_string(), "{}", read.text);

    // Another organisation finds no key to remove; its own organisation removes it.
    let other = app.signup("bob@example.com", "Other").await;
    let remove = "mutation($id: String!) { removeSshKey(id: $id) { id } }";
    let theirs = app
        .graphql(Some(&other.access), remove, json!({"id": id}))
        .await;
    assert_eq!(code(&theirs), "not_found", "{}", theirs.text);
    let removed = app
        .graphql(Some(&s.access), remove, json!({"id": id}))
        .await;
    assert_eq!(
        removed.body["data"]["removeSshKey"]["id"],
        id.as_str(),
        "{}",
        removed.text
    );
    let gone = app
        .graphql(
            Some(&s.access),
            "query($id: String!) { sshKey(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(code(&gone), "not_found", "{}", gone.text);
    app.stop().await;
}
