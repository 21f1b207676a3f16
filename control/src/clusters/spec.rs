//! A cluster spec: what the customer asks for, checked field by field. The placement fields
//! have the names and meaning of a quote's, so a quote request and a cluster spec read alike.

use std::collections::BTreeMap;

use iocloud_billing::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Clusters;
pub use super::string_map::{Env, Labels, StringMap};
use crate::placement::{Preference, Request};
use crate::providers::agent::Workload;
use crate::providers::devices::Location;
use crate::quotes::QuoteRequest;
use crate::{Error, Result};

/// At most 30 days.
pub const MAX_HOURS: i64 = 720;
const MAX_LABELS: usize = 32;
/// A container's command: arguments, and bytes in each.
pub const MAX_COMMAND_ARGS: usize = 64;
pub const MAX_ARG_BYTES: usize = 4096;
/// A container's ports besides SSH's: a node reports at most 16 endpoints, SSH's one of them.
pub const MAX_PORTS: usize = 15;
/// The port every node's SSH answers on; never listed in `ports`.
pub const SSH_PORT: i64 = 22;
/// A container's environment: variables, bytes in a name and in a value.
pub const MAX_ENV_VARS: usize = 64;
const MAX_ENV_NAME_BYTES: usize = 255;
pub const MAX_ENV_VALUE_BYTES: usize = 4096;
/// Environment names the platform keeps for itself.
pub const RESERVED_ENV_PREFIX: &str = "IOCLOUD_";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    /// One Ray head and workers joined to it.
    Ray,
    /// A Kubernetes control plane (k3s) and agents joined to it.
    Kubernetes,
    /// The same container on every node.
    Container,
}

impl ClusterKind {
    pub const ALL: [ClusterKind; 3] = [
        ClusterKind::Ray,
        ClusterKind::Kubernetes,
        ClusterKind::Container,
    ];

    pub fn parse(s: &str) -> Option<ClusterKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Ray => "ray",
            ClusterKind::Kubernetes => "kubernetes",
            ClusterKind::Container => "container",
        }
    }
}

/// Network the nodes need: `standard` (any), `high` (1 Gbit/s both ways) or `ultra` (10 Gbit/s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    #[default]
    Standard,
    High,
    Ultra,
}

impl Connectivity {
    pub fn min_bandwidth_mbps(self) -> i64 {
        match self {
            Connectivity::Standard => 0,
            Connectivity::High => 1_000,
            Connectivity::Ultra => 10_000,
        }
    }
}

/// What to run. `name`, `kind` and `gpu_count` are required; the rest have defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "ClusterInput")
)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Unique among the organisation's live clusters: 1 to 63 lower-case letters, digits and
    /// `-`, starting with a letter.
    #[schema(pattern = r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$", example = "train-42")]
    pub name: String,
    #[schema(value_type = String, example = "ray")]
    pub kind: Option<ClusterKind>,
    /// The container image (required for `container`; a Ray or k3s image otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9./:_@-]{1,255}$")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_class: Option<String>,
    #[schema(minimum = 1, maximum = 4096)]
    pub gpu_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub gpus_per_node: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1024)]
    pub min_vram_gib: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub regions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_rtt_ms: Option<i64>,
    /// USD, e.g. `"3.00"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*(?:0*[1-9][0-9]{0,12}(?:\.[0-9]{1,6})?|0+\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "3.00"
    )]
    pub max_price_per_gpu_hour: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 400000)]
    pub min_bandwidth_mbps: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Connectivity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub min_reliability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(?:any|same_region)$")]
    pub colocation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_rtt_between_nodes_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 64)]
    pub min_providers: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<Preference>,
    /// 1 to 720 (30 days).
    #[schema(minimum = 1, maximum = 720)]
    pub duration_hours: i64,
    /// `USD`, `IOSD` or `IO`; the organisation's billing preference when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(?:[Uu][Ss][Dd]|[Ii][Oo][Ss][Dd]|[Ii][Oo])$")]
    pub billing_currency: Option<String>,
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    /// The organisation's SSH keys (`ssh_…` ids) whose holders may log in to every node as
    /// `root`: absent, all of the organisation's keys; an empty list, none. Any kind. Keys of
    /// users who have left the organisation are not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub ssh_key_ids: Option<Vec<String>>,
    /// `container` only (Ray and Kubernetes nodes run their own): the argv run instead of the
    /// image's command, 1 to 64 arguments of at most 4096 bytes each, without NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 64)]
    pub command: Option<Vec<String>>,
    /// `container` only: ports (1 to 65535, each once, at most 15) the container exposes,
    /// each reported as the node endpoint `port-<number>`. SSH's port 22 is exposed on every
    /// node already and is not listed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 15)]
    pub ports: Option<Vec<i64>>,
    /// `container` only: environment variables, name to value. At most 64; names match
    /// `[A-Za-z_][A-Za-z0-9_]*` and do not start with `IOCLOUD_` (the platform's own); values
    /// are at most 4096 bytes, without NUL.
    #[serde(default, skip_serializing_if = "StringMap::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub env: Env,
    /// A quote of the organisation: its prices cap what the cluster may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
}

