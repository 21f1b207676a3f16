//! GraphQL for clusters and quota. Same services as `/v1/clusters` and `/v1/quota`.

use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Json, Object, SimpleObject, Subscription};
use futures::StreamExt;
use futures::stream::BoxStream;
use iocloud_control::clusters::credentials::RequestOrigin;
use iocloud_control::clusters::{
    ApplyPlan, ApplyResult, ClusterCredentials, ClusterEvent, ClusterKind, ClusterSpec,
    ClusterStatus, ClusterView, Connectivity, Extension, NodeView, QuotaView, SpecChange,
};
use iocloud_control::providers::devices::Location;
use iocloud_control::providers::endpoints::Endpoints;

use super::quotes::{GqlLocationInput, GqlPreference};
use super::schema::{actor, control, gql_error, page};
use super::types::GqlPage;

type GqlResult<T> = async_graphql::Result<T>;

/// The fields of `POST /v1/clusters`.
#[derive(InputObject)]
#[graphql(name = "ClusterInput")]
pub struct GqlClusterInput {
    name: String,
    kind: ClusterKind,
    image: Option<String>,
    gpu_model: Option<String>,
    gpu_class: Option<String>,
    gpu_count: i64,
    gpus_per_node: Option<i64>,
    min_vram_gib: Option<i64>,
    regions: Option<Vec<String>>,
    location: Option<GqlLocationInput>,
    max_rtt_ms: Option<i64>,
    max_price_per_gpu_hour: Option<String>,
    min_bandwidth_mbps: Option<i64>,
    connectivity: Option<Connectivity>,
    min_reliability: Option<f64>,
    colocation: Option<String>,
    max_rtt_between_nodes_ms: Option<i64>,
    min_providers: Option<i64>,
    preference: Option<GqlPreference>,
    duration_hours: i64,
    billing_currency: Option<String>,
    labels: Option<Json<BTreeMap<String, String>>>,
    quote_id: Option<String>,
}

