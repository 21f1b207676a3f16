//! The web console and the pages that ship with the API (GraphiQL, the API reference), with
//! every script and style vendored and embedded in the binary: nothing loads from a CDN.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

pub mod invoice;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub const GRAPHIQL_HTML: &str = include_str!("../assets/graphiql.html");
pub const REFERENCE_HTML: &str = include_str!("../assets/reference.html");
pub const CONSOLE_HTML: &str = include_str!("../assets/console/index.html");

/// Serves an embedded file under `/assets/`, or 404.
pub fn asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => {
            let mut res = Response::new(Body::from(file.data.into_owned()));
            if let Ok(v) = HeaderValue::from_str(content_type(path)) {
                res.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            // Vendored files carry their version in VERSIONS.md, not their name: cache briefly.
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            res
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_load_nothing_from_other_hosts() {
        for page in [GRAPHIQL_HTML, REFERENCE_HTML, CONSOLE_HTML] {
            assert!(!page.contains("src=\"http"), "a page loads a remote script");
            assert!(!page.contains("href=\"http"), "a page loads a remote style");
        }
        assert_eq!(asset("vendor/htmx.min.js").status(), StatusCode::OK);
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
    }
}
