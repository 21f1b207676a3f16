//! `iocloud bench clusters`: the whole life of clusters under load (create → running →
//! terminate) with simulated agents answering at once, beside a bare axum server that answers
//! the same three requests with fixed bodies, in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use clap::Args;
use serde_json::{Value, json};

use crate::bench::percentile_ms;
use crate::config::Config;
use crate::simulator::{self, SimDevice, SimOptions};
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Customers creating clusters at once, each in a loop (each its own organisation).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Machines of 8 GPUs, each run by a simulated agent.
    #[arg(long, default_value_t = 200)]
    pub machines: usize,
    /// Only create (no following, no deleting): creates alone, without settlements beside them.
    /// Give enough machines for every cluster made.
    #[arg(long)]
    pub creates_only: bool,
    /// Also offer lives at these fixed rates per second, comma-separated (open loop: each on
    /// its own schedule, latency counted from when it was due), to see whether a rate is
    /// sustained, at what latency, and what is shed beyond capacity. Each server is measured
    /// at the same rates.
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<u32>,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// What one side measured.
#[derive(Default)]
struct Tally {
    create_micros: Vec<u32>,
    running_micros: Vec<u32>,
    cycles: u64,
    errors: u64,
    /// Creates answered 503 `overloaded` (nothing of them done).
    shed: u64,
    /// CPU time the whole machine spent during the phase, s ([`machine_busy_secs`]).
    cpu_secs: Option<f64>,
}

/// CPU time the whole machine has spent (every process; not time the hypervisor gave to
/// others), s, from `/proc/stat`; `None` where there is none. Per life it is a measure of work
/// that a busy neighbour on a shared host moves far less than it moves throughput.
fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(7)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, idle, iowait, irq, softirq; in USER_HZ (100 per second on Linux).
    let [user, nice, system, _idle, _iowait, irq, softirq] = ticks[..] else {
        return None;
    };
    Some((user + nice + system + irq + softirq) / 100.0)
}

/// Runs a phase and notes the machine's CPU time it took.
async fn with_cpu(phase: impl std::future::Future<Output = (Tally, f64)>) -> (Tally, f64) {
    let before = machine_busy_secs();
    let (mut tally, secs) = phase.await;
    tally.cpu_secs = before.zip(machine_busy_secs()).map(|(a, b)| b - a);
    (tally, secs)
}

/// How a request was answered.
enum Sent {
    Done(Value),
    /// Turned away before anything of it ran; it may be sent again after this.
    Busy(Duration),
    Failed,
}

async fn send(req: reqwest::RequestBuilder) -> Sent {
    let Ok(res) = req.send().await else {
        return Sent::Failed;
    };
    if res.status().is_success() {
        return res.json().await.map_or(Sent::Failed, Sent::Done);
    }
    let after = crate::ctl::client::retry_after(res.headers());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    match crate::ctl::client::busy_wait(body["code"].as_str(), after) {
        Some(wait) => Sent::Busy(wait),
        None => Sent::Failed,
    }
}

/// Deletes a cluster as a client that must not leave it running does: sent again after each
/// `Retry-After` while the server is busy, a minute at most.
async fn delete(client: &reqwest::Client, base: &str, key: &str, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = send(
            client
                .delete(format!("{base}/v1/clusters/{id}"))
                .bearer_auth(key),
        )
        .await;
        match sent {
            Sent::Done(_) => return true,
            Sent::Busy(wait) if Instant::now() < deadline => tokio::time::sleep(wait).await,
            _ => return false,
        }
    }
}

/// Reads a cluster's event stream until it says `running`; opened again after its
/// `Retry-After` while the server turns it away as busy, for 30 s at most.
async fn until_running(client: &reqwest::Client, base: &str, key: &str, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut res = loop {
        let sent = client
            .get(format!("{base}/v1/clusters/{id}/events?follow=true"))
            .bearer_auth(key)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => break res,
            Ok(res)
                if res.status() == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline =>
            {
                let wait = crate::ctl::client::retry_after(res.headers());
                tokio::time::sleep(wait.unwrap_or(Duration::from_secs(1))).await;
            }
            _ => return false,
        }
    };
    let mut seen = String::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("event: running") {
            return true;
        }
    }
    false
}

