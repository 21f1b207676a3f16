//! Claiming placed capacity: 32 simultaneous requests, from two replicas with their own
//! indexes, for the last free GPUs, on SQLite and on Postgres. Exactly as many succeed as there
//! are GPUs; the rest are told `insufficient_capacity`; no GPU is booked twice. A claim
//! dropped mid-way holds nothing back. And the
//! learned reliability: what nodes and hours do to it, and placement following it.

use iocloud_control::placement::Request;
use iocloud_control::providers::Catalog;
use iocloud_control::{Control, ErrorCode, Settings};
use iocloud_db::ids::OrgId;
use iocloud_db::scratch::ScratchDb;
use iocloud_db::{DatabaseUrl, Db, Kv, db_run, tx_run};

async fn scratch_databases() -> Vec<ScratchDb> {
    let mut dbs = vec![ScratchDb::sqlite().unwrap()];
    if let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
        dbs.push(ScratchDb::postgres(&url).await.unwrap());
    }
    dbs
}

/// The scratch database opened, with every migration applied.
async fn migrated(scratch: &ScratchDb) -> Db {
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    db
}

async fn replica(db: &Db) -> Control {
    let catalog = Catalog::load(db).await.unwrap();
    let jwt = iocloud_control::jwt::JwtKeys::load(db, None).await.unwrap();
    Control::new(db.clone(), Kv::memory(), jwt, Settings::default(), catalog).unwrap()
}

/// An available H100 machine with `free` of its 8 GPUs free.
async fn device(db: &Db, id: &str, provider: &str, free: i64, price: i64) {
    db_run!(db, |p| sqlx::query(
        "INSERT INTO devices (id, org_id, name, gpu_model, gpu_count, gpus_free, cpu_cores, ram_gib, disk_gib, region, country, lat, lon, \
         bandwidth_up_mbps, bandwidth_down_mbps, price_per_gpu_hour, token_hash, status, verified_at, created_at, updated_at) \
         VALUES ($1, $2, $1, 'h100-sxm', 8, $3, 64, 512, 2000, 'eu-central', 'DE', 50.1, 8.7, 10000, 10000, $4, $1, $5, 1, 1, 1)"
    )
    .bind(id)
    .bind(provider)
    .bind(free)
    .bind(price)
    .bind(if free == 8 { "available" } else { "busy" })
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .unwrap();
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    db_run!(db, |p| sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await).unwrap()
}

async fn race(db: &Db, request: Request, expect_wins: usize) {
    let (a, b) = (replica(db).await, replica(db).await);
    let attempts = (0..32).map(|i| {
        let control = if i % 2 == 0 { a.clone() } else { b.clone() };
        let request = request.clone();
        tokio::spawn(async move {
            control
                .capacity
                .claim_nodes(
                    &OrgId::trusted("org_customer"),
                    &format!("clu_{i}"),
                    &request,
                    &serde_json::json!({"kind": "container"}),
                )
                .await
        })
    });
    let mut wins = 0;
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok(claim) => {
                wins += 1;
                assert_eq!(claim.node_ids.len(), claim.plan.nodes.len());
            }
            Err(e) => assert_eq!(e.code(), ErrorCode::InsufficientCapacity, "{e}"),
        }
    }
    assert_eq!(
        wins, expect_wins,
        "exactly as many claims as the GPUs allow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_free_gpus_go_to_exactly_as_many_requests() {
    for scratch in scratch_databases().await {
        let db = migrated(&scratch).await;
        // 8 free GPUs on four machines of two providers, and a full one.
        for (i, provider) in ["org_a", "org_a", "org_b", "org_b"].iter().enumerate() {
            device(&db, &format!("dev_{i}"), provider, 2, 2_000_000 + i as i64).await;
        }
        device(&db, "dev_full", "org_b", 0, 1_000_000).await;

        race(&db, Request::new(1), 8).await;
        assert_eq!(
            scalar(
                &db,
                "SELECT CAST(COALESCE(SUM(gpus_free), 0) AS BIGINT) FROM devices"
            )
            .await,
            0
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT CAST(COALESCE(SUM(gpus), 0) AS BIGINT) FROM node_assignments"
            )
            .await,
            8
        );
        assert_eq!(
            scalar(
                &db,
                "SELECT COUNT(*) FROM (SELECT device_id FROM node_assignments GROUP BY device_id HAVING SUM(gpus) > 2) AS x"
            )
            .await,
            0,
            "no machine gave more GPUs than it had free"
        );

        // Nodes of two: four more machines of 2 free GPUs take four clusters of 2.
        for i in 4..8 {
            device(&db, &format!("dev_{i}"), "org_c", 2, 2_500_000).await;
        }
        let mut pairs = Request::new(2);
        pairs.gpus_per_node = Some(2);
        race(&db, pairs, 4).await;
        assert_eq!(
            scalar(
                &db,
                "SELECT CAST(COALESCE(SUM(gpus_free), 0) AS BIGINT) FROM devices"
            )
            .await,
            0
        );
        db.close().await;
    }
}

