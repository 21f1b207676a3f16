//! The soak's money, beside its clusters and through the same load balancer: card top-ups
//! charged through Stripe (localstripe), whose webhooks reach the replicas twice each through
//! a relay that, like Stripe, sends again until a replica answers 2xx; Solana Pay deposits paid
//! on the chain (the test peer) and credited by whichever replica holds the watcher's lease;
//! payouts to the payers' proved wallets, signed and sent by whichever replica holds the
//! sender's. Each request is a careful client's: with an `Idempotency-Key`, and sent again with
//! it while the server is busy or cannot answer.
//!
//! The final check looks at the books and the chain, not at the answers alone: every card
//! payment credited once, every deposit paid credited once, every payout paid once and
//! nothing more reaching its wallet.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, TransactionKind};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use solana_signer::Signer;

use super::count;
use super::load::{Kind, Log, Outcome};
use crate::bench_deposits::peer_control as control;
use crate::ctl::client::{busy_wait, retry_after};

/// Earnings each payer starts with, in USD, for its payouts.
const EARNINGS_USD: &str = "100000.00";
/// Tokens (IOSD base units) the treasury holds for payouts, and each payer's wallet for deposits.
const FUNDS: u64 = 1_000_000_000_000_000;

/// The rails the soak's money runs on; either may be absent (its part is then skipped).
pub struct Rails {
    http: reqwest::Client,
    stripe: Option<StripeSide>,
    chain: Option<ChainSide>,
    /// What was promised and what the webhook relay did.
    pub log: Arc<MoneyLog>,
}

struct StripeSide {
    base: String,
    webhook_secret: String,
    /// The relay's endpoint name at localstripe, once registered.
    endpoint: String,
}

struct ChainSide {
    peer: String,
    mint: String,
    treasury: String,
    /// The wallet the payers' deposits come from (a keypair the peer holds).
    source: String,
    /// The treasury's keypair, for the replicas; kept until the soak ends (a replica started
    /// again reads it again).
    keypair: PathBuf,
}

/// One organisation moving money: its admin key, and the wallet its payouts go to.
#[derive(Clone)]
pub struct Payer {
    pub org: String,
    key: String,
    wallet: Option<String>,
}

#[derive(Default)]
pub struct MoneyLog {
    /// Top-ups answered 201.
    pub top_ups: Mutex<Vec<String>>,
    /// Deposits paid on chain: the intent, the transfer's signature, base units.
    pub deposits: Mutex<Vec<(String, String, i64)>>,
    /// Payouts answered 201.
    pub payouts: Mutex<Vec<String>>,
    /// Webhook deliveries answered 2xx, sent again after a failure, and given up on.
    pub webhooks_delivered: AtomicU64,
    pub webhooks_resent: AtomicU64,
    pub webhooks_abandoned: AtomicU64,
}

