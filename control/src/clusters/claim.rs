//! Claiming GPUs for a cluster: the cluster's own writes (its row, quota, hold, events) and
//! its nodes in one transaction that this use case owns. [`Capacity`](crate::capacity::Capacity)
//! chooses the plans and says which to try next when one was taken meanwhile.

use iocloud_db::Tx;
use iocloud_db::ids::OrgId;

use super::Clusters;
use crate::Result;
use crate::capacity::{Attempt, Claim, NodeStart};
use crate::placement::{Plan, PlanNode, Request};

/// What a claim writes besides the nodes: each node's bootstrap, and the cluster's own rows,
/// written before the GPUs are taken (devices are locked last).
pub(super) trait ClaimWork {
    type Output;
    /// Node `index` of the plan; `first` is the id of node 0 (for the nodes after it).
    fn node(&mut self, index: usize, first: Option<&str>, node: &PlanNode) -> NodeStart;
    /// The work's writes, before the nodes are inserted: `node_ids` are the ids they will
    /// have. A claim that fails rolls these back with it.
    async fn within(
        &mut self,
        tx: &mut Tx,
        plan: &Plan,
        node_ids: &[String],
    ) -> Result<Self::Output>;
}

impl Clusters {
    /// Places and claims for `cluster_id` of `org_id`: `work`'s writes and the best plan's
    /// GPUs still free, all committed together or not at all.
    pub(super) async fn claim<W: ClaimWork>(
        &self,
        org_id: &OrgId,
        cluster_id: &str,
        request: &Request,
        work: &mut W,
    ) -> Result<(Claim, W::Output)> {
        let mut claiming = self.capacity.claiming(request);
        loop {
            let attempt = claiming.next().await?;
            let committed = self.claim_in(org_id, cluster_id, &attempt, work).await;
            if let Some(done) = claiming.decide(attempt, committed).await? {
                return Ok(done);
            }
        }
    }

    /// One attempt's transaction.
    async fn claim_in<W: ClaimWork>(
        &self,
        org_id: &OrgId,
        cluster_id: &str,
        attempt: &Attempt,
        work: &mut W,
    ) -> Result<W::Output> {
        let starts: Vec<NodeStart> = attempt
            .plan
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| work.node(index, attempt.first_node(index), node))
            .collect();
        let mut tx = self.db.begin().await?;
        let output = work
            .within(&mut tx, &attempt.plan, &attempt.node_ids)
            .await?;
        self.capacity
            .take_in(&mut tx, attempt, org_id, cluster_id, &starts)
            .await?;
        tx.commit().await?;
        Ok(output)
    }
}
