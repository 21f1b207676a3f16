//! The hourly proof of a listed device that serves no rental: one challenge an hour, answered
//! once, and judged late, wrong, short of VRAM or passed; refused to a device that is not
//! listed or serves a rental. And the heartbeat's CPU utilisation and running nodes, checked.

use iocloud_control::providers::verification;
use iocloud_tests::{Answer, Backend, TestApp, agent, beat, on_both_engines, rig, staked_rig};
use serde_json::{Value, json};

on_both_engines!(
    a_listed_device_proves_itself_once_an_hour,
    only_an_idle_listed_device_proves_itself,
    heartbeats_tell_cpu_and_nodes_within_range,
);

/// The MiB of VRAM an H100's GPU has.
const H100_MIB: i64 = 80 * 1024;

async fn ask(app: &TestApp, token: &str, id: &str) -> Answer {
    agent(
        app,
        token,
        "POST",
        &format!("/agent/v1/devices/{id}/proof"),
        json!({}),
    )
    .await
}

async fn answer(app: &TestApp, token: &str, id: &str, body: Value) -> Answer {
    agent(
        app,
        token,
        "POST",
        &format!("/agent/v1/devices/{id}/proof/answer"),
        body,
    )
    .await
}

/// Asks for this hour's proof: (hour, nonce, the right answer).
async fn asked_and_solved(app: &TestApp, token: &str, id: &str) -> (i64, String, u64) {
    let c = ask(app, token, id).await;
    assert_eq!(c.status, 200, "{}", c.text);
    let hour = c.body["hour"].as_i64().unwrap();
    let nonce = c.body["nonce"].as_str().unwrap().to_string();
    let difficulty = c.body["difficulty"].as_u64().unwrap() as u32;
    let n = nonce.clone();
    let right = tokio::task::spawn_blocking(move || verification::solve(&n, difficulty))
        .await
        .unwrap();
    (hour, nonce, right)
}

/// Each of the rig's 8 GPUs with the model's VRAM.
fn full_vram() -> Vec<i64> {
    vec![H100_MIB; 8]
}

/// The stored outcome of the device's proof.
async fn stored_outcome(app: &TestApp, id: &str) -> String {
    app.scalar("SELECT outcome FROM device_proofs WHERE device_id = $1", id)
        .await
}

/// A new hour, as far as the device's proofs go: the last one is gone.
async fn next_hour(app: &TestApp, id: &str) {
    app.exec("DELETE FROM device_proofs WHERE device_id = $1", id)
        .await;
}

