//! The protocol's parameters that governance may change, each with the range a proposal must
//! stay within, and the change a proposal carries. Pure: no storage, no clock.
//!
//! Every set of parameters has a version; version 1 is the launch policy (the server's
//! settings), and each executed change makes the next. Blocks record the version they used.

use iocloud_billing::rewards::RewardParams;
use serde::{Deserialize, Serialize};

use crate::providers::Catalog;
use crate::providers::devices::STAKE_PER_GPU_IO;
use crate::{Error, Result};

/// $IO micro-units per $IO.
const MICROS: i64 = 1_000_000;

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
    /// $IO a device needs staked per GPU (one GPU's worth for a CPU-only device), before its
    /// model's multiplier. Versions older than this parameter had the launch amount.
    #[serde(default = "launch_stake_per_gpu")]
    pub stake_per_gpu_io: i64,
    /// Models whose multiplier (of the stake they need and of their block score) differs from
    /// the catalog's, by model id; every other model has the catalog's.
    #[serde(default)]
    pub model_multipliers: Vec<ModelMultiplier>,
}

fn launch_stake_per_gpu() -> i64 {
    STAKE_PER_GPU_IO
}

/// A model's multiplier, set by governance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject, async_graphql::InputObject),
    graphql(name = "ModelMultiplier", input_name = "ModelMultiplierInput")
)]
#[serde(deny_unknown_fields)]
pub struct ModelMultiplier {
    /// The catalog's model id.
    pub gpu_model: String,
    pub multiplier: i64,
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
    pub stake_per_gpu_io: Option<i64>,
    /// The models it sets a multiplier for; the others keep theirs.
    pub model_multipliers: Option<Vec<ModelMultiplier>>,
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
pub const RANGES: [(&str, i64, i64); 8] = [
    ("platform_fee_bps", 0, 2_500),
    ("gpu_share_bps", 5_000, 9_500),
    ("appeal_window_hours", 24, 2_160),
    ("idle_cpu_pct", 5, 90),
    ("idle_gpu_pct_high_end", 1, 50),
    ("idle_gpu_pct_consumer", 1, 80),
    ("stake_per_gpu_io", 10, 10_000),
    // each model's; a multiplier scales both what a device stakes and what it earns
    ("model_multipliers", 1, 20),
];

impl ParamChange {
    /// The single-valued parameters it sets, by name, in the order of [`RANGES`].
    fn fields(&self) -> [(&'static str, Option<i64>); 7] {
        [
            ("platform_fee_bps", self.platform_fee_bps),
            ("gpu_share_bps", self.gpu_share_bps),
            ("appeal_window_hours", self.appeal_window_hours),
            ("idle_cpu_pct", self.idle_cpu_pct),
            ("idle_gpu_pct_high_end", self.idle_gpu_pct_high_end),
            ("idle_gpu_pct_consumer", self.idle_gpu_pct_consumer),
            ("stake_per_gpu_io", self.stake_per_gpu_io),
        ]
    }

    /// Refuses a change that sets nothing, a value outside its range (the field names it), or
    /// a multiplier for a model the catalog lacks or for the same model twice.
    pub fn check(&self, catalog: &Catalog) -> Result<()> {
        let fields = self.fields();
        if fields.iter().all(|(_, v)| v.is_none()) && self.model_multipliers.is_none() {
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
        if let Some(list) = &self.model_multipliers {
            let (_, min, max) = RANGES[7];
            if list.is_empty() {
                return Err(Error::validation(
                    "model_multipliers",
                    "names at least one model",
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for m in list {
                if catalog.gpu_model(&m.gpu_model).is_none() {
                    return Err(Error::validation(
                        "model_multipliers",
                        format!("{} is not a model of the catalog", m.gpu_model),
                    ));
                }
                if !seen.insert(m.gpu_model.as_str()) {
                    return Err(Error::validation(
                        "model_multipliers",
                        format!("{} is named twice", m.gpu_model),
                    ));
                }
                if !(min..=max).contains(&m.multiplier) {
                    return Err(Error::validation(
                        "model_multipliers",
                        format!("between {min} and {max}"),
                    ));
                }
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
            stake_per_gpu_io: STAKE_PER_GPU_IO,
            model_multipliers: Vec::new(),
        }
    }

    /// These parameters with `change` applied, checked again (the change was checked when
    /// proposed; the ranges are the code's and may have moved since).
    pub fn with(&self, change: &ParamChange, catalog: &Catalog) -> Result<ProtocolParams> {
        change.check(catalog)?;
        let mut model_multipliers = self.model_multipliers.clone();
        for m in change.model_multipliers.iter().flatten() {
            model_multipliers.retain(|o| o.gpu_model != m.gpu_model);
            model_multipliers.push(m.clone());
        }
        model_multipliers.sort_by(|a, b| a.gpu_model.cmp(&b.gpu_model));
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
            stake_per_gpu_io: change.stake_per_gpu_io.unwrap_or(self.stake_per_gpu_io),
            model_multipliers,
        })
    }

    /// A model's multiplier: governance's where it set one, else the catalog's; 1 for a
    /// CPU-only device or a model the catalog lacks.
    pub fn multiplier(&self, catalog: &Catalog, gpu_model: Option<&str>) -> i64 {
        let Some(model) = gpu_model else { return 1 };
        self.model_multipliers
            .iter()
            .find(|m| m.gpu_model == model)
            .map(|m| m.multiplier)
            .or_else(|| catalog.gpu_model(model).map(|m| m.staking_multiplier))
            .unwrap_or(1)
    }

    /// $IO micro-units of stake a device needs: the stake per GPU × its GPUs × its model's
    /// multiplier (one GPU's worth for a CPU-only device).
    pub fn required_stake(
        &self,
        catalog: &Catalog,
        gpu_model: Option<&str>,
        gpu_count: i64,
    ) -> i64 {
        self.stake_per_gpu_io * MICROS * gpu_count.max(1) * self.multiplier(catalog, gpu_model)
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
    use crate::providers::{GpuModel, Region};

    fn catalog() -> Catalog {
        let model = |id: &str, multiplier: i64| GpuModel {
            id: id.into(),
            name: id.into(),
            vram_gib: 80,
            fp16_tflops: 1.0,
            bf16_tflops: 1.0,
            class: "datacenter".into(),
            staking_multiplier: multiplier,
            price_floor: 0,
            price_ceiling: 0,
            max_per_node: 8,
        };
        Catalog::new(
            vec![model("h100-sxm", 4), model("rtx-4090", 1)],
            Vec::<Region>::new(),
        )
    }

    fn field_of(r: Result<ProtocolParams>) -> &'static str {
        match r {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_change_sets_only_what_it_names_and_stays_in_range() {
        let catalog = catalog();
        let launch = ProtocolParams::launch(500, 720);
        let change = ParamChange {
            gpu_share_bps: Some(7_000),
            ..ParamChange::default()
        };
        let next = launch.with(&change, &catalog).unwrap();
        assert_eq!(next.gpu_share_bps, 7_000);
        assert_eq!(next.platform_fee_bps, 500);
        assert_eq!(next.reward_params(2).gpu_share_bps, 7_000);
        assert_eq!(next.reward_params(2).version, 2);

        let too_much = ParamChange {
            platform_fee_bps: Some(9_000),
            ..ParamChange::default()
        };
        assert_eq!(
            field_of(launch.with(&too_much, &catalog)),
            "platform_fee_bps"
        );
        assert_eq!(
            field_of(launch.with(&ParamChange::default(), &catalog)),
            "change"
        );
    }

    #[test]
    fn stake_follows_the_stake_per_gpu_and_the_multipliers_in_force() {
        let catalog = catalog();
        let launch = ProtocolParams::launch(500, 720);
        // The catalog's multipliers at launch: 200 $IO × 8 GPUs × 4.
        assert_eq!(
            launch.required_stake(&catalog, Some("h100-sxm"), 8),
            6_400 * MICROS
        );
        assert_eq!(launch.required_stake(&catalog, None, 0), 200 * MICROS);
        let change = ParamChange {
            stake_per_gpu_io: Some(100),
            model_multipliers: Some(vec![ModelMultiplier {
                gpu_model: "h100-sxm".into(),
                multiplier: 6,
            }]),
            ..ParamChange::default()
        };
        let next = launch.with(&change, &catalog).unwrap();
        assert_eq!(
            next.required_stake(&catalog, Some("h100-sxm"), 8),
            4_800 * MICROS
        );
        assert_eq!(
            next.required_stake(&catalog, Some("rtx-4090"), 2),
            200 * MICROS
        );
        assert_eq!(next.multiplier(&catalog, Some("h100-sxm")), 6);
        // A later change of another model keeps this one's.
        let later = next
            .with(
                &ParamChange {
                    model_multipliers: Some(vec![ModelMultiplier {
                        gpu_model: "rtx-4090".into(),
                        multiplier: 2,
                    }]),
                    ..ParamChange::default()
                },
                &catalog,
            )
            .unwrap();
        assert_eq!(later.model_multipliers.len(), 2);
        assert_eq!(later.multiplier(&catalog, Some("h100-sxm")), 6);

        let unknown = ParamChange {
            model_multipliers: Some(vec![ModelMultiplier {
                gpu_model: "abacus".into(),
                multiplier: 2,
            }]),
            ..ParamChange::default()
        };
        assert_eq!(
            field_of(launch.with(&unknown, &catalog)),
            "model_multipliers"
        );
        let twice = ParamChange {
            model_multipliers: Some(vec![
                ModelMultiplier {
                    gpu_model: "h100-sxm".into(),
                    multiplier: 2,
                },
                ModelMultiplier {
                    gpu_model: "h100-sxm".into(),
                    multiplier: 3,
                },
            ]),
            ..ParamChange::default()
        };
        assert_eq!(field_of(launch.with(&twice, &catalog)), "model_multipliers");
        let zero = ParamChange {
            stake_per_gpu_io: Some(0),
            ..ParamChange::default()
        };
        assert_eq!(field_of(launch.with(&zero, &catalog)), "stake_per_gpu_io");
        // A version stored before these parameters existed reads with the launch amounts.
        let old: ProtocolParams = serde_json::from_str(
            r#"{"platform_fee_bps":500,"gpu_share_bps":7000,"appeal_window_hours":720,"idle_cpu_pct":50,"idle_gpu_pct_high_end":10,"idle_gpu_pct_consumer":30}"#,
        )
        .unwrap();
        assert_eq!(old.stake_per_gpu_io, 200);
        assert!(old.model_multipliers.is_empty());
    }
}
