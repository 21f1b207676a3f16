//! `Idempotency-Key` on POST, with Stripe's semantics: a key is kept 24 hours per organisation
//! (per client address before sign-in); the same key with the same request replays the first
//! answer; with a different request it is refused 422; while the first is still running, 409.
//! A 5xx answer is not kept, so the client may retry with the same key. A claim abandoned by
//! a crashed replica is taken over after `LEASE`.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iocloud_control::Actor;
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{Db, DbError, db_run};
use sha2::{Digest, Sha256};

use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::middleware::client::client_ip;
use crate::state::AppState;

const HEADER: &str = "idempotency-key";
const RETENTION_MICROS: i64 = 24 * 3600 * MICROS_PER_SEC;
const LEASE_MICROS: i64 = 60 * MICROS_PER_SEC;
/// Answers larger than this are not kept (and a retry runs again).
const MAX_STORED_BODY: usize = 4 * 1024 * 1024;

#[derive(sqlx::FromRow)]
struct Record {
    request_hash: String,
    state: String,
    status: Option<i64>,
    content_type: Option<String>,
    body: Option<String>,
    created_at: i64,
    locked_at: i64,
}

enum Claim {
    /// We own the key: run the request.
    Run,
    Replay(Response),
}

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
    let key = match raw_key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_string()
        }
        _ => {
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
    // A replay goes only to the caller who made the request: another member of the
    // organisation reusing the key gets an answer of their own, never this one.
    let scope = match req.extensions().get::<Actor>() {
        Some(actor) => {
            let (kind, id) = actor.audit_identity();
            format!("org:{}:{kind}:{id}", actor.org_id)
        }
        None => format!(
            "ip:{}",
            client_ip(&req, state.config.trust_forwarded_for)
                .map(|i| i.to_string())
                .unwrap_or_default()
        ),
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            }
            .into_response();
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());
    let db = &state.control.db;

    match claim(db, &scope, &key, &request_hash).await {
        Ok(Claim::Replay(res)) => return res,
        Ok(Claim::Run) => {}
        Err(e) => return e.into_response(),
    }
    let res = inner(Request::from_parts(parts, Body::from(bytes))).await;
    finish(db, &scope, &key, res).await
}

async fn claim(db: &Db, scope: &str, key: &str, request_hash: &str) -> Result<Claim, ApiError> {
    for _ in 0..5 {
        let now = now_micros();
        let existing: Option<Record> = db_run!(db, |p| {
            sqlx::query_as(
                "SELECT request_hash, state, status, content_type, body, created_at, locked_at FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(scope).bind(key).fetch_optional(p).await
        })
        .map_err(DbError::from)?;
        let Some(rec) = existing else {
            let inserted = db_run!(db, |p| {
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_at) VALUES ($1, $2, $3, 'in_flight', $4, $4) \
                     ON CONFLICT (scope, key) DO NOTHING",
                )
                .bind(scope).bind(key).bind(request_hash).bind(now).execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
            if inserted == 1 {
                return Ok(Claim::Run);
            }
            continue; // another request claimed it first: look again
        };
        if rec.created_at < now - RETENTION_MICROS {
            db_run!(db, |p| {
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3")
                    .bind(scope).bind(key).bind(rec.created_at).execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
            continue;
        }
        if rec.request_hash != request_hash {
            return Err(ApiError::IdempotencyKeyReused);
        }
        if rec.state == "done" {
            return Ok(Claim::Replay(replay(rec)));
        }
        if rec.locked_at < now - LEASE_MICROS {
            let taken = db_run!(db, |p| {
                sqlx::query("UPDATE idempotency_keys SET locked_at = $1 WHERE scope = $2 AND key = $3 AND state = 'in_flight' AND locked_at = $4")
                    .bind(now).bind(scope).bind(key).bind(rec.locked_at).execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
            if taken == 1 {
                return Ok(Claim::Run);
            }
            continue;
        }
        return Err(ApiError::IdempotencyInFlight);
    }
    Err(ApiError::IdempotencyInFlight)
}

fn replay(rec: Record) -> Response {
    let status = rec
        .status
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = (status, rec.body.unwrap_or_default()).into_response();
    if let Some(ct) = rec
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}

/// Keeps the answer for replays, or releases the key when the answer should not be kept.
async fn finish(db: &Db, scope: &str, key: &str, res: Response) -> Response {
    let (parts, body) = res.into_parts();
    let bytes = to_bytes(body, MAX_STORED_BODY).await.ok();
    let text = bytes
        .as_ref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string);
    let keep = !parts.status.is_server_error() && text.is_some();
    let stored = text.as_deref().map(redact_secrets);
    let result = if keep {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        db_run!(db, |p| {
            sqlx::query("UPDATE idempotency_keys SET state = 'done', status = $1, content_type = $2, body = $3 WHERE scope = $4 AND key = $5")
                .bind(i64::from(parts.status.as_u16())).bind(&content_type).bind(&stored).bind(scope).bind(key)
                .execute(p).await.map(|r| r.rows_affected())
        })
    } else {
        db_run!(db, |p| {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'")
                .bind(scope).bind(key).execute(p).await.map(|r| r.rows_affected())
        })
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

/// Secrets are shown once and stored only as hashes, so a kept answer has them blanked: a
/// replay of "create an API key" says the key exists but cannot show its secret again.
const SECRET_FIELDS: [&str; 3] = ["secret", "access_token", "refresh_token"];

fn redact_secrets(body: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    let mut changed = false;
    if let Some(obj) = value.as_object_mut() {
        for field in SECRET_FIELDS {
            if let Some(v) = obj.get_mut(field)
                && !v.is_null()
            {
                *v = serde_json::Value::Null;
                changed = true;
            }
        }
    }
    if changed {
        value.to_string()
    } else {
        body.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kept_answers_hold_no_secrets() {
        let kept = super::redact_secrets(r#"{"api_key":{"id":"key_1"},"secret":"ioc_abc"}"#);
        assert!(!kept.contains("ioc_abc"));
        assert!(kept.contains("key_1"));
        assert_eq!(super::redact_secrets("not json"), "not json");
    }
}
