//! Finding the plans.
//!
//! For a fixed set of allowed regions, the cheapest selection is greedy: walk the devices of
//! those regions in adjusted-price order (a k-way merge of the sorted buckets) and take what
//! fits. With a spread constraint (at least k providers), the sets of `units` nodes (or GPUs)
//! with at least k providers are the bases of a matroid (the union of "one per provider, k at
//! most" and "any `units − k`"), so the greedy stays exact when it takes a unit from a provider
//! it already has only while fewer than `units − k` such repeats were taken.
//!
//! Latency and co-location depend on which regions a plan uses, so the greedy runs once per
//! region set that could hold the best plan: each co-location group (all allowed regions; each
//! region alone; or each maximal set of regions within the RTT bound of each other), cut at
//! each distinct RTT from the user. The best plan over those sets is the optimum: whatever
//! regions the optimum uses lie in one of them, and the greedy there costs no more.
//!
//! Those runs share their work. In a matroid, an element the greedy rejects on a subset it
//! rejects on every superset (cheaper elements already span it), and once a selection is
//! full every later element is rejected too. So what the greedy takes in a region alone (its
//! "basis", with the GPUs of each device it took) is all any set of regions can take from that
//! region: each region is walked once per request, and each region set is solved over the
//! union of its regions' bases, a few dozen entries. The full-scan variant solves every set
//! from the whole fleet; the tests check that both answer the same.
//!
//! One file: the greedy walk, the spread search and the ranking of plans are one algorithm over
//! the same buckets, and read best together.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::inventory::{Entry, Inventory, MAX_REGIONS, Slot};
use super::objective::{Preference, objective};
use super::request::{Colocation, Request};

/// One node of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanNode {
    pub device_id: String,
    pub provider_id: String,
    pub model: String,
    pub region: String,
    pub gpus: u32,
    /// Micro-USD per GPU-hour.
    pub price_per_gpu_hour: i64,
}

/// A ranked answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `cheapest`, `balanced` or `lowest_latency`: the preference this plan is best for.
    pub label: &'static str,
    pub nodes: Vec<PlanNode>,
    /// Micro-USD per hour for the whole cluster.
    pub price_per_hour: i64,
    /// Micro-USD for the requested duration.
    pub total: i64,
    /// From the user's location to the farthest node when a location was given, otherwise
    /// between the plan's two farthest nodes (within a region: the 2 ms floor of the model).
    pub estimated_rtt_ms: u32,
    /// The objective for the plan's own preference (lower is better).
    pub objective: i64,
}

/// Why nothing fits, and what would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Infeasible {
    /// The request field whose constraint emptied the candidates (the first, in the order
    /// model, VRAM, GPU count, regions, RTT, price, bandwidth, reliability, GPUs per node,
    /// spread, co-location).
    pub constraint: &'static str,
    pub requested_gpus: u32,
    /// GPUs that fit every constraint up to and including that one.
    pub available_gpus: u64,
    /// The nearest request that fits, when relaxing that one constraint is enough.
    pub nearest: Option<Relaxation>,
}

/// The same request with one constraint eased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relaxation {
    pub field: &'static str,
    /// The eased value, as the API writes it (a price is micro-USD per GPU-hour here).
    pub value: i64,
    /// GPUs free with it.
    pub available_gpus: u64,
}

/// The candidate filter every device must pass; `Stage` lists them in the order reported.
struct Filter<'a> {
    req: &'a Request,
    models: Vec<u16>,
    /// Free GPUs a device needs: the node size, or 1.
    need_free: u32,
    allowed: u64,
    user_rtt: [u32; MAX_REGIONS],
}

/// What a greedy run picked in one set of regions.
#[derive(Clone, Debug)]
struct Selection {
    /// (slot, GPUs)
    picks: Vec<(u32, u32)>,
    adjusted: i64,
    price: i64,
    mask: u64,
    user_rtt: u32,
}

/// Places `req` on `inv`: the plans, best for the request's preference first, then those best
/// for the other preferences when they differ.
pub fn place(inv: &Inventory, req: &Request) -> Result<Vec<Plan>, Infeasible> {
    place_with(inv, req, Scan::Index)
}

