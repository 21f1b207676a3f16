//! `Idempotency-Key` on POST: the HTTP side of `control::idempotency` (which holds the rules).
//! The same key and request replay the first answer (`Idempotent-Replayed: true`), with its
//! secrets withheld and listed in `Idempotent-Withheld`; another request with the key is 422;
//! while the first runs, 409 `idempotency_key_in_flight`; when it died without an answer, 409
//! `idempotency_outcome_unknown`. Sign-in answers (REST `/v1/auth/…`, GraphQL `signUp`, `logIn`,
//! `refresh`) are never kept. A 503 is not kept, so the client may retry with the key; after
//! another 5xx the outcome is unknown.

use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iocloud_control::idempotency::{
    Answer, Claim, Idempotency, IdempotencyKey, KeptAnswer, KeyScope, Lease, MAX_KEPT_BODY,
    RENEW_EVERY, RequestFingerprint,
};
use iocloud_control::{Actor, ErrorCode};

use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::middleware::client::client_ip;
use crate::state::AppState;

const HEADER: &str = "idempotency-key";
/// On a replay: the JSON pointers of the fields that held a secret, now null.
pub const WITHHELD_HEADER: &str = "idempotent-withheld";
/// GraphQL mutations that answer with fresh tokens; like `/v1/auth/`, never kept.
const GRAPHQL_SIGN_INS: [&str; 3] = ["signUp", "logIn", "refresh"];

pub async fn idempotent<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if req.method() != Method::POST {
        return inner(req).await;
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return inner(req).await;
    };
    let key = match raw_key
        .to_str()
        .map_err(|_| ())
        .and_then(|k| IdempotencyKey::parse(k).map_err(|_| ()))
    {
        Ok(key) => key,
        Err(()) => {
            return ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )
            .into_response();
        }
    };
    // Sign-in routes answer with fresh tokens, which must not be kept anywhere: no replay there.
    if req.uri().path().starts_with("/v1/auth/") {
        return inner(req).await;
    }
    let scope = match req.extensions().get::<Actor>() {
        Some(actor) => KeyScope::caller(actor),
        None => KeyScope::address(client_ip(&req, state.config.trust_forwarded_for)),
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        }
        .into_response();
    };
    let req = Request::from_parts(parts, Body::from(bytes.clone()));
    if req.uri().path() == "/graphql" && graphql_may_sign_in(&bytes) {
        return inner(req).await;
    }
    let request = RequestFingerprint::of(req.method().as_str(), req.uri().path(), &bytes);
    let records = state.control.idempotency.clone();

    let lease = match records.claim(&scope, &key, &request).await {
        Ok(Claim::Run(lease)) => lease,
        Ok(Claim::Replay(kept)) => return replay(kept),
        Ok(Claim::Reused) => return ApiError::IdempotencyKeyReused.into_response(),
        Ok(Claim::InFlight) => return ApiError::IdempotencyInFlight.into_response(),
        Ok(Claim::OutcomeUnknown) => {
            return ApiError::IdempotencyOutcomeUnknown.into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let res = holding(&records, &lease, inner(req)).await;
    finish(&records, lease, res).await
}

/// Runs the request, renewing its lease so other requests with the key know it is alive.
async fn holding(
    records: &Idempotency,
    lease: &Lease,
    work: impl Future<Output = Response>,
) -> Response {
    let mut work = std::pin::pin!(work);
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        tokio::select! {
            res = &mut work => return res,
            _ = renew.tick() => {
                if let Err(e) = records.renew(lease).await {
                    tracing::warn!(error = %e, "could not renew an idempotency lease");
                }
            }
        }
    }
}

fn replay(kept: KeptAnswer) -> Response {
    let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    let mut res = (status, kept.body).into_response();
    let headers = res.headers_mut();
    if let Some(ct) = kept
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Some(withheld) = withheld_header(&kept.withheld) {
        headers.insert(WITHHELD_HEADER, withheld);
    }
    res
}

/// `/secret` or `/data/made/k, /data/other/token`; a pointer that cannot be a header value
/// (it never happens with our field names) stands as `*`: something was withheld.
fn withheld_header(pointers: &[String]) -> Option<HeaderValue> {
    if pointers.is_empty() {
        return None;
    }
    let text = pointers.join(", ");
    Some(HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("*")))
}

