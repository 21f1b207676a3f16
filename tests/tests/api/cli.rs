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
    // Money from the command line: balances, the month's usage and invoice.
    assert_eq!(run(with(&["billing", "balance"])).await, 0);
    assert_eq!(run(with(&["billing", "usage"])).await, 0);
    assert_eq!(
        run(with(&["billing", "usage", "--by", "day", "-o", "json"])).await,
        0
    );
    assert_eq!(run(with(&["billing", "invoice"])).await, 0);
    assert_eq!(run(with(&["billing", "invoice", "2026-13"])).await, 4);
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

/// Run by [`a_reader_that_leaves_early_ends_the_cli_quietly`] in a process of its own, whose
/// standard output is a pipe its reader closes; does nothing in a normal test run.
#[test]
#[ignore = "the pipe test's child: that test starts this binary again to run it"]
fn cli_child() {
    let (Ok(server), Ok(key)) = (
        std::env::var("IOCLOUD_CHILD_SERVER"),
        std::env::var("IOCLOUD_CHILD_KEY"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    iocloud_api::ctl::quiet_when_the_reader_leaves();
    // The test harness has printed its first line; the parent closes the pipe once it reads
    // it, well within this.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let code = rt.block_on(iocloud(&[
        "billing",
        "balance",
        "--server",
        &server,
        "--api-key",
        &key,
    ]));
    std::process::exit(code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_leaves_early_ends_the_cli_quietly() {
    let app = iocloud_tests::TestApp::spawn(Backend::Sqlite).await;
    let s = app.signup("owner@example.com", "Pipes").await;
    let (_, key) = app.api_key(&s.access, &["read"]).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "cli::cli_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("IOCLOUD_CHILD_SERVER", &app.base)
        .env("IOCLOUD_CHILD_KEY", &key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the test binary starts again");
    // The reader takes the harness's first line and goes away before the command prints.
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("running") {
                break;
            }
        }
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