/// A spec that passed every check.
pub(crate) struct Checked {
    pub kind: ClusterKind,
    pub image: String,
    pub request: Request,
    pub currency: Option<Currency>,
    /// What the nodes run, without their SSH keys (read from the database: see
    /// `Clusters::with_keys`).
    pub workload: Workload,
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    // The same answer as every other name for the characters no name may hold.
    crate::types::check_visible_text("name", name)?;
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "name",
            "1 to 63 lower-case letters, digits and '-', starting with a letter",
        ))
    }
}

fn check_image(image: &str) -> Result<()> {
    let ok = (1..=255).contains(&image.len())
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./:-_@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "image",
            "an image reference like ghcr.io/org/app:1.2 (at most 255 characters)",
        ))
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::validation(
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in labels {
        let key_ok = (1..=63).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        if !key_ok {
            return Err(Error::validation(
                "labels",
                format!("{k:?}: keys are 1 to 63 letters, digits, '.', '_', '/' or '-'"),
            ));
        }
        if v.len() > 255 || v.chars().any(char::is_control) {
            return Err(Error::validation(
                "labels",
                format!("{k}: values are at most 255 printable characters"),
            ));
        }
        // A label is shown beside the cluster's name in lists: it may not read otherwise
        // than it is written either.
        crate::types::check_visible_text("labels", v)?;
    }
    Ok(())
}

/// Refuses a container's field in a spec of another kind.
fn containers_only(field: &'static str) -> Error {
    Error::validation(
        field,
        "only a container cluster takes it: Ray and Kubernetes nodes run their own command",
    )
}

fn check_command(command: &[String]) -> Result<()> {
    if command.is_empty() || command.len() > MAX_COMMAND_ARGS {
        return Err(Error::validation(
            "command",
            format!("1 to {MAX_COMMAND_ARGS} arguments; leave it out to run the image's own"),
        ));
    }
    if command[0].trim().is_empty() {
        return Err(Error::validation(
            "command",
            "the first argument is the program to run: it must not be empty",
        ));
    }
    for (i, arg) in command.iter().enumerate() {
        if arg.len() > MAX_ARG_BYTES {
            return Err(Error::validation(
                "command",
                format!("argument {} is longer than {MAX_ARG_BYTES} bytes", i + 1),
            ));
        }
        if arg.contains('\0') {
            return Err(Error::validation(
                "command",
                format!("argument {} holds a NUL character", i + 1),
            ));
        }
    }
    Ok(())
}

/// The ports as the agent takes them.
fn check_ports(ports: &[i64]) -> Result<Vec<u16>> {
    if ports.len() > MAX_PORTS {
        return Err(Error::validation(
            "ports",
            format!("at most {MAX_PORTS} ports besides SSH's"),
        ));
    }
    let mut out: Vec<u16> = Vec::with_capacity(ports.len());
    for &p in ports {
        if p == SSH_PORT {
            return Err(Error::validation(
                "ports",
                "22 is SSH's, which every node exposes already; list only the others",
            ));
        }
        let port = u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::validation("ports", format!("{p}: a port is 1 to 65535")))?;
        if out.contains(&port) {
            return Err(Error::validation(
                "ports",
                format!("{port} is listed twice"),
            ));
        }
        out.push(port);
    }
    Ok(out)
}

fn check_env(env: &BTreeMap<String, String>) -> Result<()> {
    if env.len() > MAX_ENV_VARS {
        return Err(Error::validation(
            "env",
            format!("at most {MAX_ENV_VARS} variables"),
        ));
    }
    for (name, value) in env {
        let name_ok = name.len() <= MAX_ENV_NAME_BYTES
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(Error::validation(
                "env",
                format!(
                    "{:?}: a name is letters, digits and '_', not starting with a digit",
                    name.chars().take(64).collect::<String>()
                ),
            ));
        }
        if name
            .get(..RESERVED_ENV_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_ENV_PREFIX))
        {
            return Err(Error::validation(
                "env",
                format!("{name}: names starting with {RESERVED_ENV_PREFIX} are the platform's"),
            ));
        }
        if value.len() > MAX_ENV_VALUE_BYTES {
            return Err(Error::validation(
                "env",
                format!("{name}: a value is at most {MAX_ENV_VALUE_BYTES} bytes"),
            ));
        }
        if value.contains('\0') {
            return Err(Error::validation(
                "env",
                format!("{name}: a value may not hold a NUL character"),
            ));
        }
    }
    Ok(())
}

