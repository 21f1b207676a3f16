//! The pool against the test server (`IOCLOUD_TEST_POSTGRES_URL`; skipped without it).

use std::str::FromStr;

use super::*;

/// A pool of `max` connections to the test server, or `None` (the test is skipped) when
/// `IOCLOUD_TEST_POSTGRES_URL` is not set.
async fn pool(max: usize, timeout: Duration) -> Option<PgPool> {
    let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") else {
        eprintln!("IOCLOUD_TEST_POSTGRES_URL is not set: skipping");
        return None;
    };
    let options = PgConnectOptions::from_str(&url).unwrap();
    Some(PgPool::connect(options, max, timeout).await.unwrap())
}

async fn backend(pool: &PgPool) -> i32 {
    crate::pg_run!(pool, |c| sqlx::query_scalar::<_, i32>(
        "SELECT pg_backend_pid()"
    )
    .fetch_one(c)
    .await)
    .unwrap()
}

/// Waits for the background tidying of a connection to put it back.
async fn until_idle(pool: &PgPool, n: usize) {
    for _ in 0..200 {
        if pool.shared.idle.lock().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the connection did not come back to the pool");
}

#[tokio::test]
async fn a_finished_connection_is_used_again_as_it_was() {
    let Some(pool) = pool(1, Duration::from_secs(5)).await else {
        return;
    };
    let first = backend(&pool).await;
    assert_eq!(backend(&pool).await, first);
    let tx = PgTx::begin(&pool).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        backend(&pool).await,
        first,
        "a committed transaction keeps it"
    );
}

#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_before_the_connection_is_used_again() {
    let Some(pool) = pool(1, Duration::from_secs(5)).await else {
        return;
    };
    let first = backend(&pool).await;
    crate::pg_run!(&pool, |c| sqlx::query("CREATE TEMP TABLE t (x INT)")
        .execute(c)
        .await)
    .unwrap();
    let mut tx = PgTx::begin(&pool).await.unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx);
    // The one connection is taken again only once its tidying is done.
    let rows: i64 = crate::pg_run!(&pool, |c| sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(c)
        .await)
    .unwrap();
    assert_eq!(rows, 0, "the insert was rolled back");
    assert_eq!(backend(&pool).await, first, "on the same connection");
}

#[tokio::test]
async fn a_begin_that_never_answered_closes_the_connection() {
    let (Some(pool), Some(other)) = (
        pool(1, Duration::from_secs(5)).await,
        pool(1, Duration::from_secs(5)).await,
    ) else {
        return;
    };
    // What a `PgTx::begin` cancelled after its `BEGIN` reached the server leaves: a
    // transaction on the server that sqlx does not count.
    let mut held = pool.acquire().await.unwrap();
    held.maybe_in_tx = true;
    sqlx::raw_sql("BEGIN").execute(&mut *held).await.unwrap();
    let lost: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *held)
        .await
        .unwrap();
    assert_eq!(PgTm::get_transaction_depth(&held), 0);
    drop(held);
    let mut gone = false;
    for _ in 0..200 {
        let n: i64 = crate::pg_run!(&other, |c| sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
        )
        .bind(lost)
        .fetch_one(c)
        .await)
        .unwrap();
        if n == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the connection, and its transaction with it, is gone");
    assert_ne!(
        backend(&pool).await,
        lost,
        "the next user gets a new connection"
    );
}

#[tokio::test]
async fn a_statement_cancelled_mid_flight_leaves_a_usable_connection_and_no_extra_one() {
    let Some(pool) = pool(1, Duration::from_secs(5)).await else {
        return;
    };
    let first = backend(&pool).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(50), async {
        crate::pg_run!(&pool, |c| sqlx::query("SELECT pg_sleep(0.3)")
            .execute(c)
            .await)
    })
    .await;
    assert!(cancelled.is_err(), "the statement outlived its timeout");
    // While the server finishes the statement, the slot stays taken: a second connection
    // would exceed the pool's size.
    assert_eq!(pool.shared.slots.available_permits(), 0);
    until_idle(&pool, 1).await;
    assert_eq!(backend(&pool).await, first);
}

/// What a server restart does to a pool: every idle connection's backend ends (here by
/// `pg_terminate_backend`, as a restart's fast shutdown does) while the pool holds it.
/// Every statement and transaction after it succeeds, each on a live connection.
#[tokio::test]
async fn connections_the_server_ended_cost_no_request() {
    let Some(pool) = pool(4, Duration::from_secs(5)).await else {
        return;
    };
    let Some(other) = pool_of_one().await else {
        return;
    };
    // Four connections, used just now (so not checked before their next use).
    let held: Vec<PgConn> = futures_join(&pool, 4).await;
    let pids: Vec<i32> = {
        let mut pids = Vec::new();
        for mut c in held {
            pids.push(
                sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                    .fetch_one(&mut *c)
                    .await
                    .unwrap(),
            );
            c.finish();
        }
        pids
    };
    until_idle(&pool, 4).await;
    for pid in &pids {
        crate::pg_run!(&other, |c| sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(*pid)
            .execute(c)
            .await)
        .unwrap();
    }
    // The backends are gone before anything more is sent on their connections.
    for _ in 0..200 {
        let left: i64 = crate::pg_run!(&other, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = ANY($1)"
        )
        .bind(&pids)
        .fetch_one(c)
        .await)
        .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..4 {
        let pid = backend(&pool).await;
        assert!(!pids.contains(&pid), "a live connection");
    }
    let tx = PgTx::begin(&pool).await.expect("a transaction begins");
    tx.commit().await.unwrap();
    // Four at once, as requests in flight would be.
    let (a, b, c, d) = tokio::join!(
        backend(&pool),
        backend(&pool),
        backend(&pool),
        backend(&pool)
    );
    assert!([a, b, c, d].iter().all(|p| !pids.contains(p)));
}

/// `n` connections of `pool` held at once.
async fn futures_join(pool: &PgPool, n: usize) -> Vec<PgConn> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.acquire().await.unwrap());
    }
    held
}

async fn pool_of_one() -> Option<PgPool> {
    pool(1, Duration::from_secs(5)).await
}

#[tokio::test]
async fn an_error_leaves_the_connection_usable() {
    let Some(pool) = pool(1, Duration::from_secs(5)).await else {
        return;
    };
    let bad = crate::pg_run!(&pool, |c| sqlx::query("SELECT nope FROM nowhere")
        .execute(c)
        .await);
    assert!(bad.is_err());
    until_idle(&pool, 1).await;
    backend(&pool).await;
}

#[tokio::test]
async fn a_server_that_refuses_is_tried_again_until_the_timeout() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("nobody");
    let started = Instant::now();
    let err = PgPool::connect(options, 1, Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(matches!(err, sqlx::Error::Io(_)), "{err:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_full_pool_times_out_and_a_closed_one_refuses() {
    let Some(pool) = pool(1, Duration::from_millis(100)).await else {
        return;
    };
    let held = pool.acquire().await.unwrap();
    assert!(matches!(
        pool.acquire().await.err(),
        Some(sqlx::Error::PoolTimedOut)
    ));
    held.finish();
    backend(&pool).await;
    pool.close().await;
    assert!(matches!(
        pool.acquire().await.err(),
        Some(sqlx::Error::PoolClosed)
    ));
}
