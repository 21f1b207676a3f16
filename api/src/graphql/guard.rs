//! Rules every GraphQL operation passes, whichever way it arrives (HTTP or the WebSocket),
//! written once as a schema extension:
//!
//! - a query selects at most `max_fields` fields, `__typename` and aliases included, counted
//!   through every fragment: the complexity limit prices fields by what they fetch, so
//!   hundreds of thousands of aliases of a free field would otherwise pass;
//! - `signUp`, `logIn` and `refresh` are the only field of their request, counted after
//!   fragments are expanded: aliases would otherwise turn one request (one rate-limit token)
//!   into hundreds of password guesses;
//! - each mutation field that runs is noted in the request's audit slot with its own outcome.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextResolve,
    ResolveInfo,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{OutputType, Request, ServerError, ServerResult, Value, Variables};
use iocloud_control::ErrorCode;
use parking_lot::Mutex;

use super::MutationRoot;
use crate::middleware::audit::AuditSlot;

const AUTH_MUTATIONS: [&str; 3] = ["signUp", "logIn", "refresh"];

/// Fragment spreads are followed this deep. Cycles are refused by validation, which runs
/// after this count, so the count must stop on its own.
const MAX_SPREAD_DEPTH: usize = 16;

/// What a document asks for once its fragments are expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Fields and fragment spreads selected by every operation, each spread expanded where it
    /// is used. Counting stops just past the limit it was given.
    pub fields: usize,
    /// The root fields of the operation to run, when it is a mutation, in order.
    pub mutation_fields: Option<Vec<String>>,
}

/// The shape of `doc`, counting at most `limit + 1` fields. `operation` names the operation
/// to run when the document holds several.
pub(crate) fn shape(doc: &ExecutableDocument, operation: Option<&str>, limit: usize) -> Shape {
    let mut count = Count {
        doc,
        left: limit.saturating_add(1),
    };
    let mut mutation_fields = None;
    for (name, op) in doc.operations.iter() {
        let selected = match (&doc.operations, operation) {
            (DocumentOperations::Single(_), _) => true,
            (DocumentOperations::Multiple(_), Some(wanted)) => {
                name.is_some_and(|n| n.as_str() == wanted)
            }
            (DocumentOperations::Multiple(_), None) => false,
        };
        if selected && op.node.ty == OperationType::Mutation {
            let mut roots = Vec::new();
            count.walk(&op.node.selection_set.node, 0, Some(&mut roots));
            mutation_fields = Some(roots);
        } else {
            count.walk(&op.node.selection_set.node, 0, None);
        }
    }
    Shape {
        fields: limit.saturating_add(1) - count.left,
        mutation_fields,
    }
}

struct Count<'a> {
    doc: &'a ExecutableDocument,
    /// Fields still allowed before the count stops.
    left: usize,
}

impl Count<'_> {
    /// Counts a selection set; `roots`, when given, collects the names of the fields at this
    /// level (fragments at the root select root fields too).
    fn walk(&mut self, set: &SelectionSet, depth: usize, mut roots: Option<&mut Vec<String>>) {
        for item in &set.items {
            if self.left == 0 {
                return;
            }
            match &item.node {
                Selection::Field(f) => {
                    self.left -= 1;
                    if let Some(roots) = roots.as_deref_mut() {
                        roots.push(f.node.name.node.to_string());
                    }
                    self.walk(&f.node.selection_set.node, depth, None);
                }
                Selection::InlineFragment(i) => {
                    self.walk(&i.node.selection_set.node, depth, roots.as_deref_mut());
                }
                Selection::FragmentSpread(s) => {
                    // A spread costs one, so fragments of nothing but spreads still end.
                    self.left -= 1;
                    if depth >= MAX_SPREAD_DEPTH {
                        continue;
                    }
                    if let Some(fragment) = self.doc.fragments.get(&s.node.fragment_name.node) {
                        let set = &fragment.node.selection_set.node;
                        self.walk(set, depth + 1, roots.as_deref_mut());
                    }
                }
            }
        }
    }
}

/// A refusal with a stable `code`, as every other GraphQL error carries.
fn refusal(message: String, code: ErrorCode) -> ServerError {
    let mut err = ServerError::new(message, None);
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    err
}

/// The schema extension; see the module's documentation.
pub(crate) struct OperationGuard {
    pub max_fields: usize,
}

impl ExtensionFactory for OperationGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Guard {
            max_fields: self.max_fields,
            operation: Mutex::new(None),
        })
    }
}

