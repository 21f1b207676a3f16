//! The objective placement minimises, in integer micro-USD per hour so that the optimiser and
//! its tests agree to the unit:
//!
//! ```text
//! J(plan) = Σ gpus_i × adjusted_price_i  +  gpu_count × λ(preference) × rtt_ms(plan)
//! adjusted_price_i = price_i + price_i × (10,000 − reliability_bps_i) / 20,000
//! ```
//!
//! * The reliability penalty costs a device half its unreliability: one up 90% of the time
//!   ranks as if 5% dearer. The request's minimum reliability is a hard limit besides.
//! * `rtt_ms(plan)` is the estimated RTT from the user's location to the farthest node when the
//!   request gives a location, and 0 otherwise (the plan's spread between its own nodes is then
//!   bounded by co-location, not priced).
//! * λ is micro-USD per GPU-hour per millisecond: `cost` 0, `balanced` 2,000 (50 ms weighs as
//!   much as $0.10 per GPU-hour), `latency` 100,000 (a millisecond outweighs any price spread
//!   the catalog allows).
//! * Ties go to fewer nodes (a cluster's nodes talk to each other; fewer, fuller nodes talk
//!   less over the network), then to the lower real price.

use serde::{Deserialize, Serialize};

/// How the request weighs price against latency.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    Cost,
    #[default]
    Balanced,
    Latency,
}

impl Preference {
    pub const ALL: [Preference; 3] = [Preference::Cost, Preference::Balanced, Preference::Latency];

    /// λ: micro-USD per GPU-hour per millisecond of RTT.
    pub fn latency_weight(self) -> i64 {
        match self {
            Preference::Cost => 0,
            Preference::Balanced => 2_000,
            Preference::Latency => 100_000,
        }
    }

    /// The label of the plan this preference picks.
    pub fn label(self) -> &'static str {
        match self {
            Preference::Cost => "cheapest",
            Preference::Balanced => "balanced",
            Preference::Latency => "lowest_latency",
        }
    }
}

/// A device's price as the objective ranks it: with the reliability penalty.
pub fn adjusted_price(price: i64, reliability_bps: u32) -> i64 {
    let unreliable = i64::from(10_000 - reliability_bps.min(10_000));
    price.saturating_add(price.saturating_mul(unreliable) / 20_000)
}

/// The objective of a plan: its adjusted price per hour plus the latency term.
pub fn objective(
    adjusted_per_hour: i64,
    gpu_count: u32,
    rtt_ms: u32,
    preference: Preference,
) -> i64 {
    adjusted_per_hour.saturating_add(
        i64::from(gpu_count)
            .saturating_mul(preference.latency_weight())
            .saturating_mul(i64::from(rtt_ms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_penalty_is_half_the_unreliability() {
        assert_eq!(adjusted_price(2_000_000, 10_000), 2_000_000);
        assert_eq!(adjusted_price(2_000_000, 9_000), 2_100_000);
        assert_eq!(adjusted_price(2_000_000, 0), 3_000_000);
    }

    #[test]
    fn latency_weighs_by_preference() {
        // 64 GPUs at 50 ms: nothing, $6.40 an hour, $320 an hour.
        assert_eq!(objective(0, 64, 50, Preference::Cost), 0);
        assert_eq!(objective(0, 64, 50, Preference::Balanced), 6_400_000);
        assert_eq!(objective(0, 64, 50, Preference::Latency), 320_000_000);
    }
}
