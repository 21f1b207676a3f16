//! Thousands of concurrent ledger operations (deposits, credits, holds, captures, extensions,
//! releases, refunds, transfers), some retried with the same reference and some cut off
//! mid-transaction, on SQLite and (with `IOCLOUD_TEST_POSTGRES_URL`) Postgres. After every round
//! the books must balance: postings sum to zero per currency, nothing that must not be is
//! overdrawn, holds hold, and stored balances equal the ones rebuilt from postings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::{
    AccountKind, AccountRef, BillingError, Currency, Ledger, Money, TransactionKind,
};
use iocloud_db::scratch::ScratchDb;
use iocloud_db::{DatabaseUrl, Db};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ORGS: [&str; 4] = ["org_a", "org_b", "org_c", "org_d"];
const PROVIDERS: [&str; 2] = ["org_prov1", "org_prov2"];
const CURRENCIES: [Currency; 2] = [Currency::Usd, Currency::Iosd];
const WORKERS: usize = 8;
const ROUNDS: usize = 320;
/// Operations are numbered; picking a number twice retries the same operation.
const OPERATIONS: u64 = 900;

async fn ledger_on(scratch: &ScratchDb) -> Ledger {
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    Ledger::new(db)
}

fn money(rng: &mut StdRng, c: Currency, max_units: i64) -> Money {
    Money::from_micros(rng.random_range(1..max_units * 1_000_000), c)
}

/// What operation `n` is: always the same for the same `n`, so a retry is a true retry.
async fn run_op(ledger: &Ledger, n: u64) -> Result<String, BillingError> {
    let mut rng = StdRng::seed_from_u64(n);
    let c = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
    let org = ORGS[rng.random_range(0..ORGS.len())];
    let available = AccountRef::org(org, AccountKind::Available, c);
    let post = |kind, from: AccountRef, to: AccountRef, amount: Money, org: &str| {
        let t = NewTransaction {
            external_ref: format!("op-{n}"),
            kind,
            org_id: Some(org.to_string()),
            memo: format!("random op {n}"),
            postings: Posting::transfer(from, to, amount).unwrap().to_vec(),
        };
        async move { ledger.post(&t).await.map(|p| p.transaction_id) }
    };
    match rng.random_range(0..10) {
        0 => {
            let rail = if c == Currency::Usd {
                AccountKind::ExternalStripe
            } else {
                AccountKind::ExternalSolana
            };
            post(
                TransactionKind::Deposit,
                AccountRef::platform(rail, c),
                available,
                money(&mut rng, c, 200),
                org,
            )
            .await
        }
        1 => {
            post(
                TransactionKind::CreditGrant,
                AccountRef::platform(AccountKind::Promotions, c),
                available,
                money(&mut rng, c, 50),
                org,
            )
            .await
        }
        2 | 3 => ledger
            .place_hold(
                org,
                money(&mut rng, c, 60),
                &format!("clu_{n}"),
                &format!("op-{n}"),
            )
            .await
            .map(|h| h.id),
        4 | 5 => {
            let target = rng.random_range(0..n.max(1));
            let Some(hold) = ledger.hold_by_external_ref(&format!("op-{target}")).await? else {
                return Err(BillingError::HoldNotFound(format!("op-{target}")));
            };
            let provider = PROVIDERS[rng.random_range(0..PROVIDERS.len())];
            let amount = money(&mut rng, hold.currency(), 20);
            ledger
                .capture(&hold.id, amount, provider, 500, &format!("op-{n}"))
                .await
                .map(|h| h.id)
        }
        6 => {
            let target = rng.random_range(0..n.max(1));
            let Some(hold) = ledger.hold_by_external_ref(&format!("op-{target}")).await? else {
                return Err(BillingError::HoldNotFound(format!("op-{target}")));
            };
            if rng.random_bool(0.5) {
                ledger
                    .release(&hold.id, &format!("op-{n}"))
                    .await
                    .map(|h| h.id)
            } else {
                let extra = money(&mut rng, hold.currency(), 10);
                ledger
                    .extend_hold(&hold.id, extra, &format!("op-{n}"))
                    .await
                    .map(|h| h.id)
            }
        }
        7 => {
            post(
                TransactionKind::Refund,
                AccountRef::platform(AccountKind::PlatformRevenue, c),
                available,
                money(&mut rng, c, 5),
                org,
            )
            .await
        }
        _ => {
            let to = ORGS[rng.random_range(0..ORGS.len())];
            if to == org {
                return Ok("noop".into());
            }
            post(
                TransactionKind::Transfer,
                available,
                AccountRef::org(to, AccountKind::Available, c),
                money(&mut rng, c, 30),
                org,
            )
            .await
        }
    }
}

