//! `iocloud bench webhooks`: card top-ups credited by Stripe's signed webhooks over HTTP,
//! beside the same number of plain ledger credits between the same kinds of accounts, in the
//! same run on the same database.
//!
//! Every credit of both kinds moves the platform's Stripe clearing account, one row that all
//! of them update: how long each holds its lock is what the figure measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::rails::stripe::sign_webhook;
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, Money, TransactionKind};
use iocloud_db::sql::rows as placeholders;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, Engine, db_run};
use serde_json::json;

use crate::bench::percentile_ms;
use crate::config::Config;
use crate::startup::Server;

#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Distinct `payment_intent.succeeded` events, one per pending top-up.
    #[arg(long, default_value_t = 5000)]
    pub events: usize,
    /// Events sent a second time, each right after its first delivery was answered.
    #[arg(long, default_value_t = 1000)]
    pub replays: usize,
    /// Requests (and plain credits) in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// A Postgres server to make a scratch database on; unset, a temp SQLite file.
    #[arg(long, env = "IOCLOUD_BENCH_POSTGRES_URL")]
    pub postgres: Option<String>,
}

const WEBHOOK_SECRET: &str = "whsec_iocloud_bench";
const MICROS_PER_CENT: i64 = 10_000;
/// The organisation the baseline credits.
const PLAIN_ORG: &str = "org_bench_plain";

/// One phase's figures.
struct Phase {
    credits: usize,
    /// Deliveries answered `replayed`.
    replayed: usize,
    seconds: f64,
    /// Every answered request's, sorted, in microseconds.
    latencies: Vec<u32>,
    errors: Vec<String>,
}

impl Phase {
    fn per_second(&self) -> f64 {
        self.credits as f64 / self.seconds
    }
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let (engine, scratch) = crate::bench::scratch(args.postgres.as_deref()).await?;
    let mut config = Config::for_tests(&scratch.url);
    config.rate_limit_per_ip = u32::MAX;
    config.rate_limit_per_key = u32::MAX;
    config.rate_limit_per_device = u32::MAX;
    config.rate_limit_per_agent_ip = u32::MAX;
    config.stripe_secret_key = Some("sk_test_iocloud_bench".parse().expect("text"));
    config.stripe_webhook_secret = Some(WEBHOOK_SECRET.parse().expect("text"));
    // The webhook path never calls Stripe; nothing listens here.
    config.stripe_api_base = Some("http://127.0.0.1:9".into());
    config.card_reconcile_interval_secs = 0;
    let server = Server::start(config).await?;
    let db = server.state.control.db.clone();
    let ledger = server.state.control.ledger.clone();
    let concurrency = args.concurrency.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = server.url();

    let org = sign_up(&client, &base, "webhooks").await?;
    let n = args.events.max(1);
    let cents: Vec<i64> = (0..n).map(cents_of).collect();
    insert_top_ups(&db, &org, &cents).await?;
    open_accounts(
        &db,
        &[
            AccountRef::platform(AccountKind::ExternalStripe, Currency::Usd),
            AccountRef::org(&org, AccountKind::Available, Currency::Usd),
            AccountRef::org(PLAIN_ORG, AccountKind::Available, Currency::Usd),
        ],
    )
    .await?;
    let stride = n.div_ceil(args.replays.min(n).max(1));
    let replayed = |i: usize| args.replays > 0 && i.is_multiple_of(stride);
    let replays = (0..n).filter(|&i| replayed(i)).count();
    let created = iocloud_db::time::now_micros() / 1_000_000;
    let events: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| succeeded_event(i, &org, cents[i], created))
            .collect(),
    );

    // The baseline first, so whatever it leaves behind in the hot rows is the webhooks' to pay.
    vacuum(&db).await?;
    let plain = plain_credits(&ledger, n, concurrency).await;
    vacuum(&db).await?;
    let hooks = webhooks(&client, &base, events, stride, replays, concurrency).await;

    // The checks.
    let deposits: i64 = db_run!(&db, |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'deposit' AND org_id = $1"
    )
    .bind(&org)
    .fetch_one(p)
    .await)?;
    let available = ledger
        .balance(&AccountRef::org(
            &org,
            AccountKind::Available,
            Currency::Usd,
        ))
        .await?;
    let expected: i64 = cents.iter().sum::<i64>() * MICROS_PER_CENT;
    let credited_top_ups: i64 = db_run!(&db, |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM top_ups WHERE org_id = $1 AND status = 'succeeded'"
    )
    .bind(&org)
    .fetch_one(p)
    .await)?;
    let verified = ledger.verify().await?;

    println!(
        "card top-ups credited by signed Stripe webhooks over HTTP vs plain ledger credits, {engine}, \
         {n} credits each, {replays} replays, {concurrency} in flight"
    );
    println!("| operation | credits/s | p50 ms | p99 ms | requests | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, phase) in [
        ("plain `Ledger::post` credit (baseline)", &plain),
        ("`POST /webhooks/stripe`, credits and replays", &hooks),
    ] {
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {} | {} |",
            phase.per_second(),
            percentile_ms(&phase.latencies, 0.50),
            percentile_ms(&phase.latencies, 0.99),
            phase.latencies.len(),
            phase.errors.len()
        );
    }
    println!(
        "ratio (webhook / plain credits per second): {:.2}",
        hooks.per_second() / plain.per_second()
    );
    println!(
        "deposits {deposits} of {n}, top-ups credited {credited_top_ups}, replays answered `replayed` {} of {replays}, \
         available {} USD (expected {}), books balanced: {}",
        hooks.replayed,
        available.to_decimal(),
        Money::from_micros(expected, Currency::Usd).to_decimal(),
        if verified.is_balanced() { "yes" } else { "no" }
    );
    for e in plain.errors.iter().chain(&hooks.errors).take(5) {
        println!("error: {e}");
    }
    anyhow::ensure!(
        plain.errors.is_empty() && hooks.errors.is_empty(),
        "{} requests failed or answered the wrong outcome",
        plain.errors.len() + hooks.errors.len()
    );
    anyhow::ensure!(
        hooks.credits == n && hooks.replayed == replays,
        "{} credited and {} replayed answers, not {n} and {replays}",
        hooks.credits,
        hooks.replayed
    );
    anyhow::ensure!(deposits == n as i64, "{deposits} deposits, not {n}");
    anyhow::ensure!(
        credited_top_ups == n as i64,
        "{credited_top_ups} top-ups credited, not {n}"
    );
    anyhow::ensure!(
        available.micros() == expected,
        "the organisation holds {} USD, not the sum of its top-ups",
        available.to_decimal()
    );
    anyhow::ensure!(
        verified.is_balanced(),
        "the books do not balance after the benchmark: {verified:?}"
    );
    server.stop().await;
    drop(scratch);
    Ok(())
}

