//! A cluster spec: what the customer asks for, checked field by field. The placement fields
//! have the names and meaning of a quote's, so a quote request and a cluster spec read alike.

use std::collections::BTreeMap;

use iocloud_billing::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Clusters;
use crate::placement::{Preference, Request};
use crate::providers::devices::Location;
use crate::quotes::QuoteRequest;
use crate::{Error, Result};

/// At most 30 days.
pub const MAX_HOURS: i64 = 720;
const MAX_LABELS: usize = 32;

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
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    /// A quote of the organisation: its prices cap what the cluster may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
}

/// A cluster's labels, key to value. A type of its own so that GraphQL takes them as the
/// `JSON` object REST takes; everywhere else it is the map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

// A nullable `JSON` input, as the labels have always been in GraphQL: absent or null is none.
#[cfg(feature = "graphql")]
type LabelsInput = Option<async_graphql::Json<BTreeMap<String, String>>>;

#[cfg(feature = "graphql")]
impl async_graphql::InputType for Labels {
    type RawValueType = Self;

    fn type_name() -> std::borrow::Cow<'static, str> {
        <LabelsInput as async_graphql::InputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <LabelsInput as async_graphql::InputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <LabelsInput as async_graphql::InputType>::create_type_info(registry)
    }

    fn parse(value: Option<async_graphql::Value>) -> async_graphql::InputValueResult<Self> {
        <LabelsInput as async_graphql::InputType>::parse(value)
            .map(|labels| Labels(labels.map(|l| l.0).unwrap_or_default()))
            .map_err(async_graphql::InputValueError::propagate)
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::to_value(&self.0).unwrap_or_default()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }
}

/// A spec that passed every check.
pub(crate) struct Checked {
    pub kind: ClusterKind,
    pub image: String,
    pub request: Request,
    pub currency: Option<Currency>,
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
