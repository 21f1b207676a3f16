//! SSH keys an organisation registers, and what a container cluster's nodes are told: each
//! key checked as OpenSSH reads it (with OpenSSH's fingerprint), one of a kind in the
//! organisation, readable by every member and managed by those who change clusters, from REST,
//! the command line and the console; a container's command, ports and environment kept with its
//! spec and handed, with the keys, to the agent; the commands that log in to it.

use iocloud_api::simulator::SimDevice;
use iocloud_tests::{
    Backend, Fleet, Session, TestApp, agent_report, assignment, cluster, current_nodes, fleet,
    frankfurt, iocloud_with_key, on_both_engines, pass_node_test, wait_status,
};
use reqwest::header::LOCATION;
use serde_json::{Value, json};

use super::console_client::{csrf_of, page, sign_in, submit};

on_both_engines!(
    keys_are_checked_added_listed_and_removed,
    a_container_gets_its_command_ports_environment_and_keys,
    the_keys_page_adds_and_removes_with_its_token
);

// Made by `ssh-keygen`, with the fingerprints `ssh-keygen -l` printed for them.
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZ18vQjB/JOrHVQGYEtqRNr8WT0xxxBKBU4GvwpXVtO ada@laptop";
const ED25519_FINGERPRINT: &str = "SHA256:iONZVzoqQeXkW0AW5eYZVxgHQcbYyI9hpja/N6KbZI0";
const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCuKVHIPy9hp6NMr3zJwTFotK8Rs60WVRW9U82pMX961LT109Noi/rrQB1eKBMFJ7NCNZXjsAi24My8vQ+YcwziBnURras/JBUCDvfHznHwVd7ULexp7KPPSgSU2fooAjaiZbSPz3Yg/n0esTZKeDzstLD91wEqwMJC60+jqHvbdQQJ2N5iam9dfRrGwhytiWDImBOrgaucHP/WhfSl6GJ4cwI9lN8/yyzQWeKV371AEJwHJIctP4qH9w5Wm06EhJkA/qYLuj/Gi4wbgfrmHtI1bbA14x2BZjthUcy/+l1z3BEmNMHVaxMbw0vAx5nq87e6OTwreqsgL8Y25u76Ij+Z t";
const RSA_2048_FINGERPRINT: &str = "SHA256:Ym1W3tA+7ddu5BJCNx+4DNIOLvndq4Vj65N+pXdC8rY";
const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCybK8SyqYZV8ocDGBhbsaaaPLX08THIgbrmT6TOvepkxHBzZpTu+4Gm01aab1xJPiZqyt+S2NaLYatRF4cOBDF1Y+PcdXhajDXVWJhxBs1n23KAGz1MGY9CePDZg30cyWsu+hczXWcEb7+JjwWGtF4EzMcoTB16CWJPuame7t33Q== t";
const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPGa2ql44dkIPDI8F3kuoi5REgKLCgzD/mgqEbXkD7zEmXGciO6CojyukVfj1nnxYH1rSsuQLu7lUJ5sidmJOVE= t";

/// A key line without its comment, as the API keeps it.
fn without_comment(line: &str) -> &str {
    line.rsplit_once(' ').unwrap().0
}

