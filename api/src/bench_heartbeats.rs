//! `iocloud bench heartbeats`: heartbeat ingestion over HTTP at rising rates, beside a bare
//! axum handler for the same route measured by the same client in the same run.
//!
//! The load is open-loop: request `i` is due at `i / rate` seconds and its latency counts from
//! then, so a server that falls behind shows it in p99 instead of quietly slowing the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Args;
use iocloud_db::{db_run, time::now_micros};
use serde_json::json;

use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct HeartbeatArgs {
    /// Devices seeded. At a rate R the fleet is the first min(N, 20 R) of them, each
    /// heartbeating every 20 s as a real agent does.
    #[arg(long, default_value_t = 100_000)]
    pub devices: usize,
    /// Target rates, heartbeats per second, tried in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2500,5000,7500,10000"
    )]
    pub rates: Vec<u32>,
    /// Seconds each rate is held.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Client connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

struct Outcome {
    achieved: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    max_backlog: usize,
    /// 99th percentile of the backlog sampled every 50 ms.
    p99_backlog: usize,
}

pub async fn run(args: HeartbeatArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    config.rate_limit_per_ip = u32::MAX;
    config.rate_limit_per_device = u32::MAX;
    config.rate_limit_per_agent_ip = u32::MAX;
    // Seeded devices outside the fleet of the rate being measured stay listed.
    config.heartbeat_timeout_secs = 3600;
    let server = Server::start(config).await?;
    let control = server.state.control.clone();
    let devices = seed_devices(&control, args.devices.max(1)).await?;
    let devices = Arc::new(devices);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let body = json!({"free_gpus": 8, "utilization_pct": 40, "temperature_c": 60, "agent_version": "bench/1"});

    // The baseline: the same route and answer from a bare axum handler.
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_url = format!("http://{}", bare_listener.local_addr()?);
    let bare_app = Router::new().route(
        "/agent/v1/devices/{id}/heartbeat",
        post(|| async {
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"accepted": true, "heartbeat_interval_secs": 20})),
            )
        }),
    );
    let bare = tokio::spawn(async move { axum::serve(bare_listener, bare_app).await });
    // The closed-loop maxima cycle over 10,000 devices, warmed once (tokens cached).
    let warm = Arc::new(devices[..devices.len().min(10_000)].to_vec());
    let mut maxima = [0.0; 2];
    for (i, base) in [bare_url.as_str(), server.url().as_str()]
        .iter()
        .enumerate()
    {
        for _ in 0..2 {
            maxima[i] = closed_loop(
                &client,
                base,
                &warm,
                &body,
                args.connections,
                Limit::Time(Duration::from_secs(5)),
            )
            .await;
        }
    }
    let [bare_max, server_max] = maxima;
    // Every agent of the fleet has connected before (its token is cached, as in steady state).
    closed_loop(
        &client,
        &server.url(),
        &devices,
        &body,
        args.connections,
        Limit::Requests(devices.len() as u64),
    )
    .await;

    println!(
        "heartbeat ingestion, {engine}, {} devices, {} connections, {} s per rate",
        args.devices, args.connections, args.seconds
    );
    println!(
        "closed-loop maximum: bare axum {bare_max:.0}/s, iocloud {server_max:.0}/s (ratio {:.2})",
        server_max / bare_max
    );
    println!(
        "| target/s | devices | achieved/s | p50 ms | p99 ms | errors | backlog p99 / max | sustained |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut best = 0u32;
    for rate in &args.rates {
        let fleet = Arc::new(devices[..devices.len().min(*rate as usize * 20)].to_vec());
        let o = open_loop(
            &client,
            &server.url(),
            &fleet,
            &body,
            *rate,
            args.connections,
            Duration::from_secs(args.seconds.max(1)),
            &control,
        )
        .await;
        // Held: the rate was met, p99 under 50 ms, nothing refused, and the write buffer held
        // less than a second of heartbeats 99% of the time (the batched writes kept up; a lone
        // slow flush is not a growing backlog).
        let sustained = o.achieved >= f64::from(*rate) * 0.98
            && o.p99_ms < 50.0
            && o.errors == 0
            && o.p99_backlog < *rate as usize;
        println!(
            "| {rate} | {} | {:.0} | {:.2} | {:.2} | {} | {} / {} | {} |",
            fleet.len(),
            o.achieved,
            o.p50_ms,
            o.p99_ms,
            o.errors,
            o.p99_backlog,
            o.max_backlog,
            if sustained { "yes" } else { "no" }
        );
        if !sustained {
            break;
        }
        best = *rate;
    }
    control.devices.flush_heartbeats().await?;
    let (received, written) = control.devices.heartbeats().counts();
    let (flushes, mean_us, slowest_us) = control.devices.heartbeats().flush_times();
    println!(
        "highest rate sustained: {best}/s ({:.2} of the bare closed-loop maximum); heartbeats received {received}, device rows written {written}; \
         {flushes} flushes, mean {:.1} ms, slowest {:.1} ms",
        f64::from(best) / bare_max,
        mean_us as f64 / 1000.0,
        slowest_us as f64 / 1000.0
    );
    bare.abort();
    server.stop().await;
    drop(scratch);
    Ok(())
}

