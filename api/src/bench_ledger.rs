//! `iocloud bench ledger`: balanced transfers per second through the ledger, one per database
//! transaction and batched, beside plain single-row inserts into a table as wide as
//! `ledger_postings`, all in the same run on the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, Money, TransactionKind};
use iocloud_db::{DatabaseUrl, Db, db_run};
use rand::Rng;

use crate::bench::LedgerArgs;

const ACCOUNTS: usize = 1000;

pub async fn run(args: LedgerArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone())).await?;
    db.migrate().await?;
    db_run!(&db, |p| {
        sqlx::query(
            "CREATE TABLE bench_plain (id TEXT PRIMARY KEY, transaction_id TEXT NOT NULL, account_id TEXT NOT NULL, \
             owner TEXT NOT NULL, currency TEXT NOT NULL, amount BIGINT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    let ledger = Ledger::new(db.clone());
    let orgs: Arc<Vec<String>> =
        Arc::new((0..ACCOUNTS).map(|i| format!("org_bench{i:04}")).collect());
    let funding: Vec<NewTransaction> = orgs
        .iter()
        .map(|org| {
            transfer(
                format!("fund-{org}"),
                AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                AccountRef::org(org, AccountKind::Available, Currency::Usd),
                1_000_000_000_000,
            )
        })
        .collect();
    for chunk in funding.chunks(200) {
        ledger.post_batch(chunk).await?;
    }
    let duration = Duration::from_secs(args.seconds.max(1));
    let seq = Arc::new(AtomicU64::new(0));

    let plain = measure(args.concurrency, duration, {
        let db = db.clone();
        let seq = seq.clone();
        move || {
            let db = db.clone();
            let n = seq.fetch_add(1, Ordering::Relaxed);
            async move {
                db_run!(&db, |p| {
                    sqlx::query("INSERT INTO bench_plain (id, transaction_id, account_id, owner, currency, amount, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(format!("pst_plain{n:020}"))
                        .bind("ltx_plain")
                        .bind("acc_org_bench0000_available_usd")
                        .bind("org_bench0000")
                        .bind("USD")
                        .bind(n as i64)
                        .bind(n as i64)
                        .execute(p)
                        .await
                        .map(|r| r.rows_affected())
                })
                .map(|_| 1)
                .map_err(anyhow::Error::from)
            }
        }
    })
    .await;

    let single = measure(args.concurrency, duration, {
        let ledger = ledger.clone();
        let orgs = orgs.clone();
        let seq = seq.clone();
        move || {
            let ledger = ledger.clone();
            let t = random_transfer(&orgs, seq.fetch_add(1, Ordering::Relaxed));
            async move {
                ledger
                    .post(&t)
                    .await
                    .map(|_| 1)
                    .map_err(anyhow::Error::from)
            }
        }
    })
    .await;

    let batched = measure(args.concurrency, duration, {
        let ledger = ledger.clone();
        let orgs = orgs.clone();
        let seq = seq.clone();
        let size = args.batch.max(1);
        move || {
            let ledger = ledger.clone();
            let batch: Vec<NewTransaction> = (0..size)
                .map(|_| random_transfer(&orgs, seq.fetch_add(1, Ordering::Relaxed)))
                .collect();
            async move {
                let results = ledger.post_batch(&batch).await?;
                Ok(results.iter().filter(|r| r.is_ok()).count() as u64)
            }
        }
    })
    .await;

    let verified = ledger.verify().await?;
    anyhow::ensure!(
        verified.is_balanced(),
        "the books do not balance after the benchmark: {verified:?}"
    );
    println!(
        "ledger throughput, {engine}, {} writers, {} s each",
        args.concurrency, args.seconds
    );
    println!("| operation | per second | vs plain inserts |");
    println!("| --- | ---: | ---: |");
    println!("| plain single-row insert (baseline) | {plain:.0} | 1.00 |");
    println!(
        "| balanced transfer, one per transaction | {single:.0} | {:.2} |",
        single / plain
    );
    println!(
        "| balanced transfer, {} per transaction | {batched:.0} | {:.2} |",
        args.batch,
        batched / plain
    );
    println!("books balanced afterwards: yes");
    db.close().await;
    drop(scratch);
    Ok(())
}

fn transfer(external_ref: String, from: AccountRef, to: AccountRef, micros: i64) -> NewTransaction {
    NewTransaction {
        external_ref,
        kind: TransactionKind::Transfer,
        org_id: None,
        memo: "bench".into(),
        postings: Posting::transfer(from, to, Money::from_micros(micros, Currency::Usd))
            .expect("valid amount")
            .to_vec(),
    }
}

fn random_transfer(orgs: &[String], n: u64) -> NewTransaction {
    let mut rng = rand::rng();
    let a = rng.random_range(0..orgs.len());
    let b = (a + rng.random_range(1..orgs.len())) % orgs.len();
    transfer(
        format!("bench-{n}"),
        AccountRef::org(&orgs[a], AccountKind::Available, Currency::Usd),
        AccountRef::org(&orgs[b], AccountKind::Available, Currency::Usd),
        rng.random_range(1..1_000_000),
    )
}

/// Runs `op` from `workers` tasks for `duration`; returns units completed per second.
async fn measure<F, Fut>(workers: usize, duration: Duration, op: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    match op().await {
                        Ok(n) => done += n,
                        Err(e) => tracing::warn!(error = %e, "benchmark operation failed"),
                    }
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// `iocloud bench accrual`: metering passes over N running nodes, beside inserting N plain
/// rows of the same width as a usage line in the same run. Three passes are measured, each
/// charging every node one minute: the first minute of a clock hour (every node's line for
/// the hour was opened ahead in the half hour before), the minute after (every line is added
/// to), and a minute of the last half hour (a thirtieth of the nodes also get the next hour's
/// line opened).
pub async fn accrual(args: crate::bench::AccrualArgs) -> anyhow::Result<()> {
    use iocloud_billing::metering::NewUsage;
    // `RUST_LOG=iocloud_billing=debug` shows when a chunk takes the per-record path.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone())).await?;
    db.migrate().await?;
    let ledger = Ledger::new(db.clone());
    let n = args.records.max(1);
    const MINUTE: i64 = 60_000_000;
    const HOUR: i64 = 60 * MINUTE;
    let now = iocloud_db::time::now_micros();
    // A clock hour in the past; the nodes have run since half an hour before it.
    let hour = now - now.rem_euclid(HOUR) - HOUR;
    let start = hour - 30 * MINUTE;
    // Setup (not measured): funded organisations, a hold and a running node per cluster.
    let orgs = 100usize;
    let funding: Vec<NewTransaction> = (0..orgs)
        .map(|i| {
            transfer(
                format!("fund-{i}"),
                AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                AccountRef::org(
                    &format!("org_acc{i:03}"),
                    AccountKind::Available,
                    Currency::Usd,
                ),
                1_000_000_000_000_000,
            )
        })
        .collect();
    ledger.post_batch(&funding).await?;
    for i in 0..n {
        let org = format!("org_acc{:03}", i % orgs);
        let hold = ledger
            .place_hold(
                &org,
                Money::from_micros(100_000_000, Currency::Usd),
                &format!("clu_{i}"),
                &format!("hold-{i}"),
            )
            .await?;
        ledger
            .start_usage(NewUsage {
                org_id: &org,
                cluster_id: &format!("clu_{i}"),
                node_id: &format!("nod_{i}"),
                device_id: &format!("dev_{}", i % 500),
                provider_org_id: "org_provider",
                hold_id: &hold.id,
                gpus: 8,
                rate_per_hour: Money::from_micros(16_800_000, Currency::Usd),
                started_at: start,
            })
            .await?;
    }
    db_run!(&db, |p| {
        sqlx::query(
            "CREATE TABLE bench_lines (id TEXT PRIMARY KEY, record_id TEXT, org_id TEXT, cluster_id TEXT, node_id TEXT, device_id TEXT, \
             provider_org_id TEXT, currency TEXT, gpus BIGINT, rate_per_hour BIGINT, hour_start BIGINT, period_start BIGINT, period_end BIGINT, \
             billable_micros BIGINT, amount BIGINT, unpaid BIGINT, earned BIGINT, created_at BIGINT)",
        )
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;

    let t = Instant::now();
    for i in 0..n as i64 {
        db_run!(&db, |p| {
            sqlx::query("INSERT INTO bench_lines (id, record_id, org_id, cluster_id, node_id, device_id, provider_org_id, currency, gpus, rate_per_hour, hour_start, period_start, period_end, billable_micros, amount, unpaid, earned, created_at) VALUES ($1, 'r', 'o', 'c', 'n', 'd', 'p', 'USD', 8, 1, $2, $2, $2, $2, $2, 0, $2, $2)")
                .bind(format!("bln_{i:012}"))
                .bind(i)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
    }
    let plain = t.elapsed();

    // Not measured: charge the half hour before the clock hour (it opens the hour's lines
    // ahead, as the passes of that half hour would have), and later the half hour between
    // the second and the last measured pass.
    ledger.accrue(hour, MINUTE, 500).await?;
    // As pgbench does before it measures: the setup's dead rows vacuumed now rather than by an
    // autovacuum that would take a core from the first measured pass.
    if db.engine() == iocloud_db::Engine::Postgres {
        db_run!(&db, |p| sqlx::query("VACUUM ANALYZE")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
    }
    let mut passes = Vec::new();
    for (label, at) in [
        (
            "first minute of an hour: lines opened ahead added to",
            hour + MINUTE,
        ),
        ("any other minute: lines added to", hour + 2 * MINUTE),
        (
            "a minute of the last half hour: lines added to, 1/30 of the next hour's opened",
            hour + 31 * MINUTE,
        ),
    ] {
        if at == hour + 31 * MINUTE {
            ledger.accrue(at - MINUTE, MINUTE, 500).await?;
        }
        let t = Instant::now();
        let report = ledger.accrue(at, MINUTE, 500).await?;
        passes.push((label, t.elapsed()));
        anyhow::ensure!(
            report.charged_records == n,
            "charged {} of {n}",
            report.charged_records
        );
    }
    anyhow::ensure!(
        ledger.verify().await?.is_balanced(),
        "the books do not balance after the passes"
    );
    println!("accrual passes over {n} running nodes, {engine}");
    println!("| operation | seconds | per node, µs | vs plain inserts |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| {n} plain single-row inserts (baseline) | {:.2} | {:.0} | 1.00 |",
        plain.as_secs_f64(),
        plain.as_micros() as f64 / n as f64
    );
    for (label, pass) in passes {
        println!(
            "| accrual pass, {label} | {:.2} | {:.0} | {:.2} |",
            pass.as_secs_f64(),
            pass.as_micros() as f64 / n as f64,
            pass.as_secs_f64() / plain.as_secs_f64()
        );
    }
    db.close().await;
    drop(scratch);
    Ok(())
}