/// The same placement through a full scan of the fleet per region set instead of the index:
/// the benchmark's baseline, and a cross-check in tests.
pub fn place_by_full_scan(inv: &Inventory, req: &Request) -> Result<Vec<Plan>, Infeasible> {
    place_with(inv, req, Scan::Full)
}

#[derive(Clone, Copy)]
enum Scan {
    Index,
    Full,
}

fn place_with(inv: &Inventory, req: &Request, scan: Scan) -> Result<Vec<Plan>, Infeasible> {
    let filter = Filter::new(inv, req);
    let mut selections: HashMap<u64, Option<Selection>> = HashMap::new();
    match scan {
        Scan::Index => {
            // What each region would give on its own bounds what any set of regions takes
            // from it (module comment), so the sets are solved from those few entries, the
            // nested RTT cuts of a group adding regions to one sorted pool.
            let bases = region_bases(inv, &filter);
            for group in groups(inv, &filter) {
                let (mut pool, mut added) = (Vec::new(), 0u64);
                for mask in cuts(&filter, group) {
                    for r in bits(mask & !added) {
                        pool.extend_from_slice(&bases[r]);
                    }
                    added |= mask;
                    pool.sort();
                    selections
                        .entry(mask)
                        .or_insert_with(|| take(inv, &filter, pool.iter().copied()));
                }
            }
        }
        Scan::Full => {
            for group in groups(inv, &filter) {
                for mask in cuts(&filter, group) {
                    selections.entry(mask).or_insert_with(|| {
                        take(inv, &filter, full_scan(inv, &filter, mask).into_iter())
                    });
                }
            }
        }
    }
    let mut best: [Option<(Key, &Selection)>; 3] = [None, None, None];
    for selection in selections.values().flatten() {
        for (i, pref) in Preference::ALL.iter().enumerate() {
            let key = key_of(selection, req, *pref);
            if best[i].as_ref().is_none_or(|(k, _)| key < *k) {
                best[i] = Some((key, selection));
            }
        }
    }
    let order = std::iter::once(req.preference)
        .chain(Preference::ALL.into_iter().filter(|p| *p != req.preference));
    let mut plans: Vec<Plan> = Vec::new();
    let mut shown: Vec<&Selection> = Vec::new();
    for pref in order {
        let i = Preference::ALL.iter().position(|p| *p == pref).unwrap_or(0);
        let Some((key, selection)) = &best[i] else {
            continue;
        };
        if shown.iter().any(|s| same_picks(s, selection)) {
            continue;
        }
        shown.push(selection);
        plans.push(plan_of(inv, &filter, selection, pref, key.objective));
    }
    if plans.is_empty() {
        return Err(diagnose(inv, &filter));
    }
    Ok(plans)
}

/// Ordering of selections for one preference: objective, then fewer nodes, then lower price,
/// then the region set (for a deterministic answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    objective: i64,
    nodes: usize,
    price: i64,
    mask: u64,
}

fn key_of(s: &Selection, req: &Request, pref: Preference) -> Key {
    Key {
        objective: objective(s.adjusted, req.gpu_count, latency_of(s, req), pref),
        nodes: s.picks.len(),
        price: s.price,
        mask: s.mask,
    }
}

/// The RTT the objective counts: from the user, when the request says where they are.
fn latency_of(s: &Selection, req: &Request) -> u32 {
    if req.user_location.is_some() {
        s.user_rtt
    } else {
        0
    }
}

fn same_picks(a: &Selection, b: &Selection) -> bool {
    let mut x = a.picks.clone();
    let mut y = b.picks.clone();
    x.sort_unstable();
    y.sort_unstable();
    x == y
}

