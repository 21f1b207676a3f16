//! GraphQL over WebSocket at `/graphql/ws` (graphql-transport-ws, or the older graphql-ws).
//!
//! A socket is one HTTP request that lives on, so what HTTP's middleware does once per request
//! is done here once per operation: the rate limits (the client's address and API key take a
//! token each), the size limit (a message over it closes the socket with 1009 before it is read
//! as GraphQL), a fresh authentication of the credential the connection was opened with, and
//! the audit log. The schema's own rules (depth, complexity, fields, one sign-in per request)
//! apply as they do to HTTP. A connection runs a bounded number of operations at once, and a
//! subscription ends when its credential stops being valid: at once on logout or key
//! revocation, and within `graphql_ws_recheck_secs` otherwise (removal from the organisation,
//! an access token's expiry, a change of role).

use std::any::TypeId;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::{Data, Executor, Request, Response};
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use iocloud_control::cache::Forget;
use iocloud_control::{Actor, Control, Principal};
use parking_lot::Mutex;

use super::gql_error;
use crate::config::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::middleware::audit::{self, AuditSlot, Origin};
use crate::middleware::client::client_ip_of;
use crate::middleware::rate_limit;
use crate::state::AppState;

/// The WebSocket close code for a message too large to read (RFC 6455).
const MESSAGE_TOO_BIG: u16 = 1009;

/// Messages past this are cut off by the WebSocket layer itself, without reading them whole;
/// between `MAX_BODY_BYTES` and this, the client is told why.
const MAX_MESSAGE_BYTES: usize = 8 * MAX_BODY_BYTES;

/// The upgrade. The connection's first message carries `{"Authorization": "Bearer …"}`,
/// checked like an HTTP request's header and then again for every operation.
pub async fn websocket(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let Some(protocol) = protocol(&headers) else {
        return ApiError::BadRequest(format!(
            "Sec-WebSocket-Protocol must name one of {}",
            ALL_WEBSOCKET_PROTOCOLS.join(", ")
        ))
        .into_response();
    };
    let connection = Operations(Arc::new(Connection {
        ip: client_ip_of(
            &headers,
            peer.map(|p| p.0.0),
            state.config.trust_forwarded_for,
        ),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        running: AtomicUsize::new(0),
        state,
    }));
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, connection, protocol))
        .into_response()
}

fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| p.trim().parse().ok())
}

/// Carries the socket's messages to the GraphQL protocol and its answers back, until either
/// side ends or a message is too large.
async fn serve(socket: WebSocket, operations: Operations, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let too_large = Arc::new(AtomicBool::new(false));
    let noted = too_large.clone();
    let input = stream
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => Some(m.into_data()),
                _ => None,
            })
        })
        .take_while(move |data| {
            let fits = data.len() <= MAX_BODY_BYTES;
            if !fits {
                noted.store(true, Ordering::Relaxed);
            }
            futures::future::ready(fits)
        });
    let init = operations.clone();
    let answers = async_graphql::http::WebSocket::new(operations, input, protocol)
        .on_connection_init(move |payload| async move { init.open(payload).await });
    futures::pin_mut!(answers);
    while let Some(answer) = answers.next().await {
        let message = match answer {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    if too_large.load(Ordering::Relaxed) {
        let reason = format!("body_too_large: a message may hold at most {MAX_BODY_BYTES} bytes");
        let close = CloseFrame {
            code: MESSAGE_TOO_BIG,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
    }
}

/// The credential a connection was opened with. It is kept rather than the actor it stood
/// for, so every operation asks again whether it is still good.
#[derive(Clone)]
struct Credential(String);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(redacted)")
    }
}

/// One connection's operations: the executor the GraphQL protocol hands each one to.
#[derive(Clone)]
struct Operations(Arc<Connection>);

struct Connection {
    state: AppState,
    ip: Option<IpAddr>,
    /// The upgrade request's id, recorded with every operation's audit events.
    request_id: String,
    /// Operations running now; a subscription counts until it ends.
    running: AtomicUsize,
}

impl Operations {
    /// `connection_init`: a credential that is present must be good.
    async fn open(&self, payload: serde_json::Value) -> async_graphql::Result<Data> {
        let mut data = Data::default();
        let header = payload
            .get("Authorization")
            .or_else(|| payload.get("authorization"))
            .and_then(|v| v.as_str());
        if let Some(h) = header {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
                .unwrap_or(h)
                .trim();
            self.0
                .state
                .control
                .accounts
                .authenticate(token)
                .await
                .map_err(gql_error)?;
            data.insert(Credential(token.to_string()));
        }
        Ok(data)
    }
}

impl Executor for Operations {
    async fn execute(&self, request: Request) -> Response {
        let mut answers = self.execute_stream(request, None);
        answers.next().await.unwrap_or_default()
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        // The place is taken as the message arrives, so the operations past the limit are the
        // last ones sent.
        let Some(running) = self.0.take_place() else {
            let limit = self.0.state.config.graphql_ws_max_operations;
            return refused(ApiError::TooManyOperations { limit });
        };
        let connection = self.0.clone();
        futures::stream::once(async move { connection.run(running, request, session_data).await })
            .flatten()
            .boxed()
    }
}

