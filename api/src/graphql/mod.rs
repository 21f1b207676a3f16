//! GraphQL at `/graphql` (GraphiQL on GET) and subscriptions over WebSocket at `/graphql/ws`.

mod clusters;
mod providers;
mod quotes;
mod schema;
mod types;

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Data, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Extension;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use iocloud_control::{Actor, Control};

pub use schema::{MutationRoot, QueryRoot, SubscriptionRoot, gql_error};

use crate::config::Config;
use crate::error::ApiError;
use crate::middleware::audit::AuditSlot;
use crate::state::AppState;

pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

pub fn build_schema(control: Control, config: &Config) -> ApiSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .data(control)
    .limit_depth(config.graphql_max_depth)
    .limit_complexity(config.graphql_max_complexity)
    .finish()
}

pub async fn graphiql() -> Response {
    iocloud_web::page(iocloud_web::Page::GraphiQl)
}

pub async fn execute(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    slot: Option<Extension<AuditSlot>>,
    req: GraphQLRequest<ApiError>,
) -> GraphQLResponse {
    let mut req = req.into_inner();
    let fields = mutation_fields(&req.query, req.operation_name.as_deref());
    if let Some(fields) = &fields
        && fields.len() > 1
        && fields.iter().any(|f| AUTH_MUTATIONS.contains(&f.as_str()))
    {
        // Aliases would otherwise turn one request (one rate-limit token) into hundreds of
        // password guesses or sign-ups.
        let err = async_graphql::ServerError::new(
            "signUp, logIn and refresh must be the only field of their request",
            None,
        );
        let mut res = async_graphql::Response::from_errors(vec![err]);
        res.errors[0]
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "one_auth_mutation_per_request");
        return res.into();
    }
    if let Some(Extension(slot)) = slot {
        if let Some(fields) = fields {
            slot.set_action(format!("graphql mutation {}", fields.join(",")));
        }
        req = req.data(slot);
    }
    if let Some(Extension(actor)) = actor {
        req = req.data(actor);
    }
    let audit_slot = req
        .data
        .get(&std::any::TypeId::of::<AuditSlot>())
        .and_then(|d| d.downcast_ref::<AuditSlot>())
        .cloned();
    let mut res = state.schema.execute(req).await;
    if let (Some(slot), Some(err)) = (audit_slot, res.errors.first()) {
        // GraphQL answers 200 with errors inside; the audit log records the error's status.
        let status = err
            .extensions
            .as_ref()
            .and_then(|e| e.get("status"))
            .and_then(|v| match v {
                async_graphql::Value::Number(n) => n.as_u64(),
                _ => None,
            });
        slot.set_status(status.unwrap_or(400) as u16);
    }
    for err in &mut res.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", classify(&err.message));
        }
    }
    res.into()
}

/// Errors raised by async-graphql itself (parse, validation, limits) get codes too.
fn classify(message: &str) -> &'static str {
    if message.contains("nested too deep") {
        "query_too_deep"
    } else if message.contains("too complex") {
        "query_too_complex"
    } else {
        "invalid_query"
    }
}

const AUTH_MUTATIONS: [&str; 3] = ["signUp", "logIn", "refresh"];

/// The top-level fields when the operation to run is a mutation (for the audit log and the
/// one-auth-mutation rule).
fn mutation_fields(query: &str, operation: Option<&str>) -> Option<Vec<String>> {
    let doc = async_graphql::parser::parse_query(query).ok()?;
    let op = match (&doc.operations, operation) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => {
            ops.iter().find(|(n, _)| n.as_str() == name)?.1
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if op.node.ty != OperationType::Mutation {
        return None;
    }
    let fields: Vec<String> = op
        .node
        .selection_set
        .node
        .items
        .iter()
        .filter_map(|s| match &s.node {
            Selection::Field(f) => Some(f.node.name.node.to_string()),
            _ => None,
        })
        .collect();
    Some(fields)
}

/// Subscriptions (graphql-transport-ws or graphql-ws). The connection's first message carries
/// `{"Authorization": "Bearer …"}`, checked like an HTTP request's header.
pub async fn websocket(
    State(state): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = state.schema.clone();
    let control = state.control.clone();
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| {
            GraphQLWebSocket::new(stream, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let mut data = Data::default();
                    let header = payload
                        .get("Authorization")
                        .or_else(|| payload.get("authorization"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    if let Some(h) = header {
                        let token = h
                            .strip_prefix("Bearer ")
                            .or_else(|| h.strip_prefix("bearer "))
                            .unwrap_or(&h);
                        let actor = control
                            .authenticate(token.trim())
                            .await
                            .map_err(gql_error)?;
                        data.insert(actor);
                    }
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_named_for_the_audit_log() {
        let fields = |q, op| mutation_fields(q, op).map(|f| f.join(","));
        assert_eq!(
            fields(
                "mutation { createApiKey(name:\"a\", scopes:[]) { secret } }",
                None
            )
            .as_deref(),
            Some("createApiKey")
        );
        assert_eq!(fields("{ me { kind } }", None), None);
        assert_eq!(
            fields("query A { me { kind } } mutation B { logOut }", Some("B")).as_deref(),
            Some("logOut")
        );
        let aliased = "mutation { a: logIn(email:\"x\", password:\"y\") { accessToken } b: logIn(email:\"x\", password:\"z\") { accessToken } }";
        assert_eq!(fields(aliased, None).as_deref(), Some("logIn,logIn"));
        assert_eq!(fields("not graphql", None), None);
    }
}
