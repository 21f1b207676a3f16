//! What an agent and the control plane say to each other: the protocol's messages as they
//! travel, and the checks of the agent's numbers and version.

use std::collections::BTreeMap;

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
    /// 0 to 100: the busiest GPU's utilisation (a CPU-only device: its CPU's).
    #[schema(minimum = 0, maximum = 100)]
    pub utilization_pct: i64,
    /// 0 to 100: the CPU's utilisation. Agents older than the hourly blocks leave it out;
    /// their idle hours are then judged by `utilization_pct` alone.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub cpu_utilization_pct: Option<i64>,
    /// Nodes of clusters running on the device now (0 to its GPU count, or 1 on a CPU-only
    /// device). With every GPU free and no node, the heartbeat counts for the idle rule.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub running_nodes: Option<i64>,
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

/// This hour's proof for a listed device that serves no rental: a proof of work like the
/// verification challenge's, and the VRAM of each GPU as the agent measures it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ProofChallenge {
    /// Hours since the Unix epoch (UTC): the hour the proof counts for.
    pub hour: i64,
    /// Find `n` such that SHA-256 of `"{nonce}:{n}"` starts with `difficulty` zero bits.
    pub nonce: String,
    pub difficulty: u32,
    /// GiB of VRAM per GPU the device's model has (0 for a CPU-only device): each GPU should
    /// measure at least 95 % of it.
    pub vram_gib: i64,
    #[serde(with = "iocloud_db::time::serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deadline: i64,
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofAnswer {
    /// The `hour` of the proof answered.
    pub hour: i64,
    pub nonce: String,
    pub answer: u64,
    /// MiB of VRAM each GPU measured, GPU 0 first: one entry per GPU of the device (none on a
    /// CPU-only device). At most 64 entries, each 0 to 1048576.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub vram_mib: Vec<i64>,
}

/// How an hourly proof went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProofOutcome {
    /// In time, right, and every GPU has its model's VRAM.
    Passed,
    /// The proof of work's answer was wrong.
    WrongAnswer,
    /// Answered after the deadline.
    Late,
    /// A GPU measured less VRAM than its model has (or the GPUs measured were not the
    /// device's count).
    VramShort,
}

impl ProofOutcome {
    pub const ALL: [ProofOutcome; 4] = [
        ProofOutcome::Passed,
        ProofOutcome::WrongAnswer,
        ProofOutcome::Late,
        ProofOutcome::VramShort,
    ];

    /// As stored in `device_proofs.outcome` and written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofOutcome::Passed => "passed",
            ProofOutcome::WrongAnswer => "wrong_answer",
            ProofOutcome::Late => "late",
            ProofOutcome::VramShort => "vram_short",
        }
    }

    pub fn parse(s: &str) -> Option<ProofOutcome> {
        ProofOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// What the control plane made of an hourly proof's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ProofResult {
    pub hour: i64,
    pub outcome: ProofOutcome,
    /// What was wrong, in words with the figures; absent when it passed.
    pub detail: Option<String>,
}

/// A node test's answer: the digest of the lanes' results, how long the computation took,
/// and, for a node with a `peer` in its test, the link to that node as the agent measured it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeTestAnswer {
    /// SHA-256 over the lanes' results, 64 hexadecimal digits.
    pub answer: String,
    /// Milliseconds the computation took on the node.
    pub elapsed_ms: i64,
    /// Required when the test names a `peer`.
    pub link: Option<LinkMeasurement>,
}

/// The link between a node and its test's peer, as measured from the node.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkMeasurement {
    /// Round trip, milliseconds (0.01 to 10,000).
    pub rtt_ms: f64,
    /// Throughput to the peer, Mbit/s (1 to 1,000,000).
    pub bandwidth_mbps: i64,
}

/// How a node test went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeTestOutcome {
    /// Right, in time, and the link as good as the devices claim.
    Passed,
    /// The answer was not the test's.
    WrongAnswer,
    /// The answer came after the test's limit.
    TooSlow,
    /// The link to the peer measured far below what the devices claim.
    BandwidthShort,
}

impl NodeTestOutcome {
    pub const ALL: [NodeTestOutcome; 4] = [
        NodeTestOutcome::Passed,
        NodeTestOutcome::WrongAnswer,
        NodeTestOutcome::TooSlow,
        NodeTestOutcome::BandwidthShort,
    ];

    /// As stored in `node_tests.outcome` and written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeTestOutcome::Passed => "passed",
            NodeTestOutcome::WrongAnswer => "wrong_answer",
            NodeTestOutcome::TooSlow => "too_slow",
            NodeTestOutcome::BandwidthShort => "bandwidth_short",
        }
    }

    pub fn parse(s: &str) -> Option<NodeTestOutcome> {
        NodeTestOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// What the control plane made of a node test's answer. Anything but `passed` has failed the
/// node: the agent tears it down and the cluster gets a replacement.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NodeTestResult {
    pub node_id: String,
    pub outcome: NodeTestOutcome,
    /// What was wrong, in words with the figures; absent when it passed.
    pub detail: Option<String>,
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
    /// Beside `kind`, `role`, `cluster_id`, `image`, `gpus` and what the role needs, it holds the
    /// fields of [`Workload`] (read it from the same object): the `authorized_keys` every node
    /// lets in as `root` on its `ssh` endpoint (port 22), and for a container its `command`,
    /// `container_ports` and `env`.
    #[schema(value_type = Object)]
    pub bootstrap: serde_json::Value,
}

/// What a node runs and who may log in to it, written into its bootstrap beside the role's
/// fields. Bootstraps made before a field existed lack it, and an agent that does not know a
/// field passes over it: every field reads as empty when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workload {
    /// OpenSSH public key lines (`type base64 name`) for `root`'s `authorized_keys` on the
    /// node's SSH endpoint. Always written; empty: nobody logs in.
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// A container's command, as argv, run instead of the image's own; absent: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A container's ports to expose, besides SSH's 22 (which every node exposes). A ready node
    /// reports each as the endpoint `port-<number>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_ports: Vec<u16>,
    /// A container's environment, name to value. Names starting with `IOCLOUD_` are the
    /// platform's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl Workload {
    /// Writes the workload's fields into `bootstrap` (an object; anything else is left as it is).
    pub fn write_into(&self, bootstrap: &mut serde_json::Value) {
        if let (Some(fields), Ok(serde_json::Value::Object(mine))) =
            (bootstrap.as_object_mut(), serde_json::to_value(self))
        {
            fields.extend(mine);
        }
    }

    /// The workload a bootstrap holds; fields it lacks (or that do not read) are empty.
    pub fn read_from(bootstrap: &serde_json::Value) -> Workload {
        serde_json::from_value(bootstrap.clone()).unwrap_or_default()
    }
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
