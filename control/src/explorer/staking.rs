//! Staking and slashing as anyone may see them: the $IO staked and co-staked, the stake the
//! listed devices of each model are bonded with, the slashing cases with their outcomes (the
//! rule, the amount and the kinds of evidence; never the words of the case, the appeal or the
//! decision, nor who is behind the device), and what has been burned.

use std::collections::BTreeMap;

use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::{Explorer, io};
use crate::page::{Page, PageRequest};
use crate::slashing::{CaseStatus, Rule};
use crate::{Error, Result};

/// The stake the listed devices of one model are bonded with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ModelStake {
    /// The catalog's model id; `cpu` for CPU-only devices.
    pub gpu_model: String,
    pub name: String,
    pub devices: i64,
    pub gpus: i64,
    /// $IO their listing needs staked (the minimum per GPU × the model's multiplier).
    pub bonded: String,
}

/// Slashing cases in one state, and their $IO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct CaseCount {
    /// `open`, `appealed`, `upheld`, `overturned` or `burned`.
    pub status: String,
    pub cases: i64,
    pub amount: String,
}

/// Staking and slashing now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct StakingNow {
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// $IO providers have staked (active), and unbonding on its way out.
    pub staked: String,
    pub unbonding: String,
    /// $IO co-stakers have put behind devices (active or serving its notice).
    pub co_staked: String,
    /// Co-staking offers open now, and the $IO they ask for.
    pub open_offers: i64,
    pub open_offers_amount: String,
    /// The stake the listed devices need, by model, most first.
    pub bonded_by_model: Vec<ModelStake>,
    /// Slashing cases by state (a case is `burned` once its escrow is burned, `overturned`
    /// once returned).
    pub cases: Vec<CaseCount>,
    /// $IO slashed and held while cases run.
    pub in_escrow: String,
    /// $IO burned to date (slashing and every other burn).
    pub burned: String,
}

/// Evidence of one kind a case cites: how much, not what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct EvidenceCount {
    /// `proof`, `block`, `node`, `node_test`, `device_event` or `note`.
    pub kind: String,
    pub count: i64,
}

/// A slashing case, redacted: the device's public fields, the rule, the $IO, the dates and the
/// outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExplorerCase {
    pub id: String,
    pub device_id: String,
    /// The device's model (`cpu` for CPU-only) and region, as its page shows them.
    pub gpu_model: String,
    pub region: String,
    /// `failed_proofs`, `hardware_mismatch`, `abandoned_rental`, `idle_rule` or `operator`.
    pub rule: String,
    /// Opened by the network's detectors (or else by an operator).
    pub by_detector: bool,
    /// `open`, `appealed`, `upheld`, `overturned` or `burned`.
    pub status: String,
    /// $IO taken into escrow.
    pub amount: String,
    pub evidence: Vec<EvidenceCount>,
    pub appealed: bool,
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub appeal_deadline: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<Timestamp>,
    /// When the escrow was burned or returned.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Timestamp>,
}

/// The cases' filters; each one absent lets every case through.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub status: Option<String>,
    pub rule: Option<String>,
    pub device_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct CaseRow {
    id: String,
    device_id: String,
    gpu_model: Option<String>,
    region: Option<String>,
    rule: String,
    opened_by: String,
    status: String,
    amount: i64,
    evidence: String,
    appealed_at: Option<i64>,
    created_at: i64,
    appeal_deadline: i64,
    decided_at: Option<i64>,
    closed_at: Option<i64>,
}

impl From<CaseRow> for ExplorerCase {
    fn from(r: CaseRow) -> Self {
        // The kinds only: a summary may quote an operator or a provider.
        let mut kinds: BTreeMap<String, i64> = BTreeMap::new();
        let cited: Vec<serde_json::Value> = serde_json::from_str(&r.evidence).unwrap_or_default();
        for e in &cited {
            if let Some(kind) = e["kind"].as_str() {
                *kinds.entry(kind.to_string()).or_default() += 1;
            }
        }
        ExplorerCase {
            id: r.id,
            device_id: r.device_id,
            gpu_model: r.gpu_model.unwrap_or_else(|| "cpu".into()),
            region: r.region.unwrap_or_default(),
            rule: r.rule,
            by_detector: r.opened_by == "detector",
            status: r.status,
            amount: io(r.amount),
            evidence: kinds
                .into_iter()
                .map(|(kind, count)| EvidenceCount { kind, count })
                .collect(),
            appealed: r.appealed_at.is_some(),
            opened_at: r.created_at.into(),
            appeal_deadline: r.appeal_deadline.into(),
            decided_at: r.decided_at.map(Timestamp::from),
            closed_at: r.closed_at.map(Timestamp::from),
        }
    }
}

/// The upper bound of a newest-first page by id: past every id.
pub(super) fn before_id(page: &PageRequest) -> &str {
    page.after.as_deref().unwrap_or("~")
}

