//! Offers: what can be rented now, by GPU model and region, filtered with a plain GET form (a
//! link to a filtered view can be shared), each row one click from a cluster of it.

use maud::{Markup, html};

use super::layout::{Shell, page};

/// A value a select offers, and what it shows.
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// The filters as typed, kept in the form.
#[derive(Default)]
pub struct OfferFilterForm {
    pub gpu_model: String,
    pub gpu_class: String,
    pub region: String,
    pub continent: String,
    pub min_gpus: String,
    pub max_price: String,
    pub min_reliability: String,
    pub sort: String,
}

/// GPUs of one model free in one region.
pub struct OfferLine {
    pub gpu_model: String,
    pub gpu_name: String,
    pub gpu_class: String,
    pub vram_gib: i64,
    pub region: String,
    pub region_name: String,
    pub continent: String,
    pub devices: i64,
    pub providers: i64,
    pub gpus_free: i64,
    pub max_gpus_per_node: i64,
    pub min_price: String,
    pub max_price: String,
    /// As a percentage, e.g. `97.5 %`.
    pub reliability: String,
}

pub struct OffersView {
    pub form: OfferFilterForm,
    pub models: Vec<Choice>,
    pub regions: Vec<Choice>,
    pub continents: Vec<Choice>,
    pub offers: Vec<OfferLine>,
    /// Why the filter was refused.
    pub error: Option<String>,
}

/// A select of `choices` named `name`, with `any` first and `current` selected.
fn select(id: &str, name: &str, any: &str, choices: &[Choice], current: &str) -> Markup {
    html! {
        select id=(id) name=(name) {
            option value="" { (any) }
            @for c in choices {
                option value=(c.value) selected[c.value == current] { (c.label) }
            }
        }
    }
}

pub fn offers_page(shell: &Shell<'_>, v: &OffersView) -> Markup {
    let f = &v.form;
    let classes: Vec<Choice> = ["datacenter", "workstation", "consumer"]
        .into_iter()
        .map(|c| Choice {
            value: c.into(),
            label: c.into(),
        })
        .collect();
    let body = html! {
        p class="muted" { "GPUs free right now, by model and region. Prices are per GPU-hour in USD; a quote adds the platform fee and holds a price for five minutes." }
        form method="get" action="/app/offers" class="inline-form" aria-label="Filter offers" {
            div { label for="f-model" { "GPU model" } (select("f-model", "gpu_model", "Any model", &v.models, &f.gpu_model)) }
            div { label for="f-class" { "Class" } (select("f-class", "gpu_class", "Any class", &classes, &f.gpu_class)) }
            div { label for="f-continent" { "Continent" } (select("f-continent", "continent", "Anywhere", &v.continents, &f.continent)) }
            div { label for="f-region" { "Region" } (select("f-region", "region", "Any region", &v.regions, &f.region)) }
            div { label for="f-gpus" { "At least GPUs" } input id="f-gpus" name="min_gpus" inputmode="numeric" size="5" value=(f.min_gpus); }
            div { label for="f-price" { "Max USD/GPU-h" } input id="f-price" name="max_price_per_gpu_hour" inputmode="decimal" size="7" value=(f.max_price); }
            div { label for="f-rel" { "Min reliability (0–1)" } input id="f-rel" name="min_reliability" inputmode="decimal" size="5" value=(f.min_reliability); }
            div {
                label for="f-sort" { "Order" }
                select id="f-sort" name="sort" {
                    option value="price" selected[f.sort != "gpus"] { "Cheapest first" }
                    option value="gpus" selected[f.sort == "gpus"] { "Most GPUs first" }
                }
            }
            button type="submit" class="btn" { "Show" }
            a href="/app/offers" { "Clear" }
        }
        @if let Some(error) = &v.error {
            p class="error" role="alert" { (error) }
        }
        @if v.offers.is_empty() && v.error.is_none() {
            p class="muted" data-testid="no-offers" { "Nothing free matches. Widen the filters, or ask for a quote: it names the constraint that left nothing and the nearest request that fits." }
        } @else if !v.offers.is_empty() {
            table tabindex="0" data-testid="offers" {
                caption class="muted" { (v.offers.len()) @if v.offers.len() == 1 { " offer" } @else { " offers" } }
                thead { tr {
                    th scope="col" { "GPU" } th scope="col" { "Region" }
                    th scope="col" class="n" { "Free GPUs" } th scope="col" class="n" { "Per node" }
                    th scope="col" class="n" { "Machines" } th scope="col" class="n" { "USD/GPU-h" }
                    th scope="col" class="n" { "Reliability" } th scope="col" { span class="sr-only" { "Rent" } }
                } }
                tbody {
                    @for o in &v.offers {
                        tr {
                            th scope="row" { (o.gpu_name) br; span class="muted" { (o.vram_gib) " GiB · " (o.gpu_class) } }
                            td { (o.region_name) br; span class="muted" { (o.region) " · " (o.continent) } }
                            td class="n" { (o.gpus_free) }
                            td class="n" { (o.max_gpus_per_node) }
                            td class="n" { (o.devices) br; span class="muted" { (o.providers) @if o.providers == 1 { " provider" } @else { " providers" } } }
                            td class="n" {
                                @if o.min_price == o.max_price { (o.min_price) } @else { (o.min_price) "–" (o.max_price) }
                            }
                            td class="n" { (o.reliability) }
                            td {
                                a class="btn btn-secondary" href=(format!(
                                    "/app/clusters/new?gpu_model={}&regions={}&gpu_count={}",
                                    o.gpu_model, o.region, o.max_gpus_per_node.clamp(1, 8)
                                )) { "Rent " span class="sr-only" { (o.gpu_name) " in " (o.region_name) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Offers", "Offers", shell, body)
}
