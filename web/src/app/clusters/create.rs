//! Creating a cluster: one form whose quote updates as it is typed in (htmx asks for the quote
//! fragment a moment after each change; without scripts, "Get a quote" asks for the page with
//! it). When nothing fits, the quote names the constraint that emptied the candidates and,
//! when easing that one is enough, the nearest request that fits, one click away.

use maud::{Markup, html};

use super::super::layout::{Shell, page};
use super::super::{CSRF_FIELD, offers::Choice};

/// The form as typed; field names are the spec's.
#[derive(Clone, Default)]
pub struct CreateForm {
    pub name: String,
    pub kind: String,
    pub image: String,
    /// A model id, or `class:datacenter` (any model of the class).
    pub gpu: String,
    pub gpu_count: String,
    pub gpus_per_node: String,
    pub regions: Vec<String>,
    /// `close` (nodes within `max_rtt_between_nodes_ms`), `same_region` or `any`.
    pub together: String,
    pub max_rtt_between_nodes_ms: String,
    pub max_price_per_gpu_hour: String,
    pub min_reliability: String,
    pub min_bandwidth_mbps: String,
    pub duration_hours: String,
    pub billing_currency: String,
    pub preference: String,
    /// A container's command, split at whitespace (no quoting).
    pub command: String,
    /// A container's ports, separated by commas.
    pub ports: String,
    /// A container's environment, `NAME=value` a line.
    pub env: String,
    /// The SSH keys ticked (their ids).
    pub ssh_keys: Vec<String>,
    /// The SSH key boxes were on the form that sent this: `ssh_keys` says which were ticked.
    /// Otherwise (a new form, a link) every key is ticked.
    pub ssh_keys_shown: bool,
}

impl CreateForm {
    /// The form's fields as query pairs, `regions` repeated: for links that keep the form.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("name", self.name.clone()),
            ("kind", self.kind.clone()),
            ("image", self.image.clone()),
            ("gpu", self.gpu.clone()),
            ("gpu_count", self.gpu_count.clone()),
            ("gpus_per_node", self.gpus_per_node.clone()),
            ("together", self.together.clone()),
            (
                "max_rtt_between_nodes_ms",
                self.max_rtt_between_nodes_ms.clone(),
            ),
            (
                "max_price_per_gpu_hour",
                self.max_price_per_gpu_hour.clone(),
            ),
            ("min_reliability", self.min_reliability.clone()),
            ("min_bandwidth_mbps", self.min_bandwidth_mbps.clone()),
            ("duration_hours", self.duration_hours.clone()),
            ("billing_currency", self.billing_currency.clone()),
            ("preference", self.preference.clone()),
            ("command", self.command.clone()),
            ("ports", self.ports.clone()),
            ("env", self.env.clone()),
        ];
        out.extend(self.regions.iter().map(|r| ("regions", r.clone())));
        if self.ssh_keys_shown {
            out.push(("ssh_keys_shown", "1".to_string()));
            out.extend(self.ssh_keys.iter().map(|k| ("ssh_key", k.clone())));
        }
        out.retain(|(_, v)| !v.is_empty());
        out
    }
}

/// A plan of the quote.
pub struct PlanLine {
    /// `cheapest`, `balanced` or `lowest_latency`.
    pub label: String,
    pub price_per_hour: String,
    pub total: String,
    pub estimated_rtt_ms: u32,
    /// Where the nodes land, e.g. `2 × h100-sxm in eu-central`.
    pub nodes: Vec<String>,
}

/// What the quote pane shows.
pub enum QuoteAnswer {
    /// Nothing asked yet, or the form is incomplete: what is missing.
    Waiting(String),
    Plans {
        duration_hours: i64,
        plans: Vec<PlanLine>,
    },
    /// Nothing fits: why, and the nearest request that would (its words and its link).
    Nothing {
        why: String,
        nearest: Option<(String, String)>,
    },
    /// The form says something the quote refuses.
    Refused(String),
}

pub struct CreateView {
    pub form: CreateForm,
    pub models: Vec<Choice>,
    pub regions: Vec<Choice>,
    /// The organisation's SSH keys: the id, and the name with the fingerprint.
    pub ssh_keys: Vec<Choice>,
    pub quote: QuoteAnswer,
    /// Why creating it was refused.
    pub error: Option<String>,
}

