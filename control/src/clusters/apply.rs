//! Declarative apply, Terraform-style: make the organisation's cluster of a name match a spec.
//! The plan says what would happen (create, update in place, replace, or nothing), field by
//! field, with the price; applying the same spec twice changes nothing.
//!
//! Changed in place: `labels`, `duration_hours` (more hours hold more funds; fewer end it
//! sooner), `preference`, and `max_price_per_gpu_hour` while every node is within it. Any
//! other change replaces the cluster: the old one is terminated, then the new one created
//! (destroy before create, as the name is unique). That includes what the nodes run and who
//! logs in to them (`command`, `ports`, `env`, `ssh_key_ids`): a node takes them when it starts.

use std::collections::BTreeSet;

use iocloud_billing::ledger::extend_hold_in;
use iocloud_billing::{Currency, Money, Rounding};
use iocloud_db::time::now_micros;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Clusters;
use super::lifecycle::{check_version, stale};
use super::spec::{ClusterSpec, check_name};
use super::{ClusterRow, ClusterStatus, ClusterView, row_in};
use crate::{Action, Actor, Error, ErrorCode, Result};

const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// Plans made again when the cluster moved under one, before answering 409.
const APPLY_TRIES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    Create,
    Update,
    Replace,
    None,
}

impl ApplyAction {
    /// The name REST writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Create => "create",
            ApplyAction::Update => "update",
            ApplyAction::Replace => "replace",
            ApplyAction::None => "none",
        }
    }
}

// GraphQL shows the action as REST writes it, a string.
#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(ApplyAction, |a| a.as_str());

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SpecChange {
    pub field: String,
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
    /// Whether the running cluster can take it without being replaced.
    pub in_place: bool,
}

/// What an apply would do (as `PUT /v1/clusters/{name}?dry_run=true`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ApplyPlan")
)]
pub struct ApplyPlan {
    /// `create`, `update`, `replace` or `none`.
    pub action: ApplyAction,
    pub name: String,
    /// The live cluster of that name, if there is one.
    pub cluster_id: Option<String>,
    pub resource_version: Option<i64>,
    /// Field by field: `field`, `from`, `to`, `in_place`.
    #[cfg_attr(
        feature = "graphql",
        graphql(
            skip,
            derived(name = "changes", into = "async_graphql::Json<Vec<SpecChange>>", owned)
        )
    )]
    pub changes: Vec<SpecChange>,
    pub needs_replace: bool,
    /// What the cluster would cost per hour, in `currency` (a fresh placement for a create or
    /// replace).
    pub price_per_hour: String,
    pub currency: String,
    /// What would be held for it: the whole duration for a create or replace, the added
    /// hours for an update.
    pub hold: String,
    /// Where each node would go (a create or replace: the best plan); an update keeps the
    /// nodes where they are.
    pub placement: Option<crate::quotes::PlanView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ApplyResult")
)]
pub struct ApplyResult {
    pub plan: ApplyPlan,
    pub cluster: ClusterView,
}

/// Top-level spec fields a live cluster takes without a replace (`max_price_per_gpu_hour`
/// only while its nodes are within the new limit).
const IN_PLACE: [&str; 4] = [
    "labels",
    "duration_hours",
    "preference",
    "max_price_per_gpu_hour",
];

/// Field-by-field differences (a cited quote is not part of what a cluster is).
fn diff(old: &ClusterSpec, new: &ClusterSpec, dearest_node: i64) -> Result<Vec<SpecChange>> {
    let as_map = |s: &ClusterSpec| match serde_json::to_value(s) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Internal("a spec is an object".into())),
    };
    let (a, b) = (as_map(old)?, as_map(new)?);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut changes = Vec::new();
    for key in keys {
        if key == "quote_id" {
            continue;
        }
        let from = a.get(key).cloned().unwrap_or(Value::Null);
        let to = b.get(key).cloned().unwrap_or(Value::Null);
        if from == to {
            continue;
        }
        let in_place = IN_PLACE.contains(&key.as_str())
            && (key != "max_price_per_gpu_hour"
                || new.max_price_per_gpu_hour.as_deref().is_none_or(|p| {
                    Money::parse(p, Currency::Usd).is_ok_and(|m| m.micros() >= dearest_node)
                }));
        changes.push(SpecChange {
            field: key.clone(),
            from,
            to,
            in_place,
        });
    }
    Ok(changes)
}

