//! GraphQL for clusters and quota. Same services as `/v1/clusters` and `/v1/quota`; the spec
//! (`ClusterInput`), the cluster and what answers about it are the domain's own types.

use async_graphql::{Context, Object, Subscription};
use futures::StreamExt;
use futures::stream::BoxStream;
use iocloud_control::Page;
use iocloud_control::clusters::credentials::RequestOrigin;
use iocloud_control::clusters::{
    ApplyPlan, ApplyResult, ClusterCredentials, ClusterEvent, ClusterSpec, ClusterView, Extension,
    QuotaView,
};

use super::schema::{actor, control, gql_error, page};
use crate::drain::Drain;
use crate::error::ApiError;

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct ClustersQuery;

#[Object]
impl ClustersQuery {
    /// A cluster with its nodes, latest events and connection details.
    async fn cluster(&self, ctx: &Context<'_>, id: String) -> GqlResult<ClusterView> {
        control(ctx)
            .clusters
            .get(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// A Kubernetes cluster's admin credentials. Needs the right to change clusters; every
    /// read is written to the audit log (without a request id, which GraphQL does not see).
    async fn cluster_credentials(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> GqlResult<ClusterCredentials> {
        control(ctx)
            .clusters
            .credentials(actor(ctx)?, &id, &RequestOrigin::default())
            .await
            .map_err(gql_error)
    }

    /// The organisation's clusters, oldest first.
    async fn clusters(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
        status: Option<String>,
    ) -> GqlResult<Page<ClusterView>> {
        control(ctx)
            .clusters
            .list(actor(ctx)?, status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// A cluster's events after `after` (a `seq`), oldest first.
    async fn cluster_events(
        &self,
        ctx: &Context<'_>,
        id: String,
        after: Option<i64>,
        limit: Option<i64>,
    ) -> GqlResult<Vec<ClusterEvent>> {
        control(ctx)
            .clusters
            .list_events(actor(ctx)?, &id, after.unwrap_or(0), limit.unwrap_or(100))
            .await
            .map_err(gql_error)
    }

    /// What applying `input` as the cluster of its name would do; nothing is written.
    async fn plan_cluster(
        &self,
        ctx: &Context<'_>,
        input: ClusterSpec,
        resource_version: Option<i64>,
    ) -> GqlResult<ApplyPlan> {
        control(ctx)
            .clusters
            .plan_apply(actor(ctx)?, &input.name.clone(), &input, resource_version)
            .await
            .map_err(gql_error)
    }

    /// The organisation's limits and its use of them.
    async fn quota(&self, ctx: &Context<'_>) -> GqlResult<QuotaView> {
        control(ctx)
            .clusters
            .quota(actor(ctx)?)
            .await
            .map_err(gql_error)
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
        input: ClusterSpec,
    ) -> GqlResult<ClusterView> {
        control(ctx)
            .clusters
            .create(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Makes the cluster of `input.name` match `input` (as `PUT /v1/clusters/{name}`).
    async fn apply_cluster(
        &self,
        ctx: &Context<'_>,
        input: ClusterSpec,
        resource_version: Option<i64>,
    ) -> GqlResult<ApplyResult> {
        let (_, result) = control(ctx)
            .clusters
            .apply(actor(ctx)?, &input.name.clone(), &input, resource_version)
            .await
            .map_err(gql_error)?;
        Ok(result)
    }

    /// Adds hours to a cluster and holds funds for them.
    async fn extend_cluster(
        &self,
        ctx: &Context<'_>,
        id: String,
        hours: i64,
        resource_version: Option<i64>,
    ) -> GqlResult<ClusterView> {
        let ext = Extension {
            hours,
            resource_version,
        };
        control(ctx)
            .clusters
            .extend(actor(ctx)?, &id, &ext)
            .await
            .map_err(gql_error)
    }

    /// Terminates a cluster; an ended one is answered unchanged.
    async fn terminate_cluster(
        &self,
        ctx: &Context<'_>,
        id: String,
        resource_version: Option<i64>,
    ) -> GqlResult<ClusterView> {
        control(ctx)
            .clusters
            .terminate(actor(ctx)?, &id, resource_version)
            .await
            .map_err(gql_error)
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
    ) -> BoxStream<'static, GqlResult<ClusterEvent>> {
        let stream = match actor(ctx) {
            Ok(actor) => control(ctx)
                .clusters
                .follow_events(actor, &id, after.unwrap_or(0))
                .await
                .map_err(gql_error),
            Err(e) => Err(e),
        };
        match stream {
            // A stopping replica ends the subscription with `server_stopping`: the client
            // subscribes again (another replica answers) after the last event it saw.
            Ok(s) => {
                let drain = ctx.data_unchecked::<Drain>().clone();
                let told = drain.clone();
                drain
                    .cut(s.map(Ok))
                    .chain(
                        futures::stream::once(async move {
                            told.is_draining()
                                .then(|| Err(gql_error(ApiError::ServerStopping)))
                        })
                        .filter_map(futures::future::ready),
                    )
                    .boxed()
            }
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
}