impl Rails {
    /// Makes what the rails need before the replicas start: the chain's mint, treasury and
    /// paying wallet, and the webhook signing secret.
    pub async fn prepare(
        http: &reqwest::Client,
        stripe: Option<&str>,
        solana: Option<&str>,
        logs: &std::path::Path,
    ) -> anyhow::Result<Rails> {
        let stripe = stripe.map(|base| StripeSide {
            base: base.trim_end_matches('/').to_string(),
            webhook_secret: format!("whsec_soak_{:016x}", rand::random::<u64>()),
            endpoint: format!("iocloud-soak-{:016x}", rand::random::<u64>()),
        });
        let chain = match solana {
            None => None,
            Some(peer) => {
                let peer = peer.trim_end_matches('/').to_string();
                let treasury = control(http, &peer, "keypair", json!({})).await?;
                let source = control(http, &peer, "keypair", json!({})).await?["pubkey"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mint =
                    control(http, &peer, "create_mint", json!({"decimals": 6})).await?["mint"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                let treasury_key = treasury["pubkey"].as_str().unwrap_or_default().to_string();
                for owner in [&treasury_key, &source] {
                    control(
                        http,
                        &peer,
                        "mint_to",
                        json!({"mint": mint, "owner": owner, "amount": FUNDS.to_string()}),
                    )
                    .await?;
                }
                let keypair = logs.join("treasury.json");
                std::fs::write(&keypair, treasury["secretKey"].to_string())?;
                Some(ChainSide {
                    peer,
                    mint,
                    treasury: treasury_key,
                    source,
                    keypair,
                })
            }
        };
        Ok(Rails {
            http: http.clone(),
            stripe,
            chain,
            log: Arc::default(),
        })
    }

    /// The replicas' settings for the rails at hand: each pass every second, so that money
    /// moves while the faults do.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(&str, String)> = Vec::new();
        if let Some(s) = &self.stripe {
            env.extend([
                (
                    "IOCLOUD_STRIPE_SECRET_KEY",
                    "sk_test_iocloud_soak".to_string(),
                ),
                ("IOCLOUD_STRIPE_WEBHOOK_SECRET", s.webhook_secret.clone()),
                ("IOCLOUD_STRIPE_API_BASE", s.base.clone()),
                // A payment whose webhook and answer were both lost is found by this pass.
                ("IOCLOUD_CARD_RECONCILE_INTERVAL_SECS", "10".to_string()),
            ]);
        }
        if let Some(c) = &self.chain {
            env.extend([
                ("IOCLOUD_SOLANA_RPC_URL", c.peer.clone()),
                ("IOCLOUD_SOLANA_MINT_IOSD", c.mint.clone()),
                (
                    "IOCLOUD_SOLANA_TREASURY_KEYPAIR",
                    c.keypair.display().to_string(),
                ),
                ("IOCLOUD_SOLANA_WATCH_INTERVAL_SECS", "1".to_string()),
                ("IOCLOUD_SOLANA_PAYOUT_INTERVAL_SECS", "1".to_string()),
                ("IOCLOUD_PAYOUT_MIN_USD", "1.00".to_string()),
                ("IOCLOUD_PAYOUT_DAILY_LIMIT_USD", "100000000.00".to_string()),
                (
                    "IOCLOUD_PAYOUT_APPROVAL_ABOVE_USD",
                    "100000000.00".to_string(),
                ),
            ]);
        }
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Which rails run, for the soak's opening line.
    pub fn describe(&self) -> String {
        let part = |on: bool, what: &str| {
            if on {
                what.to_string()
            } else {
                format!("no {what} (no peer named)")
            }
        };
        format!(
            "{}; {}",
            part(self.stripe.is_some(), "card top-ups"),
            part(self.chain.is_some(), "Solana deposits and payouts")
        )
    }

    /// Starts the webhook relay to `base` and registers it with localstripe.
    pub async fn open(&self, base: &str) -> anyhow::Result<()> {
        let Some(s) = &self.stripe else {
            return Ok(());
        };
        let relay = relay(self.http.clone(), base.to_string(), self.log.clone()).await?;
        let answer = self
            .http
            .post(format!("{}/_config/webhooks/{}", s.base, s.endpoint))
            .form(&[
                ("url", relay.as_str()),
                ("secret", s.webhook_secret.as_str()),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "localstripe refused the webhook endpoint: {}",
            answer.status()
        );
        Ok(())
    }

    /// `n` organisations to move money, each with a wallet proved for its payouts and
    /// earnings to pay out (posted directly: earning them is not what is measured).
    pub async fn payers(
        &self,
        control: &iocloud_control::Control,
        base: &str,
        n: usize,
    ) -> anyhow::Result<Vec<Payer>> {
        if self.stripe.is_none() && self.chain.is_none() {
            return Ok(Vec::new());
        }
        let mut payers = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("soakpayer{i}");
            let key = crate::bench::customer_key(&self.http, base, &name, &["admin"]).await?;
            let me: Value = self
                .http
                .get(format!("{base}/v1/org"))
                .bearer_auth(&key)
                .send()
                .await?
                .json()
                .await?;
            let org = me["id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("no organisation: {me}"))?
                .to_string();
            let wallet = match &self.chain {
                Some(_) => Some(self.prove_wallet(base, &key).await?),
                None => None,
            };
            control
                .ledger
                .post(&NewTransaction {
                    external_ref: format!("soak-earnings:{org}"),
                    kind: TransactionKind::Capture,
                    org_id: Some(org.clone()),
                    memo: "earnings for the soak's payouts".into(),
                    postings: Posting::transfer(
                        AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                        AccountRef::org(&org, AccountKind::ProviderEarnings, Currency::Usd),
                        Money::parse(EARNINGS_USD, Currency::Usd)?,
                    )?
                    .to_vec(),
                })
                .await?;
            payers.push(Payer { org, key, wallet });
        }
        Ok(payers)
    }

    /// A new wallet, proved by signing the server's challenge with its key.
    async fn prove_wallet(&self, base: &str, key: &str) -> anyhow::Result<String> {
        let wallet = solana_keypair::Keypair::new();
        let address = wallet.pubkey().to_string();
        let challenge: Value = self
            .http
            .post(format!("{base}/v1/payouts/wallets/challenges"))
            .bearer_auth(key)
            .json(&json!({ "address": address }))
            .send()
            .await?
            .json()
            .await?;
        let message = challenge["message"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no challenge: {challenge}"))?;
        let signature = wallet.sign_message(message.as_bytes());
        let proved = self
            .http
            .post(format!("{base}/v1/payouts/wallets"))
            .bearer_auth(key)
            .json(&json!({"challenge_id": challenge["id"], "signature": signature.to_string()}))
            .send()
            .await?;
        anyhow::ensure!(
            proved.status().is_success(),
            "wallet refused: {}",
            proved.text().await?
        );
        Ok(address)
    }

    /// One payer's money until `stop`: a card top-up, a deposit paid on chain and a payout,
    /// in turn, a second or so apart.
    pub async fn run(
        self: Arc<Self>,
        payer: Payer,
        base: String,
        log: Arc<Log>,
        stop: Arc<AtomicBool>,
    ) {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        while !stop.load(Ordering::Relaxed) {
            if self.stripe.is_some() {
                let cents: i64 = rng.random_range(500..5000);
                let body = json!({"amount": format!("{}.{:02}", cents / 100, cents % 100),
                    "payment_method": "pm_card_visa"});
                let url = format!("{base}/v1/billing/top-ups");
                if let Some(t) = self.ask(&log, Kind::TopUp, &payer, &url, &body).await {
                    self.log.top_ups.lock().push(id_of(&t));
                }
            }
            if let Some(chain) = &self.chain {
                let units: i64 = rng.random_range(1_000_000..50_000_000);
                let body = json!({"currency": "IOSD",
                    "amount": Money::from_micros(units, Currency::Iosd).to_decimal()});
                let url = format!("{base}/v1/billing/deposits");
                if let Some(d) = self.ask(&log, Kind::Deposit, &payer, &url, &body).await {
                    let reference = d["reference"].as_str().unwrap_or_default();
                    let paid = control(
                        &self.http,
                        &chain.peer,
                        "transfer",
                        json!({"from": chain.source, "to": chain.treasury, "mint": chain.mint,
                            "amount": units, "references": [reference]}),
                    )
                    .await;
                    match paid {
                        Ok(t) if t["err"].is_null() => self.log.deposits.lock().push((
                            id_of(&d),
                            t["signature"].as_str().unwrap_or_default().to_string(),
                            units,
                        )),
                        Ok(t) => tracing::warn!(transfer = %t, "a soak deposit failed on chain"),
                        Err(e) => tracing::warn!(error = %e, "a soak deposit was not sent"),
                    }
                }
                let cents: i64 = rng.random_range(100..2000);
                let body = json!({"amount": format!("{}.{:02}", cents / 100, cents % 100),
                    "currency": "USD", "token": "IOSD"});
                let url = format!("{base}/v1/payouts");
                if let Some(p) = self.ask(&log, Kind::Payout, &payer, &url, &body).await {
                    self.log.payouts.lock().push(id_of(&p));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        }
    }

    /// POSTs `body` with a key of its own, sending it again with the same key while busy, while
    /// the key's first request still runs, or while no answer comes, for a minute at most.
    /// Gives up on a refusal (4xx) and on an outcome the server cannot know (the first attempt
    /// died answering): the final check finds what such a request did.
    async fn ask(
        &self,
        log: &Log,
        kind: Kind,
        payer: &Payer,
        url: &str,
        body: &Value,
    ) -> Option<Value> {
        let key = format!("soak-{:016x}", rand::random::<u64>());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let sent = Instant::now();
            let res = self
                .http
                .post(url)
                .bearer_auth(&payer.key)
                .header("idempotency-key", &key)
                .json(body)
                .send()
                .await;
            let (status, wait) = match res {
                Ok(r) if r.status().is_success() => {
                    let status = r.status().as_u16();
                    if let Ok(v) = r.json::<Value>().await {
                        log.note(kind, sent, Outcome::Ok, status);
                        return Some(v);
                    }
                    (status, None)
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let after = retry_after(r.headers());
                    let answer: Value = r.json().await.unwrap_or(Value::Null);
                    let code = answer["code"].as_str();
                    if let Some(wait) = busy_wait(code, after) {
                        log.note(kind, sent, Outcome::Shed, status);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let again = status >= 500 || code == Some("idempotency_key_in_flight");
                    if !again {
                        log.note(kind, sent, Outcome::Failed, status);
                        tracing::warn!(%status, %answer, "a soak payment was refused");
                        return None;
                    }
                    (status, after)
                }
                Err(_) => (0, None),
            };
            log.note(kind, sent, Outcome::Failed, status);
            tokio::time::sleep(wait.unwrap_or(Duration::from_millis(500))).await;
        }
        None
    }

    /// Waits (two minutes at most) for the money to settle, then checks it; prints what it
    /// found. Whether all is right.
    pub async fn check(&self, db: &iocloud_db::Db, payers: &[Payer]) -> anyhow::Result<bool> {
        if payers.is_empty() {
            return Ok(true);
        }
        let orgs: Vec<&str> = payers.iter().map(|p| p.org.as_str()).collect();
        let within = |sql: &str| sql.replace("$ORGS", &quoted(&orgs));
        // Settled: no deposit paid on chain waits to be credited, no payout is on its way.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut waiting = count(
                db,
                &within("SELECT COUNT(*) FROM payouts WHERE org_id IN ($ORGS) AND status IN ('ready', 'queued', 'sent')"),
                "",
            )
            .await?;
            let paid = self.log.deposits.lock().clone();
            for (intent, ..) in paid {
                waiting += count(
                    db,
                    "SELECT COUNT(*) FROM deposit_intents WHERE id = $1 AND status <> 'paid'",
                    &intent,
                )
                .await?;
            }
            if waiting == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let mut right = true;
        if self.stripe.is_some() {
            let answered = self.log.top_ups.lock().clone();
            let mut missing = 0;
            for id in &answered {
                missing += 1 - count(
                    db,
                    "SELECT COUNT(*) FROM top_ups WHERE id = $1 AND status = 'succeeded'",
                    id,
                )
                .await?;
            }
            // Every charge credited exactly once, answered or not.
            let charged = count(db, &within("SELECT COUNT(*) FROM top_ups WHERE org_id IN ($ORGS) AND payment_intent_id IS NOT NULL"), "").await?;
            let wrong = count(db, &within("SELECT COUNT(*) FROM top_ups t WHERE t.org_id IN ($ORGS) AND t.payment_intent_id IS NOT NULL \
                AND (t.status <> 'succeeded' OR t.received <> t.amount OR (SELECT COUNT(*) FROM ledger_transactions l WHERE l.external_ref = 'stripe:' || t.payment_intent_id) <> 1)"), "").await?;
            let events = count(db, &within("SELECT COUNT(*) FROM stripe_events e JOIN top_ups t ON t.payment_intent_id = e.object_id WHERE t.org_id IN ($ORGS)"), "").await?;
            println!(
                "- card top-ups answered 201: {}; not stored as succeeded: {missing}; charged: {charged}, of which not credited exactly once: {wrong}; their webhooks stored once each: {events}, delivered {} times ({} sent again after a failure, {} given up)",
                answered.len(),
                self.log.webhooks_delivered.load(Ordering::Relaxed),
                self.log.webhooks_resent.load(Ordering::Relaxed),
                self.log.webhooks_abandoned.load(Ordering::Relaxed),
            );
            right &= missing == 0
                && wrong == 0
                && self.log.webhooks_abandoned.load(Ordering::Relaxed) == 0;
        }
        if let Some(chain) = &self.chain {
            let deposits = self.log.deposits.lock().clone();
            let mut wrong = 0;
            for (intent, signature, units) in &deposits {
                let credited = count(
                    db,
                    "SELECT COUNT(*) FROM ledger_transactions WHERE external_ref LIKE 'solana:' || $1 || ':%'",
                    signature,
                )
                .await?;
                let received: Option<(String, i64)> = iocloud_db::db_run!(db, |p| {
                    sqlx::query_as("SELECT status, received FROM deposit_intents WHERE id = $1")
                        .bind(intent)
                        .fetch_optional(p)
                        .await
                })?;
                if credited != 1 || received != Some(("paid".to_string(), *units)) {
                    wrong += 1;
                }
            }
            println!(
                "- deposits paid on chain: {}; not credited exactly once: {wrong}",
                deposits.len()
            );
            right &= wrong == 0;

            let answered = self.log.payouts.lock().clone();
            let mut missing = 0;
            for id in &answered {
                missing += 1 - count(db, "SELECT COUNT(*) FROM payouts WHERE id = $1", id).await?;
            }
            let unpaid = count(
                db,
                &within(
                    "SELECT COUNT(*) FROM payouts WHERE org_id IN ($ORGS) AND status <> 'paid'",
                ),
                "",
            )
            .await?;
            // What reached each wallet is what its paid payouts say, no more.
            let mut overpaid = 0;
            for p in payers {
                let Some(wallet) = &p.wallet else { continue };
                let paid: i64 = iocloud_db::db_run!(db, |c| {
                    sqlx::query_scalar("SELECT CAST(COALESCE(SUM(token_amount), 0) AS BIGINT) FROM payouts WHERE org_id = $1 AND status = 'paid'")
                        .bind(&p.org)
                        .fetch_one(c)
                        .await
                })?;
                let held = control(
                    &self.http,
                    &chain.peer,
                    "token_balance",
                    json!({"mint": chain.mint, "owner": wallet, "commitment": "finalized"}),
                )
                .await?;
                let held: i64 = held["amount"].as_str().unwrap_or("0").parse()?;
                if held != paid {
                    overpaid += 1;
                    println!("  - wallet {wallet} holds {held}, its paid payouts {paid}");
                }
            }
            println!(
                "- payouts answered 201: {}; not stored: {missing}; not paid: {unpaid}; wallets holding other than their paid payouts: {overpaid}",
                answered.len()
            );
            right &= missing == 0 && unpaid == 0 && overpaid == 0;
        }
        Ok(right)
    }

    /// Unregisters the relay and removes the treasury's key.
    pub async fn close(&self) {
        if let Some(s) = &self.stripe {
            let _ = self
                .http
                .delete(format!("{}/_config/webhooks/{}", s.base, s.endpoint))
                .send()
                .await;
        }
        if let Some(c) = &self.chain {
            let _ = std::fs::remove_file(&c.keypair);
        }
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// `'a', 'b'` for an `IN` list of ids this run made.
fn quoted(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stripe's side of webhooks, on loopback: takes each delivery from localstripe and sends it to
/// the load balancer twice (the second once the first was answered), each until a replica
/// answers 2xx, as Stripe sends again after a failure. Answers the relay's URL.
async fn relay(http: reqwest::Client, base: String, log: Arc<MoneyLog>) -> anyhow::Result<String> {
    let target = format!("{base}/webhooks/stripe");
    let app = axum::Router::new().route(
        "/stripe",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (http, target, log) = (http.clone(), target.clone(), log.clone());
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                tokio::spawn(async move {
                    for _ in 0..2 {
                        deliver(&http, &target, &signature, &body, &log).await;
                    }
                });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/stripe", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// One delivery, sent until answered 2xx, for five minutes at most.
async fn deliver(
    http: &reqwest::Client,
    target: &str,
    signature: &str,
    body: &Bytes,
    log: &MoneyLog,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let sent = http
            .post(target)
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            log.webhooks_delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if Instant::now() > deadline {
            log.webhooks_abandoned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        log.webhooks_resent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
