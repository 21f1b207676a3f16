//! The `iocloud` command line against a real server: apply a file (asking first), wait for the
//! clusters, apply again without changes, read, extend and destroy; exit codes scripts rely on.

use iocloud_tests::{
    Backend, cluster, fleet, frankfurt, iocloud, kinds, ledger_balances, on_both_engines,
};
use serde_json::Value;

on_both_engines!(the_cli_applies_files_and_says_how_it_went);

async fn the_cli_applies_files_and_says_how_it_went(b: Backend) {
    let f = fleet(b, frankfurt(2), true, |_| {}).await;
    let (app, s) = (&f.app, &f.customer);
    // The organisation's clusters, as its customer lists them.
    let listed = |status: &'static str| async move {
        app.items(&format!("/v1/clusters?status={status}"), &s.access)
            .await
    };
    let versions = || async {
        app.items("/v1/clusters", &s.access)
            .await
            .iter()
            .map(|c| c["resource_version"].as_i64().unwrap())
            .sum::<i64>()
    };
    let (_, key) = app.api_key(&s.access, &["read", "write"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clusters.yaml");
    std::fs::write(
        &file,
        "name: train\nkind: ray\ngpu_model: h100-sxm\ngpu_count: 8\ngpus_per_node: 4\nduration_hours: 2\n\
         ---\nname: web\nkind: container\nimage: ghcr.io/acme/web:1\ngpu_model: h100-sxm\ngpu_count: 4\nduration_hours: 1\nlabels:\n  tier: prod\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let conn = ["--server", app.base.as_str(), "--api-key", key.as_str()];
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|a| a.to_string())
            .chain(conn.iter().map(|a| a.to_string()))
            .collect()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        iocloud(&refs).await
    };

    // Without a terminal and without --yes, nothing is applied.
    let mut args = with(&["apply", "-f"]);
    args.insert(2, path.to_string());
    assert_eq!(run(args.clone()).await, 3);
    assert_eq!(
        app.items("/v1/clusters", &s.access).await,
        Vec::<Value>::new()
    );
    // With --yes: both created, and the command waits until they run.
    let mut yes = args.clone();
    yes.push("--yes".into());
    assert_eq!(run(yes.clone()).await, 0);
    assert_eq!(listed("running").await.len(), 2);
    // Again: the plan is empty and nothing changes.
    let before = versions().await;
    assert_eq!(run(yes.clone()).await, 0);
    assert_eq!(versions().await, before);
    // Reading, listing, events, extending, as text and as JSON.
    assert_eq!(run(with(&["get", "train"])).await, 0);
    assert_eq!(run(with(&["get", "train", "-o", "json"])).await, 0);
    assert_eq!(run(with(&["list"])).await, 0);
    assert_eq!(run(with(&["events", "web"])).await, 0);
    assert_eq!(run(with(&["extend", "web", "--hours", "2"])).await, 0);
    let web = cluster(app, s, "web").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cluster(app, s, &web).await["spec"]["duration_hours"], 3);
    // Refusals: 4 (unknown cluster), 2 (an unreadable file).
    assert_eq!(run(with(&["get", "nope"])).await, 4);
    assert_eq!(
        run(with(&["destroy", "-f", "/nonexistent.yaml", "--yes"])).await,
        2
    );
    // Destroy the file's clusters; following the events of an ended one ends at once.
    let mut destroy = with(&["destroy", "-f"]);
    destroy.insert(2, path.to_string());
    destroy.push("--yes".into());
    assert_eq!(run(destroy.clone()).await, 0);
    assert_eq!(listed("terminated").await.len(), 2);
    assert_eq!(run(with(&["events", "web", "--follow"])).await, 0);
    assert!(kinds(&cluster(app, s, &web).await).contains(&"terminated".to_string()));
    // Destroying again has nothing to do.
    assert_eq!(run(destroy).await, 0);
    ledger_balances(app).await;
}
