//! Tower middleware, outermost first: request id, tracing, metrics, CORS, compression, timeout,
//! rate limits, body size, audit, authentication, idempotency. See `startup::router`.

pub mod audit;
pub mod auth;
pub mod client;
pub mod idempotency;
pub mod observe;
pub mod rate_limit;
