//! Records every state-changing request in the audit log once it has been answered: who, in
//! which organisation, which route and target, the status and the request id. Route templates
//! and ids only, never bodies or headers, so no secret reaches the log.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use iocloud_control::Actor;
use iocloud_control::audit::NewAuditEvent;
use parking_lot::Mutex;

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
}

/// A place in the request's extensions where layers and handlers note who acted.
#[derive(Clone, Default, Debug)]
pub struct AuditSlot(Arc<Mutex<Who>>);

impl AuditSlot {
    pub fn set_actor(&self, actor: &Actor) {
        let (kind, id) = actor.audit_identity();
        let mut who = self.0.lock();
        who.org_id = Some(actor.org_id.clone());
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
}

pub async fn record<F, Fut>(state: &AppState, mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
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
    let request_id = request_id(&req);
    let ip = client_ip(&req, state.config.trust_forwarded_for).map(|ip| ip.to_string());
    let response = inner(req).await;

    let who = std::mem::take(&mut *slot.0.lock());
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let action = match (&who.action, mutating && path != "/graphql") {
        (Some(a), _) => a.clone(),
        (None, true) => format!("{method} {}", template.as_deref().unwrap_or(&path)),
        (None, false) => return response,
    };
    let event = NewAuditEvent {
        org_id: who.org_id,
        actor_type: who.actor_type.unwrap_or("anonymous"),
        actor_id: who.actor_id,
        action,
        target: template.as_deref().and_then(|t| path_target(t, &path)),
        status: who.status.unwrap_or(response.status().as_u16()),
        request_id,
        ip,
    };
    if let Err(e) = state.control.record_audit(event).await {
        tracing::error!(error = ?e, "could not write the audit log");
    }
    response
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
