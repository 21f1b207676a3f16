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
pub use kv::{Kv, RateDecision, note_failure as note_kv_failure};
pub use pg_pool::{PgConn, PgPool, PgTx};
pub use pool::{Db, Engine, PG_CONNECTIONS, Tx};
pub use timestamp::Timestamp;
pub use url::DatabaseUrl;

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Makes a type a GraphQL `String` showing `$text` (the same text REST answers). Registering a
/// scalar of our own named `String` would clash with the built-in one, so the registry is handed
/// the built-in. The crate that invokes it needs `async_graphql` as a dependency.
#[macro_export]
macro_rules! graphql_string {
    ($ty:ty, |$value:ident| $text:expr) => {
        impl async_graphql::OutputType for $ty {
            fn type_name() -> std::borrow::Cow<'static, str> {
                <String as async_graphql::OutputType>::type_name()
            }

            fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
                <String as async_graphql::OutputType>::create_type_info(registry)
            }

            async fn resolve(
                &self,
                _: &async_graphql::ContextSelectionSet<'_>,
                _: &async_graphql::Positioned<async_graphql::parser::types::Field>,
            ) -> async_graphql::ServerResult<async_graphql::Value> {
                let $value = self;
                Ok(async_graphql::Value::String($text.to_string()))
            }
        }
    };
}