/// What the nodes of a spec of `kind` run, checked (without their SSH keys).
fn check_workload(kind: ClusterKind, spec: &ClusterSpec) -> Result<Workload> {
    let container = kind == ClusterKind::Container;
    if let Some(ids) = &spec.ssh_key_ids
        && ids.len() > crate::ssh_keys::MAX_KEYS as usize
    {
        return Err(Error::validation(
            "ssh_key_ids",
            format!("at most {} keys", crate::ssh_keys::MAX_KEYS),
        ));
    }
    if let Some(command) = &spec.command {
        if !container {
            return Err(containers_only("command"));
        }
        check_command(command)?;
    }
    let ports = match &spec.ports {
        Some(_) if !container => return Err(containers_only("ports")),
        Some(ports) => check_ports(ports)?,
        None => Vec::new(),
    };
    if !spec.env.is_empty() {
        if !container {
            return Err(containers_only("env"));
        }
        check_env(&spec.env)?;
    }
    Ok(Workload {
        authorized_keys: Vec::new(),
        command: spec.command.clone(),
        container_ports: ports,
        env: spec.env.0.clone(),
    })
}

impl ClusterSpec {
    /// The placement half of the spec, as a quote would ask it.
    pub fn placement(&self) -> QuoteRequest {
        let tier = self.connectivity.unwrap_or_default().min_bandwidth_mbps();
        QuoteRequest {
            gpu_model: self.gpu_model.clone(),
            gpu_class: self.gpu_class.clone(),
            gpu_count: self.gpu_count,
            gpus_per_node: self.gpus_per_node,
            min_vram_gib: self.min_vram_gib,
            duration_hours: Some(self.duration_hours),
            regions: self.regions.clone(),
            location: self.location.clone(),
            max_rtt_ms: self.max_rtt_ms,
            max_price_per_gpu_hour: self.max_price_per_gpu_hour.clone(),
            min_bandwidth_mbps: Some(self.min_bandwidth_mbps.unwrap_or(0).max(tier)),
            min_reliability: self.min_reliability,
            colocation: self.colocation.clone(),
            max_rtt_between_nodes_ms: self.max_rtt_between_nodes_ms,
            min_providers: self.min_providers,
            preference: self.preference,
        }
    }
}

impl Clusters {
    /// Checks every field of a spec; the first problem found is the error.
    pub(crate) fn check_spec(&self, spec: &ClusterSpec) -> Result<Checked> {
        check_name(&spec.name)?;
        let kind = spec
            .kind
            .ok_or_else(|| Error::validation("kind", "ray, kubernetes or container"))?;
        let image = match (kind, &spec.image) {
            (_, Some(image)) => {
                check_image(image)?;
                image.clone()
            }
            (ClusterKind::Container, None) => {
                return Err(Error::validation(
                    "image",
                    "a container cluster needs an image",
                ));
            }
            (ClusterKind::Ray, None) => "rayproject/ray:2.40.0-gpu".into(),
            (ClusterKind::Kubernetes, None) => "rancher/k3s:v1.31.4-k3s1".into(),
        };
        if !(1..=MAX_HOURS).contains(&spec.duration_hours) {
            return Err(Error::validation(
                "duration_hours",
                format!("must be from 1 to {MAX_HOURS} (30 days)"),
            ));
        }
        let request = self.quotes.placement_request(&spec.placement())?;
        check_labels(&spec.labels)?;
        let workload = check_workload(kind, spec)?;
        let currency = match &spec.billing_currency {
            Some(code) => Some(
                Currency::parse(code)
                    .ok_or_else(|| Error::validation("billing_currency", "USD, IOSD or IO"))?,
            ),
            None => None,
        };
        if let Some(q) = &spec.quote_id
            && !iocloud_db::ids::is_valid("quo", q)
        {
            return Err(Error::NotFound("quote"));
        }
        Ok(Checked {
            kind,
            image,
            request,
            currency,
            workload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "train-1", "x9", &"a".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "Train",
            "a_b",
            "a-",
            "a b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_and_labels_are_checked() {
        assert!(check_image("ghcr.io/acme/train:1.2@sha256:abc").is_ok());
        assert!(check_image("bad image").is_err());
        assert!(check_image("").is_err());
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), "ml".to_string());
        assert!(check_labels(&labels).is_ok());
        labels.insert("bad key".to_string(), "x".to_string());
        assert!(check_labels(&labels).is_err());
        let mut bidi = BTreeMap::new();
        bidi.insert("team".to_string(), "ml\u{202E}gpj.exe".to_string());
        let refused = check_labels(&bidi).unwrap_err();
        assert_eq!(refused.code(), crate::ErrorCode::InvisibleCharacters);
    }

