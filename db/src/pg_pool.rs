//! A Postgres connection pool that costs no round trip of its own.
//!
//! sqlx's pool checks every connection with a `ping` (a `Sync` and a wait for the server's
//! `ReadyForQuery`) when it is taken out and again when it comes back: two hidden round trips
//! beside each statement run on its own and each transaction, nearly one per statement on the
//! cluster path. This pool hands a connection back without a word to the server when the work on
//! it finished; only a connection whose work did not finish (a dropped future, an error, a
//! transaction left open) is tidied (rolled back, checked) before anyone else may use it, and
//! only a connection idle for a while is checked before use.
//!
//! Use it through [`crate::pg_run!`] (or [`crate::db_run!`]), which marks the work finished.
//!
//! A server restart ends every connection: each idle one answers its next statement with
//! "terminating connection due to administrator command" (`57P01`) without running it. So a
//! statement refused that way is run again once on another connection ([`pg_run!`],
//! [`PgTx::begin`]), and the first connection found broken makes every connection idle since
//! then be checked before use: a restart costs a round trip per connection, not a failed
//! request per connection.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Database, Postgres, TransactionManager};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type PgTm = <Postgres as Database>::TransactionManager;

/// A connection idle longer than this is checked before use: the server may have restarted,
/// or a proxy may have dropped it.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);
/// A connection older than this is closed when it comes back, so the server's memory held for
/// it (prepared statements, caches) does not grow for ever.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// An idle connection unused this long is closed: a burst's connections do not stay open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The longest the tidying of a connection may take (a cancelled statement still running on
/// the server, a dead socket) before the connection is dropped and its slot freed.
const TIDY_LIMIT: Duration = Duration::from_secs(60);

/// A pool of at most `max` connections to one Postgres database. Cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    shared: Arc<Shared>,
}

struct Shared {
    options: PgConnectOptions,
    acquire_timeout: Duration,
    /// One permit per connection that may exist outside `idle`: taking a connection takes a
    /// permit, and the permit comes back only once the connection is in `idle` or gone.
    slots: Arc<Semaphore>,
    /// Most recently used last, so the busiest connections stay warm and the rest age out.
    idle: Mutex<Vec<Idle>>,
    closed: AtomicBool,
    /// When a connection was last found broken: every connection idle since before then is
    /// checked before use.
    broken_at: Mutex<Option<Instant>>,
}

struct Idle {
    conn: PgConnection,
    since: Instant,
    opened: Instant,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("idle", &self.shared.idle.lock().len())
            .field("free_slots", &self.shared.slots.available_permits())
            .finish()
    }
}

