//! The placement optimiser against an exhaustive reference on small inventories: no plan
//! breaks a constraint, and the plan for each preference reaches the reference's optimum.

use iocloud_control::placement::objective::{adjusted_price, objective};
use iocloud_control::placement::{
    Colocation, Offer, Plan, Preference, Request, place, place_by_full_scan,
};
use iocloud_control::providers::catalog::{Catalog, GpuModel, Region, rtt_ms};
use proptest::prelude::*;

fn model(id: &str, vram: i64) -> GpuModel {
    GpuModel {
        id: id.into(),
        name: id.into(),
        vram_gib: vram,
        fp16_tflops: 1.0,
        bf16_tflops: 1.0,
        class: "datacenter".into(),
        staking_multiplier: 1,
        price_floor: 0,
        price_ceiling: 100_000_000,
        max_per_node: 8,
    }
}

fn region(code: &str, lat: f64, lon: f64) -> Region {
    Region {
        code: code.into(),
        name: code.into(),
        continent: "x".into(),
        lat,
        lon,
    }
}

fn catalog() -> Catalog {
    Catalog::new(
        vec![model("big", 80), model("small", 24)],
        vec![
            region("eu-central", 50.1, 8.7),
            region("eu-west", 48.9, 2.4),
            region("us-east", 39.0, -77.5),
            region("ap-northeast", 35.7, 139.7),
        ],
    )
}

const PLACES: [(f64, f64); 3] = [(52.5, 13.4), (40.7, -74.0), (1.3, 103.8)];

fn offers() -> impl Strategy<Value = Vec<Offer>> {
    prop::collection::vec(
        (
            0..2usize,
            0..4usize,
            0..3usize,
            1..=3u32,
            1..=5i64,
            0..3usize,
            0..3usize,
        ),
        3..=7,
    )
    .prop_map(|devices| {
        let c = catalog();
        devices
            .into_iter()
            .enumerate()
            .map(|(i, (m, r, p, free, price, bw, rel))| Offer {
                device_id: format!("dev_{i}"),
                provider_id: format!("org_{p}"),
                model: c.gpu_models[m].id.clone(),
                region: c.regions[r].code.clone(),
                gpus_free: free,
                price: price * 500_000,
                bandwidth_mbps: [100, 1_000, 10_000][bw],
                reliability_bps: [5_000, 9_000, 10_000][rel],
            })
            .collect()
    })
}

fn requests() -> impl Strategy<Value = Request> {
    (
        // Most constraints are off most of the time, so that most cases have an answer.
        (
            1..=4u32,
            prop::option::of(prop::sample::select(vec![1u32, 2])),
        ),
        prop::sample::select(vec![
            vec![],
            vec![],
            vec!["big".to_string()],
            vec!["small".to_string()],
        ]),
        prop::sample::select(vec![0u32, 0, 0, 40]),
        prop::sample::select(vec![
            vec![],
            vec![],
            vec![],
            vec!["eu-central".to_string(), "eu-west".to_string()],
            vec![
                "us-east".to_string(),
                "eu-west".to_string(),
                "ap-northeast".to_string(),
            ],
        ]),
        prop::option::of((
            0..3usize,
            prop::option::of(prop::sample::select(vec![20u32, 120])),
        )),
        prop::sample::select(vec![None, None, Some(1_000_000i64), Some(2_000_000)]),
        (
            prop::sample::select(vec![0u32, 0, 0, 1_000]),
            prop::sample::select(vec![0u32, 0, 0, 9_000]),
        ),
        prop::sample::select(vec![
            Colocation::Any,
            Colocation::Any,
            Colocation::Any,
            Colocation::SameRegion,
            Colocation::MaxRttMs(20),
            Colocation::MaxRttMs(120),
        ]),
        prop::sample::select(vec![0u32, 0, 1, 2, 3]),
        prop::sample::select(Preference::ALL.to_vec()),
    )
        .prop_map(
            |(
                (units, per_node),
                models,
                vram,
                regions,
                place,
                price,
                (bw, rel),
                colocation,
                spread,
                preference,
            )| {
                let mut r = Request::new(units * per_node.unwrap_or(1));
                r.gpus_per_node = per_node;
                r.models = models;
                r.min_vram_gib = vram;
                r.regions = regions;
                if let Some((p, max_rtt)) = place {
                    r.user_location = Some(PLACES[p]);
                    r.max_rtt_ms = max_rtt;
                }
                r.max_price = price;
                r.min_bandwidth_mbps = bw;
                r.min_reliability_bps = rel;
                r.colocation = colocation;
                r.min_providers = spread;
                r.preference = preference;
                r.duration_hours = 3;
                r
            },
        )
}

fn rtt(c: &Catalog, a: &str, b: &str) -> u32 {
    let (a, b) = (c.region(a).unwrap(), c.region(b).unwrap());
    rtt_ms(a.lat, a.lon, b.lat, b.lon).ceil() as u32
}

