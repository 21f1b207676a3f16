//! Offers: the filter form read leniently (an empty field is no filter), the domain's offers
//! drawn as a table; a refused filter is shown above an empty table, with what was typed kept.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use iocloud_control::offers::{OfferFilter, OfferSort};
use iocloud_web::app::{Choice, OfferFilterForm, OfferLine, OffersView};

use super::session::Visitor;
use super::show;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/app/offers", get(page))
}

async fn page(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let field = |k: &str| q.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let form = OfferFilterForm {
        gpu_model: field("gpu_model"),
        gpu_class: field("gpu_class"),
        region: field("region"),
        continent: field("continent"),
        min_gpus: field("min_gpus"),
        max_price: field("max_price_per_gpu_hour"),
        min_reliability: field("min_reliability"),
        sort: field("sort"),
    };
    let (filter, typo) = filter_of(&form);
    let catalog = &state.control.catalog;
    let (models, regions) = super::catalog_choices(&state);
    let mut view = OffersView {
        models,
        regions,
        continents: {
            let mut c: Vec<String> = catalog
                .regions
                .iter()
                .map(|r| r.continent.clone())
                .collect();
            c.dedup();
            c.into_iter()
                .map(|c| Choice {
                    label: continent_name(&c),
                    value: c,
                })
                .collect()
        },
        form,
        offers: Vec::new(),
        error: typo,
    };
    let mut status = StatusCode::OK;
    if view.error.is_none() {
        match state.control.offers.list(&v.actor, &filter).await {
            Ok(offers) => {
                view.offers = offers
                    .into_iter()
                    .map(|o| OfferLine {
                        gpu_model: o.gpu_model,
                        gpu_name: o.gpu_name,
                        gpu_class: o.gpu_class,
                        vram_gib: o.vram_gib,
                        region: o.region,
                        region_name: o.region_name,
                        continent: o.continent,
                        devices: o.devices,
                        providers: o.providers,
                        gpus_free: o.gpus_free,
                        max_gpus_per_node: o.max_gpus_per_node,
                        min_price: o.min_price_per_gpu_hour,
                        max_price: o.max_price_per_gpu_hour,
                        reliability: format!("{:.1} %", o.reliability * 100.0),
                    })
                    .collect()
            }
            Err(e) if !e.is_internal() => {
                status = crate::error::domain_status(&e);
                view.error = Some(e.to_string());
            }
            Err(e) => return super::failed(&v, e),
        }
    } else {
        status = StatusCode::UNPROCESSABLE_ENTITY;
    }
    show(&state, &v, status, async { Ok(view) }, |shell, view| {
        iocloud_web::app::offers_page(shell, view)
    })
    .await
}

/// `north-america` as `North America`.
fn continent_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The domain's filter from the form, or what could not be read as a number.
fn filter_of(f: &OfferFilterForm) -> (OfferFilter, Option<String>) {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut typo = None;
    let min_gpus = match f.min_gpus.as_str() {
        "" => None,
        s => s.parse().ok().or_else(|| {
            typo = Some("At least GPUs: write a whole number, like 8.".to_string());
            None
        }),
    };
    let min_reliability = match f.min_reliability.as_str() {
        "" => None,
        s => s.parse().ok().or_else(|| {
            typo = Some("Min reliability: write a number from 0 to 1, like 0.95.".to_string());
            None
        }),
    };
    let filter = OfferFilter {
        gpu_model: text(&f.gpu_model),
        gpu_class: text(&f.gpu_class),
        region: text(&f.region),
        continent: text(&f.continent),
        min_gpus,
        max_price_per_gpu_hour: text(&f.max_price),
        min_reliability,
        sort: (f.sort == "gpus").then_some(OfferSort::Gpus),
    };
    (filter, typo)
}
