//! Creating a cluster: validate, place, and reserve in one transaction the GPUs (node
//! assignments), the quota and the hold for the whole duration. Either the cluster exists,
//! provisioning, with all three, or nothing was written.

use iocloud_billing::ledger::place_hold_in;
use iocloud_billing::{Currency, Money};
use iocloud_db::ids::OrgId;
use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, db_run, tx_run};

use super::Clusters;
use super::bootstrap::ClusterBoot;
use super::claim::ClaimWork;
use super::spec::{Checked, ClusterSpec};
use super::{
    COLUMNS, ClusterEvent, ClusterRow, ClusterStatus, ClusterView, NodeView, StoredStatus, events,
    quota,
};
use crate::capacity::NodeStart;
use crate::placement::{Plan, PlanNode};
use crate::{Action, Actor, Error, ErrorCode, Result, Settings};

/// How often the reconciler looks at a cluster with nothing due sooner, µs.
pub(crate) const RECHECK: i64 = 15_000_000;

fn usd(micros: i64) -> String {
    Money::from_micros(micros, Currency::Usd).to_decimal()
}

/// The writes of a new cluster, done in the claim's transaction before its nodes are assigned.
struct NewCluster<'a> {
    settings: &'a Settings,
    org_id: &'a OrgId,
    id: &'a str,
    spec: &'a ClusterSpec,
    checked: &'a Checked,
    currency: Currency,
    /// Micro-USD for one unit of `currency`, and the stored rate it came from.
    usd_per_unit: i64,
    rate_id: Option<String>,
    join_token: String,
    /// Each node's role and first status, as `node` decided them for the plan being claimed.
    starts: Vec<(&'static str, &'static str)>,
}

impl ClaimWork for NewCluster<'_> {
    type Output = (ClusterRow, Vec<ClusterEvent>);

    fn node(&mut self, index: usize, first: Option<&str>, node: &PlanNode) -> NodeStart {
        let start = ClusterBoot {
            cluster_id: self.id,
            kind: self.checked.kind,
            image: &self.checked.image,
            join_token: &self.join_token,
            workload: &self.checked.workload,
        }
        .node(index, first, node);
        // A claim that failed on one plan starts over on the next.
        self.starts.truncate(index);
        let status = if start.start_now {
            "assigned"
        } else {
            "waiting"
        };
        self.starts.push((start.role, status));
        start
    }

    async fn within(
        &mut self,
        tx: &mut Tx,
        plan: &Plan,
        node_ids: &[String],
    ) -> Result<Self::Output> {
        let now = now_micros();
        let gpus: i64 = plan.nodes.iter().map(|n| i64::from(n.gpus)).sum();
        let spec_json =
            serde_json::to_string(self.spec).map_err(|e| Error::Internal(e.to_string()))?;
        let mut row = ClusterRow {
            id: self.id.to_string(),
            org_id: self.org_id.clone(),
            name: self.spec.name.clone(),
            kind: self.checked.kind.as_str().to_string(),
            spec: spec_json,
            generation: 1,
            resource_version: 0,
            status: StoredStatus::initial(),
            status_reason: None,
            quote_id: self.spec.quote_id.clone(),
            currency: self.currency.code().to_string(),
            hold_id: None,
            gpus,
            price_per_hour: 0,
            spend_per_hour: plan.price_per_hour,
            usd_per_unit: self.usd_per_unit,
            rate_id: self.rate_id.clone(),
            duration_hours: self.spec.duration_hours,
            connection: None,
            join_token: self.join_token.clone(),
            provisioning_deadline: None,
            running_at: None,
            expires_at: None,
            ended_at: None,
            terminated_at: None,
            reconcile_at: None,
            created_at: now,
            updated_at: now,
        };
        row.price_per_hour = row.in_currency(plan.price_per_hour)?.micros();
        let hold_amount = Money::from_micros(row.price_per_hour, self.currency).mul_div(
            self.spec.duration_hours,
            1,
            iocloud_billing::Rounding::Down,
        )?;
        let timeout = self.settings.provisioning_timeout.as_micros() as i64;
        let hold_id = new_id("hld");
        row.hold_id = Some(hold_id.clone());
        row.provisioning_deadline = Some(now + timeout);
        row.reconcile_at = Some(now + RECHECK.min(timeout));
        let regions: std::collections::BTreeSet<&str> =
            plan.nodes.iter().map(|n| n.region.as_str()).collect();
        let regions: Vec<&str> = regions.into_iter().collect();
        // The steps a create goes through, each an event, all in this one transaction.
        let steps = [
            (
                ClusterStatus::Pending,
                "created",
                format!(
                    "{} cluster {} created",
                    self.checked.kind.as_str(),
                    row.name
                ),
            ),
            (
                ClusterStatus::Placing,
                "placing",
                format!("placing {gpus} GPUs"),
            ),
            (
                ClusterStatus::Placing,
                "reserved",
                format!(
                    "{} node(s) in {} ({} plan, {} USD per hour); held {} {} for {} hour(s)",
                    node_ids.len(),
                    regions.join(", "),
                    plan.label,
                    usd(plan.price_per_hour),
                    hold_amount.to_decimal(),
                    self.currency.code(),
                    self.spec.duration_hours,
                ),
            ),
            (
                ClusterStatus::Provisioning,
                "provisioning",
                "nodes are starting".to_string(),
            ),
        ];
        let mut made = Vec::with_capacity(steps.len());
        for (status, kind, message) in steps {
            row.resource_version += 1;
            row.set_status(status, None)?;
            made.push(ClusterEvent {
                cluster_id: row.id.clone(),
                seq: row.resource_version,
                at: iocloud_db::Timestamp::from_micros(now),
                kind: kind.to_string(),
                status,
                message,
            });
        }
        // The new rows first: they wait on nobody (but a create of the same name). Then the
        // contended rows, in the order every transaction takes them: the customer's accounts
        // (the hold), then their quota. The devices come after, in the claim.
        // An organisation that owes money (a disputed payment it had spent) rents nothing
        // more until it has paid.
        let debt = iocloud_billing::Ledger::balance_in(
            tx,
            &iocloud_billing::AccountRef::org(
                self.org_id,
                iocloud_billing::AccountKind::Debt,
                Currency::Usd,
            ),
        )
        .await?;
        if debt.micros() < 0 {
            return Err(Error::conflict(
                crate::ErrorCode::DebtOutstanding,
                format!(
                    "the organisation owes {} USD from a disputed card payment; top up to pay it first",
                    Money::from_micros(-debt.micros(), Currency::Usd).to_decimal()
                ),
            ));
        }
        insert_in(tx, &row).await?;
        events::record_all_in(tx, self.org_id, &made, now).await?;
        let hold = place_hold_in(
            tx,
            &hold_id,
            self.org_id,
            hold_amount,
            self.id,
            &format!("cluster:{}:hold", self.id),
        )
        .await?;
        // A hold is placed once per reference, and the cluster's id is new.
        if hold.id != hold_id {
            return Err(Error::Internal(format!(
                "cluster {} had a hold already",
                self.id
            )));
        }
        quota::reserve_in(
            tx,
            self.settings.quota,
            self.org_id,
            gpus,
            1,
            plan.price_per_hour,
        )
        .await?;
        Ok((row, made))
    }
}