/// One request's guard.
struct Guard {
    max_fields: usize,
    /// The operation the request asked to run, known before its query is parsed.
    operation: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Extension for Guard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.operation.lock().clone_from(&request.operation_name);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let operation = self.operation.lock().clone();
        let shape = shape(&doc, operation.as_deref(), self.max_fields);
        if let (Some(slot), Some(fields)) = (ctx.data_opt::<AuditSlot>(), &shape.mutation_fields) {
            // What the audit log records if the request is refused before any field runs.
            slot.set_action(format!("graphql mutation {}", fields.join(",")));
        }
        if shape.fields > self.max_fields {
            return Err(refusal(
                format!(
                    "Query is too complex: it selects more than {} fields",
                    self.max_fields
                ),
                ErrorCode::QueryTooComplex,
            ));
        }
        if let Some(fields) = &shape.mutation_fields
            && fields.len() > 1
            && fields.iter().any(|f| AUTH_MUTATIONS.contains(&f.as_str()))
        {
            return Err(refusal(
                "signUp, logIn and refresh must be the only field of their request".into(),
                ErrorCode::OneAuthMutationPerRequest,
            ));
        }
        Ok(doc)
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let mutation_field = (info.path_node.parent.is_none()
            && info.parent_type == MutationRoot::type_name())
        .then(|| info.name.to_string());
        let result = next.run(ctx, info).await;
        if let (Some(field), Some(slot)) = (mutation_field, ctx.data_opt::<AuditSlot>()) {
            let status = match &result {
                Ok(_) => 200,
                Err(e) => super::error_status(e).unwrap_or(400),
            };
            slot.note_field(&field, status);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(query: &str, operation: Option<&str>) -> Shape {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        shape(&doc, operation, 1000)
    }

    fn mutation_fields(query: &str, operation: Option<&str>) -> Option<String> {
        of(query, operation).mutation_fields.map(|f| f.join(","))
    }

    #[test]
    fn mutations_are_named_for_the_audit_log() {
        assert_eq!(
            mutation_fields(
                "mutation { createApiKey(name:\"a\", scopes:[]) { secret } }",
                None
            )
            .as_deref(),
            Some("createApiKey")
        );
        assert_eq!(mutation_fields("{ me { kind } }", None), None);
        assert_eq!(
            mutation_fields("query A { me { kind } } mutation B { logOut }", Some("B")).as_deref(),
            Some("logOut")
        );
        assert_eq!(
            mutation_fields("query A { me { kind } } mutation B { logOut }", None),
            None
        );
        let aliased = "mutation { a: logIn(email:\"x\", password:\"y\") { accessToken } b: logIn(email:\"x\", password:\"z\") { accessToken } }";
        assert_eq!(
            mutation_fields(aliased, None).as_deref(),
            Some("logIn,logIn")
        );
    }

    #[test]
    fn fragments_are_expanded_at_the_root() {
        let inline = "mutation { ... on MutationRoot { a: logIn { x } b: logIn { x } } logOut }";
        assert_eq!(
            mutation_fields(inline, None).as_deref(),
            Some("logIn,logIn,logOut")
        );
        let named = "mutation { ...A } fragment A on MutationRoot { logIn { x } ...B } fragment B on MutationRoot { ... on MutationRoot { refresh { x } } }";
        assert_eq!(
            mutation_fields(named, None).as_deref(),
            Some("logIn,refresh")
        );
        // Fields below the root are not root fields.
        let nested = "mutation { logIn { user { ...U } } } fragment U on User { logIn: email }";
        assert_eq!(mutation_fields(nested, None).as_deref(), Some("logIn"));
    }

    #[test]
    fn fields_are_counted_through_fragments_and_the_count_ends() {
        assert_eq!(of("{ me { kind } a: __typename }", None).fields, 3);
        // Each use of a fragment counts its fields again (and the spread itself).
        let twice = "{ ...F ...F } fragment F on QueryRoot { __typename me { kind } }";
        assert_eq!(of(twice, None).fields, 2 * (1 + 3));
        // A fragment that doubles at every level would select 2^30 fields.
        let mut doubling = String::from("{ ...F0 }");
        for i in 0..30 {
            doubling.push_str(&format!(
                " fragment F{i} on QueryRoot {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        doubling.push_str(" fragment F30 on QueryRoot { __typename }");
        assert_eq!(of(&doubling, None).fields, 1001);
        let cycle = "{ ...A } fragment A on QueryRoot { ...A __typename }";
        assert!(of(cycle, None).fields <= 1001);
    }
}