/// A claim whose request is dropped while it waits on the database (a client hanging up, or
/// the request timeout) holds nothing back: a request that does not fit is told so at once,
/// rather than waiting for a decision nobody will make, and the GPUs are placed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_dropped_mid_way_holds_nothing_back() {
    use std::time::{Duration, Instant};
    for scratch in scratch_databases().await {
        let db = migrated(&scratch).await;
        let control = replica(&db).await;
        device(&db, "dev_a", "org_a", 8, 2_000_000).await;
        let whole = Request::new(8);
        let claim = |cluster: &'static str, request: Request| {
            let control = control.clone();
            async move {
                control
                    .capacity
                    .claim_nodes(
                        &OrgId::trusted("org_c"),
                        cluster,
                        &request,
                        &serde_json::json!({}),
                    )
                    .await
            }
        };

        // Another writer holds the device's row (on SQLite, the write lock): the claim waits
        // inside its transaction, its GPUs marked as being claimed, and is dropped there.
        let mut writer = db.begin().await.unwrap();
        tx_run!(&mut writer, |c| sqlx::query(
            "UPDATE devices SET updated_at = updated_at + 1 WHERE id = 'dev_a'"
        )
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .unwrap();
        let dropped =
            tokio::time::timeout(Duration::from_millis(500), claim("clu_1", whole.clone()));
        assert!(dropped.await.is_err(), "the claim waited for the row");
        writer.rollback().await.unwrap();

        let asked = Instant::now();
        let too_big =
            tokio::time::timeout(Duration::from_secs(10), claim("clu_2", Request::new(9)))
                .await
                .expect("a request that does not fit is answered, not kept waiting");
        assert_eq!(too_big.unwrap_err().code(), ErrorCode::InsufficientCapacity);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );

        let again = tokio::time::timeout(Duration::from_secs(10), claim("clu_3", whole))
            .await
            .expect("the dropped claim's GPUs are placed again")
            .unwrap();
        assert_eq!(again.plan.nodes[0].device_id, "dev_a");
        assert_eq!(
            scalar(&db, "SELECT gpus_free FROM devices WHERE id = 'dev_a'").await,
            0,
            "taken once, by the claim that finished"
        );
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_is_learned_and_placement_follows_it() {
    use iocloud_control::providers::agent::{DeviceAuth, NodeReport};
    const HOUR: i64 = 3_600_000_000;
    for scratch in scratch_databases().await {
        let db = migrated(&scratch).await;
        let control = replica(&db).await;
        // Two identical machines of two providers; the first is a hair cheaper.
        device(&db, "dev_a", "org_a", 8, 2_000_000).await;
        device(&db, "dev_b", "org_b", 8, 2_000_001).await;
        let mut whole = Request::new(8);
        whole.gpus_per_node = Some(8);
        assert_eq!(
            control.capacity.plans(&whole).await.unwrap()[0].nodes[0].device_id,
            "dev_a"
        );

        // A node on dev_a fails: its score and its provider's drop a fifth of the way to 0.
        let claim = control
            .capacity
            .claim_nodes(
                &OrgId::trusted("org_c"),
                "clu_1",
                &whole,
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(claim.plan.nodes[0].device_id, "dev_a");
        let agent = DeviceAuth {
            id: "dev_a".into(),
            org_id: OrgId::trusted("org_a"),
            gpu_count: 8,
        };
        let report = |status: &str| NodeReport {
            status: status.into(),
            endpoints: None,
            ca_certificate: None,
            reason: Some("the GPU fell off the bus".into()),
        };
        control
            .agents
            .node_report(
                &agent,
                &claim.node_ids[0],
                report("failed"),
                &control.clusters,
            )
            .await
            .unwrap();
        control
            .agents
            .node_report(
                &agent,
                &claim.node_ids[0],
                report("released"),
                &control.clusters,
            )
            .await
            .unwrap();
        assert_eq!(
            control.reliability.of("dev_a").await.unwrap(),
            (7_200, 7_200)
        );
        assert_eq!(
            control.reliability.of("dev_b").await.unwrap(),
            (9_000, 9_000)
        );
        // Placement now ranks dev_b first: 0.1 µ$ dearer, but 13% more reliable.
        assert_eq!(
            control.capacity.plans(&whole).await.unwrap()[0].nodes[0].device_id,
            "dev_b"
        );
        let mut strict = whole.clone();
        strict.min_reliability_bps = 8_000;
        let plans = control.capacity.plans(&strict).await.unwrap();
        assert!(plans.iter().all(|p| p.nodes[0].device_id == "dev_b"));

        // A whole hour heard brings dev_a back part of the way; dev_b, silent, slips. Each
        // hour is scored once, however often the job runs.
        let now = 500_000 * HOUR + 17;
        db_run!(&db, |p| sqlx::query(
            "INSERT INTO device_uptime (device_id, hour, minutes) VALUES ('dev_a', $1, 60)"
        )
        .bind(499_999i64)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .unwrap();
        assert_eq!(control.reliability.score(now).await.unwrap(), 2);
        assert_eq!(
            control.reliability.score(now + 60_000_000).await.unwrap(),
            0
        );
        assert_eq!(control.reliability.of("dev_a").await.unwrap().0, 7_480);
        assert_eq!(control.reliability.of("dev_b").await.unwrap().0, 8_100);
        // Providers follow the mean of their devices' hours: org_a heard, org_b not.
        assert_eq!(control.reliability.of("dev_a").await.unwrap().1, 7_480);
        assert_eq!(control.reliability.of("dev_b").await.unwrap().1, 8_100);
        db.close().await;
    }
}

/// Node outcomes reported through two replicas at once all move their provider's score: each
/// replica writes a score back only where the row still holds what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_through_two_replicas_at_once_all_count() {
    use iocloud_control::providers::agent::{DeviceAuth, NodeReport};
    use iocloud_control::providers::reliability::{NODE_WEIGHT, PRIOR_BPS, ewma};
    for scratch in scratch_databases().await {
        let db = migrated(&scratch).await;
        let (a, b) = (replica(&db).await, replica(&db).await);
        device(&db, "dev_a", "org_a", 8, 2_000_000).await;
        device(&db, "dev_b", "org_a", 8, 2_000_000).await;
        let one = Request::new(1);
        let mut nodes = Vec::new();
        for i in 0..16 {
            let claim = a
                .capacity
                .claim_nodes(
                    &OrgId::trusted("org_c"),
                    &format!("clu_{i}"),
                    &one,
                    &serde_json::json!({}),
                )
                .await
                .unwrap();
            nodes.push((
                claim.plan.nodes[0].device_id.clone(),
                claim.node_ids[0].clone(),
            ));
        }
        let per_device = |id: &str| nodes.iter().filter(|(d, _)| d == id).count();
        let (on_a, on_b) = (per_device("dev_a"), per_device("dev_b"));
        let reports = nodes.into_iter().enumerate().map(|(i, (device, node))| {
            let control = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let agent = DeviceAuth {
                    id: device,
                    org_id: OrgId::trusted("org_a"),
                    gpu_count: 8,
                };
                let failed = NodeReport {
                    status: "failed".into(),
                    endpoints: None,
                    ca_certificate: None,
                    reason: Some("out of memory".into()),
                };
                control
                    .agents
                    .node_report(&agent, &node, failed, &control.clusters)
                    .await
            })
        });
        for report in futures::future::join_all(reports).await {
            report.unwrap().unwrap();
        }
        let failed = |n: usize| (0..n).fold(PRIOR_BPS, |s, _| ewma(s, 0, NODE_WEIGHT));
        assert_eq!(a.reliability.of("dev_a").await.unwrap().1, failed(16));
        // Each device took every one of its own, several of them in one batch.
        assert_eq!(a.reliability.of("dev_a").await.unwrap().0, failed(on_a));
        assert_eq!(a.reliability.of("dev_b").await.unwrap().0, failed(on_b));
        db.close().await;
    }
}