impl<'a> Filter<'a> {
    fn new(inv: &Inventory, req: &'a Request) -> Filter<'a> {
        let models: Vec<u16> = if req.models.is_empty() {
            (0..inv.models.len() as u16).collect()
        } else {
            req.models
                .iter()
                .filter_map(|m| inv.model_index(m))
                .collect()
        };
        let models: Vec<u16> = models
            .into_iter()
            .filter(|m| inv.models[*m as usize].vram_gib >= req.min_vram_gib)
            .collect();
        let mut user_rtt = [0u32; MAX_REGIONS];
        if let Some((lat, lon)) = req.user_location {
            for (i, r) in inv.regions.iter().enumerate() {
                user_rtt[i] = super::latency::rtt_ms(lat, lon, r.lat, r.lon).ceil() as u32;
            }
        }
        let mut allowed = 0u64;
        for (i, region) in inv.regions.iter().enumerate() {
            let listed = req.regions.is_empty() || req.regions.contains(&region.code);
            let near = match (req.user_location, req.max_rtt_ms) {
                (Some(_), Some(max)) => user_rtt[i] <= max,
                _ => true,
            };
            if listed && near {
                allowed |= 1 << i;
            }
        }
        Filter {
            req,
            models,
            need_free: req.gpus_per_node.unwrap_or(1).max(1),
            allowed,
            user_rtt,
        }
    }

    /// Whether a device passes the per-device constraints (not region, model or size).
    fn device_ok(&self, s: &Slot) -> bool {
        self.req.max_price.is_none_or(|max| s.price <= max)
            && s.bandwidth >= self.req.min_bandwidth_mbps
            && s.reliability >= self.req.min_reliability_bps
    }
}

/// Regions with something free for the request's models, among the allowed.
fn stocked(inv: &Inventory, f: &Filter) -> u64 {
    (0..inv.regions.len() as u16)
        .filter(|r| {
            f.allowed & (1 << r) != 0 && f.models.iter().any(|m| !inv.bucket(*m, *r).is_empty())
        })
        .fold(0, |m, r| m | 1 << r)
}

/// The co-location groups: sets of regions a plan may spread over.
fn groups(inv: &Inventory, f: &Filter) -> Vec<u64> {
    let stocked = stocked(inv, f);
    let groups = match f.req.colocation {
        Colocation::Any => vec![stocked],
        Colocation::SameRegion => bits(stocked).map(|r| 1 << r).collect(),
        Colocation::MaxRttMs(max) => maximal_cliques(inv, stocked, max),
    };
    groups.into_iter().filter(|g| *g != 0).collect()
}

/// A group cut at each distinct RTT from the user, nearest first (each set holds the one
/// before); the whole group when the request gives no location.
fn cuts(f: &Filter, group: u64) -> Vec<u64> {
    if f.req.user_location.is_none() {
        return vec![group];
    }
    let mut rtts: Vec<u32> = bits(group).map(|r| f.user_rtt[r]).collect();
    rtts.sort_unstable();
    rtts.dedup();
    rtts.into_iter()
        .map(|cut| {
            bits(group)
                .filter(|r| f.user_rtt[*r] <= cut)
                .fold(0, |m, r| m | 1 << r)
        })
        .collect()
}

/// Every region set where the best plan might lie.
fn candidate_sets(inv: &Inventory, f: &Filter) -> Vec<u64> {
    groups(inv, f)
        .into_iter()
        .flat_map(|g| cuts(f, g))
        .collect()
}

/// Per region, what the greedy takes there alone: entries with the GPUs each may give.
fn region_bases(inv: &Inventory, f: &Filter) -> Vec<Vec<(Entry, u32)>> {
    let stocked = stocked(inv, f);
    (0..inv.regions.len())
        .map(|r| {
            if stocked & (1 << r) == 0 {
                return Vec::new();
            }
            walk(
                inv,
                f,
                Merge::new(inv, f, 1 << r).map(|e| with_free(inv, e)),
            )
            .0
            .into_iter()
            .map(|(slot, gpus)| (entry_of(inv, slot), gpus))
            .collect()
        })
        .collect()
}

fn entry_of(inv: &Inventory, slot: u32) -> Entry {
    let s = &inv.slots[slot as usize];
    Entry {
        adjusted: s.adjusted,
        fewer_free: Reverse(s.free),
        slot,
    }
}

/// A candidate with all its free GPUs on offer.
fn with_free(inv: &Inventory, e: Entry) -> (Entry, u32) {
    (e, inv.slots[e.slot as usize].free)
}

fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..MAX_REGIONS).filter(move |i| mask & (1 << i) != 0)
}

