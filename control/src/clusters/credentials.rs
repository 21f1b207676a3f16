//! A cluster's admin credentials, served apart from the cluster itself: reading a cluster
//! needs only read rights (viewers, billing, read-scope keys), while whoever holds the
//! kubeconfig can do anything inside the cluster. So the credentials need the right to change
//! clusters, and every read of them (and every refused attempt) is written to the audit log,
//! which otherwise records only changes.

use serde::Serialize;
use utoipa::ToSchema;

use super::Clusters;
use super::bootstrap;
use super::spec::ClusterKind;
use crate::audit::NewAuditEvent;
use crate::providers::certificate::CaCertificate;
use crate::{Action, Actor, Error, ErrorCode, Result};

/// What the audit log records of the action.
pub const AUDIT_ACTION: &str = "read cluster credentials";

/// The admin credentials of a running Kubernetes cluster.
// Its `Debug` hides the secrets.
#[derive(Clone, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ClusterCredentials")
)]
pub struct ClusterCredentials {
    pub cluster_id: String,
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
    /// The Kubernetes API server's address.
    pub api_server: String,
    /// The bearer token the kubeconfig holds.
    pub token: String,
    /// A complete kubeconfig: save it and point `KUBECONFIG` at it.
    pub kubeconfig: String,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("cluster_id", &self.cluster_id)
            .field("api_server", &self.api_server)
            .field("token", &"***")
            .field("kubeconfig", &"***")
            .finish()
    }
}

/// Where a request came from, for the audit record an adapter cannot write itself.
#[derive(Clone, Debug, Default)]
pub struct RequestOrigin {
    /// The request id, when the adapter knows it.
    pub request_id: String,
    pub ip: Option<String>,
}

impl Clusters {
    /// The admin credentials of one of the organisation's Kubernetes clusters (by id or name;
    /// another organisation's answers 404). Needs the right to change clusters; 409
    /// `no_credentials` for other kinds of cluster, or before the API server is up.
    pub async fn credentials(
        &self,
        actor: &Actor,
        id: &str,
        origin: &RequestOrigin,
    ) -> Result<ClusterCredentials> {
        if let Err(denied) = actor.authorize(Action::ResourcesWrite) {
            self.audit_credentials(actor, id, origin, 403).await;
            return Err(denied);
        }
        let row = self.cluster_row(&actor.org_id, id).await?;
        let kind = row.kind()?;
        let api_server = row
            .connection()?
            .and_then(|c| c.get("api_server")?.as_str().map(String::from))
            .filter(|server| !server.is_empty());
        let api_server = match (kind, !row.status()?.is_live(), api_server) {
            (ClusterKind::Kubernetes, false, Some(server)) => server,
            (ClusterKind::Kubernetes, true, _) => return Err(no_credentials("it has ended")),
            (ClusterKind::Kubernetes, false, None) => {
                return Err(no_credentials("its API server is not up yet"));
            }
            _ => {
                return Err(no_credentials(
                    "only Kubernetes clusters have them; its connection says how to reach it",
                ));
            }
        };
        // Without the cluster's certificate authority a kubeconfig could only skip verifying
        // the server: none is given until the control plane has reported it.
        let ca = row
            .connection()?
            .and_then(|c| c.get("certificate_authority")?.as_str().map(String::from))
            .and_then(|pem| CaCertificate::parse(&pem).ok())
            .ok_or_else(|| {
                no_credentials("its control plane has not reported its certificate authority yet")
            })?;
        let (token, kubeconfig) =
            bootstrap::kubernetes_credentials(&row.name, &row.join_token, &api_server, &ca);
        self.audit_credentials(actor, &row.id, origin, 200).await;
        Ok(ClusterCredentials {
            kind,
            cluster_id: row.id,
            api_server,
            token,
            kubeconfig,
        })
    }

    async fn audit_credentials(
        &self,
        actor: &Actor,
        target: &str,
        origin: &RequestOrigin,
        status: u16,
    ) {
        let (actor_type, actor_id) = actor.audit_identity();
        let event = NewAuditEvent {
            org_id: Some(actor.org_id.to_string()),
            actor_type,
            actor_id: Some(actor_id.to_string()),
            action: AUDIT_ACTION.to_string(),
            target: Some(target.chars().take(64).collect()),
            status,
            request_id: origin.request_id.clone(),
            ip: origin.ip.clone(),
        };
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(error = ?e, "could not write the audit log");
        }
    }
}

fn no_credentials(why: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::NoCredentials,
        message: format!("this cluster has no credentials to read: {why}"),
    }
}