async fn random_operations(scratch: ScratchDb) {
    let ledger = Arc::new(ledger_on(&scratch).await);
    // The first successful answer of each operation: a retry must give the same.
    let outcomes: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let mut master = StdRng::seed_from_u64(0x0010_C10D);
    let (mut ok, mut refused, mut cut, mut replays) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let picks: Vec<(u64, Option<u64>)> = (0..WORKERS)
            .map(|_| {
                let n = master.random_range(0..OPERATIONS.min(10 + round as u64 * 8));
                // One operation in eight is cut off after a random few hundred microseconds.
                let crash = master
                    .random_bool(0.125)
                    .then(|| master.random_range(50..3000));
                (n, crash)
            })
            .collect();
        let tasks: Vec<_> = picks
            .into_iter()
            .map(|(n, crash)| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    match crash {
                        Some(us) => (
                            n,
                            tokio::time::timeout(Duration::from_micros(us), run_op(&ledger, n))
                                .await
                                .ok(),
                        ),
                        None => (n, Some(run_op(&ledger, n).await)),
                    }
                })
            })
            .collect();
        for t in tasks {
            let (n, result) = t.await.unwrap();
            match result {
                None => cut += 1,
                Some(Ok(id)) => {
                    ok += 1;
                    let mut seen = outcomes.lock();
                    match seen.get(&n) {
                        Some(first) if id != "noop" => {
                            replays += 1;
                            assert_eq!(first, &id, "operation {n} answered differently on retry");
                        }
                        _ => {
                            seen.insert(n, id);
                        }
                    }
                }
                Some(Err(e)) => match e {
                    BillingError::InsufficientFunds { .. }
                    | BillingError::HoldExceeded { .. }
                    | BillingError::HoldNotFound(_) => refused += 1,
                    other => panic!("operation {n} failed unexpectedly: {other:?}"),
                },
            }
        }
        let v = ledger.verify().await.unwrap();
        assert!(
            v.is_balanced(),
            "round {round}: the books do not balance: {v:?}"
        );
    }
    eprintln!("{ok} succeeded ({replays} replays), {refused} refused, {cut} cut off mid-way");
    assert!(
        ok > 600 && refused > 20 && replays > 100,
        "the mix exercised every path"
    );
    assert_eq!(
        ledger.rebuild_balances().await.unwrap(),
        0,
        "stored balances equal rebuilt ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_keep_the_books_balanced_sqlite() {
    random_operations(ScratchDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_keep_the_books_balanced_postgres() {
    let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") else {
        eprintln!("IOCLOUD_TEST_POSTGRES_URL is not set: skipping");
        return;
    };
    random_operations(ScratchDb::postgres(&url).await.unwrap()).await;
}

/// The same reference with different postings is refused, and nothing moves.
#[tokio::test]
async fn a_reference_cannot_be_reused_for_something_else() {
    let scratch = ScratchDb::sqlite().unwrap();
    let ledger = ledger_on(&scratch).await;
    let usd = |m| Money::from_micros(m, Currency::Usd);
    let grant = |amount| NewTransaction {
        external_ref: "grant-1".into(),
        kind: TransactionKind::CreditGrant,
        org_id: Some("org_a".into()),
        memo: "welcome".into(),
        postings: Posting::transfer(
            AccountRef::platform(AccountKind::Promotions, Currency::Usd),
            AccountRef::org("org_a", AccountKind::Available, Currency::Usd),
            usd(amount),
        )
        .unwrap()
        .to_vec(),
    };
    let first = ledger.post(&grant(5_000_000)).await.unwrap();
    assert!(!first.replayed);
    let again = ledger.post(&grant(5_000_000)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.transaction_id, first.transaction_id);
    assert!(matches!(
        ledger.post(&grant(6_000_000)).await,
        Err(BillingError::ExternalRefReused(_))
    ));
    let balance = ledger
        .balance(&AccountRef::org(
            "org_a",
            AccountKind::Available,
            Currency::Usd,
        ))
        .await
        .unwrap();
    assert_eq!(balance, usd(5_000_000));

    // A hold never overdraws; captures split 95/5 with the fee rounded down.
    assert!(matches!(
        ledger
            .place_hold("org_a", usd(6_000_000), "clu_1", "h-1")
            .await,
        Err(BillingError::InsufficientFunds { .. })
    ));
    let hold = ledger
        .place_hold("org_a", usd(4_000_000), "clu_1", "h-1")
        .await
        .unwrap();
    let hold = ledger
        .capture(&hold.id, usd(1_000_019), "org_p", 500, "c-1")
        .await
        .unwrap();
    assert_eq!(hold.captured, 1_000_019);
    let earned = ledger
        .balance(&AccountRef::org(
            "org_p",
            AccountKind::ProviderEarnings,
            Currency::Usd,
        ))
        .await
        .unwrap();
    assert_eq!(
        earned.micros(),
        1_000_019 - 50_000,
        "fee = floor(1_000_019 × 5%) = 50_000"
    );
    assert!(matches!(
        ledger
            .capture(&hold.id, usd(3_000_000), "org_p", 500, "c-2")
            .await,
        Err(BillingError::HoldExceeded { .. })
    ));
    let hold = ledger.release(&hold.id, "r-1").await.unwrap();
    assert_eq!(hold.status, "settled");
    assert_eq!(hold.released, 4_000_000 - 1_000_019);
    assert_eq!(
        ledger
            .balance(&AccountRef::org(
                "org_a",
                AccountKind::Available,
                Currency::Usd
            ))
            .await
            .unwrap(),
        usd(5_000_000 - 1_000_019)
    );
    assert!(ledger.verify().await.unwrap().is_balanced());
}

/// Batches take the set-based path when they can, fall back to one savepoint per transaction
/// when one of them is refused or replayed, and answer each transaction in its slot.
#[tokio::test]
async fn batches_post_what_they_can() {
    for scratch in scratch_databases().await {
        let ledger = ledger_on(&scratch).await;
        let usd = |m| Money::from_micros(m, Currency::Usd);
        let grant = |r: &str, org: &str, m| NewTransaction {
            external_ref: r.into(),
            kind: TransactionKind::CreditGrant,
            org_id: Some(org.into()),
            memo: "grant".into(),
            postings: Posting::transfer(
                AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                AccountRef::org(org, AccountKind::Available, Currency::Usd),
                usd(m),
            )
            .unwrap()
            .to_vec(),
        };
        let pay = |r: &str, from: &str, to: &str, m| NewTransaction {
            external_ref: r.into(),
            kind: TransactionKind::Transfer,
            org_id: Some(from.into()),
            memo: "pay".into(),
            postings: Posting::transfer(
                AccountRef::org(from, AccountKind::Available, Currency::Usd),
                AccountRef::org(to, AccountKind::Available, Currency::Usd),
                usd(m),
            )
            .unwrap()
            .to_vec(),
        };
        // All new and covered (b pays before it is funded, but the batch nets out): fast path.
        let first = ledger
            .post_batch(&[
                grant("g1", "org_a", 100),
                pay("p1", "org_b", "org_c", 30),
                pay("p2", "org_a", "org_b", 40),
            ])
            .await
            .unwrap();
        assert!(
            first.iter().all(|r| r.as_ref().is_ok_and(|p| !p.replayed)),
            "{first:?}"
        );
        // A replay and an overdraft in one batch: each answered in its slot, the rest posted.
        let second = ledger
            .post_batch(&[
                grant("g1", "org_a", 100),
                pay("p3", "org_c", "org_a", 1_000),
                pay("p4", "org_c", "org_a", 5),
            ])
            .await
            .unwrap();
        assert!(second[0].as_ref().unwrap().replayed);
        assert!(matches!(
            second[1],
            Err(BillingError::InsufficientFunds { .. })
        ));
        assert!(second[2].as_ref().is_ok_and(|p| !p.replayed));
        let bal = |org: &'static str| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .balance(&AccountRef::org(org, AccountKind::Available, Currency::Usd))
                    .await
                    .unwrap()
                    .micros()
            }
        };
        assert_eq!(
            (bal("org_a").await, bal("org_b").await, bal("org_c").await),
            (65, 10, 25)
        );
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

async fn scratch_databases() -> Vec<ScratchDb> {
    let mut dbs = vec![ScratchDb::sqlite().unwrap()];
    if let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
        dbs.push(ScratchDb::postgres(&url).await.unwrap());
    }
    dbs
}