/// Maximal sets of regions in `within` whose every two regions are at most `max` ms apart
/// (Bron–Kerbosch with a pivot, on bit sets).
fn maximal_cliques(inv: &Inventory, within: u64, max: u32) -> Vec<u64> {
    let near: Vec<u64> = (0..inv.regions.len())
        .map(|a| {
            bits(within)
                .filter(|b| *b != a && inv.rtt(a as u16, *b as u16) <= max)
                .fold(0, |m, b| m | 1 << b)
        })
        .collect();
    let mut out = Vec::new();
    bron_kerbosch(&near, 0, within, 0, &mut out);
    out
}

fn bron_kerbosch(near: &[u64], r: u64, mut p: u64, mut x: u64, out: &mut Vec<u64>) {
    if p == 0 {
        if x == 0 {
            out.push(r);
        }
        return;
    }
    let pivot = (p | x).trailing_zeros() as usize;
    for v in bits(p & !near[pivot]) {
        bron_kerbosch(near, r | 1 << v, p & near[v], x & near[v], out);
        p &= !(1 << v);
        x |= 1 << v;
    }
}

/// The devices of the request's models in the regions of `mask`, cheapest first: a k-way
/// merge of their sorted buckets through a heap.
struct Merge<'a> {
    cursors: Vec<(&'a [Entry], usize)>,
    heap: BinaryHeap<Reverse<(Entry, usize)>>,
}

impl<'a> Merge<'a> {
    fn new(inv: &'a Inventory, f: &Filter, mask: u64) -> Merge<'a> {
        let mut merge = Merge {
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
        };
        for m in &f.models {
            for r in bits(mask) {
                let bucket = inv.bucket(*m, r as u16);
                if let Some(first) = bucket.first() {
                    merge.heap.push(Reverse((*first, merge.cursors.len())));
                    merge.cursors.push((bucket, 0));
                }
            }
        }
        merge
    }
}

impl Iterator for Merge<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let Reverse((entry, c)) = self.heap.pop()?;
        let (bucket, at) = &mut self.cursors[c];
        *at += 1;
        if let Some(next) = bucket.get(*at) {
            self.heap.push(Reverse((*next, c)));
        }
        Some(entry)
    }
}

/// The baseline's candidates: every device of the fleet looked at, the matching ones sorted.
fn full_scan(inv: &Inventory, f: &Filter, mask: u64) -> Vec<(Entry, u32)> {
    let mut found: Vec<(Entry, u32)> = inv
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.live && s.free > 0 && mask & (1 << s.region) != 0 && f.models.contains(&s.model)
        })
        .map(|(i, _)| with_free(inv, entry_of(inv, i as u32)))
        .collect();
    found.sort_unstable();
    found
}

/// The cheapest selection from `candidates` (cheapest first, each with the most GPUs it may
/// give), or `None` when they cannot hold the request.
fn take(
    inv: &Inventory,
    f: &Filter,
    candidates: impl Iterator<Item = (Entry, u32)>,
) -> Option<Selection> {
    let (picks, full) = walk(inv, f, candidates);
    if !full {
        return None;
    }
    let mut s = Selection {
        picks,
        adjusted: 0,
        price: 0,
        mask: 0,
        user_rtt: 0,
    };
    for (slot, gpus) in &s.picks {
        let d = &inv.slots[*slot as usize];
        s.adjusted = s
            .adjusted
            .saturating_add(i64::from(*gpus).saturating_mul(d.adjusted));
        s.price = s
            .price
            .saturating_add(i64::from(*gpus).saturating_mul(d.price));
        s.mask |= 1 << d.region;
        s.user_rtt = s.user_rtt.max(f.user_rtt[d.region as usize]);
    }
    Some(s)
}

