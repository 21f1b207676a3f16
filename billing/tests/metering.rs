//! Metering: per-second charges from the hold, exactly once per period across replicas and
//! crashes, no charge while a node is down, nothing after it stops, on SQLite and Postgres.

use std::time::Duration;

use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::metering::{HoldToSettle, HoldsSettled, NewUsage, Settled, settle_holds_in};
use iocloud_billing::{AccountKind, AccountRef, Currency, Ledger, Money, TransactionKind};
use iocloud_db::scratch::ScratchDb;
use iocloud_db::{DatabaseUrl, Db, db_run};

const T0: i64 = 1_800_000_000_000_000; // a whole minute, in µs
const MINUTE: i64 = 60_000_000;
const SECOND: i64 = 1_000_000;

async fn scratch_databases() -> Vec<ScratchDb> {
    let mut dbs = vec![ScratchDb::sqlite().unwrap()];
    if let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
        dbs.push(ScratchDb::postgres(&url).await.unwrap());
    }
    dbs
}

fn usd(m: i64) -> Money {
    Money::from_micros(m, Currency::Usd)
}

/// A funded organisation with a hold of `hold` µUSD and a node at $2.10/h on it.
async fn setup(scratch: &ScratchDb, hold: i64) -> (Ledger, String) {
    let (ledger, record, _) = setup_with_hold(scratch, hold).await;
    (ledger, record)
}

/// [`setup`], with the hold's id too.
async fn setup_with_hold(scratch: &ScratchDb, hold: i64) -> (Ledger, String, String) {
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let ledger = Ledger::new(db);
    ledger
        .post(&NewTransaction {
            external_ref: "fund".into(),
            kind: TransactionKind::CreditGrant,
            org_id: Some("org_c".into()),
            memo: "fund".into(),
            postings: Posting::transfer(
                AccountRef::platform(AccountKind::Promotions, Currency::Usd),
                AccountRef::org("org_c", AccountKind::Available, Currency::Usd),
                usd(100_000_000),
            )
            .unwrap()
            .to_vec(),
        })
        .await
        .unwrap();
    let (hold_id, record) = hold_with_a_node(&ledger, "clu_1", "nod_1", "dev_1", hold).await;
    (ledger, record, hold_id)
}

/// A cluster of `org_c`'s with a hold of `hold` µUSD and one node at $2.10/h on it: the
/// hold's id and the node's usage record's.
async fn hold_with_a_node(
    ledger: &Ledger,
    cluster: &str,
    node: &str,
    device: &str,
    hold: i64,
) -> (String, String) {
    let h = ledger
        .place_hold("org_c", usd(hold), cluster, &format!("hold-{cluster}"))
        .await
        .unwrap();
    let record = ledger
        .start_usage(NewUsage {
            org_id: "org_c",
            cluster_id: cluster,
            node_id: node,
            device_id: device,
            provider_org_id: "org_p",
            hold_id: &h.id,
            gpus: 1,
            rate_per_hour: usd(2_100_000),
            started_at: T0,
        })
        .await
        .unwrap();
    (h.id, record.id)
}

async fn earned(ledger: &Ledger) -> i64 {
    ledger
        .balance(&AccountRef::org(
            "org_p",
            AccountKind::ProviderEarnings,
            Currency::Usd,
        ))
        .await
        .unwrap()
        .micros()
}

