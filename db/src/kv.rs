//! What replicas share: rate-limit buckets, short-lived values and pub/sub.
//!
//! With `REDIS_URL` set this is Redis, so every replica sees the same buckets and messages;
//! without it an in-process stand-in gives the same behaviour to a single replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

use crate::{DatabaseUrl, Result, time::now_micros};

mod breaker;
use breaker::Breaker;

/// The outcome of one rate-limit check (GCRA: a token bucket without a refill timer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests allowed per period (and the burst size).
    pub limit: u32,
    /// Requests that could still be made right now.
    pub remaining: u32,
    /// Time until the bucket is full again.
    pub reset_after: Duration,
    /// For a refused request, how long until one would be allowed.
    pub retry_after: Option<Duration>,
}

#[derive(Clone)]
pub enum Kv {
    Redis {
        conn: ConnectionManager,
        client: redis::Client,
        /// Put before every key and channel, so deployments (and test runs) can share a server.
        prefix: Arc<str>,
        breaker: Arc<Breaker>,
    },
    Memory(Arc<Memory>),
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kv::Redis { .. } => "Kv::Redis",
            Kv::Memory(_) => "Kv::Memory",
        })
    }
}

/// The in-process stand-in for Redis.
#[derive(Default)]
pub struct Memory {
    buckets: Mutex<HashMap<String, i64>>,
    values: Mutex<HashMap<String, (String, i64)>>,
    channels: Mutex<HashMap<String, broadcast::Sender<String>>>,
}

// GCRA in one round trip. KEYS[1] = bucket; ARGV = emission interval (µs), burst.
// Redis's own clock is used so replicas with skewed clocks agree.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - burst * interval
if over > 0 then
  return {0, over, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, new_tat - now, 0}
"#;

// A counter that lives for a fixed window from its first count. KEYS[1] = counter; ARGV[1] =
// window (ms). Returns the count after this one and the milliseconds the window has left.
const WINDOW_COUNT_LUA: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"#;

/// Logs a failed call to the store, `what` saying what it costs: at warn when Redis was just
/// found away (the breaker says so once too), at debug while it stays away, so that an outage
/// does not log a line for every request.
pub fn note_failure(err: &crate::DbError, what: &str) {
    if matches!(err, crate::DbError::KvUnavailable(_)) {
        tracing::debug!(error = %err, "{what}");
    } else {
        tracing::warn!(error = %err, "{what}");
    }
}

impl Kv {
    pub fn memory() -> Kv {
        Kv::Memory(Arc::new(Memory::default()))
    }