/// The greedy walk: the (slot, GPUs) it takes from `candidates` until the request is full,
/// and whether it got there.
fn walk(
    inv: &Inventory,
    f: &Filter,
    candidates: impl Iterator<Item = (Entry, u32)>,
) -> (Vec<(u32, u32)>, bool) {
    let req = f.req;
    let units = req.units();
    let spread = req.min_providers.max(1);
    let mut picks = Vec::new();
    if units == 0 || spread > units {
        return (picks, false);
    }
    let repeats_allowed = units - spread;
    // Without a spread constraint no repeat is ever refused: no need to know the providers.
    let mut providers: Option<HashSet<u32>> = (spread > 1).then(HashSet::new);
    let (mut taken, mut repeats) = (0u32, 0u32);
    for (entry, cap) in candidates {
        if taken == units {
            break;
        }
        let s = &inv.slots[entry.slot as usize];
        if cap < f.need_free || !f.device_ok(s) {
            continue;
        }
        let fresh = providers.as_ref().is_none_or(|p| !p.contains(&s.provider));
        // Units this device adds, and how many of them repeat a provider already in the plan.
        let (add, gpus) = match req.gpus_per_node {
            Some(n) => {
                if !fresh && repeats >= repeats_allowed {
                    continue;
                }
                (1, n)
            }
            None => {
                let room = repeats_allowed - repeats + u32::from(fresh);
                let g = cap.min(units - taken).min(room);
                if g == 0 {
                    continue;
                }
                (g, g)
            }
        };
        repeats += add - u32::from(fresh);
        if let Some(p) = providers.as_mut() {
            p.insert(s.provider);
        }
        taken += add;
        picks.push((entry.slot, gpus));
    }
    (picks, taken == units)
}

fn plan_of(inv: &Inventory, f: &Filter, s: &Selection, pref: Preference, objective: i64) -> Plan {
    let mut nodes: Vec<PlanNode> = s
        .picks
        .iter()
        .map(|(slot, gpus)| {
            let d = &inv.slots[*slot as usize];
            PlanNode {
                device_id: inv.device_ids[*slot as usize].clone(),
                provider_id: inv.providers[d.provider as usize].clone(),
                model: inv.models[d.model as usize].id.clone(),
                region: inv.regions[d.region as usize].code.clone(),
                gpus: *gpus,
                price_per_gpu_hour: d.price,
            }
        })
        .collect();
    nodes.sort_by(|a, b| {
        b.gpus
            .cmp(&a.gpus)
            .then(a.price_per_gpu_hour.cmp(&b.price_per_gpu_hour))
    });
    let estimated_rtt_ms = if f.req.user_location.is_some() {
        s.user_rtt
    } else {
        let regions: Vec<usize> = bits(s.mask).collect();
        regions
            .iter()
            .flat_map(|a| regions.iter().map(move |b| (*a, *b)))
            .map(|(a, b)| inv.rtt(a as u16, b as u16))
            .max()
            .unwrap_or(0)
    };
    Plan {
        label: pref.label(),
        nodes,
        price_per_hour: s.price,
        total: s.price.saturating_mul(i64::from(f.req.duration_hours)),
        estimated_rtt_ms,
        objective,
    }
}

type Check<'a> = &'a dyn Fn(&Slot) -> bool;