/// Inserts `n` listed devices of a bench provider, answering (id, token) pairs.
pub(crate) async fn seed_devices(
    control: &iocloud_control::Control,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let now = now_micros();
    let mut out = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let id = iocloud_db::ids::new_id("dev");
        let token = iocloud_control::secrets::generate("iodt_");
        rows.push((
            id.clone(),
            format!("bench-{i:06}"),
            iocloud_control::secrets::hash(&token),
        ));
        out.push((id, token));
    }
    let engine = control.db.engine();
    let sql = format!(
        "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
         bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, verified_at, created_at, updated_at) \
         SELECT value ->> 0, 'org_bench', value ->> 1, 'h100-sxm', 8, 8, 64, 512, 2000, 'eu-central', 'DE', 50.1, 8.7, 1000, 1000, 2100000, \
         value ->> 2, 'available', $2, $2, $2 FROM {}",
        engine.json_rows("$1")
    );
    for part in rows.chunks(5000) {
        let json = serde_json::to_string(part)?;
        db_run!(&control.db, |p| sqlx::query(&sql)
            .bind(&json)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(out)
}

fn url_of<'a>(base: &str, devices: &'a [(String, String)], i: u64) -> (String, &'a str) {
    let (id, token) = &devices[(i % devices.len() as u64) as usize];
    (
        format!("{base}/agent/v1/devices/{id}/heartbeat"),
        token.as_str(),
    )
}

/// When a closed loop stops.
#[derive(Clone, Copy)]
enum Limit {
    Time(Duration),
    Requests(u64),
}

/// As many heartbeats as `connections` clients can send back to back: the maximum rate.
async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    devices: &Arc<Vec<(String, String)>>,
    body: &serde_json::Value,
    connections: usize,
    limit: Limit,
) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, devices, body, next) =
                (client.clone(), devices.clone(), body.clone(), next.clone());
            let base = base.to_string();
            tokio::spawn(async move {
                let mut done = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let over = match limit {
                        Limit::Time(d) => start.elapsed() >= d,
                        Limit::Requests(n) => i >= n,
                    };
                    if over {
                        break;
                    }
                    let (url, token) = url_of(&base, &devices, i);
                    if let Ok(r) = client.post(url).bearer_auth(token).json(&body).send().await
                        && r.status().is_success()
                    {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap_or(0);
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// `rate` heartbeats a second for `duration`, each due at its slot; latency from the slot.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    devices: &Arc<Vec<(String, String)>>,
    body: &serde_json::Value,
    rate: u32,
    connections: usize,
    duration: Duration,
    control: &iocloud_control::Control,
) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let start = Instant::now();
    let watcher = {
        let control = control.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while start.elapsed() < duration {
                samples.push(control.devices.heartbeats().backlog());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples.sort_unstable();
            let p99 = samples.get(samples.len() * 99 / 100).copied().unwrap_or(0);
            (samples.last().copied().unwrap_or(0), p99)
        })
    };
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, devices, body, next) =
                (client.clone(), devices.clone(), body.clone(), next.clone());
            let base = base.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    tokio::time::sleep_until(due.into()).await;
                    let (url, token) = url_of(&base, &devices, i);
                    match client.post(url).bearer_auth(token).json(&body).send().await {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            latencies.push(due.elapsed().as_micros() as u32)
                        }
                        _ => errors += 1,
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
    let (max_backlog, p99_backlog) = watcher.await.unwrap_or((0, 0));
    all.sort_unstable();
    Outcome {
        achieved: all.len() as f64 / secs,
        p50_ms: crate::bench::percentile_ms(&all, 0.50),
        p99_ms: crate::bench::percentile_ms(&all, 0.99),
        errors,
        max_backlog,
        p99_backlog,
    }
}