fn user_rtt(c: &Catalog, req: &Request, code: &str) -> u32 {
    let (lat, lon) = req.user_location.unwrap();
    let r = c.region(code).unwrap();
    rtt_ms(lat, lon, r.lat, r.lon).ceil() as u32
}

/// Whether giving `gpus[i]` GPUs of `offers[i]` meets every constraint of the request.
fn feasible(c: &Catalog, req: &Request, offers: &[Offer], gpus: &[u32]) -> bool {
    let used: Vec<(&Offer, u32)> = offers
        .iter()
        .zip(gpus)
        .filter(|(_, g)| **g > 0)
        .map(|(o, g)| (o, *g))
        .collect();
    if used.iter().map(|(_, g)| g).sum::<u32>() != req.gpu_count {
        return false;
    }
    let each = used.iter().all(|(o, g)| {
        let m = c.gpu_model(&o.model).unwrap();
        *g <= o.gpus_free
            && req.gpus_per_node.is_none_or(|n| *g == n)
            && (req.models.is_empty() || req.models.contains(&o.model))
            && m.vram_gib >= i64::from(req.min_vram_gib)
            && (req.regions.is_empty() || req.regions.contains(&o.region))
            && match (req.user_location, req.max_rtt_ms) {
                (Some(_), Some(max)) => user_rtt(c, req, &o.region) <= max,
                _ => true,
            }
            && req.max_price.is_none_or(|p| o.price <= p)
            && o.bandwidth_mbps >= req.min_bandwidth_mbps
            && o.reliability_bps >= req.min_reliability_bps
    });
    let together = used.iter().all(|(a, _)| {
        used.iter().all(|(b, _)| match req.colocation {
            Colocation::Any => true,
            Colocation::SameRegion => a.region == b.region,
            Colocation::MaxRttMs(max) => {
                a.region == b.region || rtt(c, &a.region, &b.region) <= max
            }
        })
    });
    let mut providers: Vec<&str> = used.iter().map(|(o, _)| o.provider_id.as_str()).collect();
    providers.sort_unstable();
    providers.dedup();
    each && together && providers.len() as u32 >= req.min_providers
}

fn score(c: &Catalog, req: &Request, offers: &[Offer], gpus: &[u32], pref: Preference) -> i64 {
    let used = offers.iter().zip(gpus).filter(|(_, g)| **g > 0);
    let adjusted: i64 = used
        .clone()
        .map(|(o, g)| i64::from(*g) * adjusted_price(o.price, o.reliability_bps))
        .sum();
    let latency = match req.user_location {
        Some(_) => used
            .map(|(o, _)| user_rtt(c, req, &o.region))
            .max()
            .unwrap_or(0),
        None => 0,
    };
    objective(adjusted, req.gpu_count, latency, pref)
}

/// The best objective per preference over every assignment of GPUs to devices.
fn reference(c: &Catalog, req: &Request, offers: &[Offer]) -> Option<[i64; 3]> {
    let choices: Vec<Vec<u32>> = offers
        .iter()
        .map(|o| match req.gpus_per_node {
            Some(n) if o.gpus_free >= n => vec![0, n],
            Some(_) => vec![0],
            None => (0..=o.gpus_free).collect(),
        })
        .collect();
    let mut best: Option<[i64; 3]> = None;
    let mut gpus = vec![0u32; offers.len()];
    let mut index = vec![0usize; offers.len()];
    loop {
        for (i, k) in index.iter().enumerate() {
            gpus[i] = choices[i][*k];
        }
        if feasible(c, req, offers, &gpus) {
            let scores = Preference::ALL.map(|p| score(c, req, offers, &gpus, p));
            best = Some(match best {
                None => scores,
                Some(b) => [0, 1, 2].map(|i| b[i].min(scores[i])),
            });
        }
        // Next assignment, odometer-style.
        let mut i = 0;
        loop {
            if i == index.len() {
                return best;
            }
            index[i] += 1;
            if index[i] < choices[i].len() {
                break;
            }
            index[i] = 0;
            i += 1;
        }
    }
}

