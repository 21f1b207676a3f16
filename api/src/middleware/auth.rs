//! Resolves `Authorization: Bearer …` (an access token or an API key) to an `Actor` once per
//! request and leaves it in the request's extensions for the `Auth` extractor. A credential that
//! is present but bad is refused here; a missing one is left for handlers that need it.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use iocloud_control::Error as DomainError;

use crate::error::ApiError;
use crate::middleware::{audit::AuditSlot, client::bearer};
use crate::state::AppState;

pub async fn authenticate<F, Fut>(state: &AppState, mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let actor = match bearer(req.headers()) {
        None => None,
        Some(Err(())) => return ApiError::Domain(DomainError::InvalidToken).into_response(),
        Some(Ok(token)) => match state.control.accounts.authenticate(token).await {
            Ok(actor) => Some(actor),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    if let Some(actor) = actor {
        if let Some(slot) = req.extensions().get::<AuditSlot>() {
            slot.set_actor(&actor);
        }
        req.extensions_mut().insert(actor);
    }
    inner(req).await
}
