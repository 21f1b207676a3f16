//! `Idempotency-Key` records, with Stripe's semantics: a key is kept per caller (per client
//! address before sign-in) for the retention period; the same key with the same request replays
//! the first answer; with a different request it is refused; while the first is still running,
//! the retry is told so.
//!
//! The record is written outside the transaction of the work it guards (any route may take a
//! key, and the adapters do not reach into every service's transaction), so a crash between the
//! work's commit and the stored answer cannot be told apart from a crash before the work. The
//! running request holds a lease on its record and renews it; a record whose lease lapsed
//! without an answer therefore belongs to a request that died, and its retry is answered
//! [`Claim::OutcomeUnknown`] rather than running the work a second time.
//!
//! Secrets are shown once and stored only as hashes elsewhere, so a kept answer never holds one:
//! they are withheld (set to null) before the answer is stored, and the replay lists where.

use std::time::Duration;

use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, db_run};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Actor, Error, Result, secrets};

/// How long a running request's claim on its key lasts without being renewed.
/// Short, so that a retry after its replica died learns within seconds that the outcome is
/// unknown rather than waiting on a request that no longer runs.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a running request renews its claim: well inside [`LEASE`], so only a request whose
/// process died lets it lapse.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Answers larger than this are not kept.
pub const MAX_KEPT_BODY: usize = 4 * 1024 * 1024;

