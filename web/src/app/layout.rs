//! The frame every signed-in page shares: the product's name, the sections, who is signed in
//! and where, and signing out (a form, with the CSRF token).

use maud::{DOCTYPE, Markup, html};

use super::CSRF_FIELD;

/// The console's sections, as the top bar lists them.
const SECTIONS: [(&str, &str); 6] = [
    ("/app/", "Home"),
    ("/app/clusters", "Clusters"),
    ("/app/offers", "Offers"),
    ("/app/billing", "Billing"),
    ("/app/worker", "Worker"),
    ("/app/team", "Team"),
];

/// Who is looking, for the frame.
pub struct Shell<'a> {
    pub organization: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub csrf: &'a str,
}

/// What every page's `<head>` holds: `title` in the tab, the console's styles, no referrer
/// sent on (links may carry tokens).
pub(super) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            link rel="icon" href="data:,";
            title { (title) " · IO Cloud" }
            link rel="stylesheet" href="/assets/app/app.css";
            // htmx would add a <style> for its request indicators; the CSP allows no inline
            // style, and the console's own CSS styles them.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
            script src="/assets/vendor/htmx.min.js" defer {}
            script src="/assets/vendor/htmx-ext-sse.min.js" defer {}
        }
    }
}

/// A whole page of `section` (one of the top bar's names, marked as the current one): `title`
/// in the tab and as the heading, `body` in the main region.
pub fn page(section: &str, title: &str, shell: &Shell<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip-link" href="#main" { "Skip to content" }
                header class="topbar" {
                    a class="brand" href="/app/" { "IO Cloud" }
                    nav aria-label="Sections" {
                        ul {
                            @for (href, name) in &SECTIONS {
                                li { a href=(href) aria-current=[(section == *name).then_some("page")] { (name) } }
                            }
                        }
                    }
                    div class="who" {
                        span { (shell.email) " · " (shell.organization) " (" (shell.role) ")" }
                        form method="post" action="/app/logout" {
                            input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                            button type="submit" class="btn btn-secondary" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
