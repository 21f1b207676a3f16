//! A test app on the crypto rail: the server started with Solana settings pointing at the
//! LiteSVM peer (`IOCLOUD_TEST_SOLANA_URL`), with mints of its own (so tests sharing the peer
//! never see each other's money), a funded treasury and a payer holding every token.

use iocloud_billing::ledger::NewTransaction;
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, Posting, TransactionKind};
use serde_json::{Value, json};
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::{Backend, Session, TestApp};

/// The base URL of the Solana peer (`IOCLOUD_TEST_SOLANA_URL`, which
/// `infra/scripts/services.sh` starts and prints); otherwise the test is skipped.
pub fn solana_url() -> Option<String> {
    match std::env::var("IOCLOUD_TEST_SOLANA_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_string()),
        _ => {
            eprintln!("IOCLOUD_TEST_SOLANA_URL is not set: skipping the Solana run");
            None
        }
    }
}

/// The server on the crypto rail, and the peer's controls.
pub struct ChainApp {
    pub app: TestApp,
    pub peer: Peer,
    pub treasury: String,
    /// (IOSD, USDC, IO) mints: 6, 6 and 9 decimals.
    pub iosd: String,
    pub usdc: String,
    pub io: String,
    /// A wallet holding 1,000,000 of each, which pays deposits.
    pub payer: String,
    /// The treasury's keypair file, for another server process on the same chain.
    pub keypair: std::path::PathBuf,
    _keypair_dir: tempfile::TempDir,
}

/// The Solana peer's test controls (`/_control/…`).
#[derive(Clone)]
pub struct Peer {
    pub url: String,
    http: reqwest::Client,
}

impl Peer {
    pub async fn control(&self, name: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}/_control/{name}", self.url))
            .json(&body)
            .send()
            .await
            .expect("the Solana peer answers");
        let status = answer.status();
        let body: Value = answer.json().await.expect("JSON");
        assert!(status.is_success(), "{name}: {status} {body}");
        body
    }

    /// Moves the clock on by `slots` (33 finalize what came before).
    pub async fn advance(&self, slots: u64) {
        self.control("advance", json!({ "slots": slots })).await;
    }

    /// A transfer of `amount` base units of `mint` from a wallet the peer holds.
    pub async fn transfer(&self, body: Value) -> Value {
        self.control("transfer", body).await
    }

    /// `owner`'s balance of `mint` in base units, at `commitment`.
    pub async fn balance(&self, owner: &str, mint: &str, commitment: &str) -> u64 {
        let b = self
            .control(
                "token_balance",
                json!({"owner": owner, "mint": mint, "commitment": commitment}),
            )
            .await;
        b["amount"].as_str().map_or_else(
            || b["amount"].as_u64().unwrap_or(0),
            |a| a.parse().unwrap_or(0),
        )
    }
}