impl Explorer {
    /// Staking and slashing now.
    pub async fn staking(&self) -> Result<StakingNow> {
        let stakes: Vec<(String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT status, CAST(SUM(amount) AS BIGINT) FROM stakes \
             WHERE status IN ('active', 'unbonding') GROUP BY status"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let of = |s: &str| stakes.iter().find(|(k, _)| k == s).map_or(0, |(_, a)| *a);
        let (co_staked, open_offers, open_amount): (i64, i64, i64) =
            db_run!(&self.db, |p| sqlx::query_as(
                "SELECT (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM costake_positions \
                 WHERE status IN ('active', 'unstaking')), \
                 (SELECT COUNT(*) FROM costake_offers WHERE status = 'open'), \
                 (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM costake_offers WHERE status = 'open')"
            )
            .fetch_one(p)
            .await)
            .map_err(DbError::from)?;
        let cases: Vec<(String, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT status, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM slashing_cases GROUP BY status"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let in_escrow = cases
            .iter()
            .filter(|(s, _, _)| {
                matches!(
                    CaseStatus::parse(s),
                    Some(CaseStatus::Open | CaseStatus::Appealed | CaseStatus::Upheld)
                )
            })
            .map(|(_, _, a)| a)
            .sum();
        // The network's devices by model are read (and cached) once for every page.
        let network = self.network().await?;
        let mut bonded_by_model: Vec<(i64, ModelStake)> = network
            .by_model
            .iter()
            .map(|m| {
                let bonded = if m.gpu_model == "cpu" {
                    m.devices * self.stake.required(None, 0)
                } else {
                    self.stake.required(Some(&m.gpu_model), m.gpus)
                };
                let stake = ModelStake {
                    gpu_model: m.gpu_model.clone(),
                    name: m.name.clone(),
                    devices: m.devices,
                    gpus: m.gpus,
                    bonded: io(bonded),
                };
                (bonded, stake)
            })
            .collect();
        bonded_by_model.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.gpu_model.cmp(&b.1.gpu_model)));
        // What the burn account holds: every $IO burned, without summing its postings.
        let burned: i64 = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM ledger_accounts WHERE kind = $1 AND currency = $2"
        )
        .bind(iocloud_billing::AccountKind::Burn.as_str())
        .bind(iocloud_billing::Currency::Io.code())
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        Ok(StakingNow {
            as_of: Timestamp::from(now_micros()),
            staked: io(of("active")),
            unbonding: io(of("unbonding")),
            co_staked: io(co_staked),
            open_offers,
            open_offers_amount: io(open_amount),
            bonded_by_model: bonded_by_model.into_iter().map(|(_, m)| m).collect(),
            cases: cases
                .into_iter()
                .map(|(status, cases, amount)| CaseCount {
                    status,
                    cases,
                    amount: io(amount),
                })
                .collect(),
            in_escrow: io(in_escrow),
            burned: io(burned),
        })
    }

    /// The slashing cases, newest first, redacted.
    pub async fn cases(
        &self,
        filter: &CaseFilter,
        page: &PageRequest,
    ) -> Result<Page<ExplorerCase>> {
        if let Some(s) = &filter.status
            && CaseStatus::parse(s).is_none()
        {
            return Err(Error::validation(
                "status",
                "one of open, appealed, upheld, overturned, burned",
            ));
        }
        if let Some(r) = &filter.rule
            && Rule::parse(r).is_none()
        {
            return Err(Error::validation(
                "rule",
                "one of failed_proofs, hardware_mismatch, abandoned_rental, idle_rule, operator",
            ));
        }
        let rows: Vec<CaseRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT c.id, c.device_id, d.gpu_model, d.region, c.rule, c.opened_by, c.status, c.amount, \
             c.evidence, c.appealed_at, c.created_at, c.appeal_deadline, c.decided_at, c.closed_at \
             FROM slashing_cases c LEFT JOIN devices d ON d.id = c.device_id \
             WHERE c.id < $1 AND ($2 IS NULL OR c.status = $2) AND ($3 IS NULL OR c.rule = $3) \
             AND ($4 IS NULL OR c.device_id = $4) ORDER BY c.id DESC LIMIT $5"
        )
        .bind(before_id(page))
        .bind(&filter.status)
        .bind(&filter.rule)
        .bind(&filter.device_id)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let cases: Vec<ExplorerCase> = rows.into_iter().map(ExplorerCase::from).collect();
        Ok(Page::from_rows(cases, page, |c| c.id.as_str()))
    }

    /// The co-staking offers open now, oldest first (as the co-staking market lists them).
    pub async fn open_offers(
        &self,
        model: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<crate::costaking::CostakeOffer>> {
        self.costaking.open_offers(model, None, page).await
    }
}