    pub async fn connect(url: &DatabaseUrl, prefix: &str) -> Result<Kv> {
        let client = redis::Client::open(url.expose())?;
        // Few reconnection tries per failure: the breaker paces the tries while Redis is away.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(breaker::CALL_LIMIT))
            .set_response_timeout(Some(breaker::CALL_LIMIT));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Kv::Redis {
            conn,
            client,
            prefix: prefix.into(),
            breaker: Arc::default(),
        })
    }

    /// The name a key has in the store.
    fn name(&self, key: &str) -> String {
        match self {
            Kv::Redis { prefix, .. } => format!("{prefix}{key}"),
            Kv::Memory(_) => key.to_string(),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Kv::Redis { .. })
    }

    /// Asks Redis, even while recent calls found it unreachable (a health check).
    pub async fn ping(&self) -> Result<()> {
        if let Kv::Redis { conn, breaker, .. } = self {
            let mut c = conn.clone();
            let _: String = breaker
                .attempt(redis::cmd("PING").query_async(&mut c))
                .await?;
        }
        Ok(())
    }

    /// Whether recent calls found Redis unreachable (they fail at once for a while).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Kv::Redis { breaker, .. } if breaker.is_open())
    }

    /// Takes one request from the bucket `key`, which allows `limit` requests per `period` with
    /// bursts of up to `limit`.
    pub async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
    ) -> Result<RateDecision> {
        let key = &self.name(key);
        let limit = limit.max(1);
        let interval = (period.as_micros() as i64 / i64::from(limit)).max(1);
        let (allowed, span, wait) = match self {
            Kv::Memory(m) => m.gcra(key, interval, limit, now_micros()),
            Kv::Redis { conn, breaker, .. } => {
                let mut c = conn.clone();
                let script = redis::Script::new(GCRA_LUA);
                let mut call = script.key(key);
                call.arg(interval).arg(limit);
                let (ok, a, b): (i64, i64, i64) = breaker.call(call.invoke_async(&mut c)).await?;
                if ok == 1 { (true, a, 0) } else { (false, b, a) }
            }
        };
        Ok(decision(allowed, span, wait, interval, limit))
    }

    /// Counts one event in the window `key`, which starts at its first event and lasts `window`:
    /// how many the window has counted, this one included, and how long it has left.
    pub async fn count_in_window(&self, key: &str, window: Duration) -> Result<(u64, Duration)> {
        let key = &self.name(key);
        let window_ms = window.as_millis().max(1) as i64;
        match self {
            Kv::Memory(m) => {
                let now = now_micros();
                let mut values = m.values.lock();
                let (count, expires) = match values.get(key) {
                    Some((v, exp)) if *exp > now => (v.parse::<u64>().unwrap_or(0) + 1, *exp),
                    _ => (1, now + window_ms * 1000),
                };
                values.insert(key.to_string(), (count.to_string(), expires));
                Ok((count, Duration::from_micros((expires - now).max(0) as u64)))
            }
            Kv::Redis { conn, breaker, .. } => {
                let mut c = conn.clone();
                let script = redis::Script::new(WINDOW_COUNT_LUA);
                let mut call = script.key(key);
                call.arg(window_ms);
                let (count, left_ms): (i64, i64) = breaker.call(call.invoke_async(&mut c)).await?;
                Ok((
                    count.max(0) as u64,
                    Duration::from_millis(left_ms.max(0) as u64),
                ))
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let key = &self.name(key);
        match self {
            Kv::Memory(m) => {
                let values = m.values.lock();
                Ok(values
                    .get(key)
                    .filter(|(_, exp)| *exp > now_micros())
                    .map(|(v, _)| v.clone()))
            }
            Kv::Redis { conn, breaker, .. } => {
                let mut c = conn.clone();
                breaker.call(c.get(key)).await
            }
        }
    }

    pub async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let key = &self.name(key);
        match self {
            Kv::Memory(m) => {
                let mut values = m.values.lock();
                let now = now_micros();
                if values.len() > 10_000 {
                    values.retain(|_, (_, exp)| *exp > now);
                }
                values.insert(
                    key.to_string(),
                    (value.to_string(), now + ttl.as_micros() as i64),
                );
                Ok(())
            }
            Kv::Redis { conn, breaker, .. } => {
                let ms = ttl.as_millis().max(1) as u64;
                let mut c = conn.clone();
                breaker.call(c.pset_ex::<_, _, ()>(key, value, ms)).await
            }
        }
    }

    pub async fn del(&self, key: &str) -> Result<()> {
        let key = &self.name(key);
        match self {
            Kv::Memory(m) => {
                m.values.lock().remove(key);
                Ok(())
            }
            Kv::Redis { conn, breaker, .. } => {
                let mut c = conn.clone();
                breaker.call(c.del::<_, ()>(key)).await
            }
        }
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<()> {
        let channel = &self.name(channel);
        match self {
            Kv::Memory(m) => {
                if let Some(tx) = m.channels.lock().get(channel) {
                    let _ = tx.send(message.to_string());
                }
                Ok(())
            }
            Kv::Redis { conn, breaker, .. } => {
                let mut c = conn.clone();
                breaker.call(c.publish::<_, _, ()>(channel, message)).await
            }
        }
    }

    /// Messages published on `channel` from now on (by any replica, with Redis).
    pub async fn subscribe(&self, channel: &str) -> Result<BoxStream<'static, String>> {
        let channel = &self.name(channel);
        match self {
            Kv::Memory(m) => {
                let rx = m
                    .channels
                    .lock()
                    .entry(channel.to_string())
                    .or_insert_with(|| broadcast::channel(4096).0)
                    .subscribe();
                // The channel's name rides along in the stream's state (for the warning), so
                // no message pays for a copy of it.
                let state = (rx, channel.to_string());
                let stream = futures::stream::unfold(state, |(mut rx, name)| async move {
                    match rx.recv().await {
                        Ok(msg) => Some((msg, (rx, name))),
                        // Fallen behind, messages lost: the subscription ends, as a Redis
                        // client that falls behind is disconnected, and its subscriber
                        // treats it the same way (messages may have been missed).
                        Err(broadcast::error::RecvError::Lagged(lost)) => {
                            tracing::warn!(channel = %name, lost, "a subscriber fell behind");
                            None
                        }
                        Err(broadcast::error::RecvError::Closed) => None,
                    }
                });
                Ok(stream.boxed())
            }
            Kv::Redis {
                client, breaker, ..
            } => {
                // Subscribing opens a connection of its own; it is tried whatever the breaker
                // says (a listener paces its own retries), and its outcome is recorded.
                let mut pubsub = breaker.attempt(client.get_async_pubsub()).await?;
                breaker.attempt(pubsub.subscribe(channel)).await?;
                Ok(pubsub
                    .into_on_message()
                    .filter_map(|m| async move { m.get_payload::<String>().ok() })
                    .boxed())
            }
        }
    }
}

