//! The frame every signed-in page shares: the product (IO Cloud or IO Worker, and a switch
//! between them for an organisation that does both), its sections, who is signed in and
//! where (with a switcher for someone in several organisations), and signing out.

use maud::{DOCTYPE, Markup, html};

use super::CSRF_FIELD;

/// The two products one sign-in serves: IO Cloud for renting GPUs, IO Worker for providing
/// them. Each has its own sections in the top bar.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Product {
    Cloud,
    Worker,
}

impl Product {
    fn name(self) -> &'static str {
        match self {
            Product::Cloud => "IO Cloud",
            Product::Worker => "IO Worker",
        }
    }

    fn home(self) -> &'static str {
        match self {
            Product::Cloud => "/app/",
            Product::Worker => "/app/worker",
        }
    }

    /// The sections, as the top bar lists them: address and name.
    fn sections(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Product::Cloud => &[
                ("/app/", "Home"),
                ("/app/clusters", "Clusters"),
                ("/app/offers", "Offers"),
                ("/app/billing", "Billing"),
                ("/app/team", "Team"),
            ],
            Product::Worker => &[
                ("/app/worker", "Worker"),
                ("/app/worker/rewards", "Rewards"),
                ("/app/worker/costaking", "Co-staking"),
                ("/app/worker/cases", "Cases"),
                ("/app/billing", "Billing"),
                ("/app/team", "Team"),
            ],
        }
    }

    /// The product a page of `section` belongs to: Worker's, Rewards', Co-staking's and
    /// Cases' own pages to IO Worker; pages both share (Billing, Team) to IO Worker for an
    /// organisation that only provides.
    fn of(section: &str, shell: &Shell<'_>) -> Product {
        let provider_only = shell.provides && !shell.rents;
        match section {
            "Worker" | "Rewards" | "Co-staking" | "Cases" => Product::Worker,
            "Billing" | "Team" if provider_only => Product::Worker,
            _ => Product::Cloud,
        }
    }

    fn other(self) -> Product {
        match self {
            Product::Cloud => Product::Worker,
            Product::Worker => Product::Cloud,
        }
    }
}

/// One of the visitor's organisations, for the switcher.
pub struct OrgChoice {
    pub id: String,
    pub name: String,
    /// The one this session works in.
    pub current: bool,
}

/// Who is looking, for the frame.
pub struct Shell<'a> {
    pub organization: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub csrf: &'a str,
    /// Every organisation the visitor belongs to; a switcher shows when there are several.
    pub orgs: &'a [OrgChoice],
    /// Whether the organisation rents GPUs (has had a cluster) and provides them (has had a
    /// device): an organisation that does both switches between IO Cloud and IO Worker.
    pub rents: bool,
    pub provides: bool,
}

/// What every page's `<head>` holds: `title` in the tab, the console's styles, no referrer
/// sent on (links may carry tokens).
pub fn head(title: &str) -> Markup {
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
    let product = Product::of(section, shell);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip-link" href="#main" { "Skip to content" }
                header class="topbar" {
                    a class="brand" href=(product.home()) { (product.name()) }
                    @if shell.rents && shell.provides {
                        nav aria-label="Products" class="products" {
                            ul {
                                @for p in [Product::Cloud, Product::Worker] {
                                    li { a href=(p.home()) aria-current=[(p == product).then_some("true")] { (p.name()) } }
                                }
                            }
                        }
                    }
                    nav aria-label="Sections" {
                        ul {
                            @for (href, name) in product.sections() {
                                li { a href=(href) aria-current=[(section == *name).then_some("page")] { (name) } }
                            }
                        }
                    }
                    div class="who" {
                        @if !(shell.rents && shell.provides) {
                            // The other product, for an organisation that has not tried it.
                            @match product.other() {
                                Product::Worker => a href="/app/worker" { "Provide GPUs" },
                                Product::Cloud => a href="/app/offers" { "Rent GPUs" },
                            }
                        }
                        span { (shell.email) " · " (shell.organization) " (" (shell.role) ")" }
                        @if shell.orgs.len() > 1 {
                            form method="post" action="/app/team/switch" class="switcher" {
                                input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                                input type="hidden" name="then" value="home";
                                label for="switch-org" class="sr-only" { "Organisation" }
                                select id="switch-org" name="org_id" {
                                    @for o in shell.orgs {
                                        option value=(o.id) selected[o.current] { (o.name) }
                                    }
                                }
                                button type="submit" class="btn btn-secondary" { "Switch" }
                            }
                        }
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
