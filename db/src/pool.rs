//! One pool type over the two engines, and the macros that run one query text on either.
//!
//! We write portable SQL (`$1` placeholders, `ON CONFLICT`, `RETURNING`) and bind with runtime
//! `sqlx::query_as`. [`db_run!`] expands its body once per engine, so the same code is type-checked
//! against both drivers; where the engines truly differ, match on [`Db`] directly.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::pg_pool::{PgPool, PgTx};

use crate::{DatabaseUrl, DbError, Result};

/// No TLS to a server on this machine unless the URL or the environment says anything about
/// TLS (`sslmode`, `ssl-mode`, `sslrootcert`, a client certificate, `PGSSL…`): nothing crosses
/// a network, and TLS costs both ends CPU on every statement. Elsewhere the driver's default
/// stands (`prefer`: TLS when the server offers it).
/// Whether a `PGSSL…` variable speaks for TLS everywhere.
fn tls_in_env() -> bool {
    std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("PGSSL"))
}

fn plain_on_loopback(opts: PgConnectOptions, raw: &str) -> PgConnectOptions {
    let in_url = raw.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.to_ascii_lowercase().starts_with("ssl"))
    });
    let asked = in_url || tls_in_env();
    let host = opts.get_host();
    let local = matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]");
    if asked || !local {
        opts
    } else {
        opts.ssl_mode(PgSslMode::Disable)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The SQL pool: SQLite (the embedded default) or Postgres (production).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open write transaction on either engine. Dropping it without `commit` rolls back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(PgTx),
}

/// Runs `$body` with `$conn` bound to the SQLite pool, or to a connection taken from the
/// Postgres pool (see [`crate::pg_run!`]): the body's value is a `Result` whose error converts
/// from `sqlx::Error`.
#[macro_export]
macro_rules! db_run {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite($conn) => $body,
            $crate::Db::Postgres(pool) => $crate::pg_run!(pool, |$conn| $body),
        }
    };
}

