//! What each node of a cluster is told to run, and how the customer reaches the cluster.
//!
//! Ray and Kubernetes clusters come up in two steps: node 0 (the Ray head, or the k3s server)
//! starts at once; the others wait, unseen by their agents, until node 0 reports ready with
//! its address, and then get bootstraps that point at it. Containers all start at once.

use serde_json::{Value, json};

use super::spec::ClusterKind;
use crate::capacity::NodeStart;
use crate::placement::PlanNode;

/// Ports node 0 listens on, written into its bootstrap.
const RAY_GCS_PORT: u16 = 6379;
const RAY_CLIENT_PORT: u16 = 10001;
const RAY_DASHBOARD_PORT: u16 = 8265;
const K8S_API_PORT: u16 = 6443;

pub(crate) struct ClusterBoot<'a> {
    pub cluster_id: &'a str,
    pub kind: ClusterKind,
    pub image: &'a str,
    pub join_token: &'a str,
}

impl ClusterBoot<'_> {
    /// Node `index`'s role and bootstrap. Followers' bootstraps name their leader's node id
    /// now and its address once it is up ([`follower_ready`]).
    pub fn node(&self, index: usize, first: Option<&str>, node: &PlanNode) -> NodeStart {
        let (role, start_now) = role_of(self.kind, index);
        let mut bootstrap = json!({
            "kind": self.kind.as_str(),
            "role": role,
            "cluster_id": self.cluster_id,
            "image": self.image,
            "gpus": node.gpus,
            "join_token": self.join_token,
        });
        match (self.kind, start_now) {
            (ClusterKind::Ray, true) => {
                bootstrap["ports"] = json!({
                    "gcs": RAY_GCS_PORT, "client": RAY_CLIENT_PORT, "dashboard": RAY_DASHBOARD_PORT
                });
            }
            (ClusterKind::Kubernetes, true) => {
                bootstrap["distribution"] = json!("k3s");
                bootstrap["ports"] = json!({ "api_server": K8S_API_PORT });
                bootstrap["admin_token"] = json!(admin_token(self.join_token));
            }
            (_, false) => {
                bootstrap["leader_node_id"] = json!(first);
            }
            (ClusterKind::Container, true) => {}
        }
        NodeStart {
            role,
            bootstrap,
            start_now,
        }
    }
}

/// The role of node `index` of a cluster of `kind`, and whether it starts at once.
pub(crate) fn role_of(kind: ClusterKind, index: usize) -> (&'static str, bool) {
    match (kind, index) {
        (ClusterKind::Ray, 0) => ("head", true),
        (ClusterKind::Ray, _) => ("worker", false),
        (ClusterKind::Kubernetes, 0) => ("control_plane", true),
        (ClusterKind::Kubernetes, _) => ("agent", false),
        (ClusterKind::Container, _) => ("container", true),
    }
}

/// Whether nodes of `role` lead a cluster (the others join them).
pub(crate) fn is_leader(role: &str) -> bool {
    matches!(role, "head" | "control_plane")
}

/// The address a follower joins, from its leader's reported endpoints.
pub(crate) fn leader_address(kind: ClusterKind, endpoints: &Value) -> Option<String> {
    let key = match kind {
        ClusterKind::Ray => "ray",
        ClusterKind::Kubernetes => "api_server",
        ClusterKind::Container => return None,
    };
    endpoints
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A waiting follower's bootstrap once its leader answers at `address`.
pub(crate) fn follower_ready(bootstrap: &mut Value, leader_node: &str, address: &str) {
    bootstrap["leader_node_id"] = json!(leader_node);
    bootstrap["leader_address"] = json!(address);
}

/// The bearer token of the kubeconfig: derived from the join secret, so nodes need not be
/// given the customer's credential and the customer never holds the nodes' one.
fn admin_token(join_token: &str) -> String {
    crate::secrets::hash(&format!("admin:{join_token}"))
}

/// How the customer reaches a running cluster, from the nodes' reported endpoints:
/// `(node_id, role, endpoints)` of every current node.
pub(crate) fn connection(
    kind: ClusterKind,
    cluster_name: &str,
    join_token: &str,
    nodes: &[(String, String, Value)],
) -> Value {
    let leader = nodes.iter().find(|(_, role, _)| is_leader(role));
    match (kind, leader) {
        (ClusterKind::Ray, Some((id, _, ep))) => json!({
            "head_node_id": id,
            "ray_address": ep.get("client").cloned().unwrap_or(Value::Null),
            "gcs_address": ep.get("ray").cloned().unwrap_or(Value::Null),
            "dashboard_url": ep.get("dashboard").cloned().unwrap_or(Value::Null),
        }),
        (ClusterKind::Kubernetes, Some((id, _, ep))) => {
            let server = ep.get("api_server").and_then(Value::as_str).unwrap_or("");
            json!({
                "control_plane_node_id": id,
                "api_server": server,
                "kubeconfig": kubeconfig(cluster_name, server, &admin_token(join_token)),
            })
        }
        _ => json!({
            "nodes": nodes
                .iter()
                .map(|(id, _, ep)| json!({"node_id": id, "endpoints": ep}))
                .collect::<Vec<_>>(),
        }),
    }
}

fn kubeconfig(name: &str, server: &str, token: &str) -> String {
    // The node's certificate is self-signed by k3s; the token is what authenticates.
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: {name}-admin\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-admin\n\
         current-context: {name}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> PlanNode {
        PlanNode {
            device_id: "dev_1".into(),
            provider_id: "org_p".into(),
            model: "h100-sxm".into(),
            region: "eu-central".into(),
            gpus: 8,
            price_per_gpu_hour: 2_000_000,
        }
    }

    #[test]
    fn ray_heads_start_and_workers_wait_for_them() {
        let boot = ClusterBoot {
            cluster_id: "clu_1",
            kind: ClusterKind::Ray,
            image: "ray",
            join_token: "secret",
        };
        let head = boot.node(0, None, &node());
        assert_eq!((head.role, head.start_now), ("head", true));
        assert_eq!(head.bootstrap["ports"]["dashboard"], 8265);
        let mut worker = boot.node(1, Some("nod_head"), &node());
        assert_eq!((worker.role, worker.start_now), ("worker", false));
        assert_eq!(worker.bootstrap["leader_node_id"], "nod_head");
        follower_ready(&mut worker.bootstrap, "nod_head", "10.0.0.1:6379");
        assert_eq!(worker.bootstrap["leader_address"], "10.0.0.1:6379");
    }

    #[test]
    fn kubernetes_connection_is_a_kubeconfig() {
        let nodes = vec![(
            "nod_cp".to_string(),
            "control_plane".to_string(),
            json!({"api_server": "https://10.0.0.1:6443"}),
        )];
        let c = connection(ClusterKind::Kubernetes, "k1", "secret", &nodes);
        let config = c["kubeconfig"].as_str().unwrap();
        assert!(config.contains("server: https://10.0.0.1:6443"));
        assert!(config.contains(&admin_token("secret")));
        assert!(!config.contains("secret\n"));
    }
}