impl Memory {
    /// Same algorithm as `GCRA_LUA`; returns (allowed, span, wait) in microseconds.
    fn gcra(&self, key: &str, interval: i64, burst: u32, now: i64) -> (bool, i64, i64) {
        let mut buckets = self.buckets.lock();
        if buckets.len() > 50_000 {
            buckets.retain(|_, tat| *tat > now);
        }
        let tat = buckets.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + interval;
        let over = new_tat - now - i64::from(burst) * interval;
        if over > 0 {
            return (false, tat - now, over);
        }
        buckets.insert(key.to_string(), new_tat);
        (true, new_tat - now, 0)
    }
}

fn decision(allowed: bool, span: i64, wait: i64, interval: i64, limit: u32) -> RateDecision {
    let capacity = i64::from(limit) * interval;
    let remaining = ((capacity - span) / interval).clamp(0, i64::from(limit)) as u32;
    RateDecision {
        allowed,
        limit,
        remaining: if allowed { remaining } else { 0 },
        reset_after: Duration::from_micros(span.max(0) as u64),
        retry_after: (!allowed).then(|| Duration::from_micros(wait.max(1) as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_refuses_until_refilled() {
        let m = Memory::default();
        let interval = 100_000; // 10 per second
        let now = 1_000_000_000;
        for i in 0..10 {
            let (ok, span, _) = m.gcra("k", interval, 10, now);
            assert!(ok, "request {i} of the burst");
            let d = decision(ok, span, 0, interval, 10);
            assert_eq!(d.remaining, 9 - i);
        }
        let (ok, _, wait) = m.gcra("k", interval, 10, now);
        assert!(!ok);
        assert_eq!(wait, interval);
        // One interval later one request fits again, and only one.
        assert!(m.gcra("k", interval, 10, now + interval).0);
        assert!(!m.gcra("k", interval, 10, now + interval).0);
        // Other keys are independent.
        assert!(m.gcra("other", interval, 10, now).0);
    }

    #[tokio::test]
    async fn memory_values_expire_and_pubsub_delivers() {
        let kv = Kv::memory();
        kv.set_ex("a", "1", Duration::from_secs(60)).await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        kv.set_ex("b", "2", Duration::from_micros(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(kv.get("b").await.unwrap(), None);
        let mut sub = kv.subscribe("ch").await.unwrap();
        kv.publish("ch", "hello").await.unwrap();
        assert_eq!(sub.next().await.as_deref(), Some("hello"));
    }

    #[tokio::test]
    async fn a_memory_subscriber_that_falls_behind_loses_its_subscription() {
        let kv = Kv::memory();
        let mut sub = kv.subscribe("ch").await.unwrap();
        for i in 0..5_000 {
            kv.publish("ch", &i.to_string()).await.unwrap();
        }
        // Messages were lost: the stream ends rather than skip them unannounced.
        assert_eq!(sub.next().await, None);
    }

    #[tokio::test]
    async fn a_window_counts_from_its_first_event_and_starts_again_after_it() {
        window_counts(&Kv::memory()).await;
    }
}

/// A window counts 1, 2, 3 with the time it has left shrinking, and starts again once over.
#[cfg(test)]
async fn window_counts(kv: &Kv) {
    let window = Duration::from_millis(300);
    let (n1, left1) = kv.count_in_window("w", window).await.unwrap();
    let (n2, _) = kv.count_in_window("w", window).await.unwrap();
    let (n3, left3) = kv.count_in_window("w", window).await.unwrap();
    assert_eq!((n1, n2, n3), (1, 2, 3));
    assert!(left1 <= window && left3 <= left1, "{left1:?} {left3:?}");
    assert_eq!(kv.count_in_window("other", window).await.unwrap().0, 1);
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    assert_eq!(kv.count_in_window("w", window).await.unwrap().0, 1);
}

#[cfg(test)]
mod redis_tests {
    use super::*;

    /// The Lua script and the in-process bucket agree, on a real Redis when one is configured.
    #[tokio::test]
    async fn redis_gcra_counts_one_per_request() {
        let Ok(url) = std::env::var("IOCLOUD_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("test:{}:", rand::random::<u64>());
        let kv = Kv::connect(&DatabaseUrl::new(url), &prefix).await.unwrap();
        let mut remaining = Vec::new();
        for _ in 0..7 {
            let d = kv
                .rate_limit("k", 6, Duration::from_secs(60))
                .await
                .unwrap();
            remaining.push((d.allowed, d.remaining));
        }
        assert_eq!(
            remaining,
            vec![
                (true, 5),
                (true, 4),
                (true, 3),
                (true, 2),
                (true, 1),
                (true, 0),
                (false, 0)
            ]
        );
    }

    #[tokio::test]
    async fn redis_windows_count_like_the_in_process_ones() {
        let Ok(url) = std::env::var("IOCLOUD_TEST_REDIS_URL") else {
            return;
        };
        let prefix = format!("test:{}:", rand::random::<u64>());
        let kv = Kv::connect(&DatabaseUrl::new(url), &prefix).await.unwrap();
        super::window_counts(&kv).await;
    }
}
