//! What a cluster is, as customers see it: its status and the views REST, GraphQL and the
//! console answer with.

use iocloud_db::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ClusterEvent, ClusterKind, ClusterSpec};
use crate::providers::endpoints::Endpoints;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    Pending,
    Placing,
    Provisioning,
    Running,
    /// Running without a node that was lost and could not be replaced (not charged for it).
    Degraded,
    Terminating,
    Terminated,
    /// Ended before it ran; the reason says why. Nothing is charged.
    Failed,
}

impl ClusterStatus {
    pub const ALL: [ClusterStatus; 8] = [
        ClusterStatus::Pending,
        ClusterStatus::Placing,
        ClusterStatus::Provisioning,
        ClusterStatus::Running,
        ClusterStatus::Degraded,
        ClusterStatus::Terminating,
        ClusterStatus::Terminated,
        ClusterStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Pending => "pending",
            ClusterStatus::Placing => "placing",
            ClusterStatus::Provisioning => "provisioning",
            ClusterStatus::Running => "running",
            ClusterStatus::Degraded => "degraded",
            ClusterStatus::Terminating => "terminating",
            ClusterStatus::Terminated => "terminated",
            ClusterStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ClusterStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the cluster counts against quota and keeps its nodes.
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            ClusterStatus::Terminating | ClusterStatus::Terminated | ClusterStatus::Failed
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, ClusterStatus::Terminated | ClusterStatus::Failed)
    }

    /// Whether a cluster in this status may move to `to`, another status: the table every
    /// write of a cluster's status goes through ([`super::ClusterRow::set_status`]). Staying
    /// in a status is no move, so the table never allows it.
    ///
    /// ```text
    /// pending ─► placing ─► provisioning ─► running ⇄ degraded
    ///    └──────────┴────────────┴─► failed
    /// pending, placing, provisioning, running, degraded ─► terminating ─► terminated
    /// ```
    ///
    /// - a create steps through pending and placing to provisioning in its transaction;
    /// - the reconciler runs a cluster once every node is ready, degrades a running one that
    ///   lost a node nothing can replace and runs it again once one does, and fails one that
    ///   never ran (placement unfinished, provisioning past its deadline or out of nodes);
    /// - a delete, or the end of its hours, makes a live cluster terminating;
    /// - settling a terminating cluster terminates it. Terminated and failed are final.
    pub fn can_become(self, to: ClusterStatus) -> bool {
        use ClusterStatus::*;
        match (self, to) {
            (Pending, Placing) | (Placing, Provisioning) | (Provisioning, Running) => true,
            (Running, Degraded) | (Degraded, Running) => true,
            (Pending | Placing | Provisioning, Failed) => true,
            (from, Terminating) => from.is_live(),
            (Terminating, Terminated) => true,
            _ => false,
        }
    }
}

/// A node of a cluster, as the customer sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ClusterNode")
)]
pub struct NodeView {
    pub id: String,
    /// `head`, `worker`, `control_plane`, `agent` or `container`.
    pub role: String,
    /// `waiting`, `assigned`, `starting`, `ready`, `failed`, `releasing` or `released`.
    pub status: String,
    pub device_id: String,
    pub region: String,
    pub gpu_model: Option<String>,
    pub gpus: i64,
    /// USD.
    pub price_per_gpu_hour: String,
    /// By name, each `host:port` or a URL; absent until the node is ready.
    #[schema(value_type = Option<Object>)]
    pub endpoints: Option<Endpoints>,
    pub reason: Option<String>,
    /// Whether the node still belongs to the cluster (a lost or replaced node does not).
    pub current: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Cluster")
)]
pub struct ClusterView {
    pub id: String,
    pub name: String,
    // GraphQL has always shown the kind as REST writes it, a string.
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(
                name = "kind",
                into = "&'static str",
                with = "ClusterKind::as_str",
                owned
            )
        )
    )]
    pub kind: ClusterKind,
    pub status: ClusterStatus,
    pub status_reason: Option<String>,
    /// Changes with every update; give it back to update safely (a stale one answers 409).
    pub resource_version: i64,
    /// Changes when the spec does.
    pub generation: i64,
    /// The spec as given, in the shape REST takes.
    // In GraphQL the spec is `JSON`: `ClusterSpec` is the `ClusterInput` object there, an
    // input type only.
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(name = "spec", into = "async_graphql::Json<ClusterSpec>", owned)
        )
    )]
    pub spec: ClusterSpec,
    pub gpus: i64,
    pub currency: String,
    /// In `currency`, for the whole cluster.
    pub price_per_hour: String,
    pub hold_id: Option<String>,
    /// How to reach the cluster once it runs: the Ray head's address and dashboard, the
    /// Kubernetes API server's address, or each container's endpoints with the command that
    /// logs in to it (`ssh_command`, as `ssh_user`, naming the identity file when the nodes let
    /// in exactly one SSH key). Never a credential: a Kubernetes cluster's kubeconfig is read
    /// from `GET /v1/clusters/{id}/credentials`.
    #[schema(value_type = Option<Object>)]
    pub connection: Option<serde_json::Value>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub running_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub terminated_at: Option<Timestamp>,
    /// Present on a single cluster, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(
                name = "nodes",
                into = "Vec<NodeView>",
                with = "Option::unwrap_or_default",
                owned
            )
        )
    )]
    pub nodes: Option<Vec<NodeView>>,
    /// The latest events (at most 50), on a single cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(
                name = "events",
                into = "Vec<ClusterEvent>",
                with = "Option::unwrap_or_default",
                owned
            )
        )
    )]
    pub events: Option<Vec<ClusterEvent>>,
}

#[cfg(test)]
mod tests {
    use super::ClusterStatus::{self, *};

    #[test]
    fn every_move_of_the_status_table() {
        // Rows: from; columns: to, in `ClusterStatus::ALL`'s order. 1: allowed.
        #[rustfmt::skip]
        let expected: [(ClusterStatus, [u8; 8]); 8] = [
            //             Pen Pla Pro Run Deg Tng Ted Fai
            (Pending,      [0,  1,  0,  0,  0,  1,  0,  1]),
            (Placing,      [0,  0,  1,  0,  0,  1,  0,  1]),
            (Provisioning, [0,  0,  0,  1,  0,  1,  0,  1]),
            (Running,      [0,  0,  0,  0,  1,  1,  0,  0]),
            (Degraded,     [0,  0,  0,  1,  0,  1,  0,  0]),
            (Terminating,  [0,  0,  0,  0,  0,  0,  1,  0]),
            (Terminated,   [0,  0,  0,  0,  0,  0,  0,  0]),
            (Failed,       [0,  0,  0,  0,  0,  0,  0,  0]),
        ];
        assert_eq!(expected.map(|(from, _)| from), ClusterStatus::ALL);
        for (from, row) in expected {
            for (to, allowed) in ClusterStatus::ALL.into_iter().zip(row) {
                assert_eq!(
                    from.can_become(to),
                    allowed == 1,
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    #[test]
    fn statuses_read_back_as_written() {
        for s in ClusterStatus::ALL {
            assert_eq!(ClusterStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ClusterStatus::parse("stopped"), None);
    }
}
