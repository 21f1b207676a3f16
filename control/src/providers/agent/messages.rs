//! What an agent and the control plane say to each other: the protocol's messages as they
//! travel, and the checks of the agent's numbers and version.

use serde::{Deserialize, Serialize};

use super::super::status::DeviceStatus;
use crate::{Error, Result};

#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// 1 to 64 printable ASCII characters, no spaces.
    #[schema(pattern = r"^[!-~]{1,64}$", example = "1.4.2")]
    pub agent_version: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Challenge {
    /// Find `n` such that SHA-256 of `"{nonce}:{n}"` starts with `difficulty` zero bits.
    pub nonce: String,
    pub difficulty: u32,
    #[serde(with = "iocloud_db::time::serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deadline: i64,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HelloAnswer {
    pub device_id: String,
    pub status: DeviceStatus,
    pub status_reason: Option<String>,
    /// Present while the device must prove itself.
    pub challenge: Option<Challenge>,
    /// How often to heartbeat.
    pub heartbeat_interval_secs: u64,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeAnswer {
    pub nonce: String,
    pub answer: u64,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// 0 to the device's GPU count.
    #[schema(minimum = 0)]
    pub free_gpus: i64,
    /// 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub utilization_pct: i64,
    /// Hottest GPU (or CPU), °C: -50 to 150.
    #[schema(minimum = -50, maximum = 150)]
    pub temperature_c: i64,
    /// 1 to 64 printable ASCII characters, no spaces.
    #[schema(pattern = r"^[!-~]{1,64}$", example = "1.4.2")]
    pub agent_version: String,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatAnswer {
    pub accepted: bool,
    pub heartbeat_interval_secs: u64,
}

/// A node the agent must bring up (or tear down).
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Assignment {
    pub id: String,
    pub cluster_id: String,
    pub gpus: i64,
    /// `assigned` (bring it up) or `releasing` (tear it down).
    pub status: String,
    /// The node bootstrap: Ray head or worker, Kubernetes control plane or join, or a container.
    #[schema(value_type = Object)]
    pub bootstrap: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// `starting`, `ready`, `failed` (with a `reason`) or `released`.
    #[schema(value_type = NodeReportStatus)]
    pub status: String,
    /// Where the node answers, once ready (e.g. `{"ray": "10.0.0.5:6379"}`): by name, each
    /// `host:port` or an `http`, `https` or `ray` URL. Anything else is refused with
    /// `invalid_endpoint`.
    #[schema(value_type = Option<Object>)]
    pub endpoints: Option<serde_json::Map<String, serde_json::Value>>,
    /// A Kubernetes control-plane node, once ready: its cluster's certificate authority (PEM
    /// certificates, at most four), which customers' kubeconfigs trust.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    pub reason: Option<String>,
}

/// What a node report may say (the document's; [`NodeReport::status`] is read as a string).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum NodeReportStatus {
    Starting,
    Ready,
    Failed,
    Released,
}

pub(super) fn check_range(field: &'static str, v: i64, lo: i64, hi: i64) -> Result<()> {
    if v < lo || v > hi {
        return Err(Error::validation(
            field,
            format!("must be between {lo} and {hi}"),
        ));
    }
    Ok(())
}

pub(super) fn check_version(v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::validation(
            "agent_version",
            "must be 1 to 64 printable characters",
        ));
    }
    Ok(())
}