impl PgPool {
    /// Opens one connection at once, so a wrong address or password fails here rather than on
    /// the first request. A server that refuses connections (still starting, beside this one)
    /// is tried again for up to the acquire timeout.
    pub async fn connect(
        options: PgConnectOptions,
        max: usize,
        acquire_timeout: Duration,
    ) -> Result<PgPool, sqlx::Error> {
        let pool = PgPool {
            shared: Arc::new(Shared {
                options,
                acquire_timeout,
                slots: Arc::new(Semaphore::new(max)),
                idle: Mutex::new(Vec::with_capacity(max)),
                closed: AtomicBool::new(false),
                broken_at: Mutex::new(None),
            }),
        };
        let deadline = Instant::now() + acquire_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            match pool.acquire().await {
                Ok(first) => {
                    first.finish();
                    return Ok(pool);
                }
                Err(sqlx::Error::Io(e)) if Instant::now() + pause < deadline => {
                    tracing::info!(error = %e, "Postgres is not answering yet; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connection of its own until the guard is dropped. Waits at most the acquire timeout
    /// for one to be free (first come first served) and, if none is idle, to open one.
    pub async fn acquire(&self) -> Result<PgConn, sqlx::Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        tokio::time::timeout(self.shared.acquire_timeout, self.take())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn take(&self) -> Result<PgConn, sqlx::Error> {
        let shared = &self.shared;
        let slot = shared
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let (popped, stale) = {
                let mut idle = shared.idle.lock();
                let popped = idle.pop();
                let stale = idle
                    .first()
                    .is_some_and(|i| i.since.elapsed() > IDLE_TIMEOUT);
                (popped, stale.then(|| idle.remove(0)))
            };
            if let Some(stale) = stale {
                tokio::spawn(stale.conn.close());
            }
            let Some(mut idle) = popped else {
                let conn = PgConnection::connect_with(&shared.options).await?;
                return Ok(self.held(conn, Instant::now(), slot));
            };
            let suspect = shared.broken_at.lock().is_some_and(|at| idle.since <= at);
            if (!suspect && idle.since.elapsed() < CHECK_AFTER_IDLE)
                || idle.conn.ping().await.is_ok()
            {
                return Ok(self.held(idle.conn, idle.opened, slot));
            }
            tracing::info!("dropping a Postgres connection that no longer answers");
            let _ = idle.conn.close_hard().await;
        }
    }

    fn held(&self, conn: PgConnection, opened: Instant, slot: OwnedSemaphorePermit) -> PgConn {
        PgConn {
            conn: Some(conn),
            opened,
            finished: false,
            maybe_in_tx: false,
            shared: self.shared.clone(),
            slot: Some(slot),
        }
    }

    /// Closes the idle connections and refuses new work; connections in use are closed as they
    /// come back.
    pub async fn close(&self) {
        let idle = {
            // Under the idle list's lock, so a connection coming back either sees the pool
            // closed or is in the list taken here.
            let mut idle = self.shared.idle.lock();
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *idle)
        };
        self.shared.slots.close();
        for i in idle {
            let _ = i.conn.close().await;
        }
    }
}

/// A connection taken from a [`PgPool`]. Call [`PgConn::finish`] (or [`PgConn::settle`]) when
/// the work on it is done; dropped without, it is tidied in the background before reuse.
pub struct PgConn {
    conn: Option<PgConnection>,
    opened: Instant,
    finished: bool,
    /// A `BEGIN` was sent and no `COMMIT` or `ROLLBACK` has answered: sqlx counts the
    /// transaction only once `BEGIN` has answered, so a cancelled `BEGIN` is known by this.
    maybe_in_tx: bool,
    shared: Arc<Shared>,
    /// Given back after the connection is in the idle list (fields drop after `Drop::drop`).
    slot: Option<OwnedSemaphorePermit>,
}

impl PgConn {
    /// The work on this connection ended without an error: it may go straight back.
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// Marks the work done by its outcome: after an error the connection is checked first.
    pub fn settle<T, E>(self, outcome: &Result<T, E>) {
        if outcome.is_ok() {
            self.finish();
        }
    }

    /// Whether `outcome` is the server refusing the statement because it ended the connection
    /// (a restart, or the backend terminated): nothing ran, so the work may be run again on
    /// another connection. The connection is closed, and every connection idle since before
    /// now is checked before its next use.
    pub fn refused_by_ended_server<T, E: ServerGone>(&mut self, outcome: &Result<T, E>) -> bool {
        let gone = matches!(outcome, Err(e) if e.server_gone());
        if gone {
            *self.shared.broken_at.lock() = Some(Instant::now());
            tracing::info!("the Postgres server ended a pooled connection; running the work again");
            if let Some(conn) = self.conn.take() {
                self.spawn_tidy(conn, false);
            }
        }
        gone
    }

    fn raw(&self) -> &PgConnection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Deref for PgConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.raw()
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Nothing in a transaction, nothing written and not yet sent (a queued rollback).
        let clean = self.finished
            && !self.maybe_in_tx
            && PgTm::get_transaction_depth(&conn) == 0
            && !conn.should_flush();
        // A `BEGIN` that may have reached the server but that sqlx does not count leaves a
        // transaction nothing here can roll back: closing the connection ends it.
        let lost_tx = self.maybe_in_tx && PgTm::get_transaction_depth(&conn) == 0;
        let spent = self.opened.elapsed() > MAX_LIFETIME;
        if !clean || spent {
            self.spawn_tidy(conn, !spent && !lost_tx);
        } else if let Some(conn) = self.shared.give_back(conn, self.opened) {
            self.spawn_tidy(conn, false); // the pool closed meanwhile
        }
    }
}

impl PgConn {
    /// In the background, holding the slot until done so the pool never has more connections
    /// than its size: when `reusable`, rolls back and waits for the server to be ready (it may
    /// still be running what was sent, or holding a transaction's locks), then gives the
    /// connection back; otherwise closes it. Without a runtime (shutdown) it is just dropped.
    fn spawn_tidy(&mut self, mut conn: PgConnection, reusable: bool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let slot = self.slot.take();
        let opened = self.opened;
        runtime.spawn(async move {
            if !reusable {
                let _ = tokio::time::timeout(TIDY_LIMIT, conn.close()).await;
                drop(slot);
                return;
            }
            PgTm::start_rollback(&mut conn);
            let tidied = tokio::time::timeout(TIDY_LIMIT, conn.ping()).await;
            if matches!(tidied, Ok(Ok(()))) && PgTm::get_transaction_depth(&conn) == 0 {
                if let Some(conn) = shared.give_back(conn, opened) {
                    let _ = conn.close().await;
                }
            } else {
                // Broken (the server restarted?): so may be every connection idle as long.
                *shared.broken_at.lock() = Some(Instant::now());
                tracing::info!("dropping a Postgres connection that could not be tidied");
                let _ = conn.close_hard().await;
            }
            drop(slot);
        });
    }
}

impl Shared {
    /// Puts a clean connection in the idle list, or hands it back when the pool is closed.
    fn give_back(&self, conn: PgConnection, opened: Instant) -> Option<PgConnection> {
        let mut idle = self.idle.lock();
        if self.closed.load(Ordering::Acquire) {
            return Some(conn);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
            opened,
        });
        None
    }
}

