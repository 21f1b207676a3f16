//! `iocloud offers`: what can be rented now, by GPU model and region.

use clap::Args;

use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct OffersArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// Only this GPU model (`h100-sxm`, …).
    #[arg(long)]
    gpu_model: Option<String>,
    /// Only this GPU class (`datacenter`, `workstation`, `consumer`).
    #[arg(long)]
    gpu_class: Option<String>,
    /// Only this region code.
    #[arg(long)]
    region: Option<String>,
    /// Only regions on this continent (`europe`, `north-america`, …).
    #[arg(long)]
    continent: Option<String>,
    /// At least this many free GPUs.
    #[arg(long)]
    min_gpus: Option<i64>,
    /// USD per GPU-hour the cheapest machine may cost at most, e.g. 2.50.
    #[arg(long)]
    max_price: Option<String>,
    /// 0 to 1: the median machine at least this reliable.
    #[arg(long)]
    min_reliability: Option<f64>,
    /// `price` (cheapest first) or `gpus` (most free GPUs first).
    #[arg(long)]
    sort: Option<String>,
}

pub async fn run(a: OffersArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let query: Vec<String> = [
        ("gpu_model", a.gpu_model),
        ("gpu_class", a.gpu_class),
        ("region", a.region),
        ("continent", a.continent),
        ("min_gpus", a.min_gpus.map(|n| n.to_string())),
        ("max_price_per_gpu_hour", a.max_price),
        ("min_reliability", a.min_reliability.map(|r| r.to_string())),
        ("sort", a.sort),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", seg(&v))))
    .collect();
    let path = if query.is_empty() {
        "/v1/offers".to_string()
    } else {
        format!("/v1/offers?{}", query.join("&"))
    };
    let offers = client.get(&path).await?;
    if a.conn.json() {
        render::json(&offers);
    } else {
        render::offers(offers.as_array().map(Vec::as_slice).unwrap_or_default());
    }
    Ok(exit::OK)
}
