//! Placement on a generated fleet of about 1.1 million GPUs: 125,000 nodes of 8 plus 60,000
//! smaller nodes of 1, 2 or 4, every catalog model, every catalog region (24), 2,000 providers.
//!
//! `cargo bench -p iocloud-control --bench placement` prints a summary first (p50/p99 latency
//! of the indexed placement and of the full-scan baseline in the same run, placements per
//! second on one core, memory of the index, index updates against a rebuild), then runs the
//! criterion groups.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use iocloud_control::placement::{
    Colocation, Inventory, Offer, Preference, Request, place, place_by_full_scan,
};
use iocloud_control::providers::catalog::Catalog;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PROVIDERS: usize = 2_000;

/// The catalog as the migrations seed it.
fn catalog() -> Catalog {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let scratch = iocloud_db::scratch::ScratchDb::sqlite().expect("scratch");
        let db = iocloud_db::Db::connect(&iocloud_db::DatabaseUrl::new(scratch.url.clone()))
            .await
            .expect("db");
        db.migrate().await.expect("migrate");
        let catalog = Catalog::load(&db).await.expect("catalog");
        db.close().await;
        catalog
    })
}

fn fleet(catalog: &Catalog, rng: &mut StdRng) -> Vec<Offer> {
    let sizes = (0..125_000)
        .map(|_| 8)
        .chain((0..60_000).map(|i| [1, 2, 4][i % 3]));
    sizes
        .enumerate()
        .map(|(i, gpus)| {
            let model = &catalog.gpu_models[rng.random_range(0..catalog.gpu_models.len())];
            let region = &catalog.regions[rng.random_range(0..catalog.regions.len())];
            // Most machines are idle, some partly taken, a few full.
            let free = match rng.random_range(0..10) {
                0 => 0,
                1 | 2 => rng.random_range(1..=gpus),
                _ => gpus,
            };
            Offer {
                device_id: format!("dev_{i:026}"),
                provider_id: format!("org_{:026}", rng.random_range(0..PROVIDERS)),
                model: model.id.clone(),
                region: region.code.clone(),
                gpus_free: free,
                price: rng.random_range(model.price_floor..=model.price_ceiling),
                bandwidth_mbps: [1_000, 10_000, 25_000, 100_000][rng.random_range(0..4)],
                reliability_bps: rng.random_range(8_000..=10_000),
            }
        })
        .collect()
}

/// A request of `gpus` GPUs from somewhere in the world: H100 SXM in nodes of 8 for the large
/// ones, any datacenter-class model in any split for 8.
fn request(catalog: &Catalog, gpus: u32, rng: &mut StdRng) -> Request {
    let mut r = Request::new(gpus);
    if gpus >= 64 {
        r.models = vec!["h100-sxm".into()];
        r.gpus_per_node = Some(8);
    } else {
        r.models = catalog
            .gpu_models
            .iter()
            .filter(|m| m.class == "datacenter")
            .map(|m| m.id.clone())
            .collect();
    }
    r.user_location = Some((
        rng.random_range(-40.0..60.0),
        rng.random_range(-120.0..140.0),
    ));
    r.max_price = Some(6_000_000);
    r.min_bandwidth_mbps = 10_000;
    r.min_reliability_bps = 8_500;
    r.preference = Preference::Balanced;
    r.duration_hours = 24;
    r
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// p50 and p99 in µs, and placements per second, over `n` requests.
fn measure(
    inv: &Inventory,
    reqs: &[Request],
    f: fn(&Inventory, &Request) -> bool,
) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(reqs.len());
    let start = Instant::now();
    for r in reqs {
        let t = Instant::now();
        std::hint::black_box(f(inv, r));
        times.push(t.elapsed());
    }
    let rate = reqs.len() as f64 / start.elapsed().as_secs_f64();
    times.sort_unstable();
    (percentile(&times, 0.5), percentile(&times, 0.99), rate)
}

