//! `iocloud bench soak`: three replicas (`iocloud serve` processes) on one Postgres and one
//! Redis, behind a load balancer, with simulated agents heartbeating and customers running
//! cluster lives, and payers moving money on both rails (`money`: card top-ups with their
//! webhooks, Solana deposits and payouts, when the peers are named), while faults are injected
//! on a schedule: a replica killed with SIGKILL and started again, Postgres restarting (every
//! connection cut, a few seconds down), Redis away for 30 s, agents' clocks jumping an hour,
//! one replica's Postgres traffic slowed. It reports, per phase, the load held, what failed and
//! how long each fault took to recover from, and at the end checks that nothing accepted was
//! lost: every cluster answered 201 is stored and every delete answered 200 ended its cluster,
//! the ledger balances, no GPU is booked twice or leaked, quotas count exactly what runs, every
//! follower saw every event of its cluster once and in order, every payment was credited once
//! and every payout paid once.
//!
//! Before the faults it also measures scale-out: cluster lives back to back through one
//! replica, then through all of them, in the same run.

mod load;
mod money;
mod replicas;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::config::Config;
use crate::proxy::{Proxy, address_of};
use crate::simulator::{self, SimDevice, SimOptions, SimStats};
use crate::startup::Server;
use load::{Customer, Kind, Log, Outcome, Record};
use money::Rails;
use replicas::Replica;

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// The Postgres server the replicas share (a scratch database is made on it).
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: String,
    /// The Redis the replicas share (keys under a prefix of this run's own).
    #[arg(
        long,
        env = "IOCLOUD_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis: String,
    /// `iocloud serve` processes behind the load balancer.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Seconds of load with faults; at least 150 (Redis alone is away for 30 s).
    #[arg(long, default_value_t = 240)]
    pub seconds: u64,
    /// Machines of 8 GPUs, each run by a simulated agent heartbeating every 10 s.
    #[arg(long, default_value_t = 1000)]
    pub machines: usize,
    /// Customers, each running cluster lives back to back.
    #[arg(long, default_value_t = 24)]
    pub customers: usize,
    /// Seconds of each scale-out measurement (one replica, then all); 0 skips it.
    #[arg(long, default_value_t = 15)]
    pub scale_out_seconds: u64,
    /// Cluster lives run at once in the scale-out measurement, spread over the customers:
    /// enough that the servers, not the lives' own waits, set the rate.
    #[arg(long, default_value_t = 128)]
    pub scale_out_lives: usize,
    /// localstripe, for card top-ups and their webhooks beside the load; unset, none.
    #[arg(long, env = "IOCLOUD_BENCH_STRIPE_URL")]
    pub stripe: Option<String>,
    /// The Solana test peer, for deposits and payouts beside the load; unset, none.
    #[arg(long, env = "IOCLOUD_BENCH_SOLANA_URL")]
    pub solana: Option<String>,
    /// Organisations moving money (top-ups, deposits, payouts) beside the customers.
    #[arg(long, default_value_t = 4)]
    pub payers: usize,
}