/// Holds one of the connection's operation places until dropped.
struct Running(Arc<Connection>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    fn take_place(self: &Arc<Self>) -> Option<Running> {
        let limit = self.state.config.graphql_ws_max_operations;
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Running(self.clone()))
    }

    /// One operation, through the same gates as an HTTP request.
    async fn run(
        self: Arc<Self>,
        running: Running,
        mut request: Request,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let credential = session
            .as_deref()
            .and_then(|d| d.get(&TypeId::of::<Credential>()))
            .and_then(|c| c.downcast_ref::<Credential>())
            .cloned();
        let state = &self.state;
        let token = credential.as_ref().map(|c| c.0.as_str());
        let buckets = rate_limit::buckets(state, false, self.ip, token);
        if let Err(d) = rate_limit::take_all(state, buckets).await {
            return refused(rate_limit::refusal(d));
        }
        let actor = match token {
            Some(token) => match state.control.accounts.authenticate(token).await {
                Ok(actor) => Some(actor),
                Err(e) => return refused(e.into()),
            },
            None => None,
        };
        let slot = AuditSlot::default();
        request = request.data(slot.clone());
        if let Some(actor) = &actor {
            slot.set_actor(actor);
            request = request.data(actor.clone());
        }
        let answers = Executor::execute_stream(&state.schema, request, session);
        let this = self.clone();
        let answers = answers
            .then(move |mut res| {
                let (this, slot) = (this.clone(), slot.clone());
                async move {
                    this.audit(&slot, &res).await;
                    super::add_codes(&mut res);
                    res
                }
            })
            // The place is given back when the operation's answers end or are dropped.
            .map(move |res| {
                let _held = &running;
                res
            })
            .boxed();
        match (credential, actor) {
            (Some(credential), Some(actor)) => {
                let every = Duration::from_secs(state.config.graphql_ws_recheck_secs.max(1));
                until_revoked(answers, state.control.clone(), credential, actor, every)
            }
            _ => answers,
        }
    }

    /// Records a mutation's events before its answer is sent, as HTTP does.
    async fn audit(&self, slot: &AuditSlot, res: &Response) {
        if !slot.has_action() {
            return;
        }
        super::note_outcome(slot, res);
        let origin = Origin {
            target: None,
            request_id: self.request_id.clone(),
            ip: self.ip.map(|ip| ip.to_string()),
        };
        audit::write(&self.state, slot.take_events(None, 200, origin)).await;
    }
}

/// A single answer refusing the operation.
fn refused(e: ApiError) -> BoxStream<'static, Response> {
    let err = gql_error(e).into_server_error(async_graphql::Pos::default());
    futures::stream::once(async move { Response::from_errors(vec![err]) }).boxed()
}

/// `answers` until the credential stops being valid, then the reason as a last answer.
fn until_revoked(
    answers: BoxStream<'static, Response>,
    control: Control,
    credential: Credential,
    actor: Actor,
    every: Duration,
) -> BoxStream<'static, Response> {
    let reason = Arc::new(Mutex::new(None));
    let noted = reason.clone();
    let revoked = async move {
        let why = revocation(&control, &credential, &actor, every).await;
        *noted.lock() = Some(why);
    };
    answers
        .take_until(revoked)
        .chain(
            futures::stream::once(async move { reason.lock().take() }).filter_map(
                |why| async move {
                    why.map(|e: iocloud_control::Error| {
                        let err = gql_error(e).into_server_error(async_graphql::Pos::default());
                        Response::from_errors(vec![err])
                    })
                },
            ),
        )
        .boxed()
}

/// Waits until `credential` is refused: checked again when a revocation is announced that may
/// concern it, and every `every` in any case.
async fn revocation(
    control: &Control,
    credential: &Credential,
    actor: &Actor,
    every: Duration,
) -> iocloud_control::Error {
    let mine = match &actor.principal {
        Principal::User { session_id, .. } => Forget::Session(session_id).message(),
        Principal::ApiKey { key_id, .. } => Forget::Key(key_id).message(),
    };
    let everything = Forget::All.message();
    let mut forgotten = control.cache.forgotten();
    loop {
        let woken = async {
            loop {
                match forgotten.recv().await {
                    Ok(m) if m == mine || m == everything => return,
                    Ok(_) => {}
                    // Announcements were missed: one of them may have been ours.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        futures::future::pending::<()>().await
                    }
                }
            }
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(every) => {}
        }
        match control.accounts.authenticate(&credential.0).await {
            // What the subscription was allowed to see was decided with the old role.
            Ok(now) if now.role() != actor.role() || now.is_operator != actor.is_operator => {
                return iocloud_control::Error::Conflict {
                    code: iocloud_control::ErrorCode::RoleChanged,
                    message: "your role changed since this subscription began; subscribe again"
                        .into(),
                };
            }
            Ok(_) => {}
            // A database that cannot answer now says nothing about the credential.
            Err(e) if e.is_internal() => {
                tracing::warn!(error = ?e, "could not check a WebSocket's credential again");
            }
            Err(e) => return e,
        }
    }
}