impl From<GqlClusterInput> for ClusterSpec {
    fn from(i: GqlClusterInput) -> Self {
        ClusterSpec {
            name: i.name,
            kind: Some(i.kind),
            image: i.image,
            gpu_model: i.gpu_model,
            gpu_class: i.gpu_class,
            gpu_count: i.gpu_count,
            gpus_per_node: i.gpus_per_node,
            min_vram_gib: i.min_vram_gib,
            regions: i.regions,
            location: i.location.map(|l| Location {
                lat: l.lat,
                lon: l.lon,
            }),
            max_rtt_ms: i.max_rtt_ms,
            max_price_per_gpu_hour: i.max_price_per_gpu_hour,
            min_bandwidth_mbps: i.min_bandwidth_mbps,
            connectivity: i.connectivity,
            min_reliability: i.min_reliability,
            colocation: i.colocation,
            max_rtt_between_nodes_ms: i.max_rtt_between_nodes_ms,
            min_providers: i.min_providers,
            preference: i.preference.map(Into::into),
            duration_hours: i.duration_hours,
            billing_currency: i.billing_currency,
            labels: i.labels.map(|l| l.0).unwrap_or_default(),
            quote_id: i.quote_id,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ClusterNode")]
pub struct GqlNode {
    id: String,
    role: String,
    status: String,
    device_id: String,
    region: String,
    gpu_model: Option<String>,
    gpus: i64,
    price_per_gpu_hour: String,
    endpoints: Option<Json<Endpoints>>,
    reason: Option<String>,
    current: bool,
}

impl From<NodeView> for GqlNode {
    fn from(n: NodeView) -> Self {
        GqlNode {
            id: n.id,
            role: n.role,
            status: n.status,
            device_id: n.device_id,
            region: n.region,
            gpu_model: n.gpu_model,
            gpus: n.gpus,
            price_per_gpu_hour: n.price_per_gpu_hour,
            endpoints: n.endpoints.map(Json),
            reason: n.reason,
            current: n.current,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ClusterEvent")]
pub struct GqlClusterEvent {
    cluster_id: String,
    seq: i64,
    at: String,
    kind: String,
    status: ClusterStatus,
    message: String,
}

impl From<ClusterEvent> for GqlClusterEvent {
    fn from(e: ClusterEvent) -> Self {
        GqlClusterEvent {
            cluster_id: e.cluster_id,
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            status: e.status,
            message: e.message,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Cluster")]
pub struct GqlCluster {
    id: String,
    name: String,
    kind: String,
    status: ClusterStatus,
    status_reason: Option<String>,
    resource_version: i64,
    generation: i64,
    /// The spec as given, in the REST shape.
    spec: Json<ClusterSpec>,
    gpus: i64,
    currency: String,
    price_per_hour: String,
    hold_id: Option<String>,
    connection: Option<Json<serde_json::Value>>,
    created_at: String,
    running_at: Option<String>,
    expires_at: Option<String>,
    terminated_at: Option<String>,
    /// On a single cluster; empty in lists.
    nodes: Vec<GqlNode>,
    /// The latest events on a single cluster; empty in lists.
    events: Vec<GqlClusterEvent>,
}

impl From<ClusterView> for GqlCluster {
    fn from(c: ClusterView) -> Self {
        GqlCluster {
            id: c.id,
            name: c.name,
            kind: c.kind.as_str().into(),
            status: c.status,
            status_reason: c.status_reason,
            resource_version: c.resource_version,
            generation: c.generation,
            spec: Json(c.spec),
            gpus: c.gpus,
            currency: c.currency,
            price_per_hour: c.price_per_hour,
            hold_id: c.hold_id,
            connection: c.connection.map(Json),
            created_at: c.created_at,
            running_at: c.running_at,
            expires_at: c.expires_at,
            terminated_at: c.terminated_at,
            nodes: c
                .nodes
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            events: c
                .events
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Quota")]
pub struct GqlQuota {
    max_gpus: i64,
    max_clusters: i64,
    max_spend_per_hour: String,
    gpus_in_use: i64,
    clusters_in_use: i64,
    spend_per_hour: String,
}

impl From<QuotaView> for GqlQuota {
    fn from(q: QuotaView) -> Self {
        GqlQuota {
            max_gpus: q.max_gpus,
            max_clusters: q.max_clusters,
            max_spend_per_hour: q.max_spend_per_hour,
            gpus_in_use: q.gpus_in_use,
            clusters_in_use: q.clusters_in_use,
            spend_per_hour: q.spend_per_hour,
        }
    }
}

/// What an apply would do (as `PUT /v1/clusters/{name}?dry_run=true`).
#[derive(SimpleObject)]
#[graphql(name = "ApplyPlan")]
pub struct GqlApplyPlan {
    /// `create`, `update`, `replace` or `none`.
    action: String,
    name: String,
    cluster_id: Option<String>,
    resource_version: Option<i64>,
    /// Field by field: `field`, `from`, `to`, `in_place`.
    changes: Json<Vec<SpecChange>>,
    needs_replace: bool,
    price_per_hour: String,
    currency: String,
    hold: String,
}

impl From<ApplyPlan> for GqlApplyPlan {
    fn from(p: ApplyPlan) -> Self {
        let action = serde_json::to_value(p.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        GqlApplyPlan {
            action,
            name: p.name,
            cluster_id: p.cluster_id,
            resource_version: p.resource_version,
            changes: Json(p.changes),
            needs_replace: p.needs_replace,
            price_per_hour: p.price_per_hour,
            currency: p.currency,
            hold: p.hold,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ApplyResult")]
pub struct GqlApplyResult {
    plan: GqlApplyPlan,
    cluster: GqlCluster,
}

impl From<ApplyResult> for GqlApplyResult {
    fn from(r: ApplyResult) -> Self {
        GqlApplyResult {
            plan: r.plan.into(),
            cluster: r.cluster.into(),
        }
    }
}

/// A Kubernetes cluster's admin credentials (the same as `GET /v1/clusters/{id}/credentials`).
#[derive(SimpleObject)]
#[graphql(name = "ClusterCredentials")]
pub struct GqlClusterCredentials {
    cluster_id: String,
    kind: String,
    api_server: String,
    token: String,
    kubeconfig: String,
}

impl From<ClusterCredentials> for GqlClusterCredentials {
    fn from(c: ClusterCredentials) -> Self {
        GqlClusterCredentials {
            cluster_id: c.cluster_id,
            kind: c.kind.as_str().into(),
            api_server: c.api_server,
            token: c.token,
            kubeconfig: c.kubeconfig,
        }
    }
}

#[derive(Default)]
pub struct ClustersQuery;

#[Object]
impl ClustersQuery {
    /// A cluster with its nodes, latest events and connection details.
    async fn cluster(&self, ctx: &Context<'_>, id: String) -> GqlResult<GqlCluster> {
        Ok(control(ctx)
            .clusters
            .get(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?
            .into())
    }

    /// A Kubernetes cluster's admin credentials. Needs the right to change clusters; every
    /// read is written to the audit log (without a request id, which GraphQL does not see).
    async fn cluster_credentials(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> GqlResult<GqlClusterCredentials> {
        Ok(control(ctx)
            .clusters
            .credentials(actor(ctx)?, &id, &RequestOrigin::default())
            .await
            .map_err(gql_error)?
            .into())
    }

    /// The organisation's clusters, oldest first.
    async fn clusters(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
        status: Option<String>,
    ) -> GqlResult<GqlPage<GqlCluster>> {
        let p = control(ctx)
            .clusters
            .list(actor(ctx)?, status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)?;
        Ok(GqlPage::from_page(p))
    }

    /// A cluster's events after `after` (a `seq`), oldest first.
    async fn cluster_events(
        &self,
        ctx: &Context<'_>,
        id: String,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> GqlResult<Vec<GqlClusterEvent>> {
        let events = control(ctx)
            .clusters
            .list_events(actor(ctx)?, &id, after.unwrap_or(0), limit.unwrap_or(100))
            .await
            .map_err(gql_error)?;
        Ok(events.into_iter().map(Into::into).collect())
    }

    /// What applying `input` as the cluster of its name would do; nothing is written.
    async fn plan_cluster(
        &self,
        ctx: &Context<'_>,
        input: GqlClusterInput,
        resource_version: Option<i64>,
    ) -> GqlResult<GqlApplyPlan> {
        let spec = ClusterSpec::from(input);
        Ok(control(ctx)
            .clusters
            .plan_apply(actor(ctx)?, &spec.name.clone(), &spec, resource_version)
            .await
            .map_err(gql_error)?
            .into())
    }

    /// The organisation's limits and its use of them.
    async fn quota(&self, ctx: &Context<'_>) -> GqlResult<GqlQuota> {
        Ok(control(ctx)
            .clusters
            .quota(actor(ctx)?)
            .await
            .map_err(gql_error)?
            .into())
    }
}

#[derive(Default)]
pub struct ClustersMutation;

#[Object]
impl ClustersMutation {
    /// Creates a cluster (as `POST /v1/clusters`): placed, reserved and provisioning when this
    /// answers.
    async fn create_cluster(
        &self,
        ctx: &Context<'_>,
        input: GqlClusterInput,
    ) -> GqlResult<GqlCluster> {
        Ok(control(ctx)
            .clusters
            .create(actor(ctx)?, &input.into())
            .await
            .map_err(gql_error)?
            .into())
    }

    /// Makes the cluster of `input.name` match `input` (as `PUT /v1/clusters/{name}`).
    async fn apply_cluster(
        &self,
        ctx: &Context<'_>,
        input: GqlClusterInput,
        resource_version: Option<i64>,
    ) -> GqlResult<GqlApplyResult> {
        let spec = ClusterSpec::from(input);
        let (_, result) = control(ctx)
            .clusters
            .apply(actor(ctx)?, &spec.name.clone(), &spec, resource_version)
            .await
            .map_err(gql_error)?;
        Ok(result.into())
    }

    /// Adds hours to a cluster and holds funds for them.
    async fn extend_cluster(
        &self,
        ctx: &Context<'_>,
        id: String,
        hours: i64,
        resource_version: Option<i64>,
    ) -> GqlResult<GqlCluster> {
        let ext = Extension {
            hours,
            resource_version,
        };
        Ok(control(ctx)
            .clusters
            .extend(actor(ctx)?, &id, &ext)
            .await
            .map_err(gql_error)?
            .into())
    }

    /// Terminates a cluster; an ended one is answered unchanged.
    async fn terminate_cluster(
        &self,
        ctx: &Context<'_>,
        id: String,
        resource_version: Option<i64>,
    ) -> GqlResult<GqlCluster> {
        Ok(control(ctx)
            .clusters
            .terminate(actor(ctx)?, &id, resource_version)
            .await
            .map_err(gql_error)?
            .into())
    }
}

#[derive(Default)]
pub struct ClustersSubscription;

#[Subscription]
impl ClustersSubscription {
    /// A cluster's events after `after` (default: all), then each new one from any replica;
    /// ends after the cluster's final event.
    async fn cluster_events(
        &self,
        ctx: &Context<'_>,
        id: String,
        after: Option<i64>,
    ) -> BoxStream<'static, GqlResult<GqlClusterEvent>> {
        let stream = match actor(ctx) {
            Ok(actor) => control(ctx)
                .clusters
                .follow_events(actor, &id, after.unwrap_or(0))
                .await
                .map_err(gql_error),
            Err(e) => Err(e),
        };
        match stream {
            Ok(s) => s.map(|e| Ok(GqlClusterEvent::from(e))).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
}
