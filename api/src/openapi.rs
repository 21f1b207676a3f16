//! The OpenAPI document made to tell the truth about what the middleware does to every route.
//!
//! Handlers declare their own answers. What every route shares — authentication (401), rate
//! limits (429), admission (503 `overloaded`), the time limit (408), body parsing (400, 413, 415, 422), the path's
//! parameters, the `Idempotency-Key` header and the problem+json body of every error — is added
//! here once, after all routes are known, so no operation can forget one. Generated clients
//! and provisioning scripts trust this document: `schemathesis` checks it against the server
//! in CI.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Required};

const PROBLEM_JSON: &str = "application/problem+json";

/// Completes `doc`: shared answers, path parameters, error bodies, titles and tags.
pub fn complete(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let path_params = path_parameters(path);
        for (method, op) in operations(item) {
            declare_path_parameters(op, path, &path_params);
            let route = Route::of(path, method, op);
            if route.idempotent_by_key {
                declare_idempotency_key(op);
            }
            add_shared_answers(op, &route);
            problem_bodies(op);
            tidy_titles(op);
            if path.starts_with("/v1/admin/") {
                op.tags = Some(vec!["operators".to_string()]);
            }
        }
    }
    let tags = doc.tags.get_or_insert_with(Vec::new);
    if !tags.iter().any(|t| t.name == "operators") {
        let mut tag = utoipa::openapi::tag::Tag::new("operators");
        tag.description =
            Some("Platform operators only: corrections, credits, quotas, suspensions".into());
        tags.push(tag);
    }
}

/// Every operation of a path, with its method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

/// What the middleware in front of an operation can answer.
struct Route {
    /// Behind authentication (401 without a valid credential).
    authenticated: bool,
    /// Reads a JSON body.
    has_body: bool,
    /// Reads query parameters (refused with 422 when malformed).
    has_query: bool,
    /// Has path parameters (refused with 400 when they do not parse).
    has_path: bool,
    /// A POST of `/v1` that honours `Idempotency-Key` (sign-in routes never store answers).
    idempotent_by_key: bool,
}

impl Route {
    fn of(path: &str, method: &str, op: &Operation) -> Route {
        // `security(())` marks an operation open to anyone; agent routes check a device token.
        let public = op
            .security
            .as_ref()
            .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
        let params = op.parameters.as_deref().unwrap_or_default();
        Route {
            authenticated: !public || path.starts_with("/v1/auth/logout"),
            has_body: op.request_body.is_some(),
            has_query: params.iter().any(|p| p.parameter_in == ParameterIn::Query),
            has_path: path.contains('{'),
            idempotent_by_key: method == "post"
                && path.starts_with("/v1/")
                && !path.starts_with("/v1/auth/"),
        }
    }
}

/// `{name}` segments of a path template.
fn path_parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// Declares each path parameter the handler left undeclared, named after what it identifies
/// (`/v1/api-keys/{id}`: "The API key's id").
fn declare_path_parameters(op: &mut Operation, path: &str, names: &[String]) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    for name in names {
        if params
            .iter()
            .any(|p| &p.name == name && p.parameter_in == ParameterIn::Path)
        {
            continue;
        }
        params.push(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(describe_path_parameter(path, name)))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(200)),
                ))
                .build(),
        );
    }
}

fn describe_path_parameter(path: &str, name: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let before = segments
        .iter()
        .position(|s| *s == format!("{{{name}}}"))
        .and_then(|i| i.checked_sub(1))
        .map(|i| segments[i])
        .unwrap_or("");
    let thing = match before {
        "api-keys" => "API key".to_string(),
        "ssh-keys" => "SSH key".to_string(),
        "orgs" => "organisation".to_string(),
        "members" => "member (a user id)".to_string(),
        "stake" => "stake".to_string(),
        other => other.trim_end_matches('s').replace('-', " "),
    };
    if path.starts_with("/v1/clusters/{") {
        return "The cluster's id, or its name (the live cluster of that name, else the latest)"
            .into();
    }
    match name {
        "id" => format!("The {thing}'s id"),
        other => format!("The {thing}'s {}", other.replace('_', " ")),
    }
}

fn declare_idempotency_key(op: &mut Operation) {
    let params = op.parameters.get_or_insert_with(Vec::new);
    if params
        .iter()
        .any(|p| p.name.eq_ignore_ascii_case("idempotency-key"))
    {
        return;
    }
    params.push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes a retry safe: the same key with the same request answers the first \
                 answer again (secrets withheld) instead of acting twice; with another request, \
                 422 `idempotency_key_reused`; while the first is still running, 409.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[\\x21-\\x7e]+$")),
            ))
            .build(),
    );
}