/// An error that may say the server ended the connection before running anything on it.
pub trait ServerGone {
    fn server_gone(&self) -> bool;
}

impl ServerGone for sqlx::Error {
    /// `57P01` (admin_shutdown): the server is stopping or ended this backend. A statement in
    /// progress is rolled back when it comes, and an idle connection gets it as the answer to
    /// its next statement, unrun; so the statement it answers never took effect.
    fn server_gone(&self) -> bool {
        matches!(self, sqlx::Error::Database(e) if e.code().as_deref() == Some("57P01"))
    }
}

impl ServerGone for sqlx::migrate::MigrateError {
    fn server_gone(&self) -> bool {
        matches!(self, sqlx::migrate::MigrateError::Execute(e) if e.server_gone())
    }
}

/// A transaction on a pooled connection. Dropped without [`PgTx::commit`] it rolls back (in the
/// background, before the connection is used again); [`PgTx::rollback`] does it now.
pub struct PgTx {
    conn: PgConn,
}

impl PgTx {
    /// Begins on a connection of the pool; a `BEGIN` refused by a server that ended the
    /// connection is sent again once on another.
    pub async fn begin(pool: &PgPool) -> Result<PgTx, sqlx::Error> {
        let mut retried = false;
        loop {
            let mut conn = pool.acquire().await?;
            conn.maybe_in_tx = true;
            let begun = PgTm::begin(&mut conn, None).await;
            if !retried && conn.refused_by_ended_server(&begun) {
                retried = true;
                continue;
            }
            begun?;
            return Ok(PgTx { conn });
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.end(true).await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end(false).await
    }

    async fn end(mut self, commit: bool) -> Result<(), sqlx::Error> {
        let done = if commit {
            PgTm::commit(&mut self.conn).await
        } else {
            PgTm::rollback(&mut self.conn).await
        };
        if done.is_ok() {
            self.conn.maybe_in_tx = false;
        }
        self.conn.settle(&done);
        done
    }
}

impl Deref for PgTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PgTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Runs `$body` with `$conn` bound to a `&mut PgConnection` taken from the [`PgPool`] `$pool`,
/// and gives the connection back by the body's outcome (a `Result` whose error converts from
/// `sqlx::Error`, which is also what a failure to get a connection answers).
#[macro_export]
macro_rules! pg_run {
    ($pool:expr, |$conn:ident| $body:expr) => {{
        // Run again once when the server had ended the connection before the body's statement
        // (see [`crate::pg_pool::ServerGone`]): it never ran.
        let mut retried = false;
        loop {
            match $pool.acquire().await {
                ::core::result::Result::Ok(mut held) => {
                    let out = {
                        let $conn = &mut *held;
                        $body
                    };
                    if !retried && held.refused_by_ended_server(&out) {
                        retried = true;
                        continue;
                    }
                    held.settle(&out);
                    break out;
                }
                ::core::result::Result::Err(e) => break ::core::result::Result::Err(e.into()),
            }
        }
    }};
}

#[cfg(test)]
mod tests;