/// Keeps the answer for replays. A 503 (a service we depend on refused, before any work) frees
/// the key for a retry; any other server error, a database lost in the middle of the work, or
/// an answer that cannot be kept, leaves the outcome unknown, since the work may have been done
/// before it failed.
async fn finish(records: &Idempotency, lease: Lease, res: Response) -> Response {
    let (parts, body) = res.into_parts();
    let bytes = to_bytes(body, MAX_KEPT_BODY).await.ok();
    let text = bytes
        .as_ref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string);
    let result = match text {
        Some(body) if parts.status == StatusCode::SERVICE_UNAVAILABLE && !lost_database(&body) => {
            if records.release(&lease).await.is_err() {
                records.release_when_back(lease);
            }
            Ok(())
        }
        Some(body) if !parts.status.is_server_error() => {
            let answer = Answer {
                status: parts.status.as_u16(),
                content_type: parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body,
            };
            records.keep(lease, &answer).await.map(|_| ())
        }
        _ => {
            if records.abandon(&lease).await.is_err() {
                records.abandon_when_back(lease);
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "could not store the idempotent answer");
    }
    match bytes {
        Some(b) => Response::from_parts(parts, Body::from(b)),
        // Too large to keep: the body was consumed, so say so rather than send half of it.
        None => ApiError::Internal("answer too large to keep for Idempotency-Key".into())
            .into_response(),
    }
}

/// Whether a 503 says the database went away during the request. A statement whose connection
/// broke may have been committed before its answer was lost, and others may have been committed
/// before it, so such a request's outcome is unknown, not "nothing done".
fn lost_database(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .is_ok_and(|v| v["code"] == ErrorCode::DatabaseUnavailable.as_str())
}

/// True when a GraphQL request may sign in (or cannot be read well enough to tell): any field
/// named like a sign-in mutation anywhere in the document, fragments included.
fn graphql_may_sign_in(body: &[u8]) -> bool {
    let queries: Vec<Option<String>> = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(batch)) => batch
            .iter()
            .map(|r| r["query"].as_str().map(str::to_string))
            .collect(),
        Ok(one) => vec![one["query"].as_str().map(str::to_string)],
        // `application/graphql`: the body is the document.
        Err(_) => vec![std::str::from_utf8(body).ok().map(str::to_string)],
    };
    queries.iter().any(|q| {
        let Some(doc) = q
            .as_deref()
            .and_then(|q| async_graphql::parser::parse_query(q).ok())
        else {
            return true;
        };
        let operations: Vec<&SelectionSet> = match &doc.operations {
            DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
            DocumentOperations::Multiple(ops) => {
                ops.values().map(|op| &op.node.selection_set.node).collect()
            }
        };
        operations
            .into_iter()
            .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
            .any(|set| selects_sign_in(set, 0))
    })
}

fn selects_sign_in(set: &SelectionSet, depth: usize) -> bool {
    // Deeper than any query the schema accepts: do not keep what cannot be read.
    if depth > 64 {
        return true;
    }
    set.items.iter().any(|item| match &item.node {
        Selection::Field(f) => {
            GRAPHQL_SIGN_INS.contains(&f.node.name.node.as_str())
                || selects_sign_in(&f.node.selection_set.node, depth + 1)
        }
        Selection::InlineFragment(f) => selects_sign_in(&f.node.selection_set.node, depth + 1),
        // Fragments are read on their own above.
        Selection::FragmentSpread(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_are_found_wherever_they_are_asked() {
        let body = |q: &str| serde_json::json!({ "query": q }).to_string();
        for q in [
            "mutation { logIn(email: \"a\", password: \"b\") { accessToken } }",
            "mutation { s: signUp(email: \"a\", password: \"b\", name: \"n\", orgName: \"o\") { role } }",
            "mutation { ...F } fragment F on MutationRoot { refresh(refreshToken: \"x\") { role } }",
            "mutation { ... on MutationRoot { logIn(email: \"a\", password: \"b\") { role } } }",
            "not graphql {",
        ] {
            assert!(graphql_may_sign_in(body(q).as_bytes()), "{q}");
        }
        let batch = serde_json::json!([{"query": "{ me { kind } }"}, {"query": "mutation { logOut logIn(email: \"a\", password: \"b\") { role } }"}]);
        assert!(graphql_may_sign_in(batch.to_string().as_bytes()));
        for q in [
            "mutation { createApiKey(name: \"a\", scopes: []) { secret } }",
            "mutation { logOut }",
            "{ me { kind } }",
        ] {
            assert!(!graphql_may_sign_in(body(q).as_bytes()), "{q}");
        }
    }

    #[test]
    fn withheld_fields_are_listed() {
        assert!(withheld_header(&[]).is_none());
        let both = withheld_header(&["/secret".into(), "/data/made/k".into()]).unwrap();
        assert_eq!(both.to_str().unwrap(), "/secret, /data/made/k");
    }
}
