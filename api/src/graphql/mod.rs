//! GraphQL at `/graphql` (GraphiQL on GET) and over WebSocket at `/graphql/ws` (subscriptions,
//! and queries and mutations too). Both run the same schema, whose extension
//! (`guard::OperationGuard`) applies the rules every operation passes; the socket adds per
//! operation what HTTP's middleware does per request (`socket`).

mod clusters;
mod costaking;
mod deposits;
mod explorer;
mod governance;
mod guard;
mod payments;
mod payouts;
mod providers;
mod quotes;
mod rewards;
mod schema;
mod slashing;
mod socket;
mod ssh_keys;

use async_graphql::{Schema, SchemaBuilder};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use iocloud_control::{Actor, Control, ErrorCode};

pub use schema::{MutationRoot, QueryRoot, SubscriptionRoot, gql_error};
pub use socket::websocket;

use crate::config::Config;
use crate::drain::Drain;
use crate::error::ApiError;
use crate::middleware::audit::AuditSlot;
use crate::state::AppState;

pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The roots every schema of this API is built from; the data and limits come after.
fn roots() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
}

pub fn build_schema(control: Control, config: &Config, drain: Drain) -> ApiSchema {
    roots()
        .data(control)
        .data(drain)
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity)
        .extension(guard::OperationGuard {
            max_fields: config.graphql_max_fields,
        })
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
    if let Some(Extension(slot)) = &slot {
        req = req.data(slot.clone());
    }
    if let Some(Extension(actor)) = actor {
        req = req.data(actor);
    }
    let mut res = state.schema.execute(req).await;
    if let Some(Extension(slot)) = slot {
        note_outcome(&slot, &res);
    }
    add_codes(&mut res);
    res.into()
}

/// GraphQL answers 200 with errors inside; the audit log records the first error's status.
fn note_outcome(slot: &AuditSlot, res: &async_graphql::Response) {
    if let Some(err) = res.errors.first() {
        slot.set_status(error_status(err).unwrap_or(400));
    }
}

/// The HTTP status an error stands for, when it came from the domain or the API.
fn error_status(err: &async_graphql::ServerError) -> Option<u16> {
    err.extensions
        .as_ref()
        .and_then(|e| e.get("status"))
        .and_then(|v| match v {
            async_graphql::Value::Number(n) => n.as_u64(),
            _ => None,
        })
        .and_then(|n| u16::try_from(n).ok())
}

/// Errors raised by async-graphql itself (parse, validation, limits) get codes too.
fn add_codes(res: &mut async_graphql::Response) {
    for err in &mut res.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", classify(&err.message).as_str());
        }
    }
}

fn classify(message: &str) -> ErrorCode {
    // async-graphql's own errors carry no kind to match on; their text is all there is.
    if message.contains("nested too deep") {
        ErrorCode::QueryTooDeep
    } else if message.contains("too complex") {
        ErrorCode::QueryTooComplex
    } else {
        ErrorCode::InvalidQuery
    }
}

/// The schema as SDL: its types, fields and their descriptions, as clients see them.
pub fn sdl() -> String {
    roots().finish().sdl()
}

#[cfg(test)]
mod tests {
    /// Where the schema's SDL is kept, so that a change of GraphQL's wire shape shows in review.
    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/graphql/schema.graphql");

    /// Fails when the schema differs from the kept SDL; `UPDATE_SNAPSHOTS=1` writes the file
    /// anew instead, for a change that means to alter the schema.
    #[test]
    fn schema_is_the_one_kept() {
        let sdl = super::sdl();
        if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
            std::fs::write(SNAPSHOT, &sdl).expect("write the schema snapshot");
            return;
        }
        let kept = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
        if kept == sdl {
            return;
        }
        let (kept_lines, new_lines): (Vec<_>, Vec<_>) =
            (kept.lines().collect(), sdl.lines().collect());
        let first = kept_lines
            .iter()
            .zip(&new_lines)
            .position(|(a, b)| a != b)
            .unwrap_or(kept_lines.len().min(new_lines.len()));
        let around = |lines: &[&str]| {
            lines[first.saturating_sub(3)..(first + 4).min(lines.len())].join("\n")
        };
        panic!(
            "the GraphQL schema is not the one in {SNAPSHOT}; from line {}:\n--- kept\n{}\n--- now\n{}\n\
             If the change is meant, run `UPDATE_SNAPSHOTS=1 cargo test -p iocloud-api schema_is_the_one_kept` and commit the file.",
            first + 1,
            around(&kept_lines),
            around(&new_lines),
        );
    }
}