/// The answers the middleware can give any operation of this route.
fn add_shared_answers(op: &mut Operation, route: &Route) {
    let mut shared: Vec<(&str, &str)> = vec![
        ("429", "Too many requests: see `Retry-After`"),
        ("408", "The request took too long"),
        (
            "503",
            "The server is busy (`overloaded`: nothing of the request was done) or could not reach its database (`database_unavailable`): send it again after `Retry-After`",
        ),
    ];
    if route.authenticated {
        shared.push(("401", "No valid credential was given"));
    }
    if route.has_body {
        shared.push(("400", "The body is not valid JSON"));
        shared.push(("413", "The body is larger than 1 MiB"));
        shared.push(("415", "The body is not `application/json`"));
        shared.push(("422", "The request is not valid"));
    }
    if route.has_query {
        shared.push(("422", "The request is not valid"));
    }
    if route.has_path || route.idempotent_by_key {
        shared.push(("400", "A path parameter or header is malformed"));
    }
    if route.idempotent_by_key {
        shared.push((
            "409",
            "A request with this Idempotency-Key is still running",
        ));
        shared.push(("422", "The request is not valid"));
    }
    for (status, description) in shared {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
    for status in ["429", "503"] {
        if let Some(RefOr::T(res)) = op.responses.responses.get_mut(status) {
            res.headers.entry("Retry-After".into()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds until a request would be allowed"))
                    .build()
            });
        }
    }
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

/// Every error answer is a problem document, whatever the handler wrote.
fn problem_bodies(op: &mut Operation) {
    for (status, res) in op.responses.responses.iter_mut() {
        let RefOr::T(res) = res else { continue };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        if let Some(content) = res.content.shift_remove("application/json") {
            res.content.insert(PROBLEM_JSON.to_string(), content);
        }
        if res.content.is_empty() {
            res.content.insert(
                PROBLEM_JSON.to_string(),
                Content::new(Some(Ref::from_schema_name("Problem"))),
            );
        }
        if res.description.is_empty() {
            res.description = "A problem document (RFC 9457) with a stable `code`".into();
        }
    }
}

/// An operation's title is its first sentence, without Markdown; the rest is its description.
/// Operations without a doc comment get a title from their name (`list_clusters`: "List
/// clusters") rather than the raw name.
fn tidy_titles(op: &mut Operation) {
    let text = match (op.summary.take(), op.description.take()) {
        (Some(s), Some(d)) if !d.is_empty() => format!("{s} {d}"),
        (Some(s), _) => s,
        (None, Some(d)) => d,
        (None, None) => String::new(),
    };
    let text = text.trim();
    if text.is_empty() {
        let name = op
            .operation_id
            .clone()
            .unwrap_or_default()
            .replace('_', " ");
        let mut chars = name.chars();
        op.summary = chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect::<String>());
        return;
    }
    let end = first_sentence_end(text);
    let title = text[..end]
        .trim_end_matches(['.', ':', ';'])
        .replace('`', "");
    op.summary = Some(title);
    op.description = Some(text.to_string());
}

/// Where the first sentence ends: a full stop or colon followed by a space, or the end.
fn first_sentence_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b':' | b';')
            && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())
            // "e.g. x" and "i.e. y" do not end a sentence.
            && !text[..=i].ends_with("e.g.")
            && !text[..=i].ends_with("i.e.")
        {
            return i + 1;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_first_sentences_without_markdown() {
        let mut op = Operation::new();
        op.summary = Some("Creates a cluster: places it, holds its cost and starts".into());
        op.description = Some("its nodes. Use `Idempotency-Key` to retry.".into());
        tidy_titles(&mut op);
        assert_eq!(op.summary.as_deref(), Some("Creates a cluster"));
        assert!(op.description.unwrap().contains("Idempotency-Key"));

        let mut op = Operation::new();
        op.operation_id = Some("list_clusters".into());
        tidy_titles(&mut op);
        assert_eq!(op.summary.as_deref(), Some("List clusters"));
    }

    #[test]
    fn path_parameters_are_named_after_what_they_identify() {
        assert_eq!(
            path_parameters("/v1/members/{user_id}/role"),
            vec!["user_id".to_string()]
        );
        assert_eq!(
            describe_path_parameter("/v1/api-keys/{id}", "id"),
            "The API key's id"
        );
        assert_eq!(
            describe_path_parameter("/v1/devices/{id}/maintenance", "id"),
            "The device's id"
        );
        assert_eq!(
            describe_path_parameter("/v1/ssh-keys/{id}", "id"),
            "The SSH key's id"
        );
    }
}