/// `keys.len()` customers, each creating one-GPU clusters back to back for `duration`; each
/// created cluster is watched (its event stream) until it runs, then terminated, alongside.
async fn cycles(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    duration: Duration,
    creates_only: bool,
) -> (Tally, f64) {
    let started = Instant::now();
    let deadline = started + duration;
    let counter = Arc::new(AtomicU64::new(0));
    let creators: Vec<_> = keys
        .iter()
        .cloned()
        .map(|key| {
            let (client, base, counter) = (client.clone(), base.to_string(), counter.clone());
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut lives = Vec::new();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let body = json!({"name": format!("load-{n}"), "kind": "container", "image": "busybox",
                                      "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1});
                    let t0 = Instant::now();
                    let created = send(
                        client
                            .post(format!("{base}/v1/clusters"))
                            .bearer_auth(&key)
                            .json(&body),
                    )
                    .await;
                    let c = match created {
                        Sent::Done(c) => c,
                        Sent::Busy(wait) => {
                            t.shed += 1;
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Sent::Failed => {
                            t.errors += 1;
                            continue;
                        }
                    };
                    t.create_micros.push(t0.elapsed().as_micros() as u32);
                    if creates_only {
                        t.cycles += 1;
                        continue;
                    }
                    let id = c["id"].as_str().unwrap_or_default().to_string();
                    let (client, base, key) = (client.clone(), base.clone(), key.clone());
                    lives.push(tokio::spawn(async move {
                        let ran = until_running(&client, &base, &key, &id)
                            .await
                            .then(|| t0.elapsed().as_micros() as u32);
                        let ended = delete(&client, &base, &key, &id).await;
                        (ran, ended)
                    }));
                }
                for life in lives {
                    match life.await {
                        Ok((Some(ran), true)) => {
                            t.running_micros.push(ran);
                            t.cycles += 1;
                        }
                        _ => t.errors += 1,
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in creators {
        if let Ok(t) = task.await {
            all.create_micros.extend(t.create_micros);
            all.running_micros.extend(t.running_micros);
            all.cycles += t.cycles;
            all.errors += t.errors;
            all.shed += t.shed;
        }
    }
    all.create_micros.sort_unstable();
    all.running_micros.sort_unstable();
    (all, duration.as_secs_f64())
}

/// How one offered life went.
enum Life {
    /// Created (latency from when it was due, µs), and unless creates only, ran (time to
    /// running, µs) and was deleted.
    Lived(u32, Option<u32>),
    /// Its create was turned away as busy.
    Shed,
    Failed,
}

/// One cluster's life: create (timed from `due`), then, unless `creates_only`, followed until
/// it runs and deleted.
async fn one_life(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    n: u64,
    due: Instant,
    creates_only: bool,
) -> Life {
    let body = json!({"name": format!("open-{n}"), "kind": "container", "image": "busybox",
                      "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1});
    let created = send(
        client
            .post(format!("{base}/v1/clusters"))
            .bearer_auth(key)
            .json(&body),
    )
    .await;
    let created = match created {
        Sent::Done(c) => c,
        Sent::Busy(_) => return Life::Shed,
        Sent::Failed => return Life::Failed,
    };
    let create = due.elapsed().as_micros() as u32;
    if creates_only {
        return Life::Lived(create, None);
    }
    let id = created["id"].as_str().unwrap_or_default();
    let ran = until_running(client, base, key, id).await;
    let ran = ran.then(|| due.elapsed().as_micros() as u32);
    let deleted = delete(client, base, key, id).await;
    match ran {
        Some(ran) if deleted => Life::Lived(create, Some(ran)),
        _ => Life::Failed,
    }
}

/// Creates offered at `rate` per second for `duration`, whatever the answers' speed (open
/// loop), spread over the customers in turn.
async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    keys: &[String],
    rate: u32,
    duration: Duration,
    creates_only: bool,
) -> (Tally, f64) {
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
    let mut lives = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = started + gap.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, base) = (client.clone(), base.to_string());
        let key = keys[n as usize % keys.len()].clone();
        lives.push(tokio::spawn(async move {
            one_life(&client, &base, &key, n, due, creates_only).await
        }));
    }
    let mut all = Tally::default();
    for life in lives {
        match life.await {
            Ok(Life::Lived(create, ran)) => {
                all.create_micros.push(create);
                all.running_micros.extend(ran);
                all.cycles += 1;
            }
            Ok(Life::Shed) => all.shed += 1,
            _ => all.errors += 1,
        }
    }
    all.create_micros.sort_unstable();
    all.running_micros.sort_unstable();
    (all, duration.as_secs_f64())
}

/// The same requests answered with fixed bodies of the real answers' sizes.
fn bare_router(created: Arc<String>, running: Arc<String>) -> Router {
    let (c, r, d) = (created.clone(), running.clone(), running);
    let frame = "id: 5\nevent: running\ndata: {}\n\n";
    Router::new()
        .route(
            "/v1/clusters/{id}/events",
            get(move || async move { ([(header::CONTENT_TYPE, "text/event-stream")], frame) }),
        )
        .route(
            "/v1/clusters",
            post(move || {
                let c = c.clone();
                async move {
                    (
                        StatusCode::CREATED,
                        [(header::CONTENT_TYPE, "application/json")],
                        c.to_string(),
                    )
                }
            }),
        )
        .route(
            "/v1/clusters/{id}",
            get(move || {
                let r = r.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], r.to_string()) }
            })
            .delete(move || {
                let d = d.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], d.to_string()) }
            }),
        )
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    config.rate_limit_per_ip = u32::MAX;
    config.rate_limit_per_key = u32::MAX;
    config.rate_limit_per_device = u32::MAX;
    config.rate_limit_per_agent_ip = u32::MAX;
    config.signup_credit_usd = Some("1000000".into());
    config.quota_max_gpus = 1_000_000;
    config.quota_max_clusters = 1_000_000;
    config.quota_max_spend_per_hour_usd = "100000000".into();
    config.reconcile_interval_secs = 1;
    let server = Server::start(config).await?;
    let base = server.url();
    let control = &server.state.control;
    let devices: Vec<SimDevice> = crate::bench_heartbeats::seed_devices(control, args.machines)
        .await?
        .into_iter()
        .map(|(id, token)| SimDevice { id, token, gpus: 8 })
        .collect();
    simulator::spawn(
        &base,
        devices,
        SimOptions {
            heartbeat_secs: Some(20.0),
            node_ready_secs: 0.0,
            node_failure_rate: 0.0,
            offline_rate: 0.0,
            start_spread_secs: 0.5,
            ..SimOptions::default()
        },
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    let mut keys = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency {
        keys.push(
            crate::bench::customer_key(&client, &base, &format!("load{i}"), &["read", "write"])
                .await?,
        );
    }
    // Let the agents connect, then warm up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = cycles(&client, &base, &keys, Duration::from_secs(2), false).await;

    // Sample answers for the bare server's bodies.
    let sample: Value = client
        .post(format!("{base}/v1/clusters"))
        .bearer_auth(&keys[0])
        .json(&json!({"name": "sample", "kind": "container", "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1}))
        .send()
        .await?
        .json()
        .await?;
    let mut running = sample.clone();
    running["status"] = json!("running");
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_base = format!("http://{}", bare_listener.local_addr()?);
    let bare = tokio::spawn(async move {
        axum::serve(
            bare_listener,
            bare_router(Arc::new(sample.to_string()), Arc::new(running.to_string())),
        )
        .await
    });

    let duration = Duration::from_secs(args.seconds.max(1));
    let phase = |base: String, rate: Option<u32>| {
        let (client, keys) = (client.clone(), keys.clone());
        let creates_only = args.creates_only;
        with_cpu(async move {
            match rate {
                None => cycles(&client, &base, &keys, duration, creates_only).await,
                Some(r) => open_loop(&client, &base, &keys, r, duration, creates_only).await,
            }
        })
    };
    let (b, b_secs) = phase(bare_base.clone(), None).await;
    let (a, a_secs) = phase(base.clone(), None).await;
    let mut rows = vec![
        (
            format!("bare axum, {} back to back", args.concurrency),
            b,
            b_secs,
        ),
        (
            format!("iocloud, {} back to back", args.concurrency),
            a,
            a_secs,
        ),
    ];
    for &r in &args.rate {
        let (ob, ob_secs) = phase(bare_base.clone(), Some(r)).await;
        let (oa, oa_secs) = phase(base.clone(), Some(r)).await;
        rows.push((format!("bare axum, {r}/s offered"), ob, ob_secs));
        rows.push((format!("iocloud, {r}/s offered"), oa, oa_secs));
    }
    let rate = |t: &Tally, secs: f64| t.create_micros.len() as f64 / secs;
    let pattern = if args.creates_only {
        "creates only"
    } else {
        "create → running → terminate (each cluster followed by its event stream until running, then deleted)"
    };
    println!(
        "{pattern}, {engine}, {} customers, {} machines of 8 GPUs with simulated agents answering at once, {} s each",
        args.concurrency, args.machines, args.seconds
    );
    println!(
        "| server, load | creates/s | create p50 ms | create p99 ms | to running p50 ms | to running p99 ms | machine CPU ms per life | cycles | errors | shed/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, t, secs) in &rows {
        let cpu = match t.cpu_secs {
            Some(cpu) if t.cycles > 0 => format!("{:.2}", cpu * 1000.0 / t.cycles as f64),
            _ => "–".to_string(),
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {cpu} | {} | {} | {:.0} |",
            rate(t, *secs),
            percentile_ms(&t.create_micros, 0.50),
            percentile_ms(&t.create_micros, 0.99),
            percentile_ms(&t.running_micros, 0.50),
            percentile_ms(&t.running_micros, 0.99),
            t.cycles,
            t.errors,
            t.shed as f64 / secs
        );
    }
    println!(
        "ratio (iocloud / bare creates per second, back to back): {:.3}",
        rate(&rows[1].1, rows[1].2) / rate(&rows[0].1, rows[0].2)
    );
    let books = control.check_books().await?;
    println!(
        "after the run: ledger balanced {}, devices with GPUs booked wrong {}, organisations with quotas wrong {}",
        books.ledger_balanced, books.devices_wrong, books.quotas_wrong
    );
    bare.abort();
    server.stop().await;
    drop(scratch);
    Ok(())
}
