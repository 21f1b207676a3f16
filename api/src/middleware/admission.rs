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
//!
//! Requests that start new work (a cluster made or applied) may hold at most three quarters of
//! the turns. The rest is kept for what finishes work already begun: agents bringing nodes up
//! and reporting on them, deletes, reads of what runs. Past capacity it is new work that is
//! turned away first, so what was accepted still completes.

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
    /// What requests that start new work take first: three quarters of the turns.
    new_work: Semaphore,
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
            new_work: Semaphore::new((max_in_flight as usize * 3 / 4).max(1)),
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
    let class = class(&req);
    if class == Class::Free {
        return inner(req).await;
    }
    let admission = &state.admission;
    let deadline = tokio::time::Instant::now() + admission.wait;
    let new_work = match class {
        Class::NewWork => match turn(&admission.new_work, deadline).await {
            Some(t) => Some(t),
            None => return admission.refuse(),
        },
        _ => None,
    };
    let Some(turn) = turn(&admission.turns, deadline).await else {
        return admission.refuse();
    };
    let res = inner(req).await;
    drop((turn, new_work));
    res
}

impl Admission {
    fn refuse(&self) -> Response {
        self.shed.fetch_add(1, Ordering::Relaxed);
        ApiError::Overloaded.into_response()
    }
}

/// A turn of `turns`, at once or by `deadline`.
async fn turn(turns: &Semaphore, deadline: tokio::time::Instant) -> Option<SemaphorePermit<'_>> {
    if let Ok(t) = turns.try_acquire() {
        return Some(t);
    }
    // Timed out (or closed, which it never is).
    tokio::time::timeout_at(deadline, turns.acquire())
        .await
        .ok()?
        .ok()
}

/// How admission treats a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Holds no turn.
    Free,
    /// Starts new work: shed first.
    NewWork,
    /// Everything else.
    Ongoing,
}

fn class(req: &Request) -> Class {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return Class::Free;
    }
    // An agent's long poll for assignments (`GET …/assignments?wait_secs=N`).
    let long_poll = path.starts_with("/agent/")
        && path.ends_with("/assignments")
        && req.uri().query().is_some_and(|q| q.contains("wait_secs="));
    if long_poll {
        return Class::Free;
    }
    let method = req.method();
    let makes_a_cluster = (method == axum::http::Method::POST && path == "/v1/clusters")
        || (method == axum::http::Method::PUT && path.starts_with("/v1/clusters/"));
    if makes_a_cluster {
        Class::NewWork
    } else {
        Class::Ongoing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn probes_and_long_polls_hold_no_turn_and_new_clusters_are_new_work() {
        let class = |m, u| class(&req(m, u));
        assert_eq!(class("GET", "/readyz"), Class::Free);
        let poll = "/agent/v1/devices/dev_1/assignments?wait_secs=25";
        assert_eq!(class("GET", poll), Class::Free);
        let read = "/agent/v1/devices/dev_1/assignments";
        assert_eq!(class("GET", read), Class::Ongoing);
        let beat = "/agent/v1/devices/dev_1/heartbeat";
        assert_eq!(class("POST", beat), Class::Ongoing);
        assert_eq!(class("GET", "/v1/clusters"), Class::Ongoing);
        assert_eq!(class("POST", "/v1/clusters"), Class::NewWork);
        assert_eq!(class("PUT", "/v1/clusters/train"), Class::NewWork);
        assert_eq!(class("DELETE", "/v1/clusters/train"), Class::Ongoing);
    }

    #[tokio::test]
    async fn new_work_may_hold_three_quarters_of_the_turns() {
        let a = Admission::new(8, Duration::ZERO);
        let deadline = tokio::time::Instant::now();
        let new: Vec<_> = (0..6)
            .map_while(|_| a.new_work.try_acquire().ok())
            .collect();
        assert_eq!(new.len(), 6);
        assert!(
            turn(&a.new_work, deadline).await.is_none(),
            "a seventh is shed"
        );
        let ongoing: Vec<_> = (0..8).map_while(|_| a.turns.try_acquire().ok()).collect();
        assert_eq!(
            ongoing.len(),
            8,
            "the rest of the work still has every turn"
        );
    }
}