impl Clusters {
    /// What applying `spec` as the cluster `name` would do; nothing is written.
    pub async fn plan_apply(
        &self,
        actor: &Actor,
        name: &str,
        spec: &ClusterSpec,
        expected_version: Option<i64>,
    ) -> Result<ApplyPlan> {
        actor.authorize(Action::ResourcesRead)?;
        check_name(name)?;
        if spec.name != name {
            return Err(Error::validation("name", "must be the name in the path"));
        }
        let checked = self.check_spec(spec)?;
        // An SSH key the organisation does not have is refused before any plan.
        self.with_keys(&actor.org_id, spec, checked.workload.clone(), true)
            .await?;
        let live = match self.cluster_row_by_name(&actor.org_id, name).await? {
            Some(row) if row.status()?.is_live() => Some(row),
            _ => None,
        };
        let Some(row) = live else {
            return self
                .fresh_plan(actor, spec, &checked.request, ApplyAction::Create, None)
                .await;
        };
        check_version(&row, expected_version)?;
        let dearest = self.dearest_node(&row).await?;
        let changes = diff(&row.spec()?, spec, dearest)?;
        let needs_replace = changes.iter().any(|c| !c.in_place);
        if needs_replace {
            return self
                .fresh_plan(
                    actor,
                    spec,
                    &checked.request,
                    ApplyAction::Replace,
                    Some((&row, changes)),
                )
                .await;
        }
        let more_hours = (spec.duration_hours - row.duration_hours).max(0);
        let hold = Money::from_micros(row.price_per_hour, row.currency()?).mul_div(
            more_hours,
            1,
            Rounding::Down,
        )?;
        Ok(ApplyPlan {
            action: if changes.is_empty() {
                ApplyAction::None
            } else {
                ApplyAction::Update
            },
            name: name.to_string(),
            cluster_id: Some(row.id.clone()),
            resource_version: Some(row.resource_version),
            changes,
            needs_replace: false,
            price_per_hour: Money::from_micros(row.price_per_hour, row.currency()?).to_decimal(),
            currency: row.currency.clone(),
            hold: hold.to_decimal(),
            placement: None,
        })
    }

    /// A plan that places the spec afresh: the best plan's price, held for the duration.
    async fn fresh_plan(
        &self,
        actor: &Actor,
        spec: &ClusterSpec,
        request: &crate::placement::Request,
        action: ApplyAction,
        replacing: Option<(&ClusterRow, Vec<SpecChange>)>,
    ) -> Result<ApplyPlan> {
        let best = self
            .capacity
            .plans(request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("placement answered no plan".into()))?;
        let currency = match spec.billing_currency.as_deref().and_then(Currency::parse) {
            Some(c) => c,
            None => self.directory.currency_of(&actor.org_id).await?,
        };
        let rate = self.prices.current().await?;
        let price = iocloud_billing::prices::PriceFeed::convert(
            Money::from_micros(best.price_per_hour, Currency::Usd),
            currency,
            &rate,
        )?;
        let hold = price.mul_div(spec.duration_hours, 1, Rounding::Down)?;
        let (cluster_id, version, changes) = match replacing {
            Some((row, changes)) => (Some(row.id.clone()), Some(row.resource_version), changes),
            None => (None, None, Vec::new()),
        };
        Ok(ApplyPlan {
            action,
            name: spec.name.clone(),
            cluster_id,
            resource_version: version,
            changes,
            needs_replace: action == ApplyAction::Replace,
            price_per_hour: price.to_decimal(),
            currency: currency.code().to_string(),
            hold: hold.to_decimal(),
            placement: Some(crate::quotes::PlanView::from(&best)),
        })
    }

    /// The highest price per GPU-hour among the cluster's current nodes, micro-USD.
    async fn dearest_node(&self, row: &ClusterRow) -> Result<i64> {
        // A read: no transaction (on SQLite one would take the write lock).
        Ok(self
            .nodes_of(&row.id)
            .await?
            .iter()
            .filter(|n| n.ended_at.is_none())
            .map(|n| n.price_per_gpu_hour)
            .max()
            .unwrap_or(0))
    }

    /// Makes the cluster `name` match `spec`, as [`Clusters::plan_apply`] says. Answers whether
    /// a new cluster was made (create or replace).
    pub async fn apply(
        &self,
        actor: &Actor,
        name: &str,
        spec: &ClusterSpec,
        expected_version: Option<i64>,
    ) -> Result<(bool, ApplyResult)> {
        actor.authorize(Action::ResourcesWrite)?;
        let mut tries = 0;
        loop {
            let plan = self.plan_apply(actor, name, spec, expected_version).await?;
            match self.apply_plan(actor, spec, plan).await {
                // The cluster moved between the plan and its change (a provisioning one moves
                // with every node report). Without a version to hold it to, plan again.
                Err(Error::Conflict {
                    code: ErrorCode::StaleResourceVersion,
                    ..
                }) if expected_version.is_none() && tries < APPLY_TRIES => tries += 1,
                other => return other,
            }
        }
    }

