//! A server process killed with SIGKILL while clusters are being created and provisioned, then
//! started again: what it had accepted is whole (no GPU booked twice, quota and ledger exact),
//! and the reconciler brings every cluster to running; terminating them all gives everything
//! back.
//!
//! The killed server is a real separate process: this test binary started again, running the
//! ignored `child_server` entry below, which serves on the database and address it is given.

use std::time::{Duration, Instant};

use futures::future::join_all;
use iocloud_api::simulator::{self, SimOptions};
use iocloud_tests::{
    Backend, ChildServer, GPU_BOOKS_WRONG, TestApp, fleet, free_address, ledger_balances, machine,
    on_both_engines, serve_as_child, start_child,
};
use serde_json::json;

/// The quota row says exactly what the live clusters hold.
const QUOTA_WRONG: &str = "SELECT COUNT(*) FROM org_quotas q WHERE q.gpus_in_use <> \
    (SELECT COALESCE(SUM(c.gpus), 0) FROM clusters c WHERE c.org_id = q.org_id AND c.status NOT IN ('terminating', 'terminated', 'failed')) \
    OR q.clusters_in_use <> (SELECT COUNT(*) FROM clusters c WHERE c.org_id = q.org_id AND c.status NOT IN ('terminating', 'terminated', 'failed'))";

/// Run by [`start_child`] in a process of its own; does nothing in a normal test run.
#[test]
#[ignore = "the crash test's child server: that test starts this binary again to run it"]
fn child_server() {
    serve_as_child(|config| config.reconcile_interval_secs = 1, |_| {});
}

/// Starts the child server on `db` at `listen` and waits until it serves.
async fn start(db: &str, listen: &str) -> ChildServer {
    start_child(
        "crash::child_server",
        db,
        listen,
        &[],
        "iocloud-crash-child.log",
    )
    .await
}

on_both_engines!(a_killed_server_restarts_and_converges);

async fn a_killed_server_restarts_and_converges(b: Backend) {
    // The setup server (this process) only takes the setup; it runs no reconcile passes.
    let machines = (0..4)
        .map(|i| machine(&format!("m{i}"), "h100-sxm", 8, "eu-central", "2.00"))
        .collect();
    let f = fleet(b, machines, false, |c| c.reconcile_interval_secs = 0).await;
    let (app, s) = (&f.app, &f.customer);
    let listen = free_address();
    let base = format!("http://{listen}");
    let mut child = start(app.db.url(), &listen).await;
    // The agents talk to the child; nodes take about two seconds to come up.
    simulator::spawn(
        &base,
        f.devices.clone(),
        SimOptions {
            heartbeat_secs: Some(0.5),
            node_ready_secs: 2.0,
            node_failure_rate: 0.0,
            offline_rate: 0.0,
            start_spread_secs: 0.1,
            ..SimOptions::default()
        },
    );

    // Six creates at once (two Ray clusters of 8 and four containers of 4 fit the 32 GPUs);
    // the server is killed as soon as three have been answered.
    let specs: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            if i < 2 {
                json!({"name": format!("ray{i}"), "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8, "gpus_per_node": 4, "duration_hours": 2})
            } else {
                json!({"name": format!("box{i}"), "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 4, "duration_hours": 1})
            }
        })
        .collect();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let creates = specs.iter().map(|spec| {
        let req = app
            .client
            .post(format!("{base}/v1/clusters"))
            .bearer_auth(&s.access)
            .json(spec);
        let answered = answered.clone();
        async move {
            let r = req.send().await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    });
    let kill = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().await;
    };
    let (statuses, ()) = tokio::join!(join_all(creates), kill);
    assert!(
        statuses.iter().all(|s| [201, 0].contains(s)),
        "{statuses:?}"
    );

    // Whatever the dead server had accepted is whole.
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    assert_eq!(app.count(QUOTA_WRONG).await, 0);
    ledger_balances(app).await;
    let made = app.count("SELECT COUNT(*) FROM clusters").await;
    assert!(made >= 3, "{made} clusters made before the kill");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM clusters WHERE status = 'provisioning'")
            .await,
        made,
        "killed mid-provisioning"
    );

    // Started again: the agents reconnect, the reconciler brings every cluster up.
    let mut child = start(app.db.url(), &listen).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while app
        .count("SELECT COUNT(*) FROM clusters WHERE status <> 'running'")
        .await
        > 0
    {
        if Instant::now() > deadline {
            panic!("not all running: {}", describe(app, s, &f.devices).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    assert_eq!(app.count(QUOTA_WRONG).await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM usage_records").await,
        app.count("SELECT COUNT(*) FROM node_assignments WHERE status = 'ready'")
            .await,
        "every ready node metered once"
    );

    // Terminating everything through the restarted server gives it all back.
    let ids: Vec<String> = {
        let page = app.get("/v1/clusters?limit=50", &s.access).await;
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    for id in &ids {
        let r = TestApp::answer(
            app.client
                .delete(format!("{base}/v1/clusters/{id}"))
                .bearer_auth(&s.access)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.body["status"], "terminated", "{}", r.text);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while app
        .count("SELECT CAST(COALESCE(SUM(gpus_free), 0) AS BIGINT) FROM devices")
        .await
        != 32
    {
        assert!(Instant::now() < deadline, "GPUs not all given back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.count(GPU_BOOKS_WRONG).await, 0);
    assert_eq!(app.count(QUOTA_WRONG).await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM holds WHERE status <> 'settled'")
            .await,
        0
    );
    ledger_balances(app).await;
    child.kill().await;
}

/// Each cluster's status, nodes and events, for a failure message.
async fn describe(
    app: &TestApp,
    s: &iocloud_tests::Session,
    devices: &[iocloud_api::simulator::SimDevice],
) -> String {
    let page = app.get("/v1/clusters?limit=50", &s.access).await;
    let mut out = String::new();
    let now = iocloud_db::time::now_micros();
    for d in devices {
        let row = app
            .scalar(
                "SELECT status || ' heard ' || CAST(last_heartbeat_at AS TEXT) || ' free ' || CAST(gpus_free AS TEXT) FROM devices WHERE id = $1",
                &d.id,
            )
            .await;
        out.push_str(&format!("\ndevice {} {row}", d.id));
    }
    out.push_str(&format!("\nnow {}", iocloud_db::time::to_rfc3339(now)));
    for c in page.body["items"].as_array().into_iter().flatten() {
        let full = app
            .get(
                &format!("/v1/clusters/{}", c["id"].as_str().unwrap()),
                &s.access,
            )
            .await
            .body;
        out.push_str(&format!(
            "\n{} {} reconcile nodes: {:?}\n  events: {:?}",
            full["name"],
            full["status"],
            full["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| format!(
                    "{} {} {} on {}",
                    n["role"], n["status"], n["current"], n["device_id"]
                ))
                .collect::<Vec<_>>(),
            full["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        ));
    }
    out
}
