//! A server killed with SIGKILL at each step of paying out (the transfer signed and kept but
//! not sent; sent but not seen finalized; seen finalized but not marked paid), then started
//! again: each payout is paid exactly once (the wallet's token balance says so), and the
//! books balance after every kill and restart. On both engines.
//!
//! The killed server is a real separate process: this test binary started again, running the
//! ignored `payout_child_server` entry below, which stops still at the step it is told to and
//! says so, for the test to kill it there.

use std::time::{Duration, Instant};

use iocloud_billing::Currency;
use iocloud_tests::{
    Backend, ChainApp, ChildServer, earn, free_address, ledger_balances, on_both_engines,
    serve_as_child, start_child,
};
use serde_json::json;

/// Run by [`start_child`] in a process of its own; does nothing in a normal test run.
#[test]
#[ignore = "the payout crash test's child server: that test starts this binary again to run it"]
fn payout_child_server() {
    let Ok(chain) = std::env::var("IOCLOUD_CHILD_CHAIN") else {
        return;
    };
    let chain: serde_json::Value = serde_json::from_str(&chain).expect("chain settings");
    let stop_at = std::env::var("IOCLOUD_CHILD_STOP_AT").ok();
    serve_as_child(
        |config| {
            let text = |k: &str| chain[k].as_str().map(str::to_string);
            config.solana_rpc_url = text("rpc");
            config.solana_mint_iosd = text("iosd");
            config.solana_mint_usdc = text("usdc");
            config.solana_mint_io = text("io");
            config.solana_treasury_keypair = text("keypair").map(Into::into);
            config.solana_payout_interval_secs = 1;
        },
        |server| {
            let Some(stop_at) = stop_at else {
                return;
            };
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
        },
    );
}

/// Starts the child server on `db` with the chain's settings, stopping still at `stop_at`.
async fn start(db: &str, chain: &serde_json::Value, stop_at: Option<&str>) -> ChildServer {
    let mut env = vec![("IOCLOUD_CHILD_CHAIN", chain.to_string())];
    if let Some(step) = stop_at {
        env.push(("IOCLOUD_CHILD_STOP_AT", step.to_string()));
    }
    start_child(
        "payout_crash::payout_child_server",
        db,
        &free_address(),
        &env,
        "iocloud-payout-crash-child.log",
    )
    .await
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
        let mut child = start(app.db.url(), &settings, Some(step)).await;
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
        child.kill().await;
        ledger_balances(app).await;
        let row = app.get(&format!("/v1/payouts/{id}"), &s.access).await;
        assert_eq!(row.body["status"], "sent", "killed at {step}: {}", row.text);

        // Started again (no stop): it finds what the killed one left, and pays it once.
        let mut child = start(app.db.url(), &settings, None).await;
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
        child.kill().await;
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