/// Field names whose values are secrets in every answer that has them (REST and GraphQL
/// spellings). Values are also recognised by their form ([`secrets::contains_secret`]), which
/// covers a GraphQL client that renames a field with an alias.
const SECRET_FIELDS: [&str; 8] = [
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "join_token",
    "accessToken",
    "refreshToken",
    "joinToken",
];

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::validation(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose keys these are. A replay goes only to the caller who made the request: another member
/// of the organisation reusing the key gets an answer of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyScope(String);

impl KeyScope {
    pub fn caller(actor: &Actor) -> Self {
        let (kind, id) = actor.audit_identity();
        KeyScope(format!("org:{}:{kind}:{id}", actor.org_id))
    }

    /// Before sign-in, keys belong to the client address.
    pub fn address(ip: Option<std::net::IpAddr>) -> Self {
        KeyScope(format!(
            "ip:{}",
            ip.map(|i| i.to_string()).unwrap_or_default()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key was first used for: method, path and body, hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFingerprint(String);

impl RequestFingerprint {
    pub fn of(method: &str, path: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(method);
        hasher.update(b" ");
        hasher.update(path);
        hasher.update(b"\n");
        hasher.update(body);
        RequestFingerprint(hex::encode(hasher.finalize()))
    }
}

/// An answer as the client got it, to keep for replays.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// A kept answer. `withheld` lists the JSON pointers of the secrets that were in the first
/// answer and are null here (empty when nothing was withheld).
#[derive(Clone, Debug)]
pub struct KeptAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
    pub withheld: Vec<String>,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours: run the request, renew the lease while it runs, then keep or release.
    Run(Lease),
    /// The first request with this key was answered: answer the same.
    Replay(KeptAnswer),
    /// The key was used with a different request.
    Reused,
    /// The first request with this key is still running.
    InFlight,
    /// The first request with this key stopped without an answer (its process died, or it
    /// failed with an internal error): it may or may not have taken effect, and running it again
    /// could do it twice.
    OutcomeUnknown,
}

/// A running request's claim on its key. Only [`Idempotency::claim`] makes one.
#[derive(Debug)]
pub struct Lease {
    scope: String,
    key: String,
    /// Tells this claim from a later one on the same key after the record expired.
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct Record {
    request_hash: String,
    state: String,
    status: Option<i64>,
    content_type: Option<String>,
    body: Option<String>,
    withheld: Option<String>,
    created_at: i64,
    locked_at: i64,
}

/// The idempotency records (see the module's documentation).
#[derive(Clone)]
pub struct Idempotency {
    db: Db,
    retention: Duration,
}

impl Idempotency {
    pub(crate) fn new(db: Db, retention: Duration) -> Self {
        Idempotency { db, retention }
    }

    fn retention_micros(&self) -> i64 {
        i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX)
    }

    pub async fn claim(
        &self,
        scope: &KeyScope,
        key: &IdempotencyKey,
        request: &RequestFingerprint,
    ) -> Result<Claim> {
        let (scope, key) = (scope.as_str(), key.as_str());
        for _ in 0..5 {
            let now = now_micros();
            let existing: Option<Record> = db_run!(&self.db, |p| {
                sqlx::query_as(
                    "SELECT request_hash, state, status, content_type, body, withheld, created_at, locked_at \
                     FROM idempotency_keys WHERE scope = $1 AND key = $2",
                )
                .bind(scope).bind(key).fetch_optional(p).await
            })
            .map_err(DbError::from)?;
            let Some(rec) = existing else {
                let inserted = db_run!(&self.db, |p| {
                    sqlx::query(
                        "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_at) \
                         VALUES ($1, $2, $3, 'in_flight', $4, $4) ON CONFLICT (scope, key) DO NOTHING",
                    )
                    .bind(scope).bind(key).bind(&request.0).bind(now).execute(p).await.map(|r| r.rows_affected())
                })
                .map_err(DbError::from);
                let inserted = match inserted {
                    Ok(n) => n,
                    Err(e) => {
                        // The claim may have been written before its answer was lost: freed once
                        // the database is back, so the retry runs rather than waiting on a claim
                        // nobody holds. Nothing of the work ran.
                        if e.is_unavailable() {
                            self.release_when_back(Lease {
                                scope: scope.to_string(),
                                key: key.to_string(),
                                created_at: now,
                            });
                        }
                        return Err(e.into());
                    }
                };
                if inserted == 1 {
                    return Ok(Claim::Run(Lease {
                        scope: scope.to_string(),
                        key: key.to_string(),
                        created_at: now,
                    }));
                }
                continue; // another request claimed it first: look again
            };
            // Past its retention (the sweep has not reached it yet): the key is free again.
            if rec.created_at < now - self.retention_micros() {
                db_run!(&self.db, |p| {
                    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3")
                        .bind(scope).bind(key).bind(rec.created_at).execute(p).await.map(|r| r.rows_affected())
                })
                .map_err(DbError::from)?;
                continue;
            }
            if rec.request_hash != request.0 {
                return Ok(Claim::Reused);
            }
            if rec.state == "done" {
                return Ok(Claim::Replay(rec.kept()));
            }
            if rec.state == "unknown" || rec.locked_at < now - LEASE.as_micros() as i64 {
                return Ok(Claim::OutcomeUnknown);
            }
            return Ok(Claim::InFlight);
        }
        Ok(Claim::InFlight)
    }

    /// Tells other requests with the key that this one is still running.
    pub async fn renew(&self, lease: &Lease) -> Result<()> {
        db_run!(&self.db, |p| {
            sqlx::query(
                "UPDATE idempotency_keys SET locked_at = $1 \
                 WHERE scope = $2 AND key = $3 AND created_at = $4 AND state = 'in_flight'",
            )
            .bind(now_micros())
            .bind(&lease.scope)
            .bind(&lease.key)
            .bind(lease.created_at)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Keeps the answer for replays, with its secrets withheld. Returns where they were.
    pub async fn keep(&self, lease: Lease, answer: &Answer) -> Result<Vec<String>> {
        let (body, withheld) = withhold_secrets(&answer.body);
        let withheld_json = (!withheld.is_empty())
            .then(|| serde_json::to_string(&withheld).expect("strings serialise"));
        db_run!(&self.db, |p| {
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'done', status = $1, content_type = $2, body = $3, withheld = $4 \
                 WHERE scope = $5 AND key = $6 AND created_at = $7",
            )
            .bind(i64::from(answer.status)).bind(&answer.content_type).bind(&body).bind(&withheld_json)
            .bind(&lease.scope).bind(&lease.key).bind(lease.created_at)
            .execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(withheld)
    }

    /// Frees the key without an answer, for a request known not to have taken effect, so the
    /// client may retry with the same key.
    pub async fn release(&self, lease: &Lease) -> Result<()> {
        db_run!(&self.db, |p| {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at = $3 AND state = 'in_flight'",
            )
            .bind(&lease.scope).bind(&lease.key).bind(lease.created_at)
            .execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }

    /// [`Idempotency::release`], tried again every quarter second until the database answers
    /// (within [`LEASE`]), for a key whose record could not be reached when it was to be freed.
    pub fn release_when_back(&self, lease: Lease) {
        self.when_back(lease, false);
    }

    /// [`Idempotency::abandon`] the same way: the retry learns the outcome is unknown as soon
    /// as the database is back, rather than once the lease lapses.
    pub fn abandon_when_back(&self, lease: Lease) {
        self.when_back(lease, true);
    }

    fn when_back(&self, lease: Lease, abandon: bool) {
        let records = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + LEASE;
            while tokio::time::Instant::now() < deadline {
                let done = if abandon {
                    records.abandon(&lease).await
                } else {
                    records.release(&lease).await
                };
                if done.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tracing::warn!(
                "could not settle an Idempotency-Key while the database was away; its lease lapses instead"
            );
        });
    }

    /// Records that the request ended without an answer that says what happened (an internal
    /// error, or an answer too large to keep): the work may have been done, so a retry is told
    /// [`Claim::OutcomeUnknown`] rather than running it again.
    pub async fn abandon(&self, lease: &Lease) -> Result<()> {
        db_run!(&self.db, |p| {
            sqlx::query(
                "UPDATE idempotency_keys SET state = 'unknown' \
                 WHERE scope = $1 AND key = $2 AND created_at = $3 AND state = 'in_flight'",
            )
            .bind(&lease.scope)
            .bind(&lease.key)
            .bind(lease.created_at)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Deletes records past their retention, answered or not; returns how many.
    pub async fn delete_expired(&self, now: i64) -> Result<u64> {
        crate::retention::delete_in_batches(
            &self.db,
            "DELETE FROM idempotency_keys WHERE (scope, key) IN \
             (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 LIMIT 1000)",
            now - self.retention_micros(),
        )
        .await
    }
}

impl Record {
    fn kept(self) -> KeptAnswer {
        let mut withheld: Vec<String> = self
            .withheld
            .as_deref()
            .and_then(|w| serde_json::from_str(w).ok())
            .unwrap_or_default();
        // Answers kept before every secret was withheld are checked again on the way out.
        let (body, again) = withhold_secrets(self.body.as_deref().unwrap_or_default());
        withheld.extend(again);
        KeptAnswer {
            status: self
                .status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200),
            content_type: self.content_type,
            body,
            withheld,
        }
    }
}

/// The answer with every secret set to null, wherever it sits, and the JSON pointers of those
/// fields. A body that is not JSON and holds a secret is not kept at all (pointer `""`).
pub fn withhold_secrets(body: &str) -> (String, Vec<String>) {
    let Ok(mut value) = serde_json::from_str::<Value>(body) else {
        return if secrets::contains_secret(body) {
            (String::new(), vec![String::new()])
        } else {
            (body.to_string(), Vec::new())
        };
    };
    let mut withheld = Vec::new();
    withhold_in(&mut value, &mut String::new(), &mut withheld);
    if withheld.is_empty() {
        (body.to_string(), withheld)
    } else {
        (value.to_string(), withheld)
    }
}

fn withhold_in(value: &mut Value, at: &mut String, withheld: &mut Vec<String>) {
    let len = at.len();
    match value {
        Value::Object(fields) => {
            for (name, v) in fields.iter_mut() {
                at.push('/');
                at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                let secret = match v {
                    Value::Null => false,
                    Value::String(s) => {
                        SECRET_FIELDS.contains(&name.as_str()) || secrets::contains_secret(s)
                    }
                    _ => SECRET_FIELDS.contains(&name.as_str()),
                };
                if secret {
                    *v = Value::Null;
                    withheld.push(at.clone());
                } else {
                    withhold_in(v, at, withheld);
                }
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                if matches!(v, Value::String(s) if secrets::contains_secret(s)) {
                    *v = Value::Null;
                    withheld.push(at.clone());
                } else {
                    withhold_in(v, at, withheld);
                }
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_withheld_wherever_they_sit() {
        let key = secrets::generate("ioc_");
        let device = secrets::generate("iodt_");
        let body = serde_json::json!({
            "api_key": {"id": "key_1", "name": "ci"},
            "secret": key,
            "data": {"made": {"k": device, "list": ["plain", key]}},
            "token_type": "Bearer",
        })
        .to_string();
        let (kept, withheld) = withhold_secrets(&body);
        assert!(!kept.contains(&key) && !kept.contains(&device), "{kept}");
        assert_eq!(withheld, ["/data/made/k", "/data/made/list/1", "/secret"]);
        let kept: Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept["api_key"]["id"], "key_1");
        assert_eq!(kept["token_type"], "Bearer");
        assert!(kept.get("secret").is_some_and(Value::is_null));
    }

    #[test]
    fn answers_without_secrets_are_kept_as_they_are() {
        let body = r#"{"id": "clu_1", "name": "train", "token": null}"#;
        assert_eq!(withhold_secrets(body), (body.to_string(), Vec::new()));
        assert_eq!(withhold_secrets("not json"), ("not json".into(), vec![]));
        let leaky = format!("key: {}", secrets::generate("ioc_"));
        assert_eq!(
            withhold_secrets(&leaky),
            (String::new(), vec![String::new()])
        );
    }

    #[test]
    fn keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("k-1").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
