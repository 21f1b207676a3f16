//! A server killed with SIGKILL at each step of paying out (the transfer signed and kept but
//! not sent; sent but not seen finalized; seen finalized but not marked paid), then started
//! again: each payout is paid exactly once (the wallet's token balance says so), and the
//! books balance after every kill and restart. On both engines.
//!
//! The killed server is a real separate process: this test binary started again, running the
//! ignored `payout_child_server` entry below, which stops still at the step it is told to and
//! says so, for the test to kill it there.

use std::process::Stdio;
use std::time::{Duration, Instant};

use iocloud_billing::Currency;
use iocloud_tests::{Backend, ChainApp, earn, ledger_balances, on_both_engines};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Run by [`start_child`] in a process of its own; does nothing in a normal test run.
#[test]
#[ignore = "the payout crash test's child server: that test starts this binary again to run it"]
fn payout_child_server() {
    let (Ok(db), Ok(listen), Ok(chain)) = (
        std::env::var("IOCLOUD_CHILD_DB"),
        std::env::var("IOCLOUD_CHILD_LISTEN"),
        std::env::var("IOCLOUD_CHILD_CHAIN"),
    ) else {
        return;
    };
    let chain: serde_json::Value = serde_json::from_str(&chain).expect("chain settings");
    let stop_at = std::env::var("IOCLOUD_CHILD_STOP_AT").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let _telemetry = iocloud_api::telemetry::init(false, None);
        let mut config = iocloud_api::Config::for_tests(&db);
        config.listen = listen.parse().expect("an address");
        let text = |k: &str| chain[k].as_str().map(str::to_string);
        config.solana_rpc_url = text("rpc");
        config.solana_mint_iosd = text("iosd");
        config.solana_mint_usdc = text("usdc");
        config.solana_mint_io = text("io");
        config.solana_treasury_keypair = text("keypair").map(Into::into);
        config.solana_payout_interval_secs = 1;
        let server = iocloud_api::Server::start(config)
            .await
            .expect("the child server starts");
        if let Some(stop_at) = stop_at {
            server
                .state
                .control
                .payouts
                .observe(std::sync::Arc::new(move |step, id, _| {
                    if step.as_str() == stop_at {
                        println!("IOCLOUD_CHILD_STOPPED {id}");
                        // Still until killed: nothing after this step runs.
                        loop {
                            std::thread::sleep(Duration::from_secs(60));
                        }
                    }
                }));
        }
        println!("IOCLOUD_CHILD_READY {}", server.url());
        std::future::pending::<()>().await;
    });
}

/// The child and the lines it prints after it is ready.
struct Child {
    process: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

async fn start_child(db: &str, chain: &serde_json::Value, stop_at: Option<&str>) -> Child {
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "payout_crash::payout_child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IOCLOUD_CHILD_DB", db)
        .env("IOCLOUD_CHILD_LISTEN", &listen)
        .env("IOCLOUD_CHILD_CHAIN", chain.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::temp_dir().join("iocloud-payout-crash-child.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .kill_on_drop(true);
    if let Some(step) = stop_at {
        command.env("IOCLOUD_CHILD_STOP_AT", step);
    }
    let mut process = command.spawn().expect("the test binary starts again");
    let mut out = BufReader::new(process.stdout.take().unwrap()).lines();
    let (send, mut lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = out.next_line().await {
            let _ = send.send(line);
        }
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.recv().await {
            if line.contains("IOCLOUD_CHILD_READY") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the child server did not start");
    Child { process, lines }
}

on_both_engines!(payouts_survive_sigkill_at_every_step);

async fn payouts_survive_sigkill_at_every_step(b: Backend) {
    let Some(chain) = ChainApp::spawn(b).await else {
        return;
    };
    let app = &chain.app;
    let s = app.signup("owner@example.com", "GPU Provider").await;
    let (_, address) = chain.prove_wallet(&s).await;
    earn(app, &s.org_id, "1000", Currency::Iosd).await;
    chain.fund_treasury(&chain.iosd, 1_000_000_000_000).await;
    let settings = json!({
        "rpc": chain.peer.url, "iosd": chain.iosd, "usdc": chain.usdc, "io": chain.io,
        "keypair": chain.keypair.to_str().unwrap(),
    });

    let mut paid_so_far = 0u64;
    for (i, step) in ["signed", "sent", "finalized"].into_iter().enumerate() {
        let amount = 10 * (i as u64 + 1);
        let p = app
            .post(
                "/v1/payouts",
                Some(&s.access),
                json!({"amount": amount.to_string(), "currency": "IOSD"}),
            )
            .await;
        assert_eq!(p.status, 201, "{}", p.text);
        let id = p.body["id"].as_str().unwrap().to_string();

        // The child pays it, and stands still at `step`: killed there.
        let mut child = start_child(app.db.url(), &settings, Some(step)).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "the child never reached {step}");
            // The clock moves on, so that a transfer sent is finalized.
            chain.peer.advance(5).await;
            match tokio::time::timeout(Duration::from_millis(200), child.lines.recv()).await {
                Ok(Some(line)) if line.contains("IOCLOUD_CHILD_STOPPED") => {
                    assert!(line.ends_with(&id), "{line}");
                    break;
                }
                Ok(None) => panic!("the child ended before {step}"),
                _ => {}
            }
        }
        child.process.start_kill().expect("SIGKILL");
        let _ = child.process.wait().await;
        ledger_balances(app).await;
        let row = app.get(&format!("/v1/payouts/{id}"), &s.access).await;
        assert_eq!(row.body["status"], "sent", "killed at {step}: {}", row.text);

        // Started again (no stop): it finds what the killed one left, and pays it once.
        let mut child = start_child(app.db.url(), &settings, None).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "not paid after a kill at {step}");
            chain.peer.advance(10).await;
            let row = app.get(&format!("/v1/payouts/{id}"), &s.access).await;
            if row.body["status"] == "paid" {
                // Signed again only when the kept bytes expired unsent (a slow restart after
                // a kill before sending); sent bytes are found, never signed again.
                let most = if step == "signed" { 2 } else { 1 };
                let attempts = row.body["attempts"].as_i64().unwrap();
                assert!((1..=most).contains(&attempts), "{}", row.text);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        child.process.start_kill().expect("SIGKILL");
        let _ = child.process.wait().await;
        paid_so_far += amount * 1_000_000;
        chain.peer.advance(40).await;
        assert_eq!(
            chain.peer.balance(&address, &chain.iosd, "finalized").await,
            paid_so_far,
            "exactly one payment after a kill at {step}"
        );
        ledger_balances(app).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payouts WHERE status = 'paid'")
            .await,
        3
    );
    chain.stop().await;
}