    async fn apply_plan(
        &self,
        actor: &Actor,
        spec: &ClusterSpec,
        plan: ApplyPlan,
    ) -> Result<(bool, ApplyResult)> {
        let cluster = match (plan.action, &plan.cluster_id) {
            (ApplyAction::Create, _) => self.create(actor, spec).await?,
            (ApplyAction::Replace, Some(old)) => {
                self.terminate(actor, old, plan.resource_version).await?;
                self.create(actor, spec).await?
            }
            (ApplyAction::Update, Some(id)) => {
                let row = self.update_in_place(id, spec, &plan).await?;
                self.full_view(&row).await?
            }
            (_, Some(id)) => self.get(actor, id).await?,
            (_, None) => return Err(Error::Internal("a plan without its cluster".into())),
        };
        let made = matches!(plan.action, ApplyAction::Create | ApplyAction::Replace);
        Ok((made, ApplyResult { plan, cluster }))
    }

    async fn update_in_place(
        &self,
        id: &str,
        spec: &ClusterSpec,
        plan: &ApplyPlan,
    ) -> Result<ClusterRow> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let mut row = row_in(&mut tx, id)
            .await?
            .ok_or(Error::NotFound("cluster"))?;
        check_version(&row, plan.resource_version)?;
        if !row.status()?.is_live() {
            return Err(stale(&row));
        }
        let more = spec.duration_hours - row.duration_hours;
        if more > 0 {
            let extra = Money::from_micros(row.price_per_hour, row.currency()?).mul_div(
                more,
                1,
                Rounding::Down,
            )?;
            if let Some(hold) = &row.hold_id {
                extend_hold_in(
                    &mut tx,
                    hold,
                    extra,
                    &format!("cluster:{id}:apply:{}", row.resource_version),
                )
                .await?;
            }
        }
        if let Some(started) = row.running_at {
            let ends = started + spec.duration_hours * MICROS_PER_HOUR;
            if ends <= now {
                return Err(Error::validation(
                    "duration_hours",
                    "the cluster has already run longer than that",
                ));
            }
            row.expires_at = Some(ends);
            if row.status()? != ClusterStatus::Provisioning {
                row.reconcile_at = Some(row.reconcile_at.unwrap_or(ends).min(ends));
            }
        }
        row.spec = serde_json::to_string(spec).map_err(|e| Error::Internal(e.to_string()))?;
        row.generation += 1;
        row.duration_hours = spec.duration_hours;
        let fields: Vec<&str> = plan.changes.iter().map(|c| c.field.as_str()).collect();
        let message = format!("updated in place: {}", fields.join(", "));
        let event = row
            .save_in(&mut tx, "updated", &message)
            .await?
            .ok_or_else(|| stale(&row))?;
        tx.commit().await?;
        self.publish_events(&[event]).await;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            name: "a".into(),
            kind: Some(super::super::ClusterKind::Ray),
            gpu_count: 8,
            duration_hours: 2,
            ..Default::default()
        }
    }

    #[test]
    fn same_spec_no_changes_and_what_replaces() {
        assert!(diff(&spec(), &spec(), 0).unwrap().is_empty());
        let mut longer = spec();
        longer.duration_hours = 5;
        longer.labels.insert("team".into(), "ml".into());
        let changes = diff(&spec(), &longer, 0).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.in_place));
        let mut bigger = spec();
        bigger.gpu_count = 16;
        let changes = diff(&spec(), &bigger, 0).unwrap();
        assert_eq!(changes[0].field, "gpu_count");
        assert!(!changes[0].in_place);
        // A price cap below a node's price cannot be met in place.
        let mut capped = spec();
        capped.max_price_per_gpu_hour = Some("1.00".into());
        assert!(!diff(&spec(), &capped, 2_000_000).unwrap()[0].in_place);
        assert!(diff(&spec(), &capped, 900_000).unwrap()[0].in_place);
    }

    #[test]
    fn what_the_nodes_run_and_who_logs_in_replace_them() {
        let container = || ClusterSpec {
            kind: Some(super::super::ClusterKind::Container),
            image: Some("busybox".into()),
            ..spec()
        };
        let mut changed = container();
        changed.command = Some(vec!["sleep".into(), "infinity".into()]);
        changed.ports = Some(vec![8080]);
        changed.env.insert("MODE".into(), "serve".into());
        changed.ssh_key_ids = Some(vec![]);
        let changes = diff(&container(), &changed, 0).unwrap();
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["command", "env", "ports", "ssh_key_ids"]);
        assert!(changes.iter().all(|c| !c.in_place));
        // The same spec again, as a file applied twice: nothing to do.
        assert!(diff(&changed, &changed.clone(), 0).unwrap().is_empty());
        assert_eq!(changes[1].to, serde_json::json!({"MODE": "serve"}));
    }
}