/// Writers racing on the first use of an account that may go negative (here an organisation's
/// debt) all post: whichever creates it, the others find it and move on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_of_an_account_races_cleanly() {
    for scratch in scratch_databases().await {
        let ledger = Arc::new(ledger_on(&scratch).await);
        for round in 0..20 {
            let org = format!("org_first_use_{round}");
            let writers = (0..8).map(|w| {
                let ledger = ledger.clone();
                let org = org.clone();
                tokio::spawn(async move {
                    let t = NewTransaction {
                        external_ref: format!("first-use-{round}-{w}"),
                        kind: TransactionKind::Dispute,
                        org_id: Some(org.clone()),
                        memo: "first use".into(),
                        postings: Posting::transfer(
                            AccountRef::org(&org, AccountKind::Debt, Currency::Usd),
                            AccountRef::org(&org, AccountKind::Available, Currency::Usd),
                            Money::from_micros(1_000_000, Currency::Usd),
                        )
                        .unwrap()
                        .to_vec(),
                    };
                    ledger.post(&t).await
                })
            });
            for writer in futures::future::join_all(writers).await {
                writer.unwrap().unwrap();
            }
            let available = ledger
                .balance(&AccountRef::org(
                    &org,
                    AccountKind::Available,
                    Currency::Usd,
                ))
                .await
                .unwrap();
            assert_eq!(available.micros(), 8_000_000, "{}", scratch.url);
        }
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}
