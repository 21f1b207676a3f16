//! Tower middleware, outermost first: request id, tracing, metrics, CORS, compression, rate
//! limits, admission, timeout, body size, audit, authentication, idempotency. See
//! `startup::router`.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod client;
pub mod idempotency;
pub mod observe;
pub mod rate_limit;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

// Each `from_fn` layer clones the whole stack below it on every request, so the steps run
// inside two layers rather than one layer each.

/// Every route: metrics, then rate limits, then admission, then the time limit, then the
/// body-size check.
pub async fn front(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout();
    observe::metrics(&state, req, |req| {
        rate_limit::limit(&state, req, |req| {
            admission::admit(&state, req, |req| async move {
                let work = observe::body_limit(req, |req| next.run(req));
                match tokio::time::timeout(limit, work).await {
                    Ok(res) => res,
                    Err(_) => crate::error::ApiError::Timeout.into_response(),
                }
            })
        })
    })
    .await
}

/// Routes that act for a caller: audit, then authentication, then idempotency. A request that
/// changes state runs to its end even if the client leaves (see `audit::record`).
pub async fn api(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let inner = state.clone();
    audit::record(&state, req, move |req| async move {
        auth::authenticate(&inner, req, |req| {
            idempotency::idempotent(&inner, req, |req| next.run(req))
        })
        .await
    })
    .await
}
