//! The web console (server-rendered, in [`app`]) and the pages that ship with the API
//! (GraphiQL, the API reference), with every script and style vendored and embedded in the
//! binary: nothing loads from a CDN.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;

pub mod app;
pub mod explorer;
pub mod invoice;
mod printable;
pub mod receipt;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub const GRAPHIQL_HTML: &str = include_str!("../assets/graphiql.html");
pub const REFERENCE_HTML: &str = include_str!("../assets/reference.html");

/// GraphiQL (React) and the API reference (styled-components) style their elements inline,
/// and the reference draws with blob: images; scripts are still this server's files only. The
/// image rule also stops the Redocly logo, which Redoc always asks a CDN for.
const TOOL_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The HTML pages the server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    GraphiQl,
    Reference,
}

impl Page {
    fn html(self) -> &'static str {
        match self {
            Page::GraphiQl => GRAPHIQL_HTML,
            Page::Reference => REFERENCE_HTML,
        }
    }

    fn csp(self) -> &'static str {
        match self {
            Page::GraphiQl | Page::Reference => TOOL_CSP,
        }
    }
}

/// A page with its Content-Security-Policy. The headers every answer carries (nosniff,
/// framing, referrer) are set by the server for all routes.
pub fn page(page: Page) -> Response {
    let mut res = Html(page.html()).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(page.csp()),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

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
        for page in [GRAPHIQL_HTML, REFERENCE_HTML] {
            assert!(!page.contains("src=\"http"), "a page loads a remote script");
            assert!(!page.contains("href=\"http"), "a page loads a remote style");
        }
        assert_eq!(asset("vendor/htmx.min.js").status(), StatusCode::OK);
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn pages_run_no_inline_script_and_say_so() {
        for p in [Page::GraphiQl, Page::Reference] {
            assert!(
                !p.html().contains("<script>") && !p.html().contains("<style>"),
                "{p:?} has an inline script or style, which its policy refuses"
            );
            let res = page(p);
            let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
        }
        // Every script and style a page names is embedded.
        for p in [Page::GraphiQl, Page::Reference] {
            for part in p.html().split("=\"/assets/").skip(1) {
                let path = part.split('"').next().unwrap();
                assert_eq!(asset(path).status(), StatusCode::OK, "{path}");
            }
        }
    }
}