    fn container() -> ClusterSpec {
        ClusterSpec {
            name: "c".into(),
            kind: Some(ClusterKind::Container),
            ..Default::default()
        }
    }

    /// The field a workload check refuses.
    fn refused(kind: ClusterKind, spec: &ClusterSpec) -> &'static str {
        match check_workload(kind, spec) {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_containers_command_ports_and_environment_reach_its_workload() {
        let mut spec = container();
        spec.command = Some(vec!["python".into(), "train.py".into(), String::new()]);
        spec.ports = Some(vec![8080, 6006]);
        spec.env.insert("HF_HOME".into(), "/data/hf".into());
        spec.env.insert("_x1".into(), String::new());
        let w = check_workload(ClusterKind::Container, &spec).unwrap();
        assert_eq!(w.command, spec.command);
        assert_eq!(w.container_ports, vec![8080, 6006]);
        assert_eq!(w.env.get("HF_HOME").map(String::as_str), Some("/data/hf"));
        assert!(w.authorized_keys.is_empty(), "keys are read apart");
        // Other kinds run their own command: each field is refused by name.
        for kind in [ClusterKind::Ray, ClusterKind::Kubernetes] {
            let mut s = container();
            s.command = Some(vec!["sh".into()]);
            assert_eq!(refused(kind, &s), "command");
            let mut s = container();
            s.ports = Some(vec![8080]);
            assert_eq!(refused(kind, &s), "ports");
            let mut s = container();
            s.env.insert("A".into(), "b".into());
            assert_eq!(refused(kind, &s), "env");
            let mut s = container();
            s.ssh_key_ids = Some(Vec::new());
            assert!(
                check_workload(kind, &s).is_ok(),
                "SSH keys go to every kind"
            );
        }
    }

    #[test]
    fn bad_commands_ports_and_environments_are_refused() {
        let commands: Vec<Vec<String>> = vec![
            vec![],
            vec![" ".into()],
            vec!["sh".into(), "a\0b".into()],
            vec!["x".into(); MAX_COMMAND_ARGS + 1],
            vec!["sh".into(), "a".repeat(MAX_ARG_BYTES + 1)],
        ];
        for command in commands {
            let mut s = container();
            s.command = Some(command.clone());
            assert_eq!(
                refused(ClusterKind::Container, &s),
                "command",
                "{command:?}"
            );
        }
        let too_many: Vec<i64> = (1000..1000 + MAX_PORTS as i64 + 1).collect();
        for ports in [
            vec![22],
            vec![0],
            vec![70_000],
            vec![-1],
            vec![80, 80],
            too_many,
        ] {
            let mut s = container();
            s.ports = Some(ports.clone());
            assert_eq!(refused(ClusterKind::Container, &s), "ports", "{ports:?}");
        }
        let long = "v".repeat(MAX_ENV_VALUE_BYTES + 1);
        for (name, value) in [
            ("1X", "v"),
            ("A-B", "v"),
            ("", "v"),
            ("IOCLOUD_TOKEN", "v"),
            ("iocloud_token", "v"),
            ("OK", long.as_str()),
            ("OK", "a\0b"),
        ] {
            let mut s = container();
            s.env.insert(name.into(), value.into());
            assert_eq!(refused(ClusterKind::Container, &s), "env", "{name}");
        }
        let mut s = container();
        for i in 0..=MAX_ENV_VARS {
            s.env.insert(format!("V{i}"), "x".into());
        }
        assert_eq!(refused(ClusterKind::Container, &s), "env");
    }

    #[test]
    fn connectivity_sets_a_bandwidth_floor() {
        let spec = ClusterSpec {
            connectivity: Some(Connectivity::High),
            min_bandwidth_mbps: Some(200),
            ..Default::default()
        };
        assert_eq!(spec.placement().min_bandwidth_mbps, Some(1_000));
    }
}