/// Signs `{name}@example.com` up; answers the new organisation's id.
pub(crate) async fn sign_up(
    client: &reqwest::Client,
    base: &str,
    name: &str,
) -> anyhow::Result<String> {
    let signup: serde_json::Value = client
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": format!("{name}@example.com"), "password": "benchmark password", "name": name, "org_name": name}))
        .send()
        .await?
        .json()
        .await?;
    Ok(signup["organization"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("sign-up failed: {signup}"))?
        .to_string())
}

/// The `i`th payment, from 10.00 to 99.99 USD.
fn cents_of(i: usize) -> i64 {
    1_000 + (i as i64 * 37) % 9_000
}

fn top_up_id(i: usize) -> String {
    format!("top_bench{i:06}")
}

fn payment_intent_id(i: usize) -> String {
    format!("pi_bench{i:06}")
}

/// Pending top-ups as the card form leaves them: each with its PaymentIntent, waiting for the
/// webhook.
async fn insert_top_ups(db: &Db, org: &str, cents: &[i64]) -> anyhow::Result<()> {
    let now = now_micros();
    let rows: Vec<(usize, i64)> = cents.iter().copied().enumerate().collect();
    for part in rows.chunks(64) {
        let sql = format!(
            "INSERT INTO top_ups (id, org_id, amount, status, payment_intent_id, origin, created_at, updated_at) VALUES {}",
            placeholders(part.len(), 8)
        );
        db_run!(db, |p| {
            let mut q = sqlx::query(&sql);
            for (i, c) in part {
                q = q
                    .bind(top_up_id(*i))
                    .bind(org)
                    .bind(c * MICROS_PER_CENT)
                    .bind("pending")
                    .bind(payment_intent_id(*i))
                    .bind("api")
                    .bind(now)
                    .bind(now);
            }
            q.execute(p).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// The accounts both phases move, made before either is measured: what is measured is a
/// platform that has taken payments before, not an account's first use.
async fn open_accounts(db: &Db, accounts: &[AccountRef]) -> anyhow::Result<()> {
    for a in accounts {
        db_run!(db, |p| {
            sqlx::query(
            "INSERT INTO ledger_accounts (id, owner, kind, currency, balance, allow_negative, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT DO NOTHING"
        )
        .bind(a.id())
        .bind(&a.owner)
        .bind(a.kind.as_str())
        .bind(a.currency.code())
        .bind(a.kind.allows_negative())
        .bind(now_micros())
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// A `payment_intent.succeeded` event for top-up `i`, as Stripe's API renders it.
fn succeeded_event(i: usize, org: &str, cents: i64, created: i64) -> String {
    json!({
        "id": format!("evt_bench{i:06}"),
        "object": "event",
        "api_version": "2026-09-30.endive",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": format!("iocloud-{}", top_up_id(i))},
        "type": "payment_intent.succeeded",
        "data": {"object": {
            "id": payment_intent_id(i),
            "object": "payment_intent",
            "amount": cents,
            "amount_capturable": 0,
            "amount_received": cents,
            "capture_method": "automatic_async",
            "confirmation_method": "automatic",
            "created": created,
            "currency": "usd",
            "customer": "cus_bench",
            "latest_charge": format!("ch_bench{i:06}"),
            "livemode": false,
            "metadata": {"top_up_id": top_up_id(i), "org_id": org},
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "status": "succeeded"
        }}
    })
    .to_string()
}

/// As `pgbench` does before it measures: dead rows of what came before vacuumed now, not by
/// an autovacuum that takes a core in the middle of a phase.
pub(crate) async fn vacuum(db: &Db) -> anyhow::Result<()> {
    if db.engine() == Engine::Postgres {
        db_run!(db, |p| sqlx::query("VACUUM ANALYZE")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// `n` credits from the platform's Stripe clearing account to one organisation's available
/// USD, each its own `Ledger::post`, `concurrency` at a time.
async fn plain_credits(ledger: &Ledger, n: usize, concurrency: usize) -> Phase {
    let org = PLAIN_ORG;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let ledger = ledger.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                let mut credits = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let amount = Money::from_micros(cents_of(i) * MICROS_PER_CENT, Currency::Usd);
                    let credit = NewTransaction {
                        external_ref: format!("plain:{i}"),
                        kind: TransactionKind::Deposit,
                        org_id: Some(org.into()),
                        memo: format!("plain credit {i}"),
                        postings: Posting::transfer(
                            AccountRef::platform(AccountKind::ExternalStripe, Currency::Usd),
                            AccountRef::org(org, AccountKind::Available, Currency::Usd),
                            amount,
                        )
                        .expect("a positive amount")
                        .to_vec(),
                    };
                    let t = Instant::now();
                    match ledger.post(&credit).await {
                        Ok(posted) if !posted.replayed => {
                            latencies.push(t.elapsed().as_micros() as u32);
                            credits += 1;
                        }
                        Ok(_) => errors.push(format!("plain credit {i} was a replay")),
                        Err(e) => errors.push(format!("plain credit {i}: {e}")),
                    }
                }
                (latencies, errors, credits, 0)
            })
        })
        .collect();
    collect(tasks, start).await
}

/// Every event delivered once, and every `stride`-th again once its first delivery was
/// answered, `concurrency` requests in flight.
async fn webhooks(
    client: &reqwest::Client,
    base: &str,
    events: Arc<Vec<String>>,
    stride: usize,
    replays: usize,
    concurrency: usize,
) -> Phase {
    let n = events.len();
    let url = format!("{base}/webhooks/stripe");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, events, next) =
                (client.clone(), url.clone(), events.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                let mut credits = 0;
                let mut replayed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let again = replays > 0 && i.is_multiple_of(stride);
                    let deliveries: &[&str] = if again {
                        &["credited", "replayed"]
                    } else {
                        &["credited"]
                    };
                    for expected in deliveries {
                        let t = Instant::now();
                        match deliver(&client, &url, &events[i]).await {
                            Ok(outcome) if outcome == *expected => {
                                latencies.push(t.elapsed().as_micros() as u32);
                                credits += usize::from(outcome == "credited");
                                replayed += usize::from(outcome == "replayed");
                            }
                            Ok(outcome) => {
                                errors.push(format!("event {i} answered {outcome}, not {expected}"))
                            }
                            Err(e) => errors.push(format!("event {i}: {e}")),
                        }
                    }
                }
                (latencies, errors, credits, replayed)
            })
        })
        .collect();
    collect(tasks, start).await
}

/// Sends one event as Stripe does (signed now); answers the outcome the server reports.
async fn deliver(client: &reqwest::Client, url: &str, payload: &str) -> anyhow::Result<String> {
    let signature = sign_webhook(payload, WEBHOOK_SECRET, None);
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(payload.to_string())
        .send()
        .await?;
    let status = res.status();
    let body: serde_json::Value = res.json().await?;
    anyhow::ensure!(status.is_success(), "answered {status}: {body}");
    Ok(body["outcome"].as_str().unwrap_or_default().to_string())
}

/// A worker's request latencies (µs), its failures, the credits it made and the replays
/// answered as such.
type Worker = tokio::task::JoinHandle<(Vec<u32>, Vec<String>, usize, usize)>;

async fn collect(tasks: Vec<Worker>, start: Instant) -> Phase {
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let (mut credits, mut replayed) = (0, 0);
    for t in tasks {
        match t.await {
            Ok((l, e, c, r)) => {
                latencies.extend(l);
                errors.extend(e);
                credits += c;
                replayed += r;
            }
            Err(e) => errors.push(format!("a worker failed: {e}")),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Phase {
        credits,
        replayed,
        seconds,
        latencies,
        errors,
    }
}
