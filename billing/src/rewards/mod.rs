//! Hourly block rewards, the arithmetic: how a device scores, how a block's emission splits
//! between the GPU and CPU pools and among the eligible devices, and which rule a device failed
//! when it earned nothing. Pure: the control plane gathers what happened in the hour and writes
//! the block; everything here is decided from values, so it is tested without a database.

mod rules;
mod share;

pub use rules::{HeardHour, HourFacts, Ineligible, Listing, Reason, judge};
pub use share::{Share, share_pool, split_emission};

use serde::{Deserialize, Serialize};

/// Which pool a device earns from: GPU devices share one, CPU-only devices the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    Gpu,
    Cpu,
}

// GraphQL shows pools and reasons as REST writes them: `gpu`, `not_heard`.
#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(Pool, |p| p.as_str());
#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(Reason, |r| r.as_str());

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Gpu => "gpu",
            Pool::Cpu => "cpu",
        }
    }

    pub fn parse(s: &str) -> Option<Pool> {
        match s {
            "gpu" => Some(Pool::Gpu),
            "cpu" => Some(Pool::Cpu),
            _ => None,
        }
    }
}

/// The protocol's reward parameters. [`Default`] is the launch policy; governance may change
/// them, and every block records the version it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardParams {
    /// The version of the parameters in force.
    pub version: i64,
    /// The GPU pool's share of each block in basis points (8000 = 80 %); the CPU pool has the
    /// rest.
    pub gpu_share_bps: u32,
    /// A device serving a rental in the hour scores this much more, in permille (1250 = ×1.25).
    pub rented_bonus_permille: i64,
    /// Hours of unbroken heartbeats a device needs behind it before an hour counts.
    pub min_streak_hours: i64,
    /// The idle rule: the most CPU a listed, unrented device may use, percent.
    pub idle_cpu_pct: i64,
    /// The most GPU a listed, unrented datacenter or workstation GPU may use, percent.
    pub idle_gpu_pct_high_end: i64,
    /// The same for consumer GPUs, which also drive a desktop.
    pub idle_gpu_pct_consumer: i64,
}

impl Default for RewardParams {
    fn default() -> Self {
        RewardParams {
            version: 1,
            gpu_share_bps: 8_000,
            rented_bonus_permille: 1_250,
            min_streak_hours: 5,
            idle_cpu_pct: 30,
            idle_gpu_pct_high_end: 5,
            idle_gpu_pct_consumer: 20,
        }
    }
}

impl RewardParams {
    /// The GPU idle limit for a model class (`datacenter`, `workstation`, `consumer`); an
    /// unknown class gets the strict limit.
    pub fn idle_gpu_limit(&self, class: Option<&str>) -> i64 {
        match class {
            Some("consumer") => self.idle_gpu_pct_consumer,
            _ => self.idle_gpu_pct_high_end,
        }
    }
}

/// The connectivity factor in permille from a device's bandwidth (the slower direction, Mbps):
/// a node that cannot move data is worth less to a cluster, whatever its GPUs.
pub fn connectivity_permille(up_mbps: i64, down_mbps: i64) -> i64 {
    match up_mbps.min(down_mbps) {
        m if m >= 10_000 => 1_200,
        m if m >= 1_000 => 1_000,
        m if m >= 100 => 800,
        _ => 500,
    }
}

/// A device's score: its model's multiplier × its GPU count (a CPU-only device: its cores,
/// multiplier 1) × the connectivity factor, × the bonus when it served a rental in the hour.
/// In thousandths of a point, so every factor stays an integer.
pub fn score(
    params: &RewardParams,
    multiplier: i64,
    units: i64,
    connectivity_permille: i64,
    rented: bool,
) -> i64 {
    let base = multiplier.max(1) * units.max(0) * connectivity_permille.max(0);
    if rented {
        base * params.rented_bonus_permille / 1_000
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_grow_with_model_gpus_bandwidth_and_rental() {
        let p = RewardParams::default();
        let h100x8 = score(&p, 4, 8, connectivity_permille(10_000, 10_000), false);
        let h100x8_slow = score(&p, 4, 8, connectivity_permille(50, 1_000), false);
        let h100x8_rented = score(&p, 4, 8, connectivity_permille(10_000, 10_000), true);
        let rtx = score(&p, 1, 1, connectivity_permille(1_000, 1_000), false);
        assert_eq!(h100x8, 4 * 8 * 1_200);
        assert_eq!(h100x8_slow, 4 * 8 * 500);
        assert_eq!(h100x8_rented, 4 * 8 * 1_500);
        assert_eq!(rtx, 1_000);
        assert_eq!(
            score(&p, 0, 16, 800, false),
            16 * 800,
            "CPU cores count once each"
        );
        assert_eq!(p.idle_gpu_limit(Some("consumer")), 20);
        assert_eq!(p.idle_gpu_limit(Some("datacenter")), 5);
        assert_eq!(p.idle_gpu_limit(None), 5);
        for pool in [Pool::Gpu, Pool::Cpu] {
            assert_eq!(Pool::parse(pool.as_str()), Some(pool));
        }
    }
}