async fn charged(ledger: &Ledger) -> i64 {
    db_run!(ledger.db(), |p| sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM usage_lines"
    )
    .fetch_one(p)
    .await)
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_per_second_once_per_period() {
    for scratch in scratch_databases().await {
        let (ledger, id) = setup(&scratch, 10_000_000).await;
        // 90 s in: the first whole minute is charged; $2.10/h × 60 s = $0.035.
        let r = ledger.accrue(T0 + 90 * SECOND, MINUTE, 500).await.unwrap();
        assert_eq!(r.charged_records, 1);
        assert_eq!(charged(&ledger).await, 35_000);
        assert_eq!(
            earned(&ledger).await,
            35_000 - 1_750,
            "5% fee, rounded down"
        );
        // The same period again, and two replicas at once: nothing more.
        let (a, b) = tokio::join!(
            ledger.accrue(T0 + 100 * SECOND, MINUTE, 500),
            ledger.accrue(T0 + 110 * SECOND, MINUTE, 500)
        );
        assert_eq!(a.unwrap().charged_records + b.unwrap().charged_records, 0);
        assert_eq!(charged(&ledger).await, 35_000);

        // Down for 20 s in the second minute: 40 s charged.
        ledger
            .record_downtime(&id, T0 + 70 * SECOND, T0 + 90 * SECOND)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            ledger.accrue(T0 + 125 * SECOND, MINUTE, 500),
            ledger.accrue(T0 + 126 * SECOND, MINUTE, 500)
        );
        assert_eq!(
            a.unwrap().charged_records + b.unwrap().charged_records,
            1,
            "two replicas, one charge"
        );
        assert_eq!(
            charged(&ledger).await,
            35_000 + 23_333,
            "floor(2.10 × 100 s / 3600) = 0.058333"
        );

        // Stopped at 150 s: charged to there, never after.
        ledger.stop_usage(&id, T0 + 150 * SECOND).await.unwrap();
        ledger.accrue(T0 + 600 * SECOND, MINUTE, 500).await.unwrap();
        ledger.accrue(T0 + 900 * SECOND, MINUTE, 500).await.unwrap();
        assert_eq!(
            charged(&ledger).await,
            75_833,
            "floor(2.10 × 130 s / 3600), no drift"
        );
        let record = ledger.usage_record(&id).await.unwrap();
        assert_eq!(record.accrued_until, T0 + 150 * SECOND);
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_mid_pass_never_double_charge() {
    for scratch in scratch_databases().await {
        let (ledger, _) = setup(&scratch, 10_000_000).await;
        // Passes cut off at random points, minute after minute, then one that finishes.
        for minute in 1..=30i64 {
            let cut = Duration::from_micros((minute as u64 * 997) % 3000 + 50);
            let _ =
                tokio::time::timeout(cut, ledger.accrue(T0 + minute * MINUTE, MINUTE, 500)).await;
        }
        ledger.accrue(T0 + 30 * MINUTE, MINUTE, 500).await.unwrap();
        assert_eq!(
            charged(&ledger).await,
            1_050_000,
            "$2.10/h for 30 minutes, exactly"
        );
        let captured: i64 = db_run!(ledger.db(), |p| sqlx::query_scalar::<_, i64>(
            "SELECT captured FROM holds"
        )
        .fetch_one(p)
        .await)
        .unwrap();
        assert_eq!(captured, 1_050_000, "the hold agrees with the usage lines");
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_hold_records_what_went_unpaid() {
    for scratch in scratch_databases().await {
        let (ledger, id) = setup(&scratch, 50_000).await;
        let r = ledger.accrue(T0 + 2 * MINUTE, MINUTE, 500).await.unwrap();
        assert_eq!(r.short, vec![id.clone()]);
        assert_eq!(charged(&ledger).await, 50_000, "what the hold had");
        let unpaid: i64 = db_run!(ledger.db(), |p| sqlx::query_scalar::<_, i64>(
            "SELECT unpaid FROM usage_lines"
        )
        .fetch_one(p)
        .await)
        .unwrap();
        assert_eq!(unpaid, 70_000 - 50_000);
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_settlement_charges_to_the_second_and_releases_the_rest() {
    for scratch in scratch_databases().await {
        let (ledger, id) = setup(&scratch, 10_000_000).await;
        ledger.accrue(T0 + MINUTE, MINUTE, 500).await.unwrap();
        let hold = ledger
            .settle_usage(&id, T0 + 90 * SECOND, 500)
            .await
            .unwrap()
            .expect("the last node on the hold");
        assert_eq!(hold.status, "settled");
        assert_eq!(charged(&ledger).await, 52_500, "$2.10/h for exactly 90 s");
        assert_eq!(hold.captured, 52_500);
        assert_eq!(hold.released, 10_000_000 - 52_500);
        let available = ledger
            .balance(&AccountRef::org(
                "org_c",
                AccountKind::Available,
                Currency::Usd,
            ))
            .await
            .unwrap();
        assert_eq!(available.micros(), 100_000_000 - 52_500);
        // Again, and a later pass: nothing moves.
        ledger
            .settle_usage(&id, T0 + 600 * SECOND, 500)
            .await
            .unwrap();
        ledger.accrue(T0 + 30 * MINUTE, MINUTE, 500).await.unwrap();
        assert_eq!(charged(&ledger).await, 52_500);
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_lines_are_hourly_and_agree_with_the_ledger() {
    const HOUR: i64 = 60 * MINUTE;
    for scratch in scratch_databases().await {
        let (ledger, id) = setup(&scratch, 10_000_000).await;
        // A pass every minute for two and a half hours, but none at the first hour's end:
        // the charge at 1:01 spans two clock hours and is split between their lines.
        for minute in (1..=150i64).filter(|m| *m != 60) {
            ledger
                .accrue(T0 + minute * MINUTE, MINUTE, 500)
                .await
                .unwrap();
        }
        let lines: Vec<(i64, i64, i64, i64, i64, i64)> = db_run!(ledger.db(), |p| {
            sqlx::query_as(
                "SELECT hour_start, period_start, period_end, billable_micros, amount, earned FROM usage_lines \
                 WHERE record_id = $1 ORDER BY hour_start",
            )
            .bind(&id)
            .fetch_all(p)
            .await
        })
        .unwrap();
        let hours: Vec<i64> = lines.iter().map(|l| (l.0 - T0) / HOUR).collect();
        assert_eq!(hours, vec![0, 1, 2], "one line per clock hour");
        assert_eq!((lines[0].1, lines[0].2), (T0, T0 + HOUR));
        assert_eq!((lines[1].1, lines[1].2), (T0 + HOUR, T0 + 2 * HOUR));
        assert_eq!(lines[2].2, T0 + 150 * MINUTE);
        assert_eq!(lines[0].3, HOUR, "a whole hour billable");
        assert_eq!(
            (lines[0].4, lines[1].4, lines[2].4),
            (2_100_000, 2_100_000, 1_050_000),
            "$2.10 an hour, split at the hour even when one capture spans it"
        );
        assert_eq!(
            lines.iter().map(|l| l.5).sum::<i64>(),
            earned(&ledger).await,
            "earnings summed from the lines are the provider's ledger balance"
        );
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_settles_every_node_without_its_downtime() {
    for scratch in scratch_databases().await {
        let (ledger, first, hold_id) = setup_with_hold(&scratch, 10_000_000).await;
        let second = ledger
            .start_usage(NewUsage {
                org_id: "org_c",
                cluster_id: "clu_1",
                node_id: "nod_2",
                device_id: "dev_2",
                provider_org_id: "org_p",
                hold_id: &hold_id,
                gpus: 1,
                rate_per_hour: usd(2_100_000),
                started_at: T0,
            })
            .await
            .unwrap()
            .id;
        // The first node down twice (20 s and 10 s), the second once (30 s).
        for (id, from, to) in [(&first, 10, 30), (&first, 50, 60), (&second, 40, 70)] {
            ledger
                .record_downtime(id, T0 + from * SECOND, T0 + to * SECOND)
                .await
                .unwrap();
        }
        let usage = ledger.usage_of_holds(&[&hold_id]).await.unwrap();
        let usage = &usage[&hold_id];
        assert_eq!(
            usage.records.len(),
            2,
            "each record once, however many stretches"
        );
        let hold = settle(&ledger, &hold_id, usage, T0 + 90 * SECOND).await;
        assert_eq!(
            charged(&ledger).await,
            2 * 35_000,
            "60 s of each node at $2.10/h"
        );
        assert_eq!(hold.captured, 70_000);
        assert_eq!(hold.released, 10_000_000 - 70_000);
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_a_hold_released_already_stops_what_still_runs_on_it() {
    for scratch in scratch_databases().await {
        let (ledger, first, hold_id) = setup_with_hold(&scratch, 10_000_000).await;
        ledger.release(&hold_id, "released-early").await.unwrap();
        let usage = ledger.usage_of_holds(&[&hold_id]).await.unwrap();
        let hold = settle(&ledger, &hold_id, &usage[&hold_id], T0 + 90 * SECOND).await;
        assert_eq!(hold.captured, 0, "nothing more charged to a settled hold");
        let record = ledger.usage_record(&first).await.unwrap();
        assert_eq!(
            record.ended_at,
            Some(T0 + 90 * SECOND),
            "the record stopped"
        );
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_settle_together_and_the_one_charged_meanwhile_is_named() {
    for scratch in scratch_databases().await {
        let (ledger, _, a) = setup_with_hold(&scratch, 10_000_000).await;
        let (b, b_record) = hold_with_a_node(&ledger, "clu_2", "nod_2", "dev_2", 10_000_000).await;
        let (c, c_record) = hold_with_a_node(&ledger, "clu_3", "nod_3", "dev_3", 10_000_000).await;
        // `b` is read, then an accrual pass charges every record and `c` is released early;
        // `a` and `c` are read after.
        let stale = ledger.usage_of_holds(&[&b]).await.unwrap();
        ledger.accrue(T0 + 60 * SECOND, MINUTE, 500).await.unwrap();
        ledger.release(&c, "released-early").await.unwrap();
        let fresh = ledger.usage_of_holds(&[&a, &c]).await.unwrap();
        let at = T0 + 90 * SECOND;
        let item = |hold_id, usage| HoldToSettle { hold_id, usage, at };
        let all = [
            item(&a, &fresh[&a]),
            item(&b, &stale[&b]),
            item(&c, &fresh[&c]),
        ];

        let mut tx = ledger.db().begin().await.unwrap();
        match settle_holds_in(&mut tx, &all, 500).await.unwrap() {
            HoldsSettled::Raced(raced) => {
                assert_eq!(raced.into_iter().collect::<Vec<_>>(), vec![b.clone()])
            }
            HoldsSettled::Settled(_) => panic!("b's record moved since it was read"),
        }
        tx.rollback().await.unwrap();

        // Without it the other two settle together, and it settles from a fresh read.
        let mut tx = ledger.db().begin().await.unwrap();
        let together = [item(&a, &fresh[&a]), item(&c, &fresh[&c])];
        let HoldsSettled::Settled(settled) =
            settle_holds_in(&mut tx, &together, 500).await.unwrap()
        else {
            panic!("nothing moved since the read");
        };
        let holds: Vec<_> = settled.iter().map(|s| s.hold.clone()).collect();
        Settled::post_all_in(&mut tx, settled).await.unwrap();
        tx.commit().await.unwrap();
        let again = ledger.usage_of_holds(&[&b]).await.unwrap();
        let b_hold = settle(&ledger, &b, &again[&b], at).await;

        assert_eq!(holds[0].id, a, "answers in the order asked");
        assert_eq!(holds[0].captured, 52_500, "90 s at $2.10/h");
        assert_eq!(holds[0].released, 10_000_000 - 52_500);
        assert_eq!(holds[1].id, c);
        assert_eq!(
            holds[1].captured, 35_000,
            "released at 60 s: nothing charged after"
        );
        let c_record = ledger.usage_record(&c_record).await.unwrap();
        assert_eq!(c_record.ended_at, Some(at), "its node stopped all the same");
        assert_eq!(b_hold.captured, 52_500, "90 s at $2.10/h");
        assert_eq!(b_hold.status, "settled");
        let b_record = ledger.usage_record(&b_record).await.unwrap();
        assert_eq!(b_record.ended_at, Some(at));
        assert_eq!(b_record.accrued_until, at);
        assert_eq!(charged(&ledger).await, 52_500 + 35_000 + 52_500);
        assert_eq!(
            earned(&ledger).await,
            140_000 * 95 / 100,
            "the provider earns all but the 5% fee"
        );
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_asked_twice_at_once_is_refused_not_charged_twice() {
    for scratch in scratch_databases().await {
        let (ledger, _, hold_id) = setup_with_hold(&scratch, 10_000_000).await;
        let usage = ledger.usage_of_holds(&[&hold_id]).await.unwrap();
        let item = || HoldToSettle {
            hold_id: &hold_id,
            usage: &usage[&hold_id],
            at: T0 + 90 * SECOND,
        };
        let mut tx = ledger.db().begin().await.unwrap();
        assert!(
            settle_holds_in(&mut tx, &[item(), item()], 500)
                .await
                .is_err()
        );
        tx.rollback().await.unwrap();
        assert_eq!(charged(&ledger).await, 0);
        let hold = settle(&ledger, &hold_id, &usage[&hold_id], T0 + 90 * SECOND).await;
        assert_eq!(hold.captured, 52_500, "charged once, when asked once");
        assert!(ledger.verify().await.unwrap().is_balanced());
    }
}

/// A hold's final settlement at `at` in a transaction of its own, with a 5% platform fee.
async fn settle(
    ledger: &Ledger,
    hold_id: &str,
    usage: &iocloud_billing::metering::HoldUsage,
    at: i64,
) -> iocloud_billing::ledger::Hold {
    let mut tx = ledger.db().begin().await.unwrap();
    let settled = iocloud_billing::metering::settle_hold_in(&mut tx, hold_id, usage, at, 500)
        .await
        .unwrap()
        .expect("nothing moved since the read");
    let hold = settled.post_in(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    hold
}
