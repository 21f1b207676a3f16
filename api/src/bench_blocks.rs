//! `iocloud bench blocks`: one hourly reward block for a large network (by default 100,000
//! devices: 80,000 GPU machines and 20,000 CPU-only ones of 10,000 providers) judged, shared,
//! recorded and paid, beside the same number of plain inserts into a table as wide as
//! `block_rewards`, in the same run on the same database.
//!
//! The network is seeded straight into the tables a block reads (devices, their hour rows,
//! proofs, stakes), with a few devices failing each rule, so the block does all of its work.

use std::time::{Duration, Instant};

use clap::Args;
use iocloud_control::rewards::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, db_run};

use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct BlockArgs {
    /// Devices in the network; a fifth of them CPU-only.
    #[arg(long, default_value_t = 100_000)]
    pub devices: usize,
    /// Devices per provider organisation.
    #[arg(long, default_value_t = 10)]
    pub per_provider: usize,
    /// Blocks measured (consecutive hours), and as many rounds of plain inserts.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

/// Rows per seeding statement.
const CHUNK: usize = 10_000;

async fn insert_json(
    db: &Db,
    sql_of: impl Fn(&str) -> String,
    rows: &[serde_json::Value],
) -> anyhow::Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let json = serde_json::to_string(chunk)?;
        let sql = sql_of(&db.engine().json_rows("$1"));
        db_run!(db, |p| sqlx::query(&sql)
            .bind(&json)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

pub async fn run(args: BlockArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let server = Server::start(Config::for_tests(&scratch.url)).await?;
    let control = server.state.control.clone();
    let db = control.db.clone();
    let models: Vec<String> = db_run!(&db, |p| sqlx::query_scalar(
        "SELECT id FROM gpu_models ORDER BY id"
    )
    .fetch_all(p)
    .await)?;
    let first = now_micros().div_euclid(MICROS_PER_HOUR) + 1;
    let start = first * MICROS_PER_HOUR;
    let n = args.devices.max(10);
    let providers = n.div_ceil(args.per_provider.max(1));
    eprintln!("seeding {n} devices of {providers} providers on {engine}");
    let seeded = Instant::now();

    let devices: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let cpu = i % 5 == 4;
            let model = (!cpu).then(|| models[i % models.len()].clone());
            let gpus = if cpu { 0 } else { 1 + (i % 8) as i64 };
            let bandwidth = [100, 1_000, 10_000][i % 3];
            serde_json::json!([
                format!("dev_bench{i:08}"),
                format!("org_bench{:06}", i % providers),
                model,
                gpus,
                16 + (i % 4) as i64 * 16,
                bandwidth,
            ])
        })
        .collect();
    let verified = start - 24 * MICROS_PER_HOUR;
    // Heard last at the end of the measured hours (their hour rows say so), so the offline
    // sweep of the server the bench runs leaves them listed.
    let heard = start + args.rounds as i64 * MICROS_PER_HOUR;
    insert_json(
        &db,
        |src| {
            format!(
                "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, \
                 lat, lon, bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, verified_at, last_heartbeat_at, created_at, updated_at) \
                 SELECT value ->> 0, value ->> 1, value ->> 0, value ->> 2, CAST(value ->> 3 AS BIGINT), CAST(value ->> 3 AS BIGINT), \
                 CAST(value ->> 4 AS BIGINT), 256, 1000, 'eu-central', 'DE', 50.1, 8.7, CAST(value ->> 5 AS BIGINT), \
                 CAST(value ->> 5 AS BIGINT), 2000000, value ->> 0, 'available', {verified}, {heard}, {verified}, {verified} FROM {src}"
            )
        },
        &devices,
    )
    .await?;
    // Each provider staked plenty: the block checks the stake, not the ledger behind it.
    let stakes: Vec<serde_json::Value> = (0..providers)
        .map(|p| serde_json::json!([format!("stk_bench{p:06}"), format!("org_bench{p:06}")]))
        .collect();
    insert_json(
        &db,
        |src| {
            format!(
                "INSERT INTO stakes (id, org_id, amount, external_ref, status, created_at) \
                 SELECT value ->> 0, value ->> 1, 1000000000000000, value ->> 0, 'active', {verified} FROM {src}"
            )
        },
        &stakes,
    )
    .await?;
    // The measured hours: most devices heard all along with a passed proof; one in twenty
    // silent, one in fifty failing its proof, one in a hundred breaking the idle rule.
    for hour in first..first + args.rounds as i64 {
        let h0 = hour * MICROS_PER_HOUR;
        let heard: Vec<serde_json::Value> = (0..n)
            .filter(|i| i % 20 != 7)
            .map(|i| {
                let idle_gpu = if i % 100 == 3 { 60 } else { 1 };
                serde_json::json!([format!("dev_bench{i:08}"), idle_gpu])
            })
            .collect();
        insert_json(
            &db,
            |src| {
                format!(
                    "INSERT INTO device_uptime (device_id, hour, minutes, first_at, last_at, heard_since, longest_gap, idle_gpu_pct, idle_cpu_pct) \
                     SELECT value ->> 0, {hour}, 60, {h0} + 5000000, {h0} + {MICROS_PER_HOUR} - 5000000, {verified}, 20000000, \
                     CAST(value ->> 1 AS BIGINT), 5 FROM {src}"
                )
            },
            &heard,
        )
        .await?;
        let proofs: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let outcome = if i % 50 == 11 {
                    "wrong_answer"
                } else {
                    "passed"
                };
                serde_json::json!([
                    format!("dev_bench{i:08}"),
                    format!("org_bench{:06}", i % providers),
                    outcome
                ])
            })
            .collect();
        insert_json(
            &db,
            |src| {
                format!(
                    "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline, answered_at, outcome) \
                     SELECT value ->> 0, {hour}, value ->> 1, 'n', 18, 80, {h0}, {h0} + 30000000, {h0} + 1000000, value ->> 2 FROM {src}"
                )
            },
            &proofs,
        )
        .await?;
    }
    db_run!(&db, |p| {
        sqlx::query(
        "CREATE TABLE bench_plain (hour BIGINT NOT NULL, device_id TEXT NOT NULL, org_id TEXT NOT NULL, pool TEXT NOT NULL, \
         score BIGINT NOT NULL, amount BIGINT NOT NULL, rented BOOLEAN NOT NULL, reason TEXT, evidence TEXT, PRIMARY KEY (hour, device_id))"
    )
    .execute(p)
    .await
    .map(|r| r.rows_affected())
    })?;
    // Fresh statistics, as a long-running database has (both engines know `ANALYZE`).
    db_run!(&db, |p| sqlx::query("ANALYZE")
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    let mut plain = Vec::new();
    let mut blocks = Vec::new();
    for round in 0..args.rounds {
        let hour = first + round as i64;
        // The baseline: the block's rows as plain inserts, in the same statements and one
        // transaction, without reading, judging or paying anything.
        let rows: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!([
                    format!("dev_bench{i:08}"),
                    format!("org_bench{:06}", i % providers),
                    "gpu",
                    1000,
                    123456,
                    0,
                    null,
                    null
                ])
            })
            .collect();
        let began = Instant::now();
        let mut tx = db.begin().await?;
        let sql = format!(
            "INSERT INTO bench_plain (hour, device_id, org_id, pool, score, amount, rented, reason, evidence) \
             SELECT {hour}, value ->> 0, value ->> 1, value ->> 2, CAST(value ->> 3 AS BIGINT), CAST(value ->> 4 AS BIGINT), \
             CAST(value ->> 5 AS BOOLEAN), value ->> 6, value ->> 7 FROM {}",
            tx.engine().json_rows("$1")
        );
        for chunk in rows.chunks(20_000) {
            let json = serde_json::to_string(chunk)?;
            iocloud_db::tx_run!(&mut tx, |c| sqlx::query(&sql)
                .bind(&json)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        plain.push(began.elapsed());

        let began = Instant::now();
        let report = control.rewards.run_block(hour).await?;
        blocks.push(began.elapsed());
        anyhow::ensure!(
            report.written && report.devices == n,
            "block {hour}: {report:?}"
        );
        let reasons: Vec<(Option<String>, i64)> = db_run!(&db, |p| {
            sqlx::query_as(
            "SELECT reason, COUNT(*) FROM block_rewards WHERE hour = $1 GROUP BY reason ORDER BY reason"
        )
        .bind(hour)
        .fetch_all(p)
        .await
        })?;
        let reasons: Vec<String> = reasons
            .into_iter()
            .map(|(r, n)| format!("{} {n}", r.as_deref().unwrap_or("eligible")))
            .collect();
        eprintln!(
            "round {round}: block {:.0} ms ({}), plain inserts {:.0} ms",
            ms(*blocks.last().unwrap()),
            reasons.join(", "),
            ms(*plain.last().unwrap())
        );
    }
    let verify = control.ledger.verify().await?;
    anyhow::ensure!(
        verify.is_balanced(),
        "the ledger does not balance: {verify:?}"
    );
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (b, p) = (median(&mut blocks), median(&mut plain));
    println!(
        "engine={engine} devices={n} providers={providers} block_ms={:.0} plain_inserts_ms={:.0} ratio={:.2}",
        ms(b),
        ms(p),
        b.as_secs_f64() / p.as_secs_f64().max(1e-9)
    );
    server.stop().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
