//! Settlements that meet: many clusters ended at once, and deletes racing the reconciler over
//! the same cluster. Every hold is settled once, to the micro-unit.

use std::time::Duration;

use iocloud_tests::{
    Backend, Fleet, Session, TestApp, balance, create, fleet, frankfurt, kinds, ledger_balances,
    micros, on_both_engines, units, wait_status,
};
use serde_json::{Value, json};

/// The organisation's holds (`GET /v1/holds`) that are not settled, or whose captured and
/// released amounts do not add up to what they held, to the micro-unit.
async fn holds_unsettled(app: &TestApp, s: &Session) -> Vec<Value> {
    app.items("/v1/holds", &s.access)
        .await
        .into_iter()
        .filter(|h| {
            let m = |k: &str| micros(h[k].as_str().unwrap());
            h["status"] != "settled" || m("captured") + m("released") != m("amount")
        })
        .collect()
}

on_both_engines!(clusters_ended_together_settle_together);

/// Many clusters created and terminated at once: a new organisation's first creates all count
/// against its quota, and settlements that arrive together (done in batches, one posting per
/// account) account for every micro-unit: each hold captured plus released is what it held,
/// providers' earnings and the platform's fees are what the usage lines say, and every
/// record is settled.
async fn clusters_ended_together_settle_together(b: Backend) {
    use futures::future::join_all;
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(4), true, |_| {}).await;
    let creates = (0..12).map(|i| {
        app.post(
            "/v1/clusters",
            Some(&s.access),
            json!({"name": format!("batch-{i}"), "kind": "container", "image": "busybox",
                   "gpu_model": "h100-sxm", "gpu_count": 2, "duration_hours": 1}),
        )
    });
    let created = join_all(creates).await;
    assert!(
        created.iter().all(|c| c.status == 201),
        "{:?}",
        created.iter().map(|c| &c.text).collect::<Vec<_>>()
    );
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["clusters_in_use"], 12, "{}", quota.text);
    assert_eq!(quota.body["gpus_in_use"], 24);
    let ids: Vec<String> = created
        .iter()
        .map(|c| c.body["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        wait_status(&app, &s, id, "running").await;
    }
    // Let them run a moment, so there is something to charge.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/clusters/{id}")).collect();
    let deletes = paths.iter().map(|path| app.delete(path, &s.access));
    let gone = join_all(deletes).await;
    for g in &gone {
        assert_eq!(g.status, 200, "{}", g.text);
        assert_eq!(g.body["status"], "terminated", "{}", g.text);
        assert!(kinds(&g.body).ends_with(&["terminated".to_string()]));
    }
    let sum = |sql: String| {
        let app = &app;
        async move { app.count(&sql).await }
    };
    assert_eq!(
        holds_unsettled(&app, &s).await,
        Vec::<Value>::new(),
        "every hold settled, to the micro-unit"
    );
    assert_eq!(
        sum("SELECT COUNT(*) FROM usage_records WHERE NOT settled OR ended_at IS NULL OR accrued_until <> ended_at".into()).await,
        0,
        "every record charged to its end"
    );
    let captured: i64 = app
        .items("/v1/holds", &s.access)
        .await
        .iter()
        .map(|h| micros(h["captured"].as_str().unwrap()))
        .sum();
    let billed =
        sum("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM usage_lines".into()).await;
    let earned =
        sum("SELECT CAST(COALESCE(SUM(earned), 0) AS BIGINT) FROM usage_lines".into()).await;
    assert!(captured > 0, "twelve clusters ran a little");
    assert_eq!(captured, billed, "the lines say what was captured");
    let account = |kind: &str| {
        format!(
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts WHERE kind = '{kind}' AND currency = 'USD'"
        )
    };
    assert_eq!(sum(account("provider_earnings")).await, earned);
    assert_eq!(sum(account("platform_revenue")).await, captured - earned);
    let (available, held) = balance(&app, &s, "USD").await;
    assert_eq!(held, 0);
    assert_eq!(units(1000) - available, captured);
    let quota = app.get("/v1/quota", &s.access).await;
    assert_eq!(quota.body["clusters_in_use"], 0);
    ledger_balances(&app).await;
}

on_both_engines!(a_cluster_settled_by_its_delete_and_the_reconciler_at_once_settles_once);

/// Each delete races reconcile passes over the same cluster: both settle it from the row they
/// read, often in one batch, where the one that loses rolls the batch back and the rest go
/// again. Every cluster is settled once: one `terminated` event, its hold captured plus
/// released to the micro-unit, the ledger balanced.
async fn a_cluster_settled_by_its_delete_and_the_reconciler_at_once_settles_once(b: Backend) {
    use futures::future::join_all;
    let Fleet {
        app, customer: s, ..
    } = fleet(b, frankfurt(4), true, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let spec = json!({"name": format!("raced-{i}"), "kind": "container", "image": "busybox",
                          "gpu_model": "h100-sxm", "gpu_count": 2, "duration_hours": 1});
        ids.push(create(&app, &s, spec).await);
    }
    for id in &ids {
        wait_status(&app, &s, id, "running").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (app, s, control) = (&app, &s, &app.server.state.control);
    let races = ids.iter().map(|id| async move {
        let path = format!("/v1/clusters/{id}");
        let delete = app.delete(&path, &s.access);
        let reconciles = async {
            for _ in 0..20 {
                let _ = join_all((0..3).map(|_| control.clusters.reconcile(id))).await;
            }
        };
        let (gone, ()) = tokio::join!(delete, reconciles);
        gone
    });
    for gone in join_all(races).await {
        assert_eq!(gone.status, 200, "{}", gone.text);
    }
    for id in &ids {
        let c = wait_status(app, s, id, "terminated").await;
        let terminated = kinds(&c).iter().filter(|k| *k == "terminated").count();
        assert_eq!(terminated, 1, "{}", c);
    }
    assert_eq!(
        holds_unsettled(app, s).await,
        Vec::<Value>::new(),
        "every hold settled once, to the micro-unit"
    );
    let (_, held) = balance(app, s, "USD").await;
    assert_eq!(held, 0);
    ledger_balances(app).await;
}
