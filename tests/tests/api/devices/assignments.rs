//! Node assignments as the agent sees them: a CPU-only device's one node at a time, waiting
//! agents woken by their next node, and GPUs that come back node by node.

use iocloud_tests::{Answer, Backend, TestApp, agent, on_both_engines, rig, staked_rig};
use serde_json::{Value, json};

on_both_engines!(a_cpu_only_device_runs_one_node_at_a_time);

async fn a_cpu_only_device_runs_one_node_at_a_time(b: Backend) {
    let app = TestApp::spawn(b).await;
    let s = app.signup("provider@example.com", "CPU Farm").await;
    let mut cpu = rig("cpu-1");
    cpu["gpu_model"] = Value::Null;
    cpu["gpu_count"] = json!(0);
    cpu["price_per_gpu_hour"] = json!("0.08");
    let c = app.post("/v1/devices", Some(&s.access), cpu).await;
    let id = c.body["id"].as_str().unwrap().to_string();
    // Listed (verification and stake are covered by the other tests).
    app.exec(
        "UPDATE devices SET status = 'available', verified_at = 1 WHERE id = $1",
        &id,
    )
    .await;
    let control = &app.server.state.control;
    let spec = json!({"kind": "container", "image": "busybox"});
    control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 1, &spec)
        .await
        .expect_err("a CPU-only device has no GPU to give");
    let node = control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 0, &spec)
        .await
        .unwrap();
    control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 0, &spec)
        .await
        .expect_err("one node at a time");
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "busy");
    let token = app
        .post(
            &format!("/v1/devices/{id}/token"),
            Some(&s.access),
            json!({}),
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
        json!({"status": "released"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let d = app.get(&format!("/v1/devices/{id}"), &s.access).await;
    assert_eq!(d.body["status"], "available");
    control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 0, &spec)
        .await
        .unwrap();
}

on_both_engines!(a_waiting_agent_is_woken_by_its_assignment);

async fn a_waiting_agent_is_woken_by_its_assignment(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;
    let started = std::time::Instant::now();
    let path = format!("/agent/v1/devices/{id}/assignments?wait_secs=20");
    let poll = agent(&app, &token, "GET", &path, json!({}));
    let assign = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.server
            .state
            .control
            .agents
            .assign_node(&id, "clu_w", "org_customer", 8, &json!({"kind": "ray"}))
            .await
            .unwrap()
    };
    let (answer, node) = tokio::join!(poll, assign);
    assert_eq!(
        answer.body["items"][0]["id"],
        node.as_str(),
        "{}",
        answer.text
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "woken, not timed out: {:?}",
        started.elapsed()
    );
}

on_both_engines!(an_agent_told_nothing_is_still_given_the_next_node);

/// An agent that has reported on every node it was given waits for more without the server
/// reading (it knows there is nothing); a node assigned after that still reaches it at once,
/// whether it is waiting at the time or comes back later.
async fn an_agent_told_nothing_is_still_given_the_next_node(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;
    let control = &app.server.state.control;
    let now = format!("/agent/v1/devices/{id}/assignments?wait_secs=0");
    let items = |a: &Answer| -> Vec<String> {
        a.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = control
        .agents
        .assign_node(&id, "clu_1", "org_customer", 2, &json!({"kind": "ray"}))
        .await
        .unwrap();
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        [first.as_str()]
    );
    let started = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{first}/status"),
        json!({"status": "starting"}),
    )
    .await;
    assert_eq!(started.status, 204, "{}", started.text);
    let empty: [String; 0] = [];
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        empty
    );

    // Waiting when the next node comes.
    let wait = format!("/agent/v1/devices/{id}/assignments?wait_secs=20");
    let t0 = std::time::Instant::now();
    let later = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        control
            .agents
            .assign_node(&id, "clu_2", "org_customer", 2, &json!({"kind": "ray"}))
            .await
            .unwrap()
    };
    let (answer, second) = tokio::join!(agent(&app, &token, "GET", &wait, json!({})), later);
    assert_eq!(items(&answer), [second.as_str()]);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
    let ready = agent(
        &app,
        &token,
        "POST",
        &format!("/agent/v1/devices/{id}/nodes/{second}/status"),
        json!({"status": "ready"}),
    )
    .await;
    assert_eq!(ready.status, 204, "{}", ready.text);
    assert_eq!(
        items(&agent(&app, &token, "GET", &now, json!({})).await),
        empty
    );

    // Not waiting when it comes: the next poll that would wait answers it at once.
    let third = control
        .agents
        .assign_node(&id, "clu_3", "org_customer", 2, &json!({"kind": "ray"}))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let answer = agent(&app, &token, "GET", &wait, json!({})).await;
    assert_eq!(items(&answer), [third.as_str()]);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t0.elapsed()
    );
}

on_both_engines!(a_device_is_available_again_only_when_its_last_node_is_released);

/// GPUs come back node by node: a device sharing its GPUs between two nodes stays busy while
/// either holds some, becomes available with the second release (one event, its reason naming
/// that node), and a release said twice gives nothing back twice.
async fn a_device_is_available_again_only_when_its_last_node_is_released(b: Backend) {
    let (app, s, id, token) = staked_rig(b).await;
    let control = &app.server.state.control;
    let spec = json!({"kind": "container", "image": "busybox"});
    let first = control
        .agents
        .assign_node(&id, "clu_a", "org_customer", 3, &spec)
        .await
        .unwrap();
    let second = control
        .agents
        .assign_node(&id, "clu_b", "org_customer", 5, &spec)
        .await
        .unwrap();
    let release = |node: String| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            agent(
                app,
                token,
                "POST",
                &format!("/agent/v1/devices/{id}/nodes/{node}/status"),
                json!({"status": "released"}),
            )
            .await
        }
    };
    let path = format!("/v1/devices/{id}");
    let device = || app.get(&path, &s.access);

    assert_eq!(release(first.clone()).await.status, 204);
    let d = device().await;
    assert_eq!(d.body["status"], "busy", "{}", d.text);
    assert_eq!(d.body["gpus_free"], 3);
    // Said again (an agent's retry): nothing more comes back.
    assert_eq!(release(first.clone()).await.status, 204);
    assert_eq!(device().await.body["gpus_free"], 3);

    assert_eq!(release(second.clone()).await.status, 204);
    let d = device().await;
    assert_eq!(d.body["status"], "available", "{}", d.text);
    assert_eq!(d.body["gpus_free"], 8);
    assert_eq!(release(second.clone()).await.status, 204);
    assert_eq!(device().await.body["gpus_free"], 8);

    let events = app
        .get(&format!("/v1/devices/{id}/events?limit=50"), &s.access)
        .await;
    let moves: Vec<(&str, &str)> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| matches!(e["to_status"].as_str(), Some("busy" | "available")))
        .map(|e| {
            (
                e["to_status"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    let (assigned, released) = (
        format!("node {first} assigned"),
        format!("node {second} released"),
    );
    assert_eq!(
        moves,
        [
            ("available", moves[0].1),
            ("busy", assigned.as_str()),
            ("available", released.as_str()),
        ],
        "{}",
        events.text
    );
}
