//! Request metrics, and the early refusal of bodies over the size limit.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};

use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn metrics<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    // Both are cheap clones (a standard method, an `Arc<str>`), not new strings.
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = inner(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics.record(
        method.as_str(),
        route,
        res.status().as_u16(),
        start.elapsed(),
    );
    res
}

/// A declared length over the limit is refused before a byte is read; extractors enforce the
/// same limit on bodies without a declared length.
pub async fn body_limit<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return ApiError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        }
        .into_response();
    }
    // Bodies of unknown length are cut off at the limit too, for readers (GraphQL's) that do
    // not honour axum's `DefaultBodyLimit`.
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES)));
    inner(req).await
}
