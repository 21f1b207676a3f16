//! `iocloud bench …`: measurements that always run beside a baseline in the same process, so a
//! noisy machine shows up in both and the ratio stays meaningful.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use clap::{Args, Subcommand};
use iocloud_db::scratch::ScratchDb;
use serde_json::json;

use crate::config::Config;
use crate::startup::Server;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// `GET /v1/me` with an API key against a bare axum handler returning the same JSON.
    Me(MeArgs),
    /// Balanced transfers through the ledger beside plain single-row inserts of the same width.
    Ledger(LedgerArgs),
    /// One metering pass over N running nodes beside N plain inserts of the same width.
    Accrual(AccrualArgs),
    /// Heartbeat ingestion over HTTP at rising rates, beside a bare axum handler.
    Heartbeats(crate::bench_heartbeats::HeartbeatArgs),
    /// Clusters created, run and terminated under load, beside a bare axum server.
    Clusters(crate::bench_clusters::ClusterArgs),
    /// Card top-ups credited by signed Stripe webhooks over HTTP, beside plain ledger credits.
    Webhooks(crate::bench_webhooks::WebhookArgs),
    /// The Solana deposit watcher catching up on finalized deposits, beside the node's own
    /// read rate and plain ledger credits.
    Deposits(crate::bench_deposits::DepositArgs),
    /// One hourly reward block for a large network beside as many plain inserts.
    Blocks(crate::bench_blocks::BlockArgs),
    /// IO Explorer at a million devices and a year of blocks, beside a static answer.
    Explorer(crate::bench_explorer::ExplorerArgs),
    /// Three replicas under load while a replica, Postgres and Redis fail: what failed, how
    /// long each fault took to recover from, and whether anything accepted was lost; and the
    /// scale-out from one replica to all.
    Soak(crate::bench_soak::SoakArgs),
    /// The console's pages for an organisation with a long history, beside its static
    /// stylesheet.
    Console(crate::bench_console::ConsoleArgs),
    /// Resident memory of an idle `iocloud serve` beside an idle bare axum process.
    IdleMemory(MemoryArgs),
    /// A bare axum server returning a fixed JSON body (the baseline process for `idle-memory`).
    #[command(hide = true)]
    BareServer {
        /// The address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
pub struct MeArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds each measured round lasts.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds per server, alternating bare and authenticated.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds the server caches an API key (0 measures the uncached path).
    #[arg(long, default_value_t = 30)]
    pub auth_cache_secs: u64,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Transfers per database transaction in the batched measurement.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

#[derive(Args, Debug)]
pub struct AccrualArgs {
    /// Running nodes to charge.
    #[arg(long, default_value_t = 5000)]
    pub records: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

#[derive(Args, Debug)]
pub struct MemoryArgs {
    /// Seconds to let each process settle before reading its memory.
    #[arg(long, default_value_t = 5)]
    pub settle: u64,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Me(args) => bench_me(args).await,
        BenchCommand::IdleMemory(args) => idle_memory(args).await,
        BenchCommand::Ledger(args) => crate::bench_ledger::run(args).await,
        BenchCommand::Accrual(args) => crate::bench_ledger::accrual(args).await,
        BenchCommand::Heartbeats(args) => crate::bench_heartbeats::run(args).await,
        BenchCommand::Clusters(args) => crate::bench_clusters::run(args).await,
        BenchCommand::Webhooks(args) => crate::bench_webhooks::run(args).await,
        BenchCommand::Deposits(args) => crate::bench_deposits::run(args).await,
        BenchCommand::Console(args) => crate::bench_console::run(args).await,
        BenchCommand::Blocks(args) => crate::bench_blocks::run(args).await,
        BenchCommand::Explorer(args) => crate::bench_explorer::run(args).await,
        BenchCommand::Soak(args) => crate::bench_soak::run(args).await,
        BenchCommand::BareServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(
                listener,
                bare_router(Arc::from(&b"{\"kind\":\"api_key\"}"[..])),
            )
            .await?;
            Ok(())
        }
    }
}

pub(crate) fn bare_router(body: Arc<[u8]>) -> Router {
    Router::new().route(
        "/v1/me",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body.to_vec()) }
        }),
    )
}

/// A scratch database for a benchmark: on the Postgres server at `postgres`, else a temp
/// SQLite file; with the engine's name for the report.
pub(crate) async fn scratch(postgres: Option<&str>) -> anyhow::Result<(&'static str, ScratchDb)> {
    Ok(match postgres {
        Some(url) => ("postgres", ScratchDb::postgres(url).await?),
        None => ("sqlite", ScratchDb::sqlite()?),
    })
}

/// One round's figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Round {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

