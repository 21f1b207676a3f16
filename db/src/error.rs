/// The storage layer's error. `NotFound` and `Conflict` are split out so the layers above can
/// answer 404 / 409 without matching on driver messages.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("row not found")]
    NotFound,
    /// A unique or check constraint refused the write.
    #[error("conflicting row: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Sql(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("key-value store error: {0}")]
    Kv(#[from] redis::RedisError),
    /// Redis did not answer in time, or was found unreachable a moment ago.
    #[error("key-value store unavailable: {0}")]
    KvUnavailable(&'static str),
    #[error("invalid database url: {0}")]
    BadUrl(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            // Postgres refuses text holding a NUL byte (SQLite just finds no match). Such text
            // only reaches SQL as a lookup key (names and emails are checked before they are
            // stored), so on both engines it finds nothing.
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("22021") => {
                DbError::NotFound
            }
            sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                DbError::Conflict(d.message().to_string())
            }
            other => DbError::Sql(other),
        }
    }
}

impl DbError {
    /// The database could not be reached, or dropped the connection (a restart, a network
    /// cut): a statement that failed so did nothing, unless it was the `COMMIT` itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sql(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_),
            ) => true,
            // connection_exception (08…), admin_shutdown and crash_shutdown, cannot_connect_now.
            DbError::Sql(sqlx::Error::Database(d)) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        }
    }

    /// SQLite reports a busy database, Postgres a serialization failure or deadlock: the
    /// transaction did nothing and may simply be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Sql(sqlx::Error::Database(d)) => {
                matches!(
                    d.code().as_deref(),
                    Some("5" | "6" | "517" | "40001" | "40P01")
                )
            }
            DbError::Sql(sqlx::Error::PoolTimedOut) => true,
            _ => false,
        }
    }
}