/// Adds a key that must be taken; its id.
async fn add_key(app: &TestApp, s: &Session, name: &str, public_key: &str) -> String {
    let added = app
        .post(
            "/v1/ssh-keys",
            Some(&s.access),
            json!({"name": name, "public_key": public_key}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    added.body["id"].as_str().unwrap().to_string()
}

async fn keys_are_checked_added_listed_and_removed(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("ada@example.com", "Acme").await;
    let added = app
        .post(
            "/v1/ssh-keys",
            Some(&owner.access),
            json!({"name": " laptop ", "public_key": format!("{ED25519}\n")}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let id = added.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ssh_"), "{id}");
    assert_eq!(added.body["name"], "laptop");
    assert_eq!(added.body["key_type"], "ssh-ed25519");
    assert_eq!(added.body["fingerprint"], ED25519_FINGERPRINT);
    assert_eq!(added.body["public_key"], without_comment(ED25519));
    assert_eq!(added.body["created_by"], owner.user_id.as_str());
    assert_eq!(
        app.items("/v1/ssh-keys", &owner.access).await,
        vec![added.body.clone()]
    );
    let got = app.get(&format!("/v1/ssh-keys/{id}"), &owner.access).await;
    assert_eq!(got.body, added.body, "{}", got.text);

    // Each thing that is not a key, or not a name, is refused on its field; nothing is added.
    let ed25519_blob = ED25519.split(' ').nth(1).unwrap();
    let long = "k".repeat(65);
    for (name, public_key, field, says) in [
        (
            "a",
            format!("ssh-rsa {ed25519_blob}"),
            "public_key",
            "inside",
        ),
        (
            "b",
            "ssh-ed25519 AAAA!!not-base64".into(),
            "public_key",
            "base64",
        ),
        ("c", RSA_1024.into(), "public_key", "2048"),
        ("d", String::new(), "public_key", "public key"),
        ("e", "  ".into(), "public_key", "public key"),
        (
            "f",
            "ssh-dss AAAAB3NzaC1kc3M=".into(),
            "public_key",
            "ssh-ed25519",
        ),
        ("", P256.into(), "name", "empty"),
        (long.as_str(), P256.into(), "name", "64"),
    ] {
        let refused = app
            .post(
                "/v1/ssh-keys",
                Some(&owner.access),
                json!({"name": name, "public_key": public_key}),
            )
            .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
        assert!(
            refused.body["detail"].as_str().unwrap().contains(says),
            "{says}: {}",
            refused.text
        );
    }
    // The same key under another name (its comment does not matter), and a name in use.
    app.post(
        "/v1/ssh-keys",
        Some(&owner.access),
        json!({"name": "laptop-again", "public_key": format!("{} other@host", without_comment(ED25519))}),
    )
    .await
    .assert_problem(409, "ssh_key_exists");
    app.post(
        "/v1/ssh-keys",
        Some(&owner.access),
        json!({"name": "laptop", "public_key": RSA_2048}),
    )
    .await
    .assert_problem(409, "name_taken");
    assert_eq!(app.items("/v1/ssh-keys", &owner.access).await.len(), 1);

    // Every member reads them; those who change clusters add and remove them.
    let viewer = app.add_member(&owner, "vic@example.com", "viewer").await;
    let member = app.add_member(&owner, "mo@example.com", "member").await;
    assert_eq!(app.items("/v1/ssh-keys", &viewer.access).await.len(), 1);
    app.post(
        "/v1/ssh-keys",
        Some(&viewer.access),
        json!({"name": "vic", "public_key": P256}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.delete(&format!("/v1/ssh-keys/{id}"), &viewer.access)
        .await
        .assert_problem(403, "forbidden");
    let by_member = app
        .post(
            "/v1/ssh-keys",
            Some(&member.access),
            json!({"name": "mo", "public_key": P256}),
        )
        .await;
    assert_eq!(by_member.status, 201, "{}", by_member.text);
    assert_eq!(by_member.body["created_by"], member.user_id.as_str());
    let (_, read_key) = app.api_key(&owner.access, &["read"]).await;
    app.post(
        "/v1/ssh-keys",
        Some(&read_key),
        json!({"name": "r", "public_key": RSA_2048}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(app.items("/v1/ssh-keys", &read_key).await.len(), 2);

    // The command line, with a write key: a key added from its file answers to the key's maker.
    let (_, write_key) = app.api_key(&owner.access, &["write"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("id_rsa.pub");
    std::fs::write(&file, format!("{RSA_2048}\n")).unwrap();
    let path = file.to_str().unwrap();
    let add = ["ssh-keys", "add", "--name", "ci", "--file", path];
    assert_eq!(iocloud_with_key(&app, &add, &write_key).await, 0);
    let ci = app
        .items("/v1/ssh-keys", &owner.access)
        .await
        .into_iter()
        .find(|k| k["name"] == "ci")
        .expect("the command line added it");
    assert_eq!(ci["fingerprint"], RSA_2048_FINGERPRINT);
    assert_eq!(ci["created_by"], owner.user_id.as_str());
    assert_eq!(
        iocloud_with_key(&app, &["ssh-keys", "list"], &write_key).await,
        0
    );
    let again = ["ssh-keys", "add", "--name", "ci-2", "--file", path];
    assert_eq!(
        iocloud_with_key(&app, &again, &write_key).await,
        4,
        "refused: the key is there already"
    );
    let missing = [
        "ssh-keys",
        "add",
        "--name",
        "x",
        "--file",
        "/no/such/key.pub",
    ];
    assert_eq!(iocloud_with_key(&app, &missing, &write_key).await, 2);
    let ci_id = ci["id"].as_str().unwrap();
    assert_eq!(
        iocloud_with_key(&app, &["ssh-keys", "remove", ci_id], &write_key).await,
        0
    );
    assert_eq!(app.items("/v1/ssh-keys", &owner.access).await.len(), 2);

    // Another organisation sees none of them, and finds none by id; the same key is its own.
    let other = app.signup("bob@example.com", "Other").await;
    assert!(app.items("/v1/ssh-keys", &other.access).await.is_empty());
    app.get(&format!("/v1/ssh-keys/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    app.delete(&format!("/v1/ssh-keys/{id}"), &other.access)
        .await
        .assert_problem(404, "not_found");
    add_key(&app, &other, "laptop", ED25519).await;
    for missing in ["ssh_nope".to_string(), format!("ssh_{}", "0".repeat(26))] {
        app.get(&format!("/v1/ssh-keys/{missing}"), &owner.access)
            .await
            .assert_problem(404, "not_found");
    }

    // Removed: gone, and removing it again finds nothing.
    let removed = app
        .delete(&format!("/v1/ssh-keys/{id}"), &owner.access)
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    app.get(&format!("/v1/ssh-keys/{id}"), &owner.access)
        .await
        .assert_problem(404, "not_found");
    app.delete(&format!("/v1/ssh-keys/{id}"), &owner.access)
        .await
        .assert_problem(404, "not_found");
    let left: Vec<Value> = app.items("/v1/ssh-keys", &owner.access).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["name"], "mo");
    assert_eq!(app.items("/v1/ssh-keys", &other.access).await.len(), 1);
    app.stop().await;
}

/// The only current node of a cluster, with its device.
fn only_node<'a>(c: &Value, devices: &'a [SimDevice]) -> (String, &'a SimDevice) {
    let nodes = current_nodes(c);
    assert_eq!(nodes.len(), 1, "{c:#}");
    let device = devices
        .iter()
        .find(|d| d.id == nodes[0]["device_id"])
        .unwrap();
    (nodes[0]["id"].as_str().unwrap().to_string(), device)
}

async fn a_container_gets_its_command_ports_environment_and_keys(b: Backend) {
    // No simulated agents: the test is the agent, and reads what it is told.
    let Fleet {
        app,
        customer: s,
        devices,
        ..
    } = fleet(b, frankfurt(2), false, |_| {}).await;
    let laptop = add_key(&app, &s, "laptop", ED25519).await;
    add_key(&app, &s, "desk", P256).await;
    // A member adds a key, then leaves: nodes do not get it.
    let mo = app.add_member(&s, "mo@example.com", "member").await;
    let departed = add_key(&app, &mo, "mo", RSA_2048).await;
    let left = app
        .delete(&format!("/v1/members/{}", mo.user_id), &s.access)
        .await;
    assert_eq!(left.status, 204, "{}", left.text);

    let base = json!({"kind": "container", "image": "ghcr.io/acme/serve:1", "gpu_model": "h100-sxm",
                      "gpu_count": 8, "duration_hours": 1});
    let with = |fields: Value| {
        let mut spec = base.clone();
        for (k, v) in fields.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };

    // What is not a command, a port list, an environment or a key of the organisation is
    // refused on its field, before anything is placed.
    for (field, value) in [
        ("env", json!({"IOCLOUD_TOKEN": "x"})),
        ("env", json!({"1BAD": "x"})),
        ("env", json!({"BIG": "v".repeat(4097)})),
        ("ports", json!([22])),
        ("ports", json!([70000])),
        ("ports", json!([8080, 8080])),
        ("command", json!([])),
        ("command", json!(["sh", "-c", "a\u{0}b"])),
        ("ssh_key_ids", json!([format!("ssh_{}", "0".repeat(26))])),
        ("ssh_key_ids", json!([departed])),
    ] {
        let spec = with(json!({"name": "bad", field: value}));
        let refused = app.post("/v1/clusters", Some(&s.access), spec).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    // Ray and Kubernetes nodes run their own command.
    let ray = json!({"name": "r", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8,
                     "duration_hours": 1, "command": ["sleep", "1"]});
    let refused = app.post("/v1/clusters", Some(&s.access), ray).await;
    refused.assert_problem(422, "validation_failed");
    assert_eq!(refused.body["field"], "command", "{}", refused.text);
    assert!(app.items("/v1/clusters", &s.access).await.is_empty());

    // Kept with the spec, as given.
    let spec = with(json!({
        "name": "serve",
        "command": ["python", "serve.py", "--port", "8080"],
        "ports": [8080, 6006],
        "env": {"MODEL": "llama-3", "EMPTY": ""},
        "ssh_key_ids": [laptop],
    }));
    let created = app
        .post("/v1/clusters", Some(&s.access), spec.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    let c = cluster(&app, &s, &id).await;
    for field in ["command", "ports", "env", "ssh_key_ids"] {
        assert_eq!(c["spec"][field], spec[field], "{field}: {c:#}");
    }
    // Applied again as it is, nothing changes; another environment replaces the cluster.
    let same = app
        .put("/v1/clusters/serve?dry_run=true", &s.access, spec.clone())
        .await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["action"], "none", "{}", same.text);
    let mut other_env = spec.clone();
    other_env["env"]["MODEL"] = json!("mistral");
    let replace = app
        .put("/v1/clusters/serve?dry_run=true", &s.access, other_env)
        .await;
    assert_eq!(replace.body["action"], "replace", "{}", replace.text);
    assert_eq!(
        replace.body["changes"][0]["field"], "env",
        "{}",
        replace.text
    );

    // The agent is told the command, ports, environment and the one key named.
    let (node, device) = only_node(&c, &devices);
    let handed = assignment(&app, device, &node).await;
    let boot = &handed["bootstrap"];
    assert_eq!(boot["image"], "ghcr.io/acme/serve:1", "{boot:#}");
    assert_eq!(boot["command"], spec["command"]);
    assert_eq!(boot["container_ports"], json!([8080, 6006]));
    assert_eq!(boot["env"], spec["env"]);
    assert_eq!(
        boot["authorized_keys"],
        json!([format!("{} laptop", without_comment(ED25519))])
    );

    // Up: the connection says how to log in, with the one key's file.
    pass_node_test(&app, device, &node).await;
    let ready = agent_report(
        &app,
        device,
        &node,
        json!({"status": "ready", "endpoints": {"ssh": "10.0.0.5:2222", "port-8080": "10.0.0.5:8080"}}),
    )
    .await;
    assert_eq!(ready.status, 204, "{}", ready.text);
    let running = wait_status(&app, &s, &id, "running").await;
    let conn = &running["connection"];
    assert_eq!(conn["ssh_user"], "root", "{conn:#}");
    assert_eq!(
        conn["nodes"][0]["ssh_command"], "ssh -p 2222 -i ~/.ssh/laptop root@10.0.0.5",
        "{conn:#}"
    );
    assert_eq!(conn["nodes"][0]["endpoints"]["port-8080"], "10.0.0.5:8080");

    // Naming no keys gives every key of the organisation's members, and no command.
    let all = with(json!({"name": "all", "image": "busybox"}));
    let created = app.post("/v1/clusters", Some(&s.access), all).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = cluster(&app, &s, created.body["id"].as_str().unwrap()).await;
    let (node, device) = only_node(&c, &devices);
    let boot = assignment(&app, device, &node).await["bootstrap"].clone();
    assert_eq!(
        boot["authorized_keys"],
        json!([
            format!("{} laptop", without_comment(ED25519)),
            format!("{} desk", without_comment(P256)),
        ]),
        "not the departed member's: {boot:#}"
    );
    assert!(
        boot.get("command").is_none() && boot.get("env").is_none(),
        "{boot:#}"
    );
    app.stop().await;
}

async fn the_keys_page_adds_and_removes_with_its_token(b: Backend) {
    let app = TestApp::spawn(b).await;
    let owner = app.signup("ada@example.com", "Acme").await;
    let jar = sign_in(&app, "ada@example.com").await;
    let (status, html) = page(&app, &jar, "/app/keys").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No SSH keys yet") && html.contains("Add an SSH key"),
        "{html}"
    );

    // Without the session's token nothing is added.
    let typed = [("name", "laptop"), ("public_key", ED25519)];
    assert_eq!(submit(&app, &jar, "/app/keys", &typed).await.status(), 403);
    let mut forged = typed.to_vec();
    forged.push(("csrf", "forged"));
    assert_eq!(submit(&app, &jar, "/app/keys", &forged).await.status(), 403);
    assert!(app.items("/v1/ssh-keys", &owner.access).await.is_empty());

    // A refusal in words, with what was typed kept; then added.
    let csrf = csrf_of(&jar);
    let refused = submit(
        &app,
        &jar,
        "/app/keys",
        &[
            ("csrf", &csrf),
            ("name", "laptop"),
            ("public_key", RSA_1024),
        ],
    )
    .await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("keys-error") && html.contains("2048") && html.contains("value=\"laptop\""),
        "{html}"
    );
    let mut good = typed.to_vec();
    good.push(("csrf", &csrf));
    let added = submit(&app, &jar, "/app/keys", &good).await;
    assert_eq!(added.status(), 303);
    assert_eq!(added.headers()[LOCATION], "/app/keys?done=added");
    let (_, html) = page(&app, &jar, "/app/keys?done=added").await;
    assert!(
        html.contains("laptop") && html.contains(ED25519_FINGERPRINT) && html.contains("was added"),
        "{html}"
    );
    let keys = app.items("/v1/ssh-keys", &owner.access).await;
    assert_eq!(keys.len(), 1);
    let id = keys[0]["id"].as_str().unwrap().to_string();

    // Another organisation neither sees it nor removes it.
    app.signup("bob@example.com", "Other").await;
    let theirs = sign_in(&app, "bob@example.com").await;
    let (_, html) = page(&app, &theirs, "/app/keys").await;
    assert!(!html.contains(ED25519_FINGERPRINT), "{html}");
    let their_csrf = csrf_of(&theirs);
    let remove = format!("/app/keys/{id}/remove");
    let refused = submit(&app, &theirs, &remove, &[("csrf", &their_csrf)]).await;
    assert_eq!(refused.status(), 404);

    // Removing needs the token too.
    assert_eq!(submit(&app, &jar, &remove, &[]).await.status(), 403);
    assert_eq!(app.items("/v1/ssh-keys", &owner.access).await.len(), 1);
    let removed = submit(&app, &jar, &remove, &[("csrf", &csrf)]).await;
    assert_eq!(removed.status(), 303);
    assert_eq!(removed.headers()[LOCATION], "/app/keys?done=removed");
    assert!(app.items("/v1/ssh-keys", &owner.access).await.is_empty());
    app.stop().await;
}
