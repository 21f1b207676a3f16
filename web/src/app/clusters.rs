//! Clusters: the list with live status (the rows poll every few seconds), a cluster's page
//! with its events as a live timeline (server-sent events), its nodes, money, connection, the
//! spec to copy, and the forms that extend or end it. Creating one is in [`create`].

mod create;

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

pub use create::{CreateForm, CreateView, PlanLine, QuoteAnswer, create_page, quote_fragment};

/// A cluster as listed.
pub struct ClusterItem {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub gpus: i64,
    pub price_per_hour: String,
    pub currency: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

pub struct ClustersView {
    pub items: Vec<ClusterItem>,
    /// The status filter, or empty for every cluster.
    pub status: String,
    /// The cursor of the next page.
    pub next: Option<String>,
    /// The cursor this page began after, kept by the rows' refresh.
    pub after: String,
}

/// Statuses the list can be narrowed to.
const FILTERS: [&str; 6] = [
    "running",
    "provisioning",
    "degraded",
    "terminating",
    "terminated",
    "failed",
];

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) { (status) } }
}

/// The list's rows: the part the page refreshes in place.
pub fn cluster_rows(v: &ClustersView) -> Markup {
    html! {
        tbody id="cluster-rows"
            hx-get=(format!("/app/clusters/rows?status={}&after={}", v.status, v.after))
            hx-trigger="every 5s" hx-swap="outerHTML" {
            @if v.items.is_empty() {
                tr { td colspan="6" class="muted" { "No clusters here yet." } }
            }
            @for c in &v.items {
                tr {
                    th scope="row" { a href=(format!("/app/clusters/{}", c.id)) { (c.name) } br; span class="muted mono" { (c.id) } }
                    td { (c.kind) }
                    td data-testid="cluster-status" { (badge(&c.status)) }
                    td class="n" { (c.gpus) }
                    td class="n" { (c.price_per_hour) " " (c.currency) }
                    td { (super::when(&c.created_at)) @if let Some(e) = &c.expires_at { br; span class="muted" { "ends " (super::when(e)) } } }
                }
            }
        }
    }
}

pub fn clusters_page(shell: &Shell<'_>, v: &ClustersView) -> Markup {
    let body = html! {
        p { a class="btn" href="/app/clusters/new" { "Create a cluster" } }
        nav aria-label="Filter by status" class="filters" {
            a href="/app/clusters" aria-current=[v.status.is_empty().then_some("page")] { "All" }
            @for s in FILTERS {
                a href=(format!("/app/clusters?status={s}")) aria-current=[(v.status == s).then_some("page")] { (s) }
            }
        }
        table tabindex="0" data-testid="clusters" {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Status" }
                th scope="col" class="n" { "GPUs" } th scope="col" class="n" { "Per hour" } th scope="col" { "Created" }
            } }
            (cluster_rows(v))
        }
        @if let Some(next) = &v.next {
            p { a href=(format!("/app/clusters?status={}&after={next}", v.status)) { "More clusters" } }
        }
    };
    page("Clusters", "Clusters", shell, body)
}

/// A node of the cluster.
pub struct NodeItem {
    pub id: String,
    pub role: String,
    pub status: String,
    pub region: String,
    pub gpu_model: String,
    pub gpus: i64,
    pub price_per_gpu_hour: String,
    pub reason: Option<String>,
}

/// One event of the timeline.
pub struct EventItem {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub status: String,
    pub message: String,
}

/// A cluster's page.
pub struct ClusterPage {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub gpus: i64,
    pub price_per_hour: String,
    pub currency: String,
    pub created_at: String,
    pub running_at: Option<String>,
    pub expires_at: Option<String>,
    pub terminated_at: Option<String>,
    /// Whole hours and minutes until it ends, while it lives.
    pub time_left: Option<String>,
    /// Held for it, and what its time up to now comes to (both in `currency`).
    pub held: Option<String>,
    pub spent: Option<String>,
    /// What ending it now would give back, about.
    pub refund_now: Option<String>,
    /// How to reach it: what each line is, and the value to copy.
    pub connection: Vec<(String, String)>,
    /// A Kubernetes cluster whose kubeconfig can be downloaded now.
    pub kubeconfig: bool,
    pub nodes: Vec<NodeItem>,
    /// Newest first.
    pub events: Vec<EventItem>,
    /// The spec as YAML, for `iocloud apply -f`.
    pub spec_yaml: String,
    /// It may still change (extend, terminate).
    pub live: bool,
    /// It has not ended: the page follows it.
    pub followed: bool,
    pub error: Option<String>,
}

/// One line of the timeline; the live stream sends the same.
pub fn event_item(e: &EventItem) -> Markup {
    html! {
        li id=(format!("event-{}", e.seq)) {
            (super::when(&e.at)) " "
            (badge(&e.status)) " "
            strong { (e.kind) } " "
            span { (e.message) }
        }
    }
}

/// The cluster's status as the heading shows it; the live stream sends the same.
fn status_badge(status: &str) -> Markup {
    html! { span id="cluster-status" data-testid="cluster-status" { (badge(status)) } }
}

fn facts(rows: Vec<(&str, Option<Markup>)>) -> Markup {
    html! {
        dl class="facts" {
            @for (k, v) in rows {
                @if let Some(v) = v { dt { (k) } dd { (v) } }
            }
        }
    }
}

