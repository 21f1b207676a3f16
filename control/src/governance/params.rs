//! The protocol's parameters that governance may change, each with the range a proposal must
//! stay within, and the change a proposal carries. Pure: no storage, no clock.
//!
//! Every set of parameters has a version; version 1 is the launch policy (the server's
//! settings), and each executed change makes the next. Blocks record the version they used.

use iocloud_billing::rewards::RewardParams;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The parameters in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ProtocolParams")
)]
pub struct ProtocolParams {
    /// The platform's share of what a rental pays, basis points (500 = 5 %).
    pub platform_fee_bps: i64,
    /// The GPU pool's share of each block, basis points; the CPU pool has the rest.
    pub gpu_share_bps: i64,
    /// Hours a provider has to appeal a slashing case.
    pub appeal_window_hours: i64,
    /// The idle rule: the most CPU a listed, unrented device may use, percent.
    pub idle_cpu_pct: i64,
    /// The most GPU a listed, unrented datacenter or workstation GPU may use, percent.
    pub idle_gpu_pct_high_end: i64,
    /// The same for consumer GPUs.
    pub idle_gpu_pct_consumer: i64,
}

/// A proposal's change: the parameters it sets, the others as they are when it executes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject, async_graphql::InputObject),
    graphql(name = "ParamChange", input_name = "ParamChangeInput")
)]
#[serde(deny_unknown_fields)]
pub struct ParamChange {
    pub platform_fee_bps: Option<i64>,
    pub gpu_share_bps: Option<i64>,
    pub appeal_window_hours: Option<i64>,
    pub idle_cpu_pct: Option<i64>,
    pub idle_gpu_pct_high_end: Option<i64>,
    pub idle_gpu_pct_consumer: Option<i64>,
}

/// A parameter's allowed range, as the API documents it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ParamRange {
    pub name: String,
    pub min: i64,
    pub max: i64,
}

/// Each parameter's range: wide enough to govern, narrow enough that no vote can break the
/// network (a fee that takes everything, a pool left empty, an appeal window of minutes).
pub const RANGES: [(&str, i64, i64); 6] = [
    ("platform_fee_bps", 0, 2_500),
    ("gpu_share_bps", 5_000, 9_500),
    ("appeal_window_hours", 24, 2_160),
    ("idle_cpu_pct", 5, 90),
    ("idle_gpu_pct_high_end", 1, 50),
    ("idle_gpu_pct_consumer", 1, 80),
];

impl ParamChange {
    /// The parameters it sets, by name.
    fn fields(&self) -> [(&'static str, Option<i64>); 6] {
        [
            ("platform_fee_bps", self.platform_fee_bps),
            ("gpu_share_bps", self.gpu_share_bps),
            ("appeal_window_hours", self.appeal_window_hours),
            ("idle_cpu_pct", self.idle_cpu_pct),
            ("idle_gpu_pct_high_end", self.idle_gpu_pct_high_end),
            ("idle_gpu_pct_consumer", self.idle_gpu_pct_consumer),
        ]
    }

    /// Refuses a change that sets nothing, or a value outside its range (the field names it).
    pub fn check(&self) -> Result<()> {
        let fields = self.fields();
        if fields.iter().all(|(_, v)| v.is_none()) {
            return Err(Error::validation(
                "change",
                "names at least one parameter to set",
            ));
        }
        for ((name, value), (_, min, max)) in fields.iter().zip(RANGES) {
            if let Some(v) = value
                && !(min..=max).contains(v)
            {
                return Err(Error::validation(
                    field_name(name),
                    format!("between {min} and {max}"),
                ));
            }
        }
        Ok(())
    }
}

/// The `'static` field name of a parameter, for errors.
fn field_name(name: &str) -> &'static str {
    RANGES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("change", |(n, _, _)| n)
}

impl ProtocolParams {
    /// The launch policy: the server's fee and the reward rules' defaults.
    pub fn launch(platform_fee_bps: u32, appeal_window_hours: i64) -> ProtocolParams {
        let rules = RewardParams::default();
        ProtocolParams {
            platform_fee_bps: i64::from(platform_fee_bps),
            gpu_share_bps: i64::from(rules.gpu_share_bps),
            appeal_window_hours,
            idle_cpu_pct: rules.idle_cpu_pct,
            idle_gpu_pct_high_end: rules.idle_gpu_pct_high_end,
            idle_gpu_pct_consumer: rules.idle_gpu_pct_consumer,
        }
    }

    /// These parameters with `change` applied, checked again (the change was checked when
    /// proposed; the ranges are the code's and may have moved since).
    pub fn with(&self, change: &ParamChange) -> Result<ProtocolParams> {
        change.check()?;
        Ok(ProtocolParams {
            platform_fee_bps: change.platform_fee_bps.unwrap_or(self.platform_fee_bps),
            gpu_share_bps: change.gpu_share_bps.unwrap_or(self.gpu_share_bps),
            appeal_window_hours: change
                .appeal_window_hours
                .unwrap_or(self.appeal_window_hours),
            idle_cpu_pct: change.idle_cpu_pct.unwrap_or(self.idle_cpu_pct),
            idle_gpu_pct_high_end: change
                .idle_gpu_pct_high_end
                .unwrap_or(self.idle_gpu_pct_high_end),
            idle_gpu_pct_consumer: change
                .idle_gpu_pct_consumer
                .unwrap_or(self.idle_gpu_pct_consumer),
        })
    }

    /// The reward rules of a block under these parameters (version `version`).
    pub fn reward_params(&self, version: i64) -> RewardParams {
        RewardParams {
            version,
            gpu_share_bps: self.gpu_share_bps.clamp(0, 10_000) as u32,
            idle_cpu_pct: self.idle_cpu_pct,
            idle_gpu_pct_high_end: self.idle_gpu_pct_high_end,
            idle_gpu_pct_consumer: self.idle_gpu_pct_consumer,
            ..RewardParams::default()
        }
    }

    /// The platform fee as the ledger takes it.
    pub fn fee_bps(&self) -> u32 {
        self.platform_fee_bps.clamp(0, 10_000) as u32
    }
}

/// The ranges, as the API lists them.
pub fn ranges() -> Vec<ParamRange> {
    RANGES
        .iter()
        .map(|(name, min, max)| ParamRange {
            name: name.to_string(),
            min: *min,
            max: *max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_sets_only_what_it_names_and_stays_in_range() {
        let launch = ProtocolParams::launch(500, 720);
        let change = ParamChange {
            gpu_share_bps: Some(7_000),
            ..ParamChange::default()
        };
        let next = launch.with(&change).unwrap();
        assert_eq!(next.gpu_share_bps, 7_000);
        assert_eq!(next.platform_fee_bps, 500);
        assert_eq!(next.reward_params(2).gpu_share_bps, 7_000);
        assert_eq!(next.reward_params(2).version, 2);

        let too_much = ParamChange {
            platform_fee_bps: Some(9_000),
            ..ParamChange::default()
        };
        match launch.with(&too_much) {
            Err(Error::Validation { field, .. }) => assert_eq!(field, "platform_fee_bps"),
            other => panic!("{other:?}"),
        }
        match ParamChange::default().check() {
            Err(Error::Validation { field, .. }) => assert_eq!(field, "change"),
            other => panic!("{other:?}"),
        }
    }
}