/// The quote pane: the part the form replaces as it is typed in.
pub fn quote_fragment(q: &QuoteAnswer) -> Markup {
    html! {
        section id="quote" class="quote" aria-labelledby="quote-h" aria-live="polite" {
            h2 id="quote-h" { "Quote" }
            @match q {
                QuoteAnswer::Waiting(what) => p class="muted" { (what) },
                QuoteAnswer::Refused(why) => p class="error" data-testid="quote-refused" { (why) },
                QuoteAnswer::Nothing { why, nearest } => {
                    p class="error" data-testid="quote-nothing" { "Nothing fits: " (why) "." }
                    @if let Some((words, href)) = nearest {
                        p { a class="btn btn-secondary" href=(href) data-testid="nearest" { "Take the nearest that fits: " (words) } }
                    }
                }
                QuoteAnswer::Plans { duration_hours, plans } => {
                    p class="muted" { "USD, for " (duration_hours) " h; prices hold five minutes once created." }
                    ol class="plans" data-testid="plans" {
                        @for p in plans {
                            li class="plan" {
                                p { strong { (p.label.replace('_', " ")) } " · " (p.price_per_hour) " per hour · " (p.total) " in all · ~" (p.estimated_rtt_ms) " ms between nodes" }
                                ul { @for n in &p.nodes { li { (n) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn text(id: &str, name: &str, label: &str, value: &str, hint: Option<&str>) -> Markup {
    html! {
        div class="field" {
            label for=(id) { (label) }
            input id=(id) name=(name) value=(value);
            @if let Some(h) = hint { span class="hint" { (h) } }
        }
    }
}

pub fn create_page(shell: &Shell<'_>, v: &CreateView) -> Markup {
    let f = &v.form;
    let body = html! {
        @if let Some(error) = &v.error {
            p class="error" role="alert" data-testid="create-error" { (error) }
        }
        div class="create" {
            form method="post" action="/app/clusters" class="card create-form"
                hx-get="/app/clusters/quote" hx-trigger="input changed delay:400ms" hx-target="#quote" hx-swap="outerHTML" {
                input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                (text("c-name", "name", "Name", &f.name, Some("lower-case letters, digits and -")))
                div class="field" {
                    label for="c-kind" { "Kind" }
                    select id="c-kind" name="kind" {
                        @for (k, label) in [("ray", "Ray"), ("kubernetes", "Kubernetes"), ("container", "Container")] {
                            option value=(k) selected[f.kind == k] { (label) }
                        }
                    }
                }
                (text("c-image", "image", "Image (for a container)", &f.image, Some("e.g. pytorch/pytorch:2.5.1-cuda12.4")))
                (text("c-command", "command", "Command (for a container; split at spaces, no quoting)", &f.command, Some("empty: the image's own command")))
                (text("c-ports", "ports", "Ports to expose (for a container)", &f.ports, Some("separated by commas, like 8080, 6006; SSH's 22 is always open")))
                div class="field" {
                    label for="c-env" { "Environment (for a container)" }
                    textarea id="c-env" name="env" class="secret" rows="3" { (f.env) }
                    span class="hint" { "one NAME=value a line" }
                }
                fieldset class="field" data-testid="ssh-key-choices" {
                    legend { "SSH keys the nodes let in as root" }
                    @if v.ssh_keys.is_empty() {
                        p class="hint" { "The organisation has no SSH keys yet: " a href="/app/keys" { "add one" } " to log in to the nodes." }
                    } @else {
                        input type="hidden" name="ssh_keys_shown" value="1";
                        @for k in &v.ssh_keys {
                            @let id = format!("c-key-{}", k.value);
                            label class="check" for=(id) {
                                input id=(id) type="checkbox" name="ssh_key" value=(k.value)
                                    checked[!f.ssh_keys_shown || f.ssh_keys.contains(&k.value)];
                                " " (k.label)
                            }
                        }
                        span class="hint" { a href="/app/keys" { "Manage SSH keys" } }
                    }
                }
                div class="field" {
                    label for="c-gpu" { "GPU" }
                    select id="c-gpu" name="gpu" {
                        optgroup label="Any model of a class" {
                            @for c in ["datacenter", "workstation", "consumer"] {
                                @let value = format!("class:{c}");
                                option value=(value) selected[f.gpu == value] { "Any " (c) " GPU" }
                            }
                        }
                        optgroup label="A model" {
                            @for m in &v.models { option value=(m.value) selected[f.gpu == m.value] { (m.label) } }
                        }
                    }
                }
                (text("c-count", "gpu_count", "GPUs in all", &f.gpu_count, None))
                (text("c-per-node", "gpus_per_node", "GPUs per node", &f.gpus_per_node, Some("empty: any split")))
                div class="field" {
                    label for="c-regions" { "Regions" }
                    select id="c-regions" name="regions" multiple size="5" {
                        @for r in &v.regions { option value=(r.value) selected[f.regions.contains(&r.value)] { (r.label) } }
                    }
                    span class="hint" { "none chosen: anywhere" }
                }
                div class="field" {
                    label for="c-together" { "Nodes" }
                    select id="c-together" name="together" {
                        option value="close" selected[f.together == "close" || f.together.is_empty()] { "Close to each other" }
                        option value="same_region" selected[f.together == "same_region"] { "In one region" }
                        option value="any" selected[f.together == "any"] { "Anywhere (may cross continents)" }
                    }
                }
                (text("c-rtt", "max_rtt_between_nodes_ms", "Close: at most ms between nodes", &f.max_rtt_between_nodes_ms, None))
                (text("c-price", "max_price_per_gpu_hour", "Max USD per GPU-hour", &f.max_price_per_gpu_hour, Some("empty: no limit")))
                (text("c-rel", "min_reliability", "Min reliability (0–1)", &f.min_reliability, None))
                (text("c-bw", "min_bandwidth_mbps", "Min bandwidth, Mbit/s", &f.min_bandwidth_mbps, None))
                (text("c-hours", "duration_hours", "Hours", &f.duration_hours, Some("1 to 720; billing stops when you terminate")))
                div class="field" {
                    label for="c-currency" { "Pay in" }
                    select id="c-currency" name="billing_currency" {
                        option value="" selected[f.billing_currency.is_empty()] { "The organisation's preference" }
                        @for cur in ["USD", "IOSD", "IO"] { option value=(cur) selected[f.billing_currency == cur] { (cur) } }
                    }
                }
                div class="field" {
                    label for="c-pref" { "Rank plans by" }
                    select id="c-pref" name="preference" {
                        option value="balanced" selected[f.preference != "cost" && f.preference != "latency"] { "Balance of price and latency" }
                        option value="cost" selected[f.preference == "cost"] { "Price" }
                        option value="latency" selected[f.preference == "latency"] { "Latency" }
                    }
                }
                div class="actions" {
                    button type="submit" class="btn" { "Create cluster" }
                    button type="submit" class="btn btn-secondary" name="intent" value="quote" { "Get a quote" }
                }
            }
            (quote_fragment(&v.quote))
        }
    };
    page("Clusters", "Create a cluster", shell, body)
}
