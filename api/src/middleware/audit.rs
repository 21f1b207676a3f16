//! Records every state-changing request in the audit log once it has been answered: who, in
//! which organisation, which route and target, the status and the request id. Route templates
//! and ids only, never bodies or headers, so no secret reaches the log.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use iocloud_control::Actor;
use iocloud_control::audit::NewAuditEvent;
use parking_lot::Mutex;

use crate::error::ApiError;
use crate::middleware::client::{client_ip, request_id};
use crate::state::AppState;

#[derive(Default, Debug)]
struct Who {
    org_id: Option<String>,
    actor_type: Option<&'static str>,
    actor_id: Option<String>,
    /// Set by handlers whose action is not the route (GraphQL mutations).
    action: Option<String>,
    /// Set by handlers whose HTTP status does not tell the outcome (GraphQL answers 200 with
    /// errors inside).
    status: Option<u16>,
    /// The mutation fields that ran, each with its own outcome: a GraphQL request may hold
    /// several, and one failing does not undo another.
    fields: Vec<(String, u16)>,
}

/// A place in the request's extensions where layers and handlers note who acted.
#[derive(Clone, Default, Debug)]
pub struct AuditSlot(Arc<Mutex<Who>>);

/// Where a request came from, for its audit events.
pub struct Origin {
    pub target: Option<String>,
    pub request_id: String,
    pub ip: Option<String>,
}

impl AuditSlot {
    pub fn set_actor(&self, actor: &Actor) {
        let (kind, id) = actor.audit_identity();
        let mut who = self.0.lock();
        who.org_id = Some(actor.org_id.to_string());
        who.actor_type = Some(kind);
        who.actor_id = Some(id.to_string());
    }

    /// For sign-up and login, where the actor is known only once the handler has run.
    pub fn set_user(&self, org_id: &str, user_id: &str) {
        let mut who = self.0.lock();
        who.org_id = Some(org_id.to_string());
        who.actor_type = Some("user");
        who.actor_id = Some(user_id.to_string());
    }

    /// The outcome to record instead of the HTTP status.
    pub fn set_status(&self, status: u16) {
        self.0.lock().status = Some(status);
    }

    /// Marks a request whose method alone does not say it changed state (a GraphQL mutation).
    pub fn set_action(&self, action: String) {
        self.0.lock().action = Some(action);
    }

    /// Whether an action was marked: the request changed, or tried to change, something.
    pub fn has_action(&self) -> bool {
        self.0.lock().action.is_some()
    }

    /// One GraphQL mutation field ran and ended with `status`.
    pub fn note_field(&self, field: &str, status: u16) {
        self.0.lock().fields.push((field.to_string(), status));
    }

    /// The events to record, emptying the slot: one per mutation field that ran, each with
    /// its own outcome; otherwise one for the request (its marked action, or `route`) with the
    /// noted status, or `status`. None when the request changed nothing.
    pub fn take_events(
        &self,
        route: Option<String>,
        status: u16,
        origin: Origin,
    ) -> Vec<NewAuditEvent> {
        let who = std::mem::take(&mut *self.0.lock());
        let event = |action: String, status: u16| NewAuditEvent {
            org_id: who.org_id.clone(),
            actor_type: who.actor_type.unwrap_or("anonymous"),
            actor_id: who.actor_id.clone(),
            action,
            target: origin.target.clone(),
            status,
            request_id: origin.request_id.clone(),
            ip: origin.ip.clone(),
        };
        if !who.fields.is_empty() {
            return who
                .fields
                .iter()
                .map(|(field, status)| event(format!("graphql mutation {field}"), *status))
                .collect();
        }
        match who.action.clone().or(route) {
            Some(action) => vec![event(action, who.status.unwrap_or(status))],
            None => Vec::new(),
        }
    }
}

/// Runs a state-changing request and records it. The request runs in a task of its own: a
/// client hanging up (or the time limit) drops this future, and without the task the work could
/// commit and its audit row (and a kept idempotent answer) be lost with the future. The task
/// ends when the work and its audit rows are done, whoever is still waiting for the answer.
pub async fn record<F, Fut>(state: &AppState, mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    // Reads change nothing (GraphQL mutations arrive by POST).
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return inner(req).await;
    }
    let slot = AuditSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let origin = Origin {
        target: template.as_deref().and_then(|t| path_target(t, &path)),
        request_id: request_id(&req),
        ip: client_ip(&req, state.config.trust_forwarded_for).map(|ip| ip.to_string()),
    };
    // A GraphQL request is recorded only when it holds a mutation, which marks its action.
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let route = (mutating && path != "/graphql")
        .then(|| format!("{method} {}", template.as_deref().unwrap_or(&path)));
    let state = state.clone();
    let task = tokio::spawn(async move {
        // A handler that panics is answered 500, and recorded as such.
        let response = AssertUnwindSafe(inner(req))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                ApiError::Internal("the request's handler panicked".into()).into_response()
            });
        let events = slot.take_events(route, response.status().as_u16(), origin);
        write(&state, events).await;
        response
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a request's task failed");
        ApiError::Internal("the request's task failed".into()).into_response()
    })
}

/// Writes events to the audit log; a failure is logged, never shown to the client.
pub async fn write(state: &AppState, events: Vec<NewAuditEvent>) {
    let writes = events.into_iter().map(|e| state.control.audit.record(e));
    for result in futures::future::join_all(writes).await {
        if let Err(e) = result {
            tracing::error!(error = ?e, "could not write the audit log");
        }
    }
}

/// The value of the last `{param}` of a route template in the actual path.
fn path_target(template: &str, path: &str) -> Option<String> {
    template
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, p)| p.chars().take(64).collect())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_path_parameters() {
        assert_eq!(
            path_target("/v1/api-keys/{id}", "/v1/api-keys/key_1").as_deref(),
            Some("key_1")
        );
        assert_eq!(path_target("/v1/api-keys", "/v1/api-keys"), None);
    }
}
