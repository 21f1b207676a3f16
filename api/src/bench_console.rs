//! `iocloud bench console`: the console's pages for an organisation with a long history (by
//! default 1,000 clusters and 100,000 ledger lines), each beside the server's own static
//! stylesheet in the same run: the same middleware, connection and client, no work behind it.

use std::time::Duration;

use clap::Args;
use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, TransactionKind};
use iocloud_db::{db_run, time::now_micros};
use serde_json::json;

use crate::bench::{Round, load_with};
use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct ConsoleArgs {
    /// Concurrent browsers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds each page is measured.
    #[arg(long, default_value_t = 4)]
    pub seconds: u64,
    /// Clusters the organisation has made (a twentieth of them running).
    #[arg(long, default_value_t = 1_000)]
    pub clusters: usize,
    /// Lines on the organisation's side of the ledger.
    #[arg(long, default_value_t = 100_000)]
    pub ledger_lines: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// The pages measured, each against the stylesheet.
const PAGES: [(&str, &str); 5] = [
    ("Home", "/app/"),
    ("Clusters", "/app/clusters"),
    ("a cluster", "/app/clusters/clu_bench0001"),
    ("Billing (ledger)", "/app/billing"),
    ("Offers", "/app/offers"),
];
const STATIC: &str = "/assets/app/app.css";

pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    config.rate_limit_per_ip = u32::MAX;
    config.rate_limit_per_key = u32::MAX;
    let server = Server::start(config).await?;
    let base = server.url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let session: serde_json::Value = client
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": "console@example.com", "password": "benchmark password", "name": "Bench", "org_name": "Bench"}))
        .send()
        .await?
        .json()
        .await?;
    let (Some(access), Some(refresh), Some(org)) = (
        session["access_token"].as_str(),
        session["refresh_token"].as_str(),
        session["organization"]["id"].as_str(),
    ) else {
        anyhow::bail!("sign-up failed: {session}");
    };
    let cookie = format!(
        "iocloud_access={access}; iocloud_refresh={refresh}; csrf={}",
        "0".repeat(64)
    );
    let seeded = std::time::Instant::now();
    seed(&server, org, args.clusters, args.ledger_lines).await?;
    println!(
        "seeded {} clusters and {} ledger lines in {:.1} s",
        args.clusters,
        args.ledger_lines,
        seeded.elapsed().as_secs_f64()
    );

    let duration = Duration::from_secs(args.seconds.max(1));
    let get = |path: &str| format!("{base}{path}");
    println!(
        "console pages vs the static stylesheet, {engine}, {} clusters, {} ledger lines, concurrency {}, {} s each",
        args.clusters, args.ledger_lines, args.concurrency, args.seconds
    );
    println!("| page | pages/s | p50 ms | p99 ms | errors | stylesheet p99 ms | p99 ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, path) in PAGES {
        // Warm both, then measure the page and the stylesheet back to back.
        let warm = Duration::from_millis(500);
        load_with(
            &client,
            &get(path),
            "cookie",
            &cookie,
            args.concurrency,
            warm,
        )
        .await;
        let page = load_with(
            &client,
            &get(path),
            "cookie",
            &cookie,
            args.concurrency,
            duration,
        )
        .await;
        let css = load_with(
            &client,
            &get(STATIC),
            "cookie",
            &cookie,
            args.concurrency,
            duration,
        )
        .await;
        row(name, &page, &css);
    }
    server.stop().await;
    drop(scratch);
    Ok(())
}

fn row(name: &str, page: &Round, css: &Round) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.1} |",
        page.rps,
        page.p50_ms,
        page.p99_ms,
        page.errors,
        css.p99_ms,
        page.p99_ms / css.p99_ms.max(0.001)
    );
}

/// The organisation's history, written straight to the database: clusters (most ended, a
/// twentieth running, their reconciler quiet) and credits, each a line on its side.
async fn seed(server: &Server, org: &str, clusters: usize, lines: usize) -> anyhow::Result<()> {
    let db = &server.state.control.db;
    let now = now_micros();
    let spec = json!({"name": "c", "kind": "ray", "gpu_model": "h100-sxm", "gpu_count": 8, "duration_hours": 2}).to_string();
    for i in 0..clusters {
        let running = i % 20 == 0;
        let (status, expires, ended) = if running {
            ("running", Some(now + 3_600_000_000 * 24), None)
        } else {
            (
                "terminated",
                Some(now - 3_600_000_000),
                Some(now - 3_600_000_000),
            )
        };
        let id = format!("clu_bench{i:04}");
        let name = format!("bench-{i:04}");
        let spec = spec.clone();
        db_run!(db, |p| {
            sqlx::query(
            "INSERT INTO clusters (id, org_id, name, kind, spec, generation, resource_version, status, currency, gpus, \
             price_per_hour, spend_per_hour, usd_per_unit, duration_hours, join_token, running_at, expires_at, ended_at, \
             terminated_at, created_at, updated_at) \
             VALUES ($1, $2, $3, 'ray', $4, 1, 1, $5, 'USD', 8, 16000000, 16000000, 1000000, 2, $1, $6, $7, $8, $8, $6, $6)"
        )
        .bind(&id)
        .bind(org)
        .bind(&name)
        .bind(&spec)
        .bind(status)
        .bind(now - 7_200_000_000)
        .bind(expires)
        .bind(ended)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })?;
    }
    let ledger = &server.state.control.ledger;
    let credits: Vec<NewTransaction> = (0..lines)
        .map(|i| NewTransaction {
            external_ref: format!("bench-credit-{i}"),
            kind: TransactionKind::CreditGrant,
            org_id: Some(org.to_string()),
            memo: "bench credit".into(),
            postings: Posting::transfer(
                AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                AccountRef::org(org, AccountKind::Available, Currency::Usd),
                Money::from_micros(10_000, Currency::Usd),
            )
            .expect("a valid amount")
            .to_vec(),
        })
        .collect();
    for chunk in credits.chunks(500) {
        ledger.post_batch(chunk).await?;
    }
    Ok(())
}
