//! The simulated fleet's machines: a mix across the catalog and the regions, and their
//! registration through the REST API, which hands each its agent's token.

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::SimDevice;

/// A mix of machines across the catalog and the regions, for demos and load.
pub fn sample_specs(n: usize, seed: u64, name_prefix: &str) -> Vec<Value> {
    // (model, GPUs per machine, price per GPU-hour)
    const MIX: &[(&str, i64, &str)] = &[
        ("h100-sxm", 8, "2.20"),
        ("h100-pcie", 4, "1.90"),
        ("h200", 8, "3.10"),
        ("a100-80gb", 8, "1.30"),
        ("a100-40gb", 4, "0.95"),
        ("l40s", 4, "0.85"),
        ("rtx-6000-ada", 4, "0.75"),
        ("rtx-a6000", 2, "0.55"),
        ("rtx-4090", 2, "0.35"),
        ("rtx-4090", 1, "0.32"),
        ("rtx-3090", 2, "0.22"),
        ("a10", 1, "0.40"),
        ("t4", 1, "0.15"),
    ];
    const PLACES: &[(&str, &str, f64, f64)] = &[
        ("us-east", "US", 39.04, -77.49),
        ("us-central", "US", 41.26, -95.86),
        ("us-south", "US", 32.78, -96.80),
        ("us-west", "US", 37.34, -121.89),
        ("ca-central", "CA", 45.50, -73.57),
        ("sa-east", "BR", -23.55, -46.63),
        ("eu-west", "IE", 53.35, -6.26),
        ("uk-south", "GB", 51.51, -0.13),
        ("eu-central", "DE", 50.11, 8.68),
        ("eu-north", "SE", 59.33, 18.07),
        ("eu-east", "PL", 52.23, 21.01),
        ("me-central", "AE", 25.20, 55.27),
        ("ap-south", "IN", 19.08, 72.88),
        ("ap-southeast", "SG", 1.35, 103.82),
        ("ap-northeast", "JP", 35.68, 139.69),
        ("ap-northeast-2", "KR", 37.57, 126.98),
        ("au-east", "AU", -33.87, 151.21),
        ("af-south", "ZA", -26.20, 28.05),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (model, gpus, price) = MIX[rng.random_range(0..MIX.len())];
            let (region, country, lat, lon) = PLACES[rng.random_range(0..PLACES.len())];
            let up = [500, 1000, 10000][rng.random_range(0..3)];
            let down = [1000, 10000][rng.random_range(0..2)];
            json!({
                "name": format!("{name_prefix}-{i:05}"),
                "gpu_model": model,
                "gpu_count": gpus,
                "cpu_cores": 8 * gpus.max(2),
                "ram_gib": 64 * gpus.max(1),
                "disk_gib": 500 * gpus.max(1),
                "region": region,
                "country": country,
                "location": {"lat": lat + rng.random_range(-0.5..0.5), "lon": lon + rng.random_range(-0.5..0.5)},
                "bandwidth_mbps": {"up": up, "down": down},
                "price_per_gpu_hour": price,
            })
        })
        .collect()
}

/// Registers `n` sample machines through the REST API with an API key; answers them with
/// their tokens.
pub async fn register(
    base: &str,
    api_key: &str,
    n: usize,
    seed: u64,
) -> anyhow::Result<Vec<SimDevice>> {
    register_specs(base, api_key, sample_specs(n, seed, &format!("sim{seed}"))).await
}

/// Registers machines of the given specs (the body of `POST /v1/devices`).
pub async fn register_specs(
    base: &str,
    api_key: &str,
    specs: Vec<Value>,
) -> anyhow::Result<Vec<SimDevice>> {
    let http = reqwest::Client::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let res = http
            .post(format!("{}/v1/devices", base.trim_end_matches('/')))
            .bearer_auth(api_key)
            .json(&spec)
            .send()
            .await
            .context("registering a simulated device")?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "registering {}: {status} {body}",
            spec["name"]
        );
        out.push(SimDevice {
            id: body["id"].as_str().unwrap_or_default().to_string(),
            token: body["token"].as_str().unwrap_or_default().to_string(),
            gpus: body["gpu_count"].as_i64().unwrap_or(0),
        });
    }
    Ok(out)
}
