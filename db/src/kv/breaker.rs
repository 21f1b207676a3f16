//! What keeps a Redis outage from slowing every request. Without it each call waits for the
//! client's reconnection (a shared future that retries with back-off for seconds) and every
//! request that takes a rate-limit token waits with it. Instead a call is given a short time,
//! and after a failure that says Redis is unreachable the next calls fail at once for a
//! cool-off, after which one call tries again. Callers already treat a failed call as "Redis is
//! away" (the rate limiter lets the request through, followers read the database).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;

use crate::{DbError, Result};

/// How long one call may take. Redis answers in well under a millisecond on a healthy network.
pub(crate) const CALL_LIMIT: Duration = Duration::from_millis(250);
/// How long calls fail at once after Redis was found unreachable.
pub(crate) const COOL_OFF: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Until when calls fail at once; `None` while Redis answers.
    open_until: Option<Instant>,
    /// After the cool-off one call tries Redis again; the others fail at once meanwhile, so an
    /// outage costs one call a second its wait, not every call made in that second.
    probing: bool,
}

/// Lets the next call probe if this one's future is dropped before it was answered.
struct Probe<'a>(&'a Breaker);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.state.lock().probing = false;
    }
}

impl Breaker {
    /// Whether calls are failing at once now.
    pub(crate) fn is_open(&self) -> bool {
        self.state
            .lock()
            .open_until
            .is_some_and(|t| Instant::now() < t)
    }

    /// Runs `call` unless Redis was found unreachable within the cool-off, or another call is
    /// trying it again after one.
    pub(crate) async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let probe = {
            let mut state = self.state.lock();
            match state.open_until {
                None => None,
                Some(t) if Instant::now() < t || state.probing => {
                    return Err(DbError::KvUnavailable("recently unreachable"));
                }
                Some(_) => {
                    state.probing = true;
                    Some(Probe(self))
                }
            }
        };
        let answer = self.attempt(call).await;
        drop(probe);
        match answer {
            // Still away: said once already, when it was first found so.
            Err(e) if probe_failed(&e) && self.is_open() => {
                Err(DbError::KvUnavailable("still unreachable"))
            }
            answer => answer,
        }
    }

    /// Runs `call` whatever the state (a health check), and records what it found.
    pub(crate) async fn attempt<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(Ok(v)) => {
                self.close();
                Ok(v)
            }
            Ok(Err(e)) if unreachable(&e) => {
                self.trip();
                Err(e.into())
            }
            // An answer (a script's error, a wrong type): Redis is there.
            Ok(Err(e)) => {
                self.close();
                Err(e.into())
            }
            Err(_) => {
                self.trip();
                Err(DbError::KvUnavailable("no answer in time"))
            }
        }
    }

    fn close(&self) {
        let mut state = self.state.lock();
        state.open_until = None;
        state.probing = false;
    }

    fn trip(&self) {
        let mut state = self.state.lock();
        if state.open_until.is_none() {
            tracing::warn!(
                "Redis unreachable; calls fail at once for a second at a time until it answers"
            );
        }
        state.open_until = Some(Instant::now() + COOL_OFF);
        state.probing = false;
    }
}

/// Whether a call's failure says Redis is away (rather than that it answered with an error).
fn probe_failed(e: &DbError) -> bool {
    match e {
        DbError::KvUnavailable(_) => true,
        DbError::Kv(e) => unreachable(e),
        _ => false,
    }
}

fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> redis::RedisError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_fails_calls_at_once_until_the_cool_off_ends() {
        let b = Breaker::default();
        assert_eq!(b.call(async { Ok(1) }).await.unwrap(), 1);
        assert!(b.call(async { Err::<(), _>(refused()) }).await.is_err());
        assert!(b.is_open());
        // Not even run while open.
        let ran = std::sync::atomic::AtomicBool::new(false);
        let r = b
            .call(async {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(2)
            })
            .await;
        assert!(matches!(r, Err(DbError::KvUnavailable(_))));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        tokio::time::advance(COOL_OFF).await;
        assert_eq!(b.call(async { Ok(3) }).await.unwrap(), 3);
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_hangs_is_cut_short_and_trips() {
        let b = Breaker::default();
        let r = b
            .call(std::future::pending::<redis::RedisResult<()>>())
            .await;
        assert!(matches!(r, Err(DbError::KvUnavailable(_))));
        assert!(b.is_open());
    }

    #[tokio::test]
    async fn an_answer_that_is_an_error_does_not_trip() {
        let b = Breaker::default();
        let script_error: redis::RedisError =
            (redis::ErrorKind::Client, "wrong number of arguments").into();
        assert!(b.call(async { Err::<(), _>(script_error) }).await.is_err());
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_off_one_call_tries_while_the_others_fail_at_once() {
        let b = Breaker::default();
        assert!(b.call(async { Err::<(), _>(refused()) }).await.is_err());
        tokio::time::advance(COOL_OFF).await;
        // The probe hangs on Redis; calls made meanwhile do not wait with it.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let probe = b.call(async move {
            let _ = rx.await;
            Err::<(), _>(refused())
        });
        tokio::pin!(probe);
        assert!(futures::poll!(probe.as_mut()).is_pending());
        let r = b.call(async { Ok(4) }).await;
        assert!(matches!(r, Err(DbError::KvUnavailable(_))), "{r:?}");
        // The probe finds Redis still away: said as unavailable, open for another cool-off.
        tx.send(()).unwrap();
        assert!(matches!(probe.await, Err(DbError::KvUnavailable(_))));
        assert!(b.is_open());
        tokio::time::advance(COOL_OFF).await;
        assert_eq!(b.call(async { Ok(5) }).await.unwrap(), 5);
        assert!(!b.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_given_up_lets_the_next_call_try() {
        let b = Breaker::default();
        assert!(b.call(async { Err::<(), _>(refused()) }).await.is_err());
        tokio::time::advance(COOL_OFF).await;
        {
            let probe = b.call(std::future::pending::<redis::RedisResult<()>>());
            tokio::pin!(probe);
            assert!(futures::poll!(probe.as_mut()).is_pending());
        }
        assert_eq!(b.call(async { Ok(6) }).await.unwrap(), 6);
    }
}
