//! Storage for the control plane.
//!
//! * [`Db`]: the SQL system of record, SQLite (embedded default) or Postgres, picked from the URL.
//!   Queries are written once in portable SQL and run on either pool with [`db_run!`] / [`tx_run!`].
//! * [`Kv`]: what replicas share (rate-limit buckets, short-lived values, pub/sub): Redis when
//!   configured, an in-process stand-in otherwise.

mod error;
pub mod ids;
pub mod kv;
mod pg_pool;
mod pool;
pub mod scratch;
pub mod sql;
pub mod time;
mod timestamp;
mod url;

pub use error::DbError;
pub use kv::{Kv, RateDecision};
pub use pg_pool::{PgConn, PgPool, PgTx};
pub use pool::{Db, Engine, Tx};
pub use timestamp::Timestamp;
pub use url::DatabaseUrl;

pub type Result<T, E = DbError> = std::result::Result<T, E>;
