//! `iocloud bench deposits`: the deposit watcher catching up on N finalized Solana Pay deposits
//! waiting on a Solana node, beside two baselines measured in the same run: the node's own
//! `getTransaction` rate from a trivial client with as many reads in flight, and N plain ledger
//! credits between the same kinds of accounts, one after another as the watcher applies them.
//!
//! The node is the test peer (`tests/peers/solana_peer.py`, which `infra/scripts/services.sh`
//! starts): its controls make the mint, the wallets and the N transfers.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use futures::StreamExt;
use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, TransactionKind};
use iocloud_db::db_run;
use iocloud_db::time::now_micros;
use serde_json::{Value, json};

use crate::bench_webhooks::{sign_up, vacuum};
use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct DepositArgs {
    /// Finalized deposits waiting on the node, each with its own intent.
    #[arg(long, default_value_t = 10_000)]
    pub deposits: usize,
    /// The Solana test peer (its JSON-RPC and its `/_control/` routes).
    #[arg(
        long,
        env = "IOCLOUD_BENCH_SOLANA_URL",
        default_value = "http://127.0.0.1:8899"
    )]
    pub solana: String,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// A control of the Solana test peer (`/_control/{name}`); its answer, which must be a success.
pub(crate) async fn peer_control(
    http: &reqwest::Client,
    peer: &str,
    name: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let answer = http
        .post(format!("{peer}/_control/{name}"))
        .json(&body)
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    anyhow::ensure!(status.is_success(), "{name}: {status} {body}");
    Ok(body)
}

/// Reads in flight, for the node's baseline: as many as the watcher keeps.
const IN_FLIGHT: usize = 16;
const PLAIN_ORG: &str = "org_bench_plain";