fn summary(catalog: &Catalog, offers: &[Offer], inv: &mut Inventory, rng: &mut StdRng) {
    println!(
        "| request | placement p50 µs | p99 µs | per second | full scan p50 µs | p99 µs | per second | speed-up (p50) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for gpus in [8, 64, 512] {
        let reqs: Vec<Request> = (0..2_000).map(|_| request(catalog, gpus, rng)).collect();
        let fast = measure(inv, &reqs, |i, r| place(i, r).is_ok());
        let slow = measure(inv, &reqs[..50], |i, r| place_by_full_scan(i, r).is_ok());
        println!(
            "| {gpus} GPUs | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0}× |",
            fast.0,
            fast.1,
            fast.2,
            slow.0,
            slow.1,
            slow.2,
            slow.0 / fast.0
        );
    }
    // Index updates: a node placed (free GPUs change) and a price change, against a rebuild.
    let n = 100_000;
    let t = Instant::now();
    for k in 0..n {
        let o = &offers[rng.random_range(0..offers.len())];
        if k % 2 == 0 {
            inv.set_free(&o.device_id, rng.random_range(0..=o.gpus_free));
        } else {
            let mut changed = o.clone();
            changed.price += 1;
            inv.upsert(&changed).expect("known device");
        }
    }
    let update = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let mut rebuilt = catalog.inventory();
    for o in offers {
        rebuilt.upsert(o).expect("catalog ids");
    }
    let rebuild = t.elapsed().as_secs_f64() * 1e6;
    println!(
        "index update: {update:.2} µs per device change; a full rebuild {:.0} ms ({:.0}× one update)",
        rebuild / 1e3,
        rebuild / update
    );
    // Re-applying the original offers puts the fleet back as the criterion groups expect.
    for o in offers {
        inv.upsert(o).expect("catalog ids");
    }
}

fn main() {
    let catalog = catalog();
    let mut rng = StdRng::seed_from_u64(7);
    let offers = fleet(&catalog, &mut rng);
    let gpus: u64 = offers.iter().map(|o| u64::from(o.gpus_free)).sum();
    let before = rss_kib();
    let t = Instant::now();
    let mut inv = catalog.inventory();
    for o in &offers {
        inv.upsert(o).expect("catalog ids");
    }
    let built = t.elapsed();
    let after = rss_kib();
    println!(
        "fleet: {} devices, {} GPUs free of {}, {} models, {} regions; index built in {} ms, \
         resident memory +{} MiB (index's own estimate {} MiB)",
        inv.len(),
        gpus,
        125_000 * 8 + 20_000 * 7,
        catalog.gpu_models.len(),
        catalog.regions.len(),
        built.as_millis(),
        after.saturating_sub(before) / 1024,
        inv.approx_bytes() / (1024 * 1024)
    );
    summary(&catalog, &offers, &mut inv, &mut rng);

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let mut group = c.benchmark_group("placement");
    for gpus in [8u32, 64, 512] {
        let reqs: Vec<Request> = (0..256)
            .map(|_| request(&catalog, gpus, &mut rng))
            .collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("index", gpus), &gpus, |b, _| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                place(&inv, &reqs[i]).is_ok()
            })
        });
    }
    let reqs: Vec<Request> = (0..16).map(|_| request(&catalog, 64, &mut rng)).collect();
    let mut i = 0;
    group.sample_size(10);
    group.bench_with_input(BenchmarkId::new("full_scan", 64), &64, |b, _| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            place_by_full_scan(&inv, &reqs[i]).is_ok()
        })
    });
    // Co-location and spread: the optimiser's slower paths.
    let mut hard = request(&catalog, 64, &mut rng);
    hard.colocation = Colocation::MaxRttMs(30);
    hard.min_providers = 4;
    group.sample_size(50);
    group.bench_function("index/64_colocated_spread", |b| {
        b.iter(|| place(&inv, &hard).is_ok())
    });
    group.finish();
    c.final_summary();
}