async fn insert_in(tx: &mut Tx, r: &ClusterRow) -> Result<()> {
    let sql = format!(
        "INSERT INTO clusters ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22, $23, $24, $25, $26, $27, $28)"
    );
    let done = tx_run!(tx, |c| sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.org_id)
        .bind(&r.name)
        .bind(&r.kind)
        .bind(&r.spec)
        .bind(r.generation)
        .bind(r.resource_version)
        .bind(&r.status)
        .bind(&r.status_reason)
        .bind(&r.quote_id)
        .bind(&r.currency)
        .bind(&r.hold_id)
        .bind(r.gpus)
        .bind(r.price_per_hour)
        .bind(r.spend_per_hour)
        .bind(r.usd_per_unit)
        .bind(&r.rate_id)
        .bind(r.duration_hours)
        .bind(&r.connection)
        .bind(&r.join_token)
        .bind(r.provisioning_deadline)
        .bind(r.running_at)
        .bind(r.expires_at)
        .bind(r.ended_at)
        .bind(r.terminated_at)
        .bind(r.reconcile_at)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(c)
        .await
        .map(|r| r.rows_affected()));
    match done.map_err(DbError::from) {
        Ok(_) => Ok(()),
        Err(DbError::Conflict(_)) => Err(name_taken(&r.name)),
        Err(e) => Err(e.into()),
    }
}

/// The dearest price per GPU-hour a stored quote offered, in micro-USD (`None`: no node).
fn dearest_quoted(quote: &crate::quotes::Quote) -> Result<Option<i64>> {
    let mut dearest = None;
    for node in quote.plans.iter().flat_map(|p| &p.nodes) {
        let price = Money::parse(&node.price_per_gpu_hour, Currency::Usd)
            .map_err(|_| Error::corrupt("placement_quotes.quote", &node.price_per_gpu_hour))?;
        dearest = dearest.max(Some(price.micros()));
    }
    Ok(dearest)
}

fn name_taken(name: &str) -> Error {
    Error::Conflict {
        code: ErrorCode::NameTaken,
        message: format!("a live cluster is already named {name}"),
    }
}

