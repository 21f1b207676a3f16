//! Rate limits per client address and per API key (GCRA), shared by every replica through
//! Redis when it is configured. Answers 429 with `Retry-After`; every answer carries the
//! `RateLimit` and `RateLimit-Policy` headers of the tightest bucket.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use iocloud_db::RateDecision;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::middleware::client::{bearer, client_ip};
use crate::state::AppState;

const WINDOW: Duration = Duration::from_secs(60);

pub async fn limit<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return inner(req).await;
    }
    let ip = client_ip(&req, state.config.trust_forwarded_for);
    let key = bearer(req.headers()).and_then(Result::ok);
    let tightest = match take_all(state, buckets(state, path.starts_with("/agent/"), ip, key)).await
    {
        Ok(d) => d,
        Err(refused) => {
            let mut res = refusal(refused).into_response();
            set_headers(res.headers_mut(), &refused);
            return res;
        }
    };
    let mut res = inner(req).await;
    if let Some(d) = tightest {
        set_headers(res.headers_mut(), &d);
    }
    res
}

/// The buckets a request takes a token from: its address's, and its API key's when it
/// carries one. GraphQL operations over a WebSocket take from the same buckets as requests.
pub(crate) fn buckets(
    state: &AppState,
    agent: bool,
    ip: Option<IpAddr>,
    bearer: Option<&str>,
) -> Vec<(String, u32)> {
    let mut checks = Vec::with_capacity(2);
    // A provider's whole farm may sit behind one address, so agents get a wider bucket per
    // address here, and one per device once their token is known good (`agent::device`).
    let per_ip = if agent {
        state.config.rate_limit_per_agent_ip
    } else {
        state.config.rate_limit_per_ip
    };
    if let Some(ip) = ip {
        checks.push((format!("rl:ip:{ip}"), per_ip));
    }
    if let Some(token) = bearer
        && token.starts_with(iocloud_control::api_keys::KEY_PREFIX)
    {
        // The bucket is named by a hash, so the key itself never reaches Redis.
        let digest = hex::encode(&Sha256::digest(token.as_bytes())[..12]);
        checks.push((format!("rl:key:{digest}"), state.config.rate_limit_per_key));
    }
    checks
}

/// Takes a token from every bucket: the decision of the tightest, or the first refusal.
pub(crate) async fn take_all(
    state: &AppState,
    buckets: Vec<(String, u32)>,
) -> Result<Option<RateDecision>, RateDecision> {
    let mut tightest: Option<RateDecision> = None;
    for (bucket, per_minute) in buckets {
        if let Some(d) = take(state, &bucket, per_minute).await?
            && tightest.is_none_or(|t| d.remaining < t.remaining)
        {
            tightest = Some(d);
        }
    }
    Ok(tightest)
}

/// Takes one request from `bucket` (`per_minute` allowed): the decision, `Err` when refused,
/// `Ok(None)` when the limiter cannot be reached (it must not take the API down with it).
pub(crate) async fn take(
    state: &AppState,
    bucket: &str,
    per_minute: u32,
) -> Result<Option<RateDecision>, RateDecision> {
    match state
        .control
        .kv
        .rate_limit(bucket, per_minute, WINDOW)
        .await
    {
        Ok(d) if !d.allowed => Err(d),
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            iocloud_db::note_kv_failure(&e, "rate limiter unavailable; request let through");
            Ok(None)
        }
    }
}

/// The 429 for a refused decision.
pub(crate) fn refusal(d: RateDecision) -> ApiError {
    ApiError::RateLimited {
        retry_after: d.retry_after.unwrap_or(Duration::from_secs(1)),
    }
}

fn set_headers(headers: &mut HeaderMap, d: &RateDecision) {
    let reset = d.reset_after.as_secs() + u64::from(d.reset_after.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "limit={}, remaining={}, reset={reset}",
        d.limit, d.remaining
    )) {
        headers.insert("ratelimit", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{};w={}", d.limit, WINDOW.as_secs())) {
        headers.insert("ratelimit-policy", v);
    }
}