pub async fn run(args: DepositArgs) -> anyhow::Result<()> {
    let n = args.deposits.max(1);
    let http = reqwest::Client::new();
    let peer = args.solana.trim_end_matches('/').to_string();
    let control = |name: &'static str, body: Value| {
        let (http, peer) = (http.clone(), peer.clone());
        async move { peer_control(&http, &peer, name, body).await }
    };

    // The chain: a mint, a treasury, a payer with enough, and N transfers, each carrying its
    // own reference, finalized.
    let treasury = control("keypair", json!({})).await?;
    let payer = control("keypair", json!({})).await?["pubkey"].clone();
    let mint = control("create_mint", json!({"decimals": 6})).await?["mint"].clone();
    control(
        "mint_to",
        json!({"mint": mint, "owner": payer, "amount": (n as u64 * 1_000_000).to_string()}),
    )
    .await?;
    control("advance", json!({"slots": 2})).await?;
    let keypair = std::env::temp_dir().join(format!(
        "iocloud-bench-treasury-{}.json",
        std::process::id()
    ));
    std::fs::write(&keypair, treasury["secretKey"].to_string())?;

    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    config.rate_limit_per_ip = u32::MAX;
    config.solana_rpc_url = Some(peer.clone());
    config.solana_mint_iosd = mint.as_str().map(str::to_string);
    config.solana_treasury_keypair = Some(keypair.clone());
    let server = Server::start(config).await;
    let _ = std::fs::remove_file(&keypair);
    let server = server?;
    let db = server.state.control.db.clone();
    let org = sign_up(&http, &server.url(), "deposits").await?;

    let made = control(
        "transfers",
        json!({"from": payer, "mint": mint, "to": treasury["pubkey"], "amount": 1_000_000, "count": n}),
    )
    .await?;
    let signatures: Vec<String> = serde_json::from_value(made["signatures"].clone())?;
    let references: Vec<String> = serde_json::from_value(made["references"].clone())?;
    anyhow::ensure!(
        signatures.len() == n && references.len() == n,
        "the peer made {} transfers",
        signatures.len()
    );
    insert_intents(&db, &org, mint.as_str().unwrap_or_default(), &references).await?;
    control("advance", json!({"slots": 40})).await?;

    // The node's own rate: every transaction read once, as the watcher reads them.
    let start = Instant::now();
    let reads = futures::stream::iter(signatures.iter().map(|s| {
        let (http, peer) = (http.clone(), peer.clone());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": [s, {"encoding": "base64", "commitment": "finalized", "maxSupportedTransactionVersion": 0}]});
        async move {
            let answer: Value = http.post(&peer).json(&body).send().await?.json().await?;
            anyhow::ensure!(answer["result"].is_object(), "{answer}");
            Ok::<(), anyhow::Error>(())
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect::<Vec<_>>()
    .await;
    let node_secs = start.elapsed().as_secs_f64();
    reads.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    // The watcher catching up.
    vacuum(&db).await?;
    let deposits = &server.state.control.deposits;
    let start = Instant::now();
    let mut credited = 0;
    while credited < n {
        let pass = deposits.watch().await?;
        anyhow::ensure!(
            pass.credited > 0,
            "a pass credited nothing after {credited}: {pass:?}"
        );
        credited += pass.credited;
    }
    let watch_secs = start.elapsed().as_secs_f64();

    // Plain ledger credits of the same kind, one after another.
    vacuum(&db).await?;
    let ledger = Arc::new(server.state.control.ledger.clone());
    let start = Instant::now();
    for i in 0..n {
        ledger
            .post(&NewTransaction {
                external_ref: format!("bench-plain-deposit-{i}"),
                kind: TransactionKind::Deposit,
                org_id: Some(PLAIN_ORG.into()),
                memo: "plain credit".into(),
                postings: Posting::transfer(
                    AccountRef::platform(AccountKind::ExternalSolana, Currency::Iosd),
                    AccountRef::org(PLAIN_ORG, AccountKind::Available, Currency::Iosd),
                    Money::from_micros(1_000_000, Currency::Iosd),
                )?
                .to_vec(),
            })
            .await?;
    }
    let plain_secs = start.elapsed().as_secs_f64();

    // The checks: each deposit credited once, the books balanced.
    let rows: i64 = db_run!(&db, |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM chain_deposits WHERE status = 'credited' AND org_id = $1"
    )
    .bind(&org)
    .fetch_one(p)
    .await)?;
    let balance = ledger
        .balance(&AccountRef::org(
            &org,
            AccountKind::Available,
            Currency::Iosd,
        ))
        .await?;
    anyhow::ensure!(rows as usize == n, "{rows} deposits credited, {n} paid");
    anyhow::ensure!(
        balance.micros() == n as i64 * 1_000_000,
        "balance {}",
        balance.to_decimal()
    );
    anyhow::ensure!(
        ledger.verify().await?.is_balanced(),
        "the books do not balance"
    );

    let node = n as f64 / node_secs;
    let watcher = n as f64 / watch_secs;
    let plain = n as f64 / plain_secs;
    println!("deposits on {engine}: {n} finalized, {IN_FLIGHT} reads in flight");
    println!("  node getTransaction   {node:>9.0}/s  ({node_secs:.2} s)");
    println!(
        "  watcher credits       {watcher:>9.0}/s  ({watch_secs:.2} s)  ratio to the node {:.2}",
        watcher / node
    );
    println!(
        "  plain ledger credits  {plain:>9.0}/s  ({plain_secs:.2} s)  watcher / plain {:.2}",
        watcher / plain
    );
    println!(
        "  checked: {n} credited once, balance {} IOSD, books balanced",
        balance.to_decimal()
    );
    server.stop().await;
    Ok(())
}

/// One open intent per reference, written directly: making them is not what is measured.
async fn insert_intents(
    db: &iocloud_db::Db,
    org: &str,
    mint: &str,
    references: &[String],
) -> anyhow::Result<()> {
    let now = now_micros();
    for (i, chunk) in references.chunks(500).enumerate() {
        let sql = format!(
            "INSERT INTO deposit_intents (id, org_id, reference, token, mint, status, amount, received, created_at, expires_at) VALUES {}",
            iocloud_db::sql::rows(chunk.len(), 10)
        );
        db_run!(db, |p| {
            let mut q = sqlx::query(&sql);
            for (j, reference) in chunk.iter().enumerate() {
                q = q
                    .bind(format!("dep_bench_{i:05}_{j:04}"))
                    .bind(org)
                    .bind(reference)
                    .bind("IOSD")
                    .bind(mint)
                    .bind("open")
                    .bind(1_000_000_i64)
                    .bind(0_i64)
                    .bind(now)
                    .bind(now + 3_600_000_000);
            }
            q.execute(p).await.map(|_| ())
        })?;
    }
    Ok(())
}