async fn bench_me(args: MeArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    // The limiter still runs on every request (it is part of the cost); it just never refuses.
    config.rate_limit_per_ip = u32::MAX;
    config.rate_limit_per_key = u32::MAX;
    config.auth_cache_secs = args.auth_cache_secs;
    let server = Server::start(config).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = server.url();
    let secret = customer_key(&client, &base, "bench", &["read"]).await?;
    let me = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&secret)
        .send()
        .await?;
    anyhow::ensure!(
        me.status().is_success(),
        "GET /v1/me answered {}",
        me.status()
    );
    let body: Arc<[u8]> = Arc::from(me.bytes().await?.as_ref());

    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let bare = tokio::spawn(async move { axum::serve(bare_listener, bare_router(body)).await });

    let auth_url = format!("{base}/v1/me");
    let bare_url = format!("http://{bare_addr}/v1/me");
    let duration = Duration::from_secs(args.seconds.max(1));
    // Warm both (connections, caches) before measuring.
    load(
        &client,
        &bare_url,
        &secret,
        args.concurrency,
        Duration::from_secs(1),
    )
    .await;
    load(
        &client,
        &auth_url,
        &secret,
        args.concurrency,
        Duration::from_secs(1),
    )
    .await;
    let mut bare_rounds = Vec::new();
    let mut auth_rounds = Vec::new();
    for _ in 0..args.rounds.max(1) {
        bare_rounds.push(load(&client, &bare_url, &secret, args.concurrency, duration).await);
        auth_rounds.push(load(&client, &auth_url, &secret, args.concurrency, duration).await);
    }
    let b = median(&bare_rounds);
    let a = median(&auth_rounds);
    println!(
        "GET /v1/me with an API key vs a bare axum handler, {engine}, auth cache {} s, concurrency {}, {} rounds of {} s (medians)",
        args.auth_cache_secs, args.concurrency, args.rounds, args.seconds
    );
    println!("| server | requests/s | p50 ms | p99 ms | errors |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| bare axum | {:.0} | {:.2} | {:.2} | {} |",
        b.rps, b.p50_ms, b.p99_ms, b.errors
    );
    println!(
        "| iocloud, authenticated | {:.0} | {:.2} | {:.2} | {} |",
        a.rps, a.p50_ms, a.p99_ms, a.errors
    );
    println!(
        "ratio (authenticated / bare requests per second): {:.2}",
        a.rps / b.rps
    );
    bare.abort();
    server.stop().await;
    drop(scratch);
    Ok(())
}

/// Signs up `{name}@example.com` (organisation `name`) and answers a new API key with `scopes`.
pub(crate) async fn customer_key(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    scopes: &[&str],
) -> anyhow::Result<String> {
    let signup: serde_json::Value = client
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": format!("{name}@example.com"), "password": "benchmark password", "name": name, "org_name": name}))
        .send()
        .await?
        .json()
        .await?;
    let access = signup["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("sign-up failed: {signup}"))?;
    let key: serde_json::Value = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(access)
        .json(&json!({"name": "bench", "scopes": scopes}))
        .send()
        .await?
        .json()
        .await?;
    Ok(key["secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("key creation failed: {key}"))?
        .to_string())
}

/// The `p` quantile of sorted latencies in microseconds, in milliseconds.
pub(crate) fn percentile_ms(sorted_micros: &[u32], p: f64) -> f64 {
    let i = ((sorted_micros.len() as f64 * p) as usize).min(sorted_micros.len().saturating_sub(1));
    sorted_micros.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn median(rounds: &[Round]) -> Round {
    let pick = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Round {
        rps: pick(|r| r.rps),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
        errors: rounds.iter().map(|r| r.errors).sum(),
    }
}

/// `concurrency` clients sending GETs with a bearer token back to back for `duration`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    concurrency: usize,
    duration: Duration,
) -> Round {
    let auth = format!("Bearer {token}");
    load_with(
        client,
        url,
        header::AUTHORIZATION.as_str(),
        &auth,
        concurrency,
        duration,
    )
    .await
}

/// `concurrency` clients sending GETs with the header `name: value` back to back for
/// `duration`; a request counts when it answers 2xx.
pub(crate) async fn load_with(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    value: &str,
    concurrency: usize,
    duration: Duration,
) -> Round {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            let (name, value) = (name.to_string(), value.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match client.get(&url).header(&name, &value).send().await {
                        Ok(res) => res.status().is_success() && res.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Round {
        rps: all.len() as f64 / secs,
        p50_ms: percentile_ms(&all, 0.50),
        p99_ms: percentile_ms(&all, 0.99),
        errors,
    }
}

async fn idle_memory(args: MemoryArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile_dir()?;
    let port = free_port()?;
    let bare_port = free_port()?;
    let mut serve = tokio::process::Command::new(&exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/iocloud.db", dir.display()),
        )
        .env_remove("REDIS_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut bare = tokio::process::Command::new(&exe)
        .args([
            "bench",
            "bare-server",
            "--listen",
            &format!("127.0.0.1:{bare_port}"),
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let client = reqwest::Client::new();
    for (name, url) in [
        ("iocloud", format!("http://127.0.0.1:{port}/readyz")),
        ("bare", format!("http://127.0.0.1:{bare_port}/v1/me")),
    ] {
        let mut up = false;
        for _ in 0..100 {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(up, "{name} did not start");
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let serve_kb = rss_kib(serve.id().unwrap_or(0))?;
    let bare_kb = rss_kib(bare.id().unwrap_or(0))?;
    println!("idle resident memory after {} s", args.settle);
    println!("| process | RSS MiB |");
    println!("| --- | ---: |");
    println!("| bare axum | {:.1} |", bare_kb as f64 / 1024.0);
    println!(
        "| iocloud serve (SQLite, in-process Redis stand-in) | {:.1} |",
        serve_kb as f64 / 1024.0
    );
    println!("ratio: {:.2}", serve_kb as f64 / bare_kb as f64);
    serve.kill().await.ok();
    bare.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("iocloud-bench-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
