//! `iocloud bench explorer`: IO Explorer at the network's claimed size. A million devices (a
//! fifth CPU-only, across the catalog's models and regions) and a year of hourly blocks are
//! seeded straight into their tables; then, beside a static answer from a bare server in the
//! same run, clients read the network page, the device directory (first page, a filtered page,
//! a page deep in) and block pages, and the one-hour rollup of the network (the grouped read of
//! every listed device that the network page is cached from) is timed on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, db_run};

use crate::bench::{Round, load_with};
use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct ExplorerArgs {
    /// Devices in the network; a fifth of them CPU-only.
    #[arg(long, default_value_t = 1_000_000)]
    pub devices: usize,
    /// Hours of blocks behind now.
    #[arg(long, default_value_t = 24 * 365)]
    pub hours: usize,
    /// Seconds each page is read for.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Clients reading at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// Rows per seeding statement.
const CHUNK: usize = 20_000;

async fn insert_rows(db: &Db, sql: &str, rows: Vec<serde_json::Value>) -> anyhow::Result<()> {
    let json = serde_json::to_string(&rows)?;
    db_run!(db, |p| sqlx::query(sql)
        .bind(&json)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

async fn seed_devices(db: &Db, n: usize) -> anyhow::Result<()> {
    let models: Vec<String> = db_run!(db, |p| sqlx::query_scalar(
        "SELECT id FROM gpu_models ORDER BY id"
    )
    .fetch_all(p)
    .await)?;
    let regions: Vec<(String, f64, f64)> = db_run!(db, |p| sqlx::query_as(
        "SELECT code, lat, lon FROM regions ORDER BY code"
    )
    .fetch_all(p)
    .await)?;
    // Heard in the future, so the server's offline sweep leaves them listed.
    let heard = now_micros() + 24 * MICROS_PER_HOUR;
    let sql = format!(
        "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, \
         lat, lon, bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, verified_at, last_heartbeat_at, \
         reliability_bps, created_at, updated_at) \
         SELECT value ->> 0, value ->> 1, value ->> 0, value ->> 2, CAST(value ->> 3 AS BIGINT), CAST(value ->> 4 AS BIGINT), 64, 256, 1000, \
         value ->> 5, 'DE', CAST(value ->> 6 AS DOUBLE PRECISION), CAST(value ->> 7 AS DOUBLE PRECISION), 10000, 10000, 2000000, value ->> 0, \
         value ->> 8, {heard}, {heard}, 9000, {heard}, {heard} FROM {}",
        db.engine().json_rows("$1")
    );
    let mut i = 0;
    while i < n {
        let rows = (i..(i + CHUNK).min(n))
            .map(|i| {
                let cpu = i % 5 == 4;
                let model = (!cpu).then(|| models[i % models.len()].clone());
                let gpus = if cpu { 0 } else { 1 + (i % 8) as i64 };
                // A third of the GPU machines serve a rental, all their GPUs taken.
                let busy = !cpu && i % 3 == 0;
                let (region, lat, lon) = &regions[(i / 7) % regions.len()];
                serde_json::json!([
                    format!("dev_x{i:09}"),
                    format!("org_x{:06}", i % 100_000),
                    model,
                    gpus,
                    if busy { 0 } else { gpus },
                    region,
                    lat,
                    lon,
                    if busy { "busy" } else { "available" },
                ])
            })
            .collect();
        insert_rows(db, &sql, rows).await?;
        i += CHUNK;
    }
    Ok(())
}

async fn seed_blocks(db: &Db, hours: usize) -> anyhow::Result<i64> {
    let last = now_micros().div_euclid(MICROS_PER_HOUR) - 1;
    let first = last - hours as i64 + 1;
    let by_model = r#"[{"key":"h100-sxm","devices":160000,"gpus":720000,"rented_devices":53000,"rented_gpus":240000}]"#;
    let top = r#"[{"device_id":"dev_x000000001","gpu_model":"h100-sxm","region":"eu-central","amount":1500000}]"#;
    let sql = format!(
        "INSERT INTO reward_blocks (hour, params_version, emission, gpu_pool, cpu_pool, gpu_paid, cpu_paid, gpu_score, cpu_score, \
         eligible_devices, ineligible_devices, created_at, listed_devices, listed_gpus, rented_devices, rented_gpus, \
         ineligible_by_reason, top_earners, by_model, by_region, staked) \
         SELECT CAST(value ->> 0 AS BIGINT), 1, 4000000000, 3200000000, 800000000, 3100000000, 790000000, 1000, 1000, \
         950000, 50000, 0, 1000000, 3600000, 266000, 1200000, '{{\"not_heard\":40000,\"idle_rule\":10000}}', '{top}', '{by_model}', \
         '{by_model}', 1000000000000000 FROM {}",
        db.engine().json_rows("$1")
    );
    let hours: Vec<i64> = (first..=last).collect();
    for chunk in hours.chunks(CHUNK) {
        insert_rows(
            db,
            &sql,
            chunk.iter().map(|h| serde_json::json!([h])).collect(),
        )
        .await?;
    }
    Ok(last)
}

fn row(what: &str, r: &Round) {
    println!(
        "| {what} | {:.0} | {:.2} | {:.2} | {} |",
        r.rps, r.p50_ms, r.p99_ms, r.errors
    );
}

pub async fn run(args: ExplorerArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    // The clients are one address asking far more than a visitor would.
    config.rate_limit_per_ip = u32::MAX;
    let server = Server::start(config).await?;
    let db = server.state.control.db.clone();
    let seeded = Instant::now();
    seed_devices(&db, args.devices).await?;
    let last = seed_blocks(&db, args.hours).await?;
    if engine == "postgres" {
        db_run!(&db, |p| sqlx::query("ANALYZE").execute(p).await.map(|_| ()))?;
    }
    eprintln!(
        "seeded {} devices and {} blocks on {engine} in {:.1} s",
        args.devices,
        args.hours,
        seeded.elapsed().as_secs_f64()
    );

    // The one-hour rollup: the grouped read of every listed device, on its own.
    let explorer = &server.state.control.explorer;
    let mut rollups = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let now = explorer.network_fresh().await?;
        rollups.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            now.devices as usize == args.devices,
            "the rollup counts every device"
        );
    }
    rollups.sort_by(f64::total_cmp);

    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let body: Arc<[u8]> = Arc::from(&br#"{"devices":1000000}"#[..]);
    tokio::spawn(async move {
        let _ = axum::serve(bare_listener, crate::bench::bare_router(body)).await;
    });

    let client = reqwest::Client::new();
    let base = server.url();
    let hour = iocloud_db::time::to_rfc3339((last - 100) * MICROS_PER_HOUR);
    let deep = format!("dev_x{:09}", args.devices / 2);
    let deep_cursor = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deep)
    };
    let pages = [
        (
            "static answer (bare server)",
            format!("http://{bare_addr}/v1/me"),
        ),
        ("network now", format!("{base}/v1/explorer/network")),
        (
            "network by day, 30 days",
            format!("{base}/v1/explorer/network/history?period=day&count=30"),
        ),
        (
            "network by month, 12 months",
            format!("{base}/v1/explorer/network/history?period=month&count=12"),
        ),
        (
            "directory, first page",
            format!("{base}/v1/explorer/devices"),
        ),
        (
            "directory, H100 in one region",
            format!("{base}/v1/explorer/devices?gpu_model=h100-sxm&region=eu-central"),
        ),
        (
            "directory, half-way page",
            format!("{base}/v1/explorer/devices?cursor={deep_cursor}"),
        ),
        ("blocks, newest page", format!("{base}/v1/explorer/blocks")),
        ("a block", format!("{base}/v1/explorer/blocks/{hour}")),
    ];
    let window = Duration::from_secs(args.seconds);
    println!(
        "engine {engine}, {} devices, {} hourly blocks, {} clients, {} s per page",
        args.devices, args.hours, args.concurrency, args.seconds
    );
    println!("| page | requests/s | p50 ms | p99 ms | errors |");
    println!("| --- | --- | --- | --- | --- |");
    for (what, url) in &pages {
        let r = load_with(
            &client,
            url,
            "accept",
            "application/json",
            args.concurrency,
            window,
        )
        .await;
        row(what, &r);
    }
    println!(
        "one-hour rollup of {} devices (the network page's grouped read, uncached): median {:.2} s (runs {:?})",
        args.devices,
        rollups[1],
        rollups
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
    );
    server.stop().await;
    Ok(())
}
