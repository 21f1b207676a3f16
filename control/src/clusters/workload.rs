//! What a cluster's nodes run beside their role: a container's command, ports and environment
//! (checked with the spec), and the SSH keys every node lets in as `root`, read from the
//! organisation's keys each time nodes are made. So a replacement node gets the keys as they
//! are then: a key removed since, or one whose holder has left the organisation, is not given.

use iocloud_db::ids::OrgId;

use super::{ClusterSpec, Clusters};
use crate::Result;
use crate::providers::agent::Workload;
use crate::ssh_keys::{self, SshKey};

impl Clusters {
    /// `workload` (a checked spec's) with the SSH keys its nodes let in. With `strict` (a new
    /// cluster), a key id the organisation does not have is refused on `ssh_key_ids`.
    pub(super) async fn with_keys(
        &self,
        org_id: &OrgId,
        spec: &ClusterSpec,
        mut workload: Workload,
        strict: bool,
    ) -> Result<Workload> {
        let keys =
            ssh_keys::for_nodes(&self.db, org_id, spec.ssh_key_ids.as_deref(), strict).await?;
        workload.authorized_keys = keys.iter().map(SshKey::authorized_line).collect();
        Ok(workload)
    }

    /// The identity file a container cluster's SSH commands name: the name of the one key its
    /// nodes let in, when that name can be a file's as it is. More keys, or none: no file.
    pub(super) async fn ssh_identity(
        &self,
        org_id: &OrgId,
        spec: &ClusterSpec,
    ) -> Result<Option<String>> {
        let keys =
            ssh_keys::for_nodes(&self.db, org_id, spec.ssh_key_ids.as_deref(), false).await?;
        Ok(match keys.as_slice() {
            [only] if ssh_keys::is_file_name(&only.name) => Some(only.name.clone()),
            _ => None,
        })
    }
}