/// Runs `$body` with `$conn` bound to the connection of an open [`Tx`].
#[macro_export]
macro_rules! tx_run {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

/// Connections a replica keeps to Postgres unless told otherwise. Every replica's count adds
/// up against the server's `max_connections` (100 by default).
pub const PG_CONNECTIONS: u32 = 32;

impl Db {
    /// Opens the pool named by `url`: `postgres://…` or `sqlite:…`. A SQLite file and its folder
    /// are created when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Db> {
        Db::connect_sized(url, PG_CONNECTIONS).await
    }

    /// Opens the pool named by `url`, with at most `pg_connections` connections to Postgres
    /// (SQLite keeps its own few).
    pub async fn connect_sized(url: &DatabaseUrl, pg_connections: u32) -> Result<Db> {
        let raw = url.expose();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let opts =
                PgConnectOptions::from_str(raw).map_err(|e| DbError::BadUrl(e.to_string()))?;
            let pool = PgPool::connect(
                plain_on_loopback(opts, raw),
                pg_connections.max(1) as usize,
                Duration::from_secs(10),
            )
            .await?;
            Ok(Db::Postgres(pool))
        } else if raw.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(raw)
                .map_err(|e| DbError::BadUrl(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(15));
            if let Some(parent) = opts.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbError::BadUrl(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            Err(DbError::BadUrl(format!(
                "{url}: expected postgres://… or sqlite:…"
            )))
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Applies every pending migration. One set of migrations serves both engines.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = sqlx::migrate!("./migrations");
        db_run!(self, |p| migrator.run(p).await)?;
        if let Db::Postgres(p) = self {
            // Tables the accrual pass rewrites every minute keep room on each page, so
            // Postgres can put a row's new version beside the old one without touching its
            // indexes (a HOT update). Postgres only, so not in the shared migrations.
            for table in ["usage_records", "usage_lines", "holds"] {
                let sql = format!("ALTER TABLE {table} SET (fillfactor = 50)");
                crate::pg_run!(p, |c| sqlx::query(&sql).execute(c).await)?;
            }
        }
        Ok(())
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up
    /// front, so a read-then-write transaction cannot fail half-way on a lock upgrade.
    ///
    /// The `BEGIN` runs in a task of its own. If the caller is dropped while it is in flight (a
    /// client hung up, a timeout fired), the task still finishes and drops the transaction it
    /// opened, which rolls it back. Awaited in place, a cancelled `BEGIN` can leave its
    /// connection inside a transaction that nobody owns, back in the pool.
    pub async fn begin(&self) -> Result<Tx> {
        let db = self.clone();
        let opened = tokio::spawn(async move {
            Ok::<_, sqlx::Error>(match db {
                Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
                Db::Postgres(p) => Tx::Postgres(PgTx::begin(&p).await?),
            })
        });
        match opened.await {
            Ok(tx) => Ok(tx?),
            Err(e) => Err(DbError::Sql(sqlx::Error::WorkerCrashed))
                .inspect_err(|_| tracing::error!(error = %e, "begin task failed")),
        }
    }

    /// A trivial round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        db_run!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

impl Engine {
    /// What ends a `SELECT` that locks the rows it reads for the rest of the transaction:
    /// `FOR UPDATE` on Postgres; nothing on SQLite, whose write transaction has the database.
    pub fn for_update(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }

    /// A row source over a JSON array of arrays bound at `param`, one row per element, the
    /// element in a column named `value` (read fields with `value ->> 0`, `value ->> 1`, ...).
    ///
    /// Bulk statements bind one JSON text instead of a placeholder per value: sqlx-sqlite binds in
    /// quadratic time, and Postgres plans one short statement instead of a long `VALUES` list.
    pub fn json_rows(self, param: &str) -> String {
        match self {
            Engine::Sqlite => format!("json_each({param})"),
            Engine::Postgres => format!("jsonb_array_elements(CAST({param} AS jsonb)) AS j(value)"),
        }
    }

    /// An aggregate that folds the selected rows into one JSON text, an array of arrays of
    /// `values` (a comma-separated list of expressions); `[]` for no rows. Reading thousands of
    /// rows this way costs one row's decoding instead of thousands.
    pub fn json_agg(self, values: &str) -> String {
        match self {
            Engine::Sqlite => format!("json_group_array(json_array({values}))"),
            Engine::Postgres => {
                format!("CAST(COALESCE(json_agg(json_build_array({values})), '[]') AS TEXT)")
            }
        }
    }
}

impl Tx {
    pub fn engine(&self) -> Engine {
        match self {
            Tx::Sqlite(_) => Engine::Sqlite,
            Tx::Postgres(_) => Engine::Postgres,
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Rolls back now, rather than when the connection next goes back to the pool (as a drop
    /// does), so its locks are gone before the caller goes on.
    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_left_out_only_on_loopback_and_only_when_not_asked_for() {
        if tls_in_env() {
            return; // the environment asks for its own mode everywhere
        }
        for (url, want) in [
            ("postgres://root@127.0.0.1:5432/test", PgSslMode::Disable),
            ("postgres://root@localhost/test", PgSslMode::Disable),
            (
                "postgres://root@127.0.0.1/test?sslmode=require",
                PgSslMode::Require,
            ),
            (
                "postgres://root@127.0.0.1/test?ssl-mode=require",
                PgSslMode::Require,
            ),
            // A certificate to check the server by: the driver's default (prefer) is kept.
            (
                "postgres://root@localhost/test?sslrootcert=/etc/ca.pem",
                PgSslMode::Prefer,
            ),
            ("postgres://root@db.internal:5432/test", PgSslMode::Prefer),
        ] {
            let opts = PgConnectOptions::from_str(url).unwrap();
            let got = plain_on_loopback(opts, url).get_ssl_mode();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{url}");
        }
    }

    #[tokio::test]
    async fn sqlite_file_is_created_and_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::new(format!("sqlite://{}/sub/x.db", dir.path().display()));
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        db.migrate().await.unwrap();
        db.ping().await.unwrap();
        assert_eq!(db.engine(), Engine::Sqlite);
        assert!(dir.path().join("sub/x.db").exists());
    }

    #[tokio::test]
    async fn rejects_unknown_schemes() {
        let err = Db::connect(&DatabaseUrl::new("mysql://x"))
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::BadUrl(_)));
    }
}