impl ChainApp {
    /// `None` (the test says it is skipped) when no Solana peer is configured.
    pub async fn spawn(backend: Backend) -> Option<ChainApp> {
        let url = solana_url()?;
        let peer = Peer {
            url,
            http: reqwest::Client::new(),
        };
        let treasury = peer.control("keypair", json!({})).await;
        let payer = peer.control("keypair", json!({})).await["pubkey"]
            .as_str()
            .unwrap()
            .to_string();
        // The peer's mint authority may also freeze accounts (a recipient that cannot
        // receive, for payouts that fail on chain).
        let authority = peer.control("state", json!({})).await["mintAuthority"].clone();
        let mint = |decimals: u8| {
            let peer = peer.clone();
            let authority = authority.clone();
            async move {
                peer.control(
                    "create_mint",
                    json!({ "decimals": decimals, "freeze_authority": authority }),
                )
                .await["mint"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        let (iosd, usdc, io) = (mint(6).await, mint(6).await, mint(9).await);
        for (m, units) in [
            (&iosd, 1_000_000_000_000u64),
            (&usdc, 1_000_000_000_000),
            (&io, 1_000_000_000_000_000),
        ] {
            peer.control(
                "mint_to",
                json!({"mint": m, "owner": payer, "amount": units.to_string()}),
            )
            .await;
        }
        // The server reads the mints at `confirmed` when it starts.
        peer.advance(2).await;
        let dir = tempfile::tempdir().unwrap();
        let keypair = dir.path().join("treasury.json");
        std::fs::write(&keypair, treasury["secretKey"].to_string()).unwrap();
        let (rpc, i, u, o, k) = (
            peer.url.clone(),
            iosd.clone(),
            usdc.clone(),
            io.clone(),
            keypair.clone(),
        );
        let app = TestApp::spawn_with(backend, move |c| {
            c.solana_rpc_url = Some(rpc);
            c.solana_mint_iosd = Some(i);
            c.solana_mint_usdc = Some(u);
            c.solana_mint_io = Some(o);
            c.solana_treasury_keypair = Some(k);
        })
        .await;
        Some(ChainApp {
            app,
            peer,
            treasury: treasury["pubkey"].as_str().unwrap().to_string(),
            iosd,
            usdc,
            io,
            payer,
            keypair,
            _keypair_dir: dir,
        })
    }

    /// Pays `amount` base units of `mint` to the treasury carrying `reference`.
    pub async fn pay(&self, mint: &str, amount: u64, reference: Option<&str>) -> Value {
        let references: Vec<&str> = reference.into_iter().collect();
        self.peer
            .transfer(json!({
                "from": self.payer, "mint": mint, "to": self.treasury,
                "amount": amount.to_string(), "references": references,
            }))
            .await
    }

    /// One watcher pass.
    pub async fn watch(&self) -> iocloud_control::deposits::WatchPass {
        self.app
            .server
            .state
            .control
            .deposits
            .watch()
            .await
            .expect("a watcher pass")
    }

    /// One pass of the payout sender.
    pub async fn send(&self) -> iocloud_control::payouts::SendPass {
        self.app
            .server
            .state
            .control
            .payouts
            .send_pass()
            .await
            .expect("a sender pass")
    }

    /// The next time payout `id`'s transfer is signed, the node drops it `after_slots` after
    /// it lands (seen processed, then confirmed, then gone with its fork); later transfers,
    /// and the same bytes sent again, land.
    pub fn drop_payout_once(&self, id: &str, after_slots: u64) {
        let url = self.peer.url.clone();
        let id = id.to_string();
        let done = std::sync::atomic::AtomicBool::new(false);
        self.app
            .server
            .state
            .control
            .payouts
            .observe(std::sync::Arc::new(move |step, payout, signature| {
                if step == iocloud_control::payouts::PayoutStep::Signed
                    && payout == id
                    && !done.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    blocking_control(
                        &url,
                        "drop",
                        &json!({"signature": signature, "after_slots": after_slots}),
                    );
                }
            }));
    }

    /// Mints `units` base units of `mint` into the treasury's token account, and moves the
    /// clock on until that is confirmed (the sender reads the treasury at `confirmed`).
    pub async fn fund_treasury(&self, mint: &str, units: u64) {
        self.peer
            .control(
                "mint_to",
                json!({"mint": mint, "owner": self.treasury, "amount": units.to_string()}),
            )
            .await;
        self.peer.advance(2).await;
    }

    /// Proves a new wallet for the session's organisation; answers its id and address.
    pub async fn prove_wallet(&self, s: &Session) -> (String, String) {
        let wallet = Keypair::new();
        let address = wallet.pubkey().to_string();
        let c = self
            .app
            .post(
                "/v1/payouts/wallets/challenges",
                Some(&s.access),
                json!({ "address": address }),
            )
            .await;
        assert_eq!(c.status, 201, "{}", c.text);
        let signature = wallet.sign_message(c.body["message"].as_str().unwrap().as_bytes());
        let w = self
            .app
            .post(
                "/v1/payouts/wallets",
                Some(&s.access),
                json!({"challenge_id": c.body["id"], "signature": signature.to_string()}),
            )
            .await;
        assert_eq!(w.status, 201, "{}", w.text);
        (w.body["id"].as_str().unwrap().to_string(), address)
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}

/// Gives a provider organisation `amount` of earnings (as settling its devices' usage would),
/// out of the promotions account.
pub async fn earn(app: &TestApp, org_id: &str, amount: &str, currency: Currency) {
    let amount = Money::parse(amount, currency).expect("an amount");
    app.server
        .state
        .control
        .ledger
        .post(&NewTransaction {
            external_ref: format!("test-earnings:{org_id}:{}", crate::rand_suffix()),
            kind: TransactionKind::Capture,
            org_id: Some(org_id.to_string()),
            memo: "earnings for a test".into(),
            postings: Posting::transfer(
                AccountRef::platform(AccountKind::Promotions, currency),
                AccountRef::org(org_id, AccountKind::ProviderEarnings, currency),
                amount,
            )
            .unwrap()
            .to_vec(),
        })
        .await
        .expect("earnings posted");
}

/// A peer control from code that may not wait on a future (the sender's step observer): plain
/// HTTP/1.1 over a socket.
fn blocking_control(url: &str, name: &str, body: &Value) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(address).expect("the Solana peer");
    write!(
        stream,
        "POST /_control/{name} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{name}: {answer}"
    );
}
