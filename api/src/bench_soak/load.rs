//! The soak's customers: each runs cluster lives back to back through the load balancer
//! (create, follow its events until it runs, now and then extend it, delete it, follow until it
//! ends), as a careful client does: a request turned away as busy is sent again after its
//! `Retry-After`, a broken event stream is opened again after the last event seen. Every
//! request is logged with when it was sent, how long it took and how it ended; every answer
//! that promised something (a cluster created, extended, deleted) is kept for the final check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::ctl::client::{busy_wait, drain_sse, retry_after};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Create,
    Extend,
    Delete,
    /// Opening an event stream (again).
    Follow,
    Read,
    /// A card top-up, a Solana deposit intent, a payout (the soak's money).
    TopUp,
    Deposit,
    Payout,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Create,
        Kind::Extend,
        Kind::Delete,
        Kind::Follow,
        Kind::Read,
        Kind::TopUp,
        Kind::Deposit,
        Kind::Payout,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 503 `overloaded` or 429: turned away before anything of it ran.
    Shed,
    /// Anything else: no answer, a 5xx, a refusal.
    Failed,
}

#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub kind: Kind,
    /// When it was sent, since the soak began.
    pub at: Duration,
    pub micros: u32,
    pub outcome: Outcome,
    /// The answer's status; 0 for none (the connection failed).
    pub status: u16,
}

/// What the customers did and were promised.
pub struct Log {
    pub started: Instant,
    pub records: Mutex<Vec<Record>>,
    /// Clusters answered 201.
    pub created: Mutex<Vec<String>>,
    /// Clusters whose delete was answered 200.
    pub deleted: Mutex<Vec<String>>,
    /// Followers that saw every event of their cluster, each once and in order, to its end.
    pub followers_whole: Mutex<u64>,
    /// Of those, the ones that followed over a GraphQL subscription (the rest over SSE).
    pub followers_whole_graphql: Mutex<u64>,
    /// Followers that did not (a gap, a repeat, or never reached the end).
    pub followers_broken: Mutex<Vec<String>>,
    /// Event streams that broke and were opened again.
    pub reconnects: Mutex<u64>,
}

impl Log {
    pub fn new() -> Arc<Log> {
        Arc::new(Log {
            started: Instant::now(),
            records: Mutex::default(),
            created: Mutex::default(),
            deleted: Mutex::default(),
            followers_whole: Mutex::default(),
            followers_whole_graphql: Mutex::default(),
            followers_broken: Mutex::default(),
            reconnects: Mutex::default(),
        })
    }

    pub(super) fn note(&self, kind: Kind, sent: Instant, outcome: Outcome, status: u16) {
        self.records.lock().push(Record {
            kind,
            at: sent.duration_since(self.started),
            micros: sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
            outcome,
            status,
        });
    }
}

/// One customer: an API key and the load balancer's address.
#[derive(Clone)]
pub struct Customer {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
    pub name: String,
}

/// An answer: the JSON of a success, or how long to wait when busy, or a failure.
enum Answer {
    Done(Value),
    Busy(Duration),
    Failed,
}

impl Customer {
    async fn call(&self, log: &Log, kind: Kind, req: reqwest::RequestBuilder) -> Answer {
        let sent = Instant::now();
        let mut status = 0;
        let answer = match req.bearer_auth(&self.key).send().await {
            Ok(res) if res.status().is_success() => {
                status = res.status().as_u16();
                res.json().await.map_or(Answer::Failed, Answer::Done)
            }
            Ok(res) => {
                status = res.status().as_u16();
                let after = retry_after(res.headers());
                let body: Value = res.json().await.unwrap_or(Value::Null);
                busy_wait(body["code"].as_str(), after).map_or(Answer::Failed, Answer::Busy)
            }
            Err(_) => Answer::Failed,
        };
        let outcome = match answer {
            Answer::Done(_) => Outcome::Ok,
            Answer::Busy(_) => Outcome::Shed,
            Answer::Failed => Outcome::Failed,
        };
        log.note(kind, sent, outcome, status);
        answer
    }