/// A fault and when it was injected and ended, since the soak began.
struct Fault {
    name: &'static str,
    began: Duration,
    ended: Duration,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds >= 150, "--seconds must be at least 150");
    anyhow::ensure!(args.replicas >= 2, "--replicas must be at least 2");
    let (_, scratch) = crate::bench::scratch(Some(&args.postgres)).await?;
    let logs = std::env::temp_dir().join(format!("iocloud-soak-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;

    // A replica of the soak's own, in this process, with every background pass off: it
    // migrates and seeds the database and, at the end, reads the books.
    let mut config = Config::for_tests(&scratch.url);
    config.reconcile_interval_secs = 0;
    let observer = Server::start(config).await?;
    let control = &observer.state.control;
    let devices: Vec<SimDevice> = crate::bench_heartbeats::seed_devices(control, args.machines)
        .await?
        .into_iter()
        .map(|(id, token)| SimDevice { id, token, gpus: 8 })
        .collect();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.customers * 4)
        .build()?;
    let rails = Arc::new(
        Rails::prepare(&http, args.stripe.as_deref(), args.solana.as_deref(), &logs).await?,
    );
    let redis = Proxy::start(address_of(&args.redis)?).await?;
    let prefix = format!("soak:{:016x}:", rand::random::<u64>());
    let mut replicas = Vec::with_capacity(args.replicas);
    for i in 0..args.replicas {
        let postgres = Proxy::start(address_of(&scratch.url)?).await?;
        let addr = free_address()?;
        let mut env = replica_env(
            &postgres.url_for(&scratch.url),
            &redis.url_for(&args.redis),
            &prefix,
        );
        env.extend(rails.env());
        let log = logs.join(format!("replica-{i}.log"));
        replicas.push(Replica::start(addr, postgres, env, log).await?);
    }
    let all: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let balancer = Proxy::balance(all.clone()).await?;
    let base = format!("http://{}", balancer.addr);
    rails.open(&base).await?;
    println!(
        "soak: {} replicas on one Postgres and one Redis, {} machines of 8 GPUs, {} customers, {} payers ({}), {} s of faults; replica logs in {}",
        args.replicas,
        args.machines,
        args.customers,
        args.payers,
        rails.describe(),
        args.seconds,
        logs.display()
    );

    let agents = simulator::spawn(
        &base,
        devices,
        SimOptions {
            heartbeat_secs: Some(10.0),
            // Nodes up as soon as their agent hears of them: each agent brings its nodes up
            // one after another, so a delay here would set the rate, not the servers.
            node_ready_secs: 0.0,
            node_failure_rate: 0.0,
            offline_rate: 0.0,
            start_spread_secs: 5.0,
            ..SimOptions::default()
        },
    );
    let payers = rails.payers(control, &base, args.payers).await?;
    let mut customers = Vec::with_capacity(args.customers);
    for i in 0..args.customers {
        let name = format!("soak{i}");
        let key = crate::bench::customer_key(&http, &base, &name, &["read", "write"]).await?;
        customers.push(Customer {
            http: http.clone(),
            base: base.clone(),
            key,
            name,
        });
    }
    tokio::time::sleep(Duration::from_secs(6)).await;

    if args.scale_out_seconds > 0 {
        scale_out(
            &customers,
            &replicas,
            &balancer,
            args.scale_out_seconds,
            args.scale_out_lives,
        )
        .await?;
    }

    // The load, and the faults on their schedule.
    let log = Log::new();
    let stop = Arc::new(AtomicBool::new(false));
    let beats_before = heartbeats(&agents);
    let lives: Vec<_> = customers
        .iter()
        .cloned()
        .map(|c| tokio::spawn(c.run(log.clone(), stop.clone())))
        .chain(payers.iter().map(|p| {
            tokio::spawn(
                rails
                    .clone()
                    .run(p.clone(), base.clone(), log.clone(), stop.clone()),
            )
        }))
        .collect();
    let total = Duration::from_secs(args.seconds);
    let at = |share: f64| total.mul_f64(share);
    let since = |log: &Log| log.started.elapsed();
    let mut faults = Vec::new();
    let mut beats = vec![(Duration::ZERO, beats_before)];

    tokio::time::sleep_until((log.started + at(0.15)).into()).await;
    let began = since(&log);
    beats.push((began, heartbeats(&agents)));
    replicas[0].kill().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let took = replicas[0].restart().await?;
    faults.push(Fault {
        name: "replica SIGKILLed, restarted 5 s later",
        began,
        ended: since(&log),
    });
    println!(
        "  replica 0 killed; ready again {:.1} s after its restart",
        took.as_secs_f64()
    );

    tokio::time::sleep_until((log.started + at(0.35)).into()).await;
    let began = since(&log);
    beats.push((began, heartbeats(&agents)));
    for r in &replicas {
        r.postgres.cut();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in &replicas {
        r.postgres.restore();
    }
    faults.push(Fault {
        name: "Postgres restart (every connection cut, 3 s down)",
        began,
        ended: since(&log),
    });

    tokio::time::sleep_until((log.started + at(0.5)).into()).await;
    let began = since(&log);
    beats.push((began, heartbeats(&agents)));
    redis.cut();
    tokio::time::sleep(Duration::from_secs(30)).await;
    redis.restore();
    faults.push(Fault {
        name: "Redis away 30 s",
        began,
        ended: since(&log),
    });

    tokio::time::sleep_until((log.started + at(0.68)).into()).await;
    let began = since(&log);
    beats.push((began, heartbeats(&agents)));
    agents.jump_clocks(3600);
    tokio::time::sleep(Duration::from_secs(15)).await;
    agents.jump_clocks(0);
    faults.push(Fault {
        name: "clocks of one agent in ten 1 h ahead for 15 s, then right",
        began,
        ended: since(&log),
    });

    tokio::time::sleep_until((log.started + at(0.8)).into()).await;
    let began = since(&log);
    beats.push((began, heartbeats(&agents)));
    replicas[1].postgres.slow(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(20)).await;
    replicas[1].postgres.slow(Duration::ZERO);
    faults.push(Fault {
        name: "one replica's Postgres traffic +50 ms each way, 20 s",
        began,
        ended: since(&log),
    });

    tokio::time::sleep_until((log.started + total).into()).await;
    let load_ended = since(&log);
    beats.push((load_ended, heartbeats(&agents)));
    stop.store(true, Ordering::Relaxed);
    for life in lives {
        let _ = tokio::time::timeout(Duration::from_secs(180), life).await;
    }

    report(&log, &faults, &beats, load_ended);
    println!(
        "\nagents' hourly proofs: passed {}, failed {}, refused {}",
        agents.proofs_passed.load(Ordering::Relaxed),
        agents.proofs_failed.load(Ordering::Relaxed),
        agents.proofs_refused.load(Ordering::Relaxed)
    );
    let clean = check(&log, control, &customers).await?;
    let money_right = rails.check(&control.db, &payers).await?;
    rails.close().await;
    for r in &mut replicas {
        r.stop().await;
    }
    observer.stop().await;
    drop(scratch);
    anyhow::ensure!(
        clean && money_right,
        "the soak found something lost or wrong (above)"
    );
    Ok(())
}

/// Settings every replica runs with: limits out of the way (the soak measures faults, not
/// rate limits), credit and quota enough for every customer.
fn replica_env(database: &str, redis: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database),
        ("REDIS_URL", redis),
        ("IOCLOUD_REDIS_PREFIX", prefix),
        ("IOCLOUD_RATE_LIMIT_PER_IP", "100000000"),
        ("IOCLOUD_RATE_LIMIT_PER_KEY", "100000000"),
        ("IOCLOUD_RATE_LIMIT_PER_DEVICE", "100000000"),
        ("IOCLOUD_RATE_LIMIT_PER_AGENT_IP", "100000000"),
        ("IOCLOUD_SIGNUP_CREDIT_USD", "1000000"),
        ("IOCLOUD_QUOTA_MAX_GPUS", "100000"),
        ("IOCLOUD_QUOTA_MAX_CLUSTERS", "100000"),
        ("IOCLOUD_QUOTA_MAX_SPEND_PER_HOUR_USD", "100000000"),
        ("IOCLOUD_RECONCILE_INTERVAL_SECS", "1"),
        // Node tests short: the simulated agents answer them in this process, and the
        // squarings a real node does on its own GPU would otherwise set the soak's rates.
        ("IOCLOUD_NODE_TEST_SQUARINGS", "50"),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn free_address() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn heartbeats(agents: &SimStats) -> (u64, u64) {
    (
        agents.heartbeats.load(Ordering::Relaxed),
        agents.heartbeat_errors.load(Ordering::Relaxed),
    )
}

/// `lives` lives at a time, back to back, through one replica, then through all, for
/// `seconds` each.
async fn scale_out(
    customers: &[Customer],
    replicas: &[Replica],
    balancer: &Proxy,
    seconds: u64,
    lives: usize,
) -> anyhow::Result<()> {
    let one = Proxy::start(replicas[0].addr).await?;
    let mut rows = Vec::new();
    for (name, base) in [
        ("1 replica".to_string(), format!("http://{}", one.addr)),
        (
            format!("{} replicas", replicas.len()),
            format!("http://{}", balancer.addr),
        ),
    ] {
        let log = Log::new();
        let stop = Arc::new(AtomicBool::new(false));
        let loops: Vec<_> = (0..lives.max(1))
            .map(|j| {
                let c = &customers[j % customers.len()];
                // Names of their own: two loops of one customer must not collide.
                let c = Customer {
                    base: base.clone(),
                    name: format!("{}x{j}", c.name),
                    ..c.clone()
                };
                tokio::spawn(c.run(log.clone(), stop.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let secs = log.started.elapsed().as_secs_f64();
        // The rate of lives begun in the window (each then runs to its end, checked below):
        // counting only lives ended in it would miss those a short window cuts.
        let begun = log.created.lock().len();
        for l in loops {
            let _ = tokio::time::timeout(Duration::from_secs(120), l).await;
        }
        let broken = log.followers_broken.lock().len();
        anyhow::ensure!(
            broken == 0,
            "{broken} lives did not run whole in the scale-out"
        );
        rows.push((name, begun as f64 / secs));
    }
    println!(
        "\nscale-out: {lives} cluster lives at a time, back to back ({} customers), {seconds} s each",
        customers.len()
    );
    println!("| replicas | lives/s |");
    println!("| --- | ---: |");
    for (name, rate) in &rows {
        println!("| {name} | {rate:.1} |");
    }
    println!(
        "ratio ({} replicas / 1): {:.2}\n",
        replicas.len(),
        rows[1].1 / rows[0].1
    );
    Ok(())
}

/// The table of phases: calm, then each fault from its start to the next phase.
fn report(log: &Log, faults: &[Fault], beats: &[(Duration, (u64, u64))], load_ended: Duration) {
    let records = log.records.lock().clone();
    println!(
        "| phase | seconds | requests/s (create, extend, delete, follow, read, top-up, deposit, payout) | heartbeats/s | p99 ms | failed | shed | heartbeats failed | recovered after |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut bounds: Vec<(String, Duration, Option<Duration>)> =
        vec![("calm".into(), Duration::ZERO, None)];
    for f in faults {
        bounds.push((f.name.into(), f.began, Some(f.ended)));
    }
    for (i, (name, from, ended)) in bounds.iter().enumerate() {
        let to = bounds.get(i + 1).map_or(load_ended, |b| b.1);
        let secs = (to - *from).as_secs_f64().max(0.001);
        let window: Vec<&Record> = records
            .iter()
            .filter(|r| r.at >= *from && r.at < to)
            .collect();
        let per_kind: Vec<String> = Kind::ALL
            .iter()
            .map(|k| {
                let n = window
                    .iter()
                    .filter(|r| r.kind == *k && r.outcome == Outcome::Ok)
                    .count();
                format!("{:.1}", n as f64 / secs)
            })
            .collect();
        let mut ok: Vec<u32> = window
            .iter()
            .filter(|r| r.outcome == Outcome::Ok && r.kind != Kind::Follow)
            .map(|r| r.micros)
            .collect();
        ok.sort_unstable();
        // Failures count where they were answered: a request sent just before a fault and
        // cut by it is the fault's.
        let failures: Vec<Duration> = records
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .map(|r| r.at + Duration::from_micros(u64::from(r.micros)))
            .filter(|done| *done >= *from && *done < to)
            .collect();
        let failed = failures.len();
        let shed = window.iter().filter(|r| r.outcome == Outcome::Shed).count();
        let (b0, b1) = (beats[i].1, beats[i + 1].1);
        let beat_rate = (b1.0 - b0.0) as f64 / secs;
        let beat_errors = b1.1 - b0.1;
        // Recovered: from the fault's end to its phase's last failure (0 when none came after).
        let recovered = ended.map(|end| {
            let last = failures.iter().max();
            last.map_or(Duration::ZERO, |l| l.saturating_sub(end))
        });
        println!(
            "| {name} | {secs:.0} | {} | {beat_rate:.0} | {:.1} | {failed} | {shed} | {beat_errors} | {} |",
            per_kind.join(", "),
            crate::bench::percentile_ms(&ok, 0.99),
            recovered.map_or("–".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
    }
}

/// The final checks; whether all passed.
async fn check(
    log: &Log,
    control: &iocloud_control::Control,
    customers: &[Customer],
) -> anyhow::Result<bool> {
    let db = &control.db;
    let created = log.created.lock().clone();
    let deleted = log.deleted.lock().clone();
    let mut lost = 0;
    for id in &created {
        if count(db, "SELECT COUNT(*) FROM clusters WHERE id = $1", id).await? != 1 {
            lost += 1;
        }
    }
    let mut undeleted = 0;
    for id in &deleted {
        let live = "SELECT COUNT(*) FROM clusters WHERE id = $1 AND status NOT IN ('terminating', 'terminated', 'failed')";
        if count(db, live, id).await? != 0 {
            undeleted += 1;
        }
    }
    // Clusters made though their create's answer was lost (a replica died as it answered):
    // accepted, so they must be whole too; their owners delete them now.
    let mut orphans = 0;
    for c in customers {
        let page: serde_json::Value = c
            .http
            .get(format!("{}/v1/clusters?limit=1000", c.base))
            .bearer_auth(&c.key)
            .send()
            .await?
            .json()
            .await?;
        for cluster in page["items"].as_array().into_iter().flatten() {
            let status = cluster["status"].as_str().unwrap_or_default();
            if matches!(status, "terminating" | "terminated" | "failed") {
                continue;
            }
            orphans += 1;
            let id = cluster["id"].as_str().unwrap_or_default();
            c.http
                .delete(format!("{}/v1/clusters/{id}", c.base))
                .bearer_auth(&c.key)
                .send()
                .await?;
        }
    }
    // Every node released by its agent, then every GPU free.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held = i64::MAX;
    while Instant::now() < deadline {
        held = count(
            db,
            "SELECT COUNT(*) FROM node_assignments WHERE status <> 'released'",
            "",
        )
        .await?;
        if held == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let busy_gpus = count(
        db,
        "SELECT CAST(COALESCE(SUM(gpu_count - gpus_free), 0) AS BIGINT) FROM devices",
        "",
    )
    .await?;
    // What holds them, for whoever looks into it (the scratch database goes with the run).
    let stuck: Vec<(String, String, String, String)> = iocloud_db::db_run!(db, |p| {
        sqlx::query_as(
            "SELECT n.id, n.status, n.device_id, c.status FROM node_assignments n \
             JOIN clusters c ON c.id = n.cluster_id WHERE n.status <> 'released' ORDER BY n.id LIMIT 5",
        )
        .fetch_all(p)
        .await
    })?;
    let books = control.check_books().await?;
    let whole = *log.followers_whole.lock();
    let broken = log.followers_broken.lock().clone();
    let records = log.records.lock().clone();
    let requests = records.len();
    let failed = records
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .count();
    // What failed, by request and answer (0: no answer), with when the first of each was sent.
    let mut failures: std::collections::BTreeMap<(Kind, u16), (usize, Duration)> =
        Default::default();
    for r in records.iter().filter(|r| r.outcome == Outcome::Failed) {
        let e = failures.entry((r.kind, r.status)).or_insert((0, r.at));
        e.0 += 1;
        e.1 = e.1.min(r.at);
    }

    println!("\nafter the soak:");
    println!(
        "- requests sent: {requests}; failed: {failed}; event streams opened again after a break: {}",
        *log.reconnects.lock()
    );
    for ((kind, status), (n, first)) in &failures {
        println!(
            "  - {kind:?} answered {status}: {n} (the first {:.1} s in)",
            first.as_secs_f64()
        );
    }
    println!(
        "- clusters answered 201: {}; not stored: {lost}",
        created.len()
    );
    println!(
        "- deletes answered 200: {}; cluster still live: {undeleted}",
        deleted.len()
    );
    println!("- clusters made though their answer was lost (then deleted): {orphans}");
    println!(
        "- nodes not released 120 s after the last delete: {held}; GPUs still booked: {busy_gpus}"
    );
    for (node, status, device, cluster) in &stuck {
        println!("  - node {node} {status} on {device}, its cluster {cluster}");
    }
    println!(
        "- devices with GPUs booked wrong: {}; organisations whose quota differs from what runs: {}; ledger balanced: {}",
        books.devices_wrong, books.quotas_wrong, books.ledger_balanced
    );
    println!(
        "- followers that saw every event once and in order: {whole} ({} over GraphQL subscriptions, the rest over SSE); that did not: {}",
        *log.followers_whole_graphql.lock(),
        broken.len()
    );
    for b in broken.iter().take(10) {
        println!("  - {b}");
    }
    Ok(lost == 0
        && undeleted == 0
        && held == 0
        && busy_gpus == 0
        && books.are_right()
        && broken.is_empty())
}

async fn count(db: &iocloud_db::Db, sql: &str, arg: &str) -> anyhow::Result<i64> {
    let n: i64 = iocloud_db::db_run!(db, |p| {
        let q = sqlx::query_scalar(sql);
        let q = if sql.contains("$1") { q.bind(arg) } else { q };
        q.fetch_one(p).await
    })?;
    Ok(n)
}