fn gpus_of(plan: &Plan, offers: &[Offer]) -> Vec<u32> {
    offers
        .iter()
        .map(|o| {
            plan.nodes
                .iter()
                .filter(|n| n.device_id == o.device_id)
                .map(|n| n.gpus)
                .sum()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_feasible_and_optimal(offers in offers(), req in requests()) {
        let c = catalog();
        let mut inv = c.inventory();
        for o in &offers {
            inv.upsert(o).unwrap();
        }
        let answer = place(&inv, &req);
        prop_assert_eq!(&answer, &place_by_full_scan(&inv, &req), "the index and the full scan agree");
        match (reference(&c, &req, &offers), answer) {
            (None, Err(_)) => {}
            (None, Ok(plans)) => prop_assert!(false, "placed what cannot be placed: {plans:?}"),
            (Some(best), Err(why)) => prop_assert!(false, "missed a plan ({best:?}): {why:?}"),
            (Some(best), Ok(plans)) => {
                prop_assert_eq!(plans[0].label, req.preference.label(), "the preferred plan comes first");
                for plan in &plans {
                    let gpus = gpus_of(plan, &offers);
                    prop_assert!(feasible(&c, &req, &offers, &gpus), "plan breaks a constraint: {plan:?}");
                    let pref = Preference::ALL.into_iter().find(|p| p.label() == plan.label).unwrap();
                    let i = Preference::ALL.iter().position(|p| *p == pref).unwrap();
                    prop_assert_eq!(score(&c, &req, &offers, &gpus, pref), best[i], "not optimal for {:?}", pref);
                    prop_assert_eq!(plan.objective, best[i]);
                    let price: i64 = plan.nodes.iter().map(|n| i64::from(n.gpus) * n.price_per_gpu_hour).sum();
                    prop_assert_eq!(plan.price_per_hour, price);
                    prop_assert_eq!(plan.total, price * 3);
                }
            }
        }
    }
}

fn offer(id: &str, provider: &str, model: &str, region: &str, free: u32, price: i64) -> Offer {
    Offer {
        device_id: id.into(),
        provider_id: provider.into(),
        model: model.into(),
        region: region.into(),
        gpus_free: free,
        price,
        bandwidth_mbps: 10_000,
        reliability_bps: 10_000,
    }
}

#[test]
fn the_index_follows_device_changes_without_a_rebuild() {
    let mut inv = catalog().inventory();
    inv.upsert(&offer("a", "p", "big", "eu-central", 8, 2_000_000))
        .unwrap();
    inv.upsert(&offer("b", "p", "big", "eu-central", 8, 3_000_000))
        .unwrap();
    let mut req = Request::new(8);
    req.gpus_per_node = Some(8);
    assert_eq!(place(&inv, &req).unwrap()[0].nodes[0].device_id, "a");
    // a is taken: b is next; a raises its price above b's: b first; a leaves: only b.
    inv.set_free("a", 0);
    assert_eq!(place(&inv, &req).unwrap()[0].nodes[0].device_id, "b");
    inv.set_free("a", 8);
    inv.upsert(&offer("a", "p", "big", "eu-central", 8, 4_000_000))
        .unwrap();
    assert_eq!(place(&inv, &req).unwrap()[0].nodes[0].device_id, "b");
    assert!(inv.remove("b"));
    assert_eq!(place(&inv, &req).unwrap()[0].nodes[0].device_id, "a");
    assert!(inv.remove("a"));
    assert!(place(&inv, &req).is_err());
    assert_eq!(inv.len(), 0);
    assert_eq!(
        inv.upsert(&offer("c", "p", "nope", "eu-central", 8, 1))
            .unwrap_err()
            .to_string(),
        "unknown GPU model nope"
    );
}

#[test]
fn nothing_fits_says_which_constraint_and_what_would() {
    let mut inv = catalog().inventory();
    for i in 0..8 {
        let price = if i < 3 { 2_000_000 } else { 3_000_000 };
        inv.upsert(&offer(&format!("d{i}"), "p", "big", "eu-central", 4, price))
            .unwrap();
    }
    let mut req = Request::new(32);
    req.models = vec!["big".into()];
    req.max_price = Some(2_500_000);
    let why = place(&inv, &req).unwrap_err();
    assert_eq!(why.constraint, "max_price_per_gpu_hour");
    assert_eq!(why.available_gpus, 12, "3 devices of 4 under $2.50");
    let nearest = why.nearest.unwrap();
    assert_eq!((nearest.value, nearest.available_gpus), (3_000_000, 32));

    req.max_price = None;
    req.regions = vec!["us-east".into()];
    assert_eq!(place(&inv, &req).unwrap_err().constraint, "regions");
    req.regions.clear();
    req.gpus_per_node = Some(8);
    assert_eq!(place(&inv, &req).unwrap_err().constraint, "gpus_per_node");
    req.gpus_per_node = None;
    req.min_vram_gib = 100;
    assert_eq!(place(&inv, &req).unwrap_err().constraint, "min_vram_gib");
    req.min_vram_gib = 0;
    req.min_providers = 2;
    assert_eq!(place(&inv, &req).unwrap_err().constraint, "min_providers");
}

#[test]
fn fewer_fuller_nodes_win_a_tie() {
    let mut inv = catalog().inventory();
    for i in 0..4 {
        inv.upsert(&offer(
            &format!("two{i}"),
            "p",
            "big",
            "eu-central",
            2,
            2_000_000,
        ))
        .unwrap();
    }
    inv.upsert(&offer("eight", "p", "big", "eu-west", 8, 2_000_000))
        .unwrap();
    let plans = place(&inv, &Request::new(8)).unwrap();
    assert_eq!(plans[0].nodes.len(), 1);
    assert_eq!(plans[0].nodes[0].device_id, "eight");
}