async fn a_listed_device_proves_itself_once_an_hour(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;

    // A challenge sized to the GPU class, with the model's VRAM.
    let c = ask(&app, &token, &id).await;
    assert_eq!(c.status, 200, "{}", c.text);
    let now_hour = iocloud_db::time::now_micros() / 3_600_000_000;
    assert!(
        (now_hour - 1..=now_hour).contains(&c.body["hour"].as_i64().unwrap()),
        "{}",
        c.text
    );
    assert_eq!(c.body["difficulty"], 18, "an H100 is datacenter class");
    assert_eq!(c.body["vram_gib"], 80);
    assert!(c.body["deadline"].is_string(), "{}", c.text);
    // Asked again in the hour: the same challenge.
    let again = ask(&app, &token, &id).await;
    assert_eq!(again.status, 200, "{}", again.text);
    if again.body["hour"] == c.body["hour"] {
        assert_eq!(again.body["nonce"], c.body["nonce"]);
    }

    // Right, in time, every GPU with its VRAM (one a little under: drivers keep some): passed.
    let (hour, nonce, right) = asked_and_solved(&app, &token, &id).await;
    let mut vram = full_vram();
    vram[5] = H100_MIB * 96 / 100;
    let body = json!({"hour": hour, "nonce": nonce, "answer": right, "vram_mib": vram});
    let passed = answer(&app, &token, &id, body.clone()).await;
    assert_eq!(passed.status, 200, "{}", passed.text);
    assert_eq!(passed.body["hour"], hour);
    assert_eq!(passed.body["outcome"], "passed");
    assert!(passed.body["detail"].is_null(), "{}", passed.text);
    assert_eq!(stored_outcome(&app, &id).await, "passed");
    // Answered once: again (even wrongly) changes nothing, and the hour asks for no more.
    answer(&app, &token, &id, body.clone())
        .await
        .assert_problem(409, "proof_answered");
    let mut wrong_again = body.clone();
    wrong_again["answer"] = json!(right + 1);
    answer(&app, &token, &id, wrong_again)
        .await
        .assert_problem(409, "proof_answered");
    assert_eq!(stored_outcome(&app, &id).await, "passed");
    let asked = ask(&app, &token, &id).await;
    if asked.status == 409 {
        asked.assert_problem(409, "proof_answered");
    } else {
        // The hour turned meanwhile: the new hour's proof.
        assert_ne!(asked.body["hour"], hour, "{}", asked.text);
    }

    // Another nonce, or an hour that was never asked: no challenge.
    next_hour(&app, &id).await;
    let (hour, nonce, right) = asked_and_solved(&app, &token, &id).await;
    answer(
        &app,
        &token,
        &id,
        json!({"hour": hour, "nonce": "0123", "answer": right, "vram_mib": full_vram()}),
    )
    .await
    .assert_problem(409, "no_challenge");
    answer(
        &app,
        &token,
        &id,
        json!({"hour": hour - 5, "nonce": nonce, "answer": right, "vram_mib": full_vram()}),
    )
    .await
    .assert_problem(409, "no_challenge");
    // VRAM that cannot be: refused, and the proof still open.
    for vram in [
        json!(vec![H100_MIB; 65]),
        json!([
            H100_MIB, -1, H100_MIB, H100_MIB, H100_MIB, H100_MIB, H100_MIB, H100_MIB
        ]),
        json!([
            1_048_577, H100_MIB, H100_MIB, H100_MIB, H100_MIB, H100_MIB, H100_MIB, H100_MIB
        ]),
    ] {
        answer(
            &app,
            &token,
            &id,
            json!({"hour": hour, "nonce": nonce, "answer": right, "vram_mib": vram}),
        )
        .await
        .assert_problem(422, "validation_failed");
    }
    // A wrong answer.
    let wrong = (0..)
        .find(|n| !verification::check(&nonce, 18, *n))
        .unwrap();
    let a = answer(
        &app,
        &token,
        &id,
        json!({"hour": hour, "nonce": nonce, "answer": wrong, "vram_mib": full_vram()}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["outcome"], "wrong_answer");
    assert_eq!(a.body["detail"], "the proof of work's answer was wrong");
    assert_eq!(stored_outcome(&app, &id).await, "wrong_answer");

    // A GPU short of its VRAM: named, with what it measured and what the model has.
    next_hour(&app, &id).await;
    let (hour, nonce, right) = asked_and_solved(&app, &token, &id).await;
    let mut vram = full_vram();
    vram[3] = 40 * 1024;
    let a = answer(
        &app,
        &token,
        &id,
        json!({"hour": hour, "nonce": nonce, "answer": right, "vram_mib": vram}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["outcome"], "vram_short");
    assert_eq!(
        a.body["detail"],
        "GPU 3 measured 40960 MiB; the NVIDIA H100 SXM has 81920 MiB"
    );
    assert_eq!(stored_outcome(&app, &id).await, "vram_short");

    // Fewer GPUs measured than the device has: short too.
    next_hour(&app, &id).await;
    let (hour, nonce, right) = asked_and_solved(&app, &token, &id).await;
    let a = answer(
        &app,
        &token,
        &id,
        json!({"hour": hour, "nonce": nonce, "answer": right, "vram_mib": vec![H100_MIB; 7]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["outcome"], "vram_short");
    assert_eq!(a.body["detail"], "7 GPUs measured; the device has 8");

    // Right but after the deadline: late, with by how much.
    next_hour(&app, &id).await;
    let (hour, nonce, right) = asked_and_solved(&app, &token, &id).await;
    app.exec(
        "UPDATE device_proofs SET deadline = issued_at - 2000000 WHERE device_id = $1",
        &id,
    )
    .await;
    let a = answer(
        &app,
        &token,
        &id,
        json!({"hour": hour, "nonce": nonce, "answer": right, "vram_mib": full_vram()}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["outcome"], "late");
    let detail = a.body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("answered ") && detail.ends_with(" s after its deadline"),
        "{detail}"
    );
    assert_eq!(stored_outcome(&app, &id).await, "late");
}

async fn only_an_idle_listed_device_proves_itself(b: Backend) {
    let (app, s, id, token) = staked_rig(b).await;
    // A device still to be verified: not listed, so nothing to prove.
    let created = app.post("/v1/devices", Some(&s.access), rig("rig-2")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let pending_id = created.body["id"].as_str().unwrap().to_string();
    let pending_token = created.body["token"].as_str().unwrap().to_string();
    let refused = ask(&app, &pending_token, &pending_id).await;
    refused.assert_problem(409, "proof_not_needed");
    assert_eq!(
        refused.body["detail"],
        "only listed devices prove themselves each hour"
    );
    // Another device's id with a valid token: not found, asked or answered.
    ask(&app, &token, &pending_id)
        .await
        .assert_problem(404, "not_found");
    answer(
        &app,
        &token,
        &pending_id,
        json!({"hour": 1, "nonce": "x", "answer": 1, "vram_mib": []}),
    )
    .await
    .assert_problem(404, "not_found");

    // A device serving a rental is proved by its nodes' reports.
    app.server
        .state
        .control
        .agents
        .assign_node(
            &id,
            "clu_a",
            "org_customer",
            1,
            &json!({"kind": "container", "image": "busybox"}),
        )
        .await
        .unwrap();
    let serving = ask(&app, &token, &id).await;
    serving.assert_problem(409, "proof_not_needed");
    assert_eq!(
        serving.body["detail"],
        "a device serving a rental proves itself by its nodes' reports"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM device_proofs WHERE device_id IN ('{id}', '{pending_id}')"
        ))
        .await,
        0,
        "no proof was made"
    );
}

async fn heartbeats_tell_cpu_and_nodes_within_range(b: Backend) {
    let (app, _, id, token) = staked_rig(b).await;
    let hb = format!("/agent/v1/devices/{id}/heartbeat");
    let with = |field: &str, value: i64| {
        let mut body = beat(8);
        body[field] = json!(value);
        body
    };
    for (field, value) in [
        ("cpu_utilization_pct", 101),
        ("cpu_utilization_pct", -1),
        ("running_nodes", -1),
        ("running_nodes", 9),
    ] {
        let refused = agent(&app, &token, "POST", &hb, with(field, value)).await;
        refused.assert_problem(422, "validation_failed");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    let mut fine = beat(8);
    fine["cpu_utilization_pct"] = json!(4);
    fine["running_nodes"] = json!(0);
    let ok = agent(&app, &token, "POST", &hb, fine).await;
    assert_eq!(ok.status, 202, "{}", ok.text);
    // Agents that know neither field are still heard.
    let old = agent(&app, &token, "POST", &hb, beat(8)).await;
    assert_eq!(old.status, 202, "{}", old.text);
}
