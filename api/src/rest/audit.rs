use axum::Json;
use axum::extract::State;
use iocloud_control::Page;
use iocloud_control::audit::AuditEvent;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiQuery, Auth, ListParams};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

/// Every state-changing request in this organisation, oldest first (owners and admins).
#[utoipa::path(get, path = "/v1/audit-events", tag = "audit", params(ListParams),
    responses((status = 200, body = Page<AuditEvent>), (status = 403, body = Problem)))]
async fn list_events(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<AuditEvent>>> {
    Ok(Json(s.control.audit.events(&actor, &q.page()?).await?))
}
