//! What a placement is asked: resolved ids and plain numbers, checked by the service that
//! builds it from the API's request.

use super::objective::Preference;

/// How close a cluster's nodes must be to each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colocation {
    #[default]
    Any,
    /// Every node in one region.
    SameRegion,
    /// Every two nodes within this estimated RTT of each other, ms.
    MaxRttMs(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// GPU model ids that will do (a model, or every model of a class); empty: any model.
    pub models: Vec<String>,
    pub gpu_count: u32,
    /// GPUs on every node; `None`: any split, each node taking what its device has free.
    pub gpus_per_node: Option<u32>,
    pub min_vram_gib: u32,
    /// Region codes allowed; empty: all.
    pub regions: Vec<String>,
    /// The user's location (latitude, longitude), for latency.
    pub user_location: Option<(f64, f64)>,
    /// Most estimated RTT from the user's location to any node, ms (needs a location).
    pub max_rtt_ms: Option<u32>,
    /// Most micro-USD per GPU-hour for any node.
    pub max_price: Option<i64>,
    pub min_bandwidth_mbps: u32,
    /// 0 to 10,000.
    pub min_reliability_bps: u32,
    pub colocation: Colocation,
    /// At least this many distinct providers (spread); 0 or 1: no constraint.
    pub min_providers: u32,
    pub preference: Preference,
    pub duration_hours: u32,
}

impl Request {
    /// A request for `gpu_count` GPUs of any model, anywhere, for an hour.
    pub fn new(gpu_count: u32) -> Request {
        Request {
            models: Vec::new(),
            gpu_count,
            gpus_per_node: None,
            min_vram_gib: 0,
            regions: Vec::new(),
            user_location: None,
            max_rtt_ms: None,
            max_price: None,
            min_bandwidth_mbps: 0,
            min_reliability_bps: 0,
            colocation: Colocation::Any,
            min_providers: 0,
            preference: Preference::Balanced,
            duration_hours: 1,
        }
    }

    /// Units the spread constraint counts: nodes when their size is fixed, GPUs otherwise.
    pub(crate) fn units(&self) -> u32 {
        match self.gpus_per_node {
            Some(n) if n > 0 => self.gpu_count / n,
            _ => self.gpu_count,
        }
    }
}
