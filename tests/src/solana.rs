//! A test app on the crypto rail: the server started with Solana settings pointing at the
//! LiteSVM peer (`IOCLOUD_TEST_SOLANA_URL`), with mints of its own (so tests sharing the peer
//! never see each other's money), a funded treasury and a payer holding every token.

use serde_json::{Value, json};

use crate::{Backend, TestApp};

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
        let mint = |decimals: u8| {
            let peer = peer.clone();
            async move {
                peer.control("create_mint", json!({ "decimals": decimals }))
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

    pub async fn stop(self) {
        self.app.stop().await;
    }
}
