//! Admission: a replica works on at most `max_in_flight` requests at once. A request beyond
//! that waits its turn (first come, first served) for at most `admission_wait_ms`, and past that
//! is answered at once with 503 `overloaded` and `Retry-After`, before anything of it runs.
//! Offered more than it can serve, a replica so keeps the latency of what it accepts bounded
//! (its turn's wait plus the work of at most `max_in_flight` requests) instead of queueing
//! without end until requests time out half-way.
//!
//! Requests that mostly wait hold no turn: agents' long polls (they wait for news, then read
//! once) and the probes. A stream (events, GraphQL over a WebSocket) holds one only until its
//! answer begins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;
use crate::state::AppState;

/// What a shed request is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Admission {
    turns: Semaphore,
    max_in_flight: u32,
    wait: Duration,
    /// Requests answered `overloaded` since the start.
    shed: AtomicU64,
}

impl Admission {
    pub fn new(max_in_flight: u32, wait: Duration) -> Admission {
        let max_in_flight = max_in_flight.max(1);
        Admission {
            turns: Semaphore::new(max_in_flight as usize),
            max_in_flight,
            wait,
            shed: AtomicU64::new(0),
        }
    }

    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Requests holding a turn now.
    pub fn in_flight(&self) -> u32 {
        self.max_in_flight
            .saturating_sub(self.turns.available_permits() as u32)
    }

    /// The Prometheus lines of the shed count and the requests in flight.
    pub fn render(&self) -> String {
        [
            "# HELP iocloud_requests_shed_total Requests answered 503 overloaded, before any of them ran.".to_string(),
            "# TYPE iocloud_requests_shed_total counter".into(),
            format!("iocloud_requests_shed_total {}", self.shed()),
            "# HELP iocloud_requests_in_flight Requests being worked on (long polls aside).".into(),
            "# TYPE iocloud_requests_in_flight gauge".into(),
            format!("iocloud_requests_in_flight {}", self.in_flight()),
            "# HELP iocloud_requests_max_in_flight Requests worked on at once at most.".into(),
            "# TYPE iocloud_requests_max_in_flight gauge".into(),
            format!("iocloud_requests_max_in_flight {}", self.max_in_flight),
        ]
        .join("\n")
            + "\n"
    }

    /// Takes every turn, as `max_in_flight` slow requests would, until the guard is dropped:
    /// a drill of a replica at capacity. `None` while any turn is taken.
    pub fn occupy(&self) -> Option<SemaphorePermit<'_>> {
        self.turns.try_acquire_many(self.max_in_flight).ok()
    }
}

pub async fn admit<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if !takes_a_turn(&req) {
        return inner(req).await;
    }
    let admission = &state.admission;
    let turn = match admission.turns.try_acquire() {
        Ok(turn) => turn,
        Err(_) => match tokio::time::timeout(admission.wait, admission.turns.acquire()).await {
            Ok(Ok(turn)) => turn,
            // Timed out (or closed, which it never is).
            _ => {
                admission.shed.fetch_add(1, Ordering::Relaxed);
                return ApiError::Overloaded.into_response();
            }
        },
    };
    let res = inner(req).await;
    drop(turn);
    res
}

/// Whether a request counts against `max_in_flight`.
fn takes_a_turn(req: &Request) -> bool {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return false;
    }
    // An agent's long poll for assignments (`GET …/assignments?wait_secs=N`).
    let long_poll = path.starts_with("/agent/")
        && path.ends_with("/assignments")
        && req.uri().query().is_some_and(|q| q.contains("wait_secs="));
    !long_poll
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn probes_and_long_polls_hold_no_turn() {
        assert!(!takes_a_turn(&req("/readyz")));
        assert!(!takes_a_turn(&req(
            "/agent/v1/devices/dev_1/assignments?wait_secs=25"
        )));
        assert!(takes_a_turn(&req("/agent/v1/devices/dev_1/assignments")));
        assert!(takes_a_turn(&req("/agent/v1/devices/dev_1/heartbeat")));
        assert!(takes_a_turn(&req("/v1/clusters")));
    }
}