/// Which constraint emptied the candidates: each stage's GPUs, counted over the devices that
/// pass it and every stage before it. Only on the failure path, so it reads every bucket of
/// the request's models.
fn diagnose(inv: &Inventory, f: &Filter) -> Infeasible {
    let req = f.req;
    let need = u64::from(req.gpu_count);
    let fail = |constraint, available_gpus, nearest| Infeasible {
        constraint,
        requested_gpus: req.gpu_count,
        available_gpus,
        nearest,
    };
    if f.models.is_empty() {
        let field = if req.models.iter().all(|m| inv.model_index(m).is_some()) {
            "min_vram_gib"
        } else {
            "gpu_model"
        };
        return fail(field, 0, None);
    }
    let devices: Vec<&Slot> = f
        .models
        .iter()
        .flat_map(|m| (0..inv.regions.len() as u16).flat_map(move |r| inv.bucket(*m, r)))
        .map(|e| &inv.slots[e.slot as usize])
        .collect();
    let free = |pass: &dyn Fn(&Slot) -> bool| -> u64 {
        devices
            .iter()
            .filter(|s| pass(s))
            .map(|s| u64::from(s.free))
            .sum()
    };
    let listed = |s: &Slot| {
        req.regions.is_empty()
            || req
                .regions
                .iter()
                .any(|c| *c == inv.regions[s.region as usize].code)
    };
    let near = |s: &Slot| f.allowed & (1 << s.region) != 0;
    let cheap = |s: &Slot| req.max_price.is_none_or(|m| s.price <= m);
    let fast = |s: &Slot| s.bandwidth >= req.min_bandwidth_mbps;
    let reliable = |s: &Slot| s.reliability >= req.min_reliability_bps;

    let total = free(&|_| true);
    if total < need {
        return fail(
            if req.models.is_empty() {
                "gpu_count"
            } else {
                "gpu_model"
            },
            total,
            None,
        );
    }
    let in_regions = free(&|s| listed(s));
    if in_regions < need {
        return fail("regions", in_regions, None);
    }
    // A numeric limit: how far it must move for enough GPUs, all else kept.
    let ease = |field: &'static str,
                others: &dyn Fn(&Slot) -> bool,
                value: &dyn Fn(&Slot) -> i64,
                ascending: bool| {
        let mut found: Vec<(i64, u64)> = devices
            .iter()
            .filter(|s| others(s))
            .map(|s| (value(s), u64::from(s.free)))
            .collect();
        found.sort_unstable_by_key(|(v, _)| if ascending { *v } else { -*v });
        let mut sum = 0;
        for (v, g) in found {
            sum += g;
            if sum >= need {
                return Some(Relaxation {
                    field,
                    value: v,
                    available_gpus: sum,
                });
            }
        }
        None
    };
    let stages: [(&'static str, Check); 4] = [
        ("max_rtt_ms", &near),
        ("max_price_per_gpu_hour", &cheap),
        ("min_bandwidth_mbps", &fast),
        ("min_reliability", &reliable),
    ];
    for (i, (field, _)) in stages.iter().enumerate() {
        let upto = free(&|s| listed(s) && stages[..=i].iter().all(|(_, p)| p(s)));
        if upto >= need {
            continue;
        }
        let others =
            |s: &Slot| listed(s) && stages.iter().enumerate().all(|(j, (_, p))| j == i || p(s));
        let nearest = match *field {
            "max_rtt_ms" => ease(
                field,
                &others,
                &|s| i64::from(f.user_rtt[s.region as usize]),
                true,
            ),
            "max_price_per_gpu_hour" => ease(field, &others, &|s| s.price, true),
            "min_bandwidth_mbps" => ease(field, &others, &|s| i64::from(s.bandwidth), false),
            _ => ease(field, &others, &|s| i64::from(s.reliability), false),
        };
        return fail(field, upto, nearest);
    }
    let eligible = |s: &Slot| near(s) && f.device_ok(s);
    let sized: u64 = devices
        .iter()
        .filter(|s| eligible(s) && s.free >= f.need_free)
        .map(|s| u64::from(req.gpus_per_node.unwrap_or(s.free)))
        .sum();
    if sized < need {
        return fail("gpus_per_node", sized, None);
    }
    let providers: HashSet<u32> = devices
        .iter()
        .filter(|s| eligible(s) && s.free >= f.need_free)
        .map(|s| s.provider)
        .collect();
    if (providers.len() as u64) < u64::from(req.min_providers) || req.min_providers > req.units() {
        return fail("min_providers", sized, None);
    }
    // Enough everywhere, but not within any one co-location group.
    let best_group = candidate_sets(inv, f)
        .into_iter()
        .map(|mask| {
            devices
                .iter()
                .filter(|s| mask & (1 << s.region) != 0 && eligible(s) && s.free >= f.need_free)
                .map(|s| u64::from(req.gpus_per_node.unwrap_or(s.free)))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    if best_group < need {
        return fail("colocation", best_group, None);
    }
    fail("min_providers", best_group, None)
}
