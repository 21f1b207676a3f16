//! `iocloud quote`: where a cluster would go and what it would cost, changing nothing.

use clap::Args;
use serde_json::{Value, json};

use super::client::{Client, Conn, CtlResult, exit};
use super::render;

#[derive(Args, Debug)]
pub struct QuoteArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// A GPU model (`h100-sxm`, …).
    #[arg(long)]
    gpu_model: Option<String>,
    /// A GPU class instead of a model (`datacenter`, `workstation`, `consumer`).
    #[arg(long)]
    gpu_class: Option<String>,
    /// GPUs in all.
    #[arg(long)]
    gpus: i64,
    /// GPUs on each node.
    #[arg(long)]
    gpus_per_node: Option<i64>,
    /// Hours to price.
    #[arg(long, default_value_t = 1)]
    hours: i64,
    /// A region code; repeat for several.
    #[arg(long = "region")]
    regions: Vec<String>,
    /// USD per GPU-hour, e.g. 3.00.
    #[arg(long)]
    max_price: Option<String>,
}

pub async fn run(a: QuoteArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let mut body = json!({"gpu_count": a.gpus, "duration_hours": a.hours});
    for (k, v) in [
        ("gpu_model", a.gpu_model.map(Value::from)),
        ("gpu_class", a.gpu_class.map(Value::from)),
        ("gpus_per_node", a.gpus_per_node.map(Value::from)),
        ("max_price_per_gpu_hour", a.max_price.map(Value::from)),
        (
            "regions",
            (!a.regions.is_empty()).then(|| Value::from(a.regions.clone())),
        ),
    ] {
        if let Some(v) = v {
            body[k] = v;
        }
    }
    let q = client.post("/v1/quotes", &body).await?;
    if a.conn.json() {
        render::json(&q);
    } else {
        render::quote(&q);
    }
    Ok(exit::OK)
}