impl Clusters {
    /// Creates a cluster and starts its nodes. Refused, with nothing written, when the spec is
    /// invalid, the name is taken, nothing fits (422), the quota would be exceeded (403) or
    /// the balance does not cover the hold (402).
    pub async fn create(&self, actor: &Actor, spec: &ClusterSpec) -> Result<ClusterView> {
        actor.authorize(Action::ResourcesWrite)?;
        let mut checked = self.check_spec(spec)?;
        // The SSH keys the nodes let in, each id the spec names checked.
        checked.workload = self
            .with_keys(
                &actor.org_id,
                spec,
                std::mem::take(&mut checked.workload),
                true,
            )
            .await?;
        if let Some(quote_id) = &spec.quote_id {
            self.cap_by_quote(&actor.org_id, quote_id, &mut checked)
                .await?;
        }
        // A live cluster of the same name is refused by the database's unique index, in the
        // create's own transaction (`insert_in`): no read beforehand on the way to success.
        let currency = match checked.currency {
            Some(c) => c,
            None => self.directory.currency_of(&actor.org_id).await?,
        };
        let (usd_per_unit, rate_id) = match currency {
            Currency::Io => {
                let rate = self.prices.current().await?;
                (rate.usd_per_io, Some(rate.id))
            }
            Currency::Usd | Currency::Iosd => (1_000_000, None),
        };
        let id = new_id("clu");
        let mut work = NewCluster {
            settings: &self.settings,
            org_id: &actor.org_id,
            id: &id,
            spec,
            checked: &checked,
            currency,
            usd_per_unit,
            rate_id,
            join_token: crate::secrets::generate("iojt_"),
            starts: Vec::new(),
        };
        let claimed = self
            .claim(&actor.org_id, &id, &checked.request, &mut work)
            .await;
        let (claim, (row, made)) = match claimed {
            Ok(done) => done,
            // Refused before the name was reached (placement, before any write): say the name
            // is taken if it is, so that a create retried after it went through hears that
            // rather than "no capacity". Quota and funds come after the name's insert.
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::InsufficientCapacity | ErrorCode::CapacityContended
                ) && self.name_live(&actor.org_id, &spec.name).await? =>
            {
                return Err(name_taken(&spec.name));
            }
            Err(e) => return Err(e),
        };
        self.publish_events(&made).await;
        // Everything the answer shows was just written: no need to read it back.
        let mut view = row.view()?;
        let nodes = claim
            .plan
            .nodes
            .iter()
            .zip(&claim.node_ids)
            .zip(&work.starts);
        view.nodes = Some(
            nodes
                .map(|((n, id), (role, status))| NodeView {
                    id: id.clone(),
                    role: role.to_string(),
                    status: status.to_string(),
                    device_id: n.device_id.clone(),
                    region: n.region.clone(),
                    gpu_model: Some(n.model.clone()),
                    gpus: i64::from(n.gpus),
                    price_per_gpu_hour: usd(n.price_per_gpu_hour),
                    endpoints: None,
                    reason: None,
                    current: true,
                })
                .collect(),
        );
        view.events = Some(made);
        Ok(view)
    }

    /// Whether a live cluster of the organisation has the name.
    async fn name_live(&self, org_id: &OrgId, name: &str) -> Result<bool> {
        Ok(db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM clusters WHERE org_id = $1 AND name = $2 \
             AND status NOT IN ('terminating', 'terminated', 'failed'))"
        )
        .bind(org_id)
        .bind(name)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?)
    }

    /// A cited quote must be the organisation's and still valid; the cluster may then cost no
    /// more per GPU-hour than the dearest node the quote offered.
    async fn cap_by_quote(
        &self,
        org_id: &OrgId,
        quote_id: &str,
        checked: &mut Checked,
    ) -> Result<()> {
        let quote = self.quotes.cited(org_id, quote_id).await?;
        if let Some(cap) = dearest_quoted(&quote)? {
            let r = &mut checked.request;
            r.max_price = Some(r.max_price.map_or(cap, |m| m.min(cap)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(prices: &[&str]) -> crate::quotes::Quote {
        let nodes: Vec<serde_json::Value> = prices
            .iter()
            .map(|p| {
                serde_json::json!({"device_id": "dev_t", "region": "eu-central", "gpu_model": "h100-sxm",
                    "gpus": 1, "price_per_gpu_hour": p})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": "quo_t", "expires_at": "2026-12-05T00:00:00Z", "duration_hours": 1,
            "plans": [{"label": "cheapest", "nodes": nodes, "price_per_hour": "0",
                "total": "0", "estimated_rtt_ms": 1}],
        }))
        .unwrap()
    }

    #[test]
    fn a_stored_quote_caps_at_its_dearest_node_and_an_unreadable_price_is_corrupt() {
        assert_eq!(dearest_quoted(&quote(&[])).unwrap(), None);
        assert_eq!(
            dearest_quoted(&quote(&["2.10", "3.05", "1.00"])).unwrap(),
            Some(3_050_000)
        );
        match dearest_quoted(&quote(&["2.10", "lots"])) {
            Err(Error::CorruptData { column, value }) => {
                assert_eq!((column, value.as_str()), ("placement_quotes.quote", "lots"));
            }
            other => panic!("read as {other:?}"),
        }
    }
}
