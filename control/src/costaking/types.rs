//! Co-staking offers and positions as the API shows them.

use iocloud_db::Timestamp;
use serde::{Deserialize, Serialize};

/// A provider's offer of one device's stake.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CostakeOffer")
)]
pub struct CostakeOffer {
    pub id: String,
    pub device_id: String,
    /// The device's GPU model (`None`: CPU-only), GPUs, region and learned reliability (0 to 1):
    /// what a co-staker weighs. Never the provider's name.
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub region: String,
    pub reliability: f64,
    /// $IO offered.
    pub amount: String,
    /// The co-staker's share of the device's block rewards, basis points (5000 = 50 %), for
    /// the whole amount; a smaller co-stake gets its part of it.
    pub reward_share_bps: i64,
    /// Days the co-stake stays before it may be unstaked.
    pub term_days: i64,
    /// `open`, `taken`, `withdrawn` (by the provider) or `ended` (its co-staker unstaked).
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A co-staker's position.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CostakePosition")
)]
pub struct CostakePosition {
    pub id: String,
    pub offer_id: String,
    pub device_id: String,
    /// $IO staked now (a slash of the device takes its part).
    pub amount: String,
    /// The co-staker's share of the device's block rewards, basis points.
    pub reward_share_bps: i64,
    /// `active`; `notice` (unstaking asked: still backs the device and earns for 7 days);
    /// `cooldown` (14 days more, neither); `withdrawable`; `withdrawn`.
    pub state: String,
    #[schema(value_type = String, format = DateTime)]
    pub term_ends_at: Timestamp,
    /// When the notice ends, and when the $IO may be withdrawn.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub unstake_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub available_at: Option<Timestamp>,
    /// $IO earned from the device's blocks.
    pub earned: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A provider's new offer.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "CostakeOfferInput")
)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    pub device_id: String,
    /// $IO, more than zero and at most what the device needs staked.
    #[schema(example = "8000")]
    pub amount: String,
    /// 1 to 10000 basis points of the device's block rewards.
    pub reward_share_bps: i64,
    /// 1 to 365 days.
    pub term_days: i64,
}

/// Taking an offer.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeOffer {
    /// $IO, more than zero and at most the offer's amount; the share scales with it.
    #[schema(example = "8000")]
    pub amount: String,
}