/// What the live stream redraws as the cluster changes: status, money, connection, the forms
/// that change it, and its nodes.
pub fn cluster_overview(csrf: &str, c: &ClusterPage) -> Markup {
    let moment = |t: &Option<String>| t.as_deref().map(super::when);
    html! {
        p { (status_badge(&c.status)) " " span class="muted mono" { (c.id) } }
        @if let Some(reason) = &c.status_reason { p class="muted" { (reason) } }
        div class="tiles" {
            div class="tile" { p class="tile-label" { "GPUs" } p class="tile-value" { (c.gpus) } p class="muted" { (c.kind) } }
            div class="tile" { p class="tile-label" { "Price" } p class="tile-value" { (c.price_per_hour) } p class="muted" { (c.currency) " per hour" } }
            @if let Some(spent) = &c.spent {
                div class="tile" { p class="tile-label" { "Spent so far (about)" } p class="tile-value" data-testid="spent" { (spent) } @if let Some(h) = &c.held { p class="muted" { "of " (h) " held" } } }
            }
            @if let Some(left) = &c.time_left {
                div class="tile" { p class="tile-label" { "Time left" } p class="tile-value" data-testid="time-left" { (left) } }
            }
        }
        (facts(vec![
            ("Created", Some(super::when(&c.created_at))),
            ("Running since", moment(&c.running_at)),
            ("Ends", moment(&c.expires_at).filter(|_| c.live)),
            ("Ended", moment(&c.terminated_at)),
            ("GPUs", Some(html! { (c.gpus) })),
            ("Price", Some(html! { (c.price_per_hour) " " (c.currency) " per hour" })),
        ]))
        @if c.live {
            section aria-labelledby="connect-h" {
                h2 id="connect-h" { "Connect" }
                @if c.connection.is_empty() {
                    p class="muted" { "Addresses appear here once the nodes are up." }
                } @else {
                    dl class="facts" {
                        @for (k, v) in &c.connection { dt { (k) } dd { code class="mono" { (v) } } }
                    }
                }
                p class="muted" data-testid="ssh-keys-link" {
                    "The nodes let the organisation's SSH keys in as root. "
                    a href="/app/keys" { "SSH keys" }
                }
                @if c.kubeconfig {
                    p { a class="btn btn-secondary" href=(format!("/app/clusters/{}/kubeconfig", c.id)) download=(format!("{}-kubeconfig.yaml", c.name)) { "Download kubeconfig" } }
                    p class="muted" { "The kubeconfig holds the cluster's admin token; each download is written to the audit log." }
                }
            }
            section aria-labelledby="manage-h" {
                h2 id="manage-h" { "Manage" }
                form method="post" action=(format!("/app/clusters/{}/extend", c.id)) class="inline-form" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    div { label for="extend-hours" { "Add hours" } input id="extend-hours" name="hours" inputmode="numeric" size="5" value="1" required; }
                    button type="submit" class="btn btn-secondary" { "Extend" }
                }
                form method="post" action=(format!("/app/clusters/{}/terminate", c.id)) class="inline-form" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    button type="submit" class="btn btn-danger" { "Terminate " (c.name) }
                    @if let Some(refund) = &c.refund_now {
                        span class="muted" data-testid="refund-now" { "Billing stops at once; about " (refund) " of the hold goes back to your balance." }
                    }
                }
            }
        }
        section aria-labelledby="nodes-h" {
            h2 id="nodes-h" { "Nodes" }
            @if c.nodes.is_empty() { p class="muted" { "No nodes yet." } } @else {
                table tabindex="0" {
                    thead { tr { th scope="col" { "Node" } th scope="col" { "Status" } th scope="col" { "Role" } th scope="col" { "Region" } th scope="col" class="n" { "GPUs" } th scope="col" class="n" { "USD/GPU-h" } } }
                    tbody {
                        @for n in &c.nodes {
                            tr {
                                th scope="row" class="mono" { (n.id) }
                                td { (badge(&n.status)) @if let Some(r) = &n.reason { br; span class="muted" { (r) } } }
                                td { (n.role) }
                                td { (n.region) }
                                td class="n" { (n.gpus) " × " (n.gpu_model) }
                                td class="n" { (n.price_per_gpu_hour) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn cluster_page(shell: &Shell<'_>, c: &ClusterPage) -> Markup {
    let body = html! {
        @if let Some(error) = &c.error {
            p class="error" role="alert" { (error) }
        }
        @if c.followed {
            // Followed until it ends: each event arrives as a timeline line, followed by the
            // overview drawn again; the stream says `ended` when there is nothing more.
            div hx-ext="sse" sse-connect=(format!("/app/clusters/{}/live?after={}", c.id, c.events.first().map_or(0, |e| e.seq))) sse-close="ended" {
                div id="cluster-overview" sse-swap="overview" { (cluster_overview(shell.csrf, c)) }
                section aria-labelledby="events-h" {
                    h2 id="events-h" { "Timeline" }
                    ol id="timeline" class="timeline" sse-swap="event" hx-swap="afterbegin" aria-live="polite" {
                        @for e in &c.events { (event_item(e)) }
                    }
                }
            }
        } @else {
            div id="cluster-overview" { (cluster_overview(shell.csrf, c)) }
            section aria-labelledby="events-h" {
                h2 id="events-h" { "Timeline" }
                ol id="timeline" class="timeline" { @for e in &c.events { (event_item(e)) } }
            }
        }
        section aria-labelledby="spec-h" {
            h2 id="spec-h" { "Spec" }
            p class="muted" { "Save as a file and run " code { "iocloud apply -f FILE" } " to make the same cluster again." }
            pre class="spec" tabindex="0" aria-label="The cluster's spec as YAML" { code { (c.spec_yaml) } }
        }
    };
    page("Clusters", &c.name, shell, body)
}