    /// Sends again while busy or failing, for a minute at most: what a client that must not
    /// leave a cluster running does about a delete.
    async fn insist(
        &self,
        log: &Log,
        kind: Kind,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.call(log, kind, make()).await {
                Answer::Done(v) => return Some(v),
                Answer::Busy(wait) => tokio::time::sleep(wait).await,
                Answer::Failed => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        None
    }

    /// Lives back to back until `stop`.
    pub async fn run(self, log: Arc<Log>, stop: Arc<AtomicBool>) {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let body = json!({"name": format!("{}-{n}", self.name), "kind": "container",
                "image": "busybox", "gpu_model": "h100-sxm", "gpu_count": 1, "duration_hours": 1});
            let created = self
                .call(
                    &log,
                    Kind::Create,
                    self.http
                        .post(format!("{}/v1/clusters", self.base))
                        .json(&body),
                )
                .await;
            let id = match created {
                Answer::Done(c) => c["id"].as_str().unwrap_or_default().to_string(),
                Answer::Busy(wait) => {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Answer::Failed => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            log.created.lock().push(id.clone());
            let (running_tx, running_rx) = tokio::sync::oneshot::channel();
            // Half the lives are followed over SSE, half over a GraphQL subscription.
            let graphql = n.is_multiple_of(2);
            let follower = if graphql {
                tokio::spawn(
                    self.clone()
                        .follow_graphql(log.clone(), id.clone(), running_tx),
                )
            } else {
                tokio::spawn(self.clone().follow(log.clone(), id.clone(), running_tx))
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), running_rx).await;
            if n.is_multiple_of(3) {
                let url = format!("{}/v1/clusters/{id}/extend", self.base);
                self.insist(&log, Kind::Extend, || {
                    self.http.post(&url).json(&json!({"hours": 1}))
                })
                .await;
            }
            let url = format!("{}/v1/clusters/{id}", self.base);
            if self
                .insist(&log, Kind::Delete, || self.http.delete(&url))
                .await
                .is_some()
            {
                log.deleted.lock().push(id.clone());
            }
            let seen = tokio::time::timeout(Duration::from_secs(90), follower)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            // The follower saw every event to the end when its last is the cluster's version.
            let stored = self
                .insist(&log, Kind::Read, || self.http.get(&url))
                .await
                .and_then(|c| c["resource_version"].as_i64());
            match (seen, stored) {
                (Some(last), Some(version)) if last == version => {
                    *log.followers_whole.lock() += 1;
                    if graphql {
                        *log.followers_whole_graphql.lock() += 1;
                    }
                }
                _ => log
                    .followers_broken
                    .lock()
                    .push(format!("{id}: saw up to {seen:?}, stored {stored:?}")),
            }
        }
    }

    /// Follows the cluster's events from its first to its last, opening the stream again after
    /// the last seen whenever it breaks. Tells `running` when it runs. Its last event's number
    /// when every event came once and in order, `None` otherwise.
    async fn follow(
        self,
        log: Arc<Log>,
        id: String,
        running: tokio::sync::oneshot::Sender<()>,
    ) -> Option<i64> {
        let mut running = Some(running);
        let mut last = 0i64;
        let deadline = Instant::now() + Duration::from_secs(150);
        while Instant::now() < deadline {
            let sent = Instant::now();
            let res = self
                .http
                .get(format!(
                    "{}/v1/clusters/{id}/events?follow=true&after={last}",
                    self.base
                ))
                .bearer_auth(&self.key)
                .timeout(Duration::from_secs(120))
                .send()
                .await;
            let mut res = match res {
                Ok(r) if r.status().is_success() => {
                    log.note(Kind::Follow, sent, Outcome::Ok, r.status().as_u16());
                    r
                }
                Ok(r) => {
                    let wait = retry_after(r.headers());
                    let outcome = if wait.is_some() {
                        Outcome::Shed
                    } else {
                        Outcome::Failed
                    };
                    log.note(Kind::Follow, sent, outcome, r.status().as_u16());
                    tokio::time::sleep(wait.unwrap_or(Duration::from_millis(250))).await;
                    continue;
                }
                Err(_) => {
                    log.note(Kind::Follow, sent, Outcome::Failed, 0);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = res.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                for e in drain_sse(&mut buffer) {
                    let seq = e["seq"].as_i64().unwrap_or(-1);
                    let kind = e["kind"].as_str().unwrap_or_default();
                    match take_event(&mut last, seq, kind, &mut running) {
                        Ok(true) => return Some(last),
                        Ok(false) => {}
                        Err(()) => return None,
                    }
                }
            }
            // The stream ended before the cluster did: its replica stopped or died.
            *log.reconnects.lock() += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// What a follower makes of one event: whether it ends the follow.
fn take_event(
    last: &mut i64,
    seq: i64,
    kind: &str,
    running: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<bool, ()> {
    if seq != *last + 1 {
        return Err(());
    }
    *last = seq;
    if kind == "running"
        && let Some(r) = running.take()
    {
        let _ = r.send(());
    }
    Ok(matches!(kind, "terminated" | "failed"))
}

impl Customer {
    /// [`Customer::follow`] over a GraphQL subscription (graphql-transport-ws): subscribed again
    /// after the last event seen whenever the socket closes or the replica says it is stopping.
    async fn follow_graphql(
        self,
        log: Arc<Log>,
        id: String,
        running: tokio::sync::oneshot::Sender<()>,
    ) -> Option<i64> {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

        let mut running = Some(running);
        let mut last = 0i64;
        let url = format!("{}/graphql/ws", self.base.replacen("http", "ws", 1));
        let query = "subscription($id: String!, $after: Int) { clusterEvents(id: $id, after: $after) { seq kind } }";
        let deadline = Instant::now() + Duration::from_secs(150);
        while Instant::now() < deadline {
            let sent = Instant::now();
            let Ok(mut req) = url.as_str().into_client_request() else {
                return None;
            };
            req.headers_mut().insert(
                "sec-websocket-protocol",
                http::HeaderValue::from_static("graphql-transport-ws"),
            );
            let ws = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::connect_async(req),
            )
            .await;
            let Ok(Ok((mut ws, _))) = ws else {
                log.note(Kind::Follow, sent, Outcome::Failed, 0);
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            };
            let init = json!({"type": "connection_init",
                "payload": {"Authorization": format!("Bearer {}", self.key)}});
            let op = json!({"id": "1", "type": "subscribe", "payload": {"query": query,
                "variables": {"id": id, "after": last}}});
            let opened = ws
                .send(Message::Text(init.to_string().into()))
                .await
                .is_ok()
                && ws.send(Message::Text(op.to_string().into())).await.is_ok();
            log.note(
                Kind::Follow,
                sent,
                if opened { Outcome::Ok } else { Outcome::Failed },
                if opened { 101 } else { 0 },
            );
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(120), ws.next()).await
            {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match v["type"].as_str() {
                    Some("next") => {
                        let e = &v["payload"]["data"]["clusterEvents"];
                        if e.is_null() {
                            // An error (the replica stopping): subscribe again.
                            break;
                        }
                        let seq = e["seq"].as_i64().unwrap_or(-1);
                        let kind = e["kind"].as_str().unwrap_or_default();
                        match take_event(&mut last, seq, kind, &mut running) {
                            Ok(true) => return Some(last),
                            Ok(false) => {}
                            Err(()) => return None,
                        }
                    }
                    Some("complete" | "error") => break,
                    _ => {}
                }
            }
            *log.reconnects.lock() += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}
