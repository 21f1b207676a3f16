//! What a slashing case is made of, as the API shows it: the rule, the evidence, the escrowed
//! $IO, its state and every step it took.

use iocloud_billing::{Currency, Money};
use iocloud_db::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The rule a device broke.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Hourly proofs answered wrongly or late, again and again.
    FailedProofs,
    /// The hardware does not match its claim (less VRAM than its model has).
    HardwareMismatch,
    /// The device went silent while serving a customer's rental.
    AbandonedRental,
    /// Used its GPUs or CPU while listed and idle, hour after hour.
    IdleRule,
    /// Opened by an operator for another breach, named in the statement.
    Operator,
}

#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(Rule, |r| r.as_str());

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::FailedProofs,
        Rule::HardwareMismatch,
        Rule::AbandonedRental,
        Rule::IdleRule,
        Rule::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::FailedProofs => "failed_proofs",
            Rule::HardwareMismatch => "hardware_mismatch",
            Rule::AbandonedRental => "abandoned_rental",
            Rule::IdleRule => "idle_rule",
            Rule::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The share of the device's required stake a detector's case takes, in percent.
    pub fn detector_share_pct(self) -> i64 {
        match self {
            Rule::FailedProofs | Rule::IdleRule => 5,
            Rule::AbandonedRental => 20,
            Rule::HardwareMismatch => 50,
            Rule::Operator => 0,
        }
    }
}

/// Where a case stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// The $IO is in escrow; the provider may appeal until the deadline.
    Open,
    /// The provider appealed; an operator decides.
    Appealed,
    /// Upheld by an operator: burned once the appeal window has ended.
    Upheld,
    /// Overturned: the $IO went back.
    Overturned,
    /// The escrow was burned.
    Burned,
}

#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(CaseStatus, |s| s.as_str());

impl CaseStatus {
    pub const ALL: [CaseStatus; 5] = [
        CaseStatus::Open,
        CaseStatus::Appealed,
        CaseStatus::Upheld,
        CaseStatus::Overturned,
        CaseStatus::Burned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Appealed => "appealed",
            CaseStatus::Upheld => "upheld",
            CaseStatus::Overturned => "overturned",
            CaseStatus::Burned => "burned",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One piece of evidence: a reference to what the control plane recorded, and what it says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject, async_graphql::InputObject),
    graphql(name = "SlashingEvidence", input_name = "SlashingEvidenceInput")
)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `proof` (an hour's proof), `block` (an hour's block row), `node` (a node of a rental),
    /// `node_test` (the test a node answered), `device_event` (a status change), or `note`
    /// (an operator's words).
    pub kind: String,
    /// What it refers to: an hour (RFC 3339), a node or event id; empty for a note.
    #[serde(rename = "ref", default)]
    #[cfg_attr(feature = "graphql", graphql(name = "ref"))]
    pub reference: String,
    /// What it shows, in words with the figures.
    pub summary: String,
}

/// The kinds of evidence a case may cite.
pub const EVIDENCE_KINDS: [&str; 6] = [
    "proof",
    "block",
    "node",
    "node_test",
    "device_event",
    "note",
];

/// One step of a case.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "SlashingEvent")
)]
pub struct CaseEvent {
    /// `opened`, `appealed`, `upheld`, `overturned`, `burned` or `returned`.
    pub kind: String,
    /// `detector`, `provider`, an operator's user id, or `settlement`.
    pub actor: String,
    pub text: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A slashing case.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "SlashingCase")
)]
pub struct SlashingCase {
    pub id: String,
    pub device_id: String,
    /// The provider organisation.
    pub org_id: String,
    #[schema(value_type = String)]
    pub rule: Rule,
    /// `detector`, or `operator`.
    pub opened_by: String,
    pub statement: String,
    pub evidence: Vec<Evidence>,
    /// $IO in escrow, and how much came from the stake and from unwithdrawn rewards.
    pub amount: String,
    pub from_stake: String,
    pub from_rewards: String,
    /// $IO of it taken from the co-stake backing the device (its co-staker's escrow).
    pub from_costake: String,
    #[schema(value_type = String)]
    pub status: CaseStatus,
    /// The provider may appeal until then; nothing is burned before it.
    #[schema(value_type = String, format = DateTime)]
    pub appeal_deadline: Timestamp,
    pub appeal: Option<String>,
    pub decision_reason: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<Timestamp>,
    /// When the escrow was burned or returned.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub events: Vec<CaseEvent>,
}

/// A case as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct CaseRow {
    pub id: String,
    pub device_id: String,
    pub org_id: String,
    pub rule: String,
    pub opened_by: String,
    pub statement: String,
    pub evidence: String,
    pub amount: i64,
    pub from_stake: i64,
    pub from_rewards: i64,
    pub from_costake: i64,
    pub costake_position_id: Option<String>,
    pub costaker_org_id: Option<String>,
    pub status: String,
    pub appeal_deadline: i64,
    pub appeal: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub created_at: i64,
}

pub(crate) const CASE_COLUMNS: &str = "id, device_id, org_id, rule, opened_by, statement, evidence, amount, from_stake, \
     from_rewards, from_costake, costake_position_id, costaker_org_id, status, appeal_deadline, appeal, decision_reason, decided_at, closed_at, created_at";

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

impl CaseRow {
    pub fn status(&self) -> Result<CaseStatus> {
        CaseStatus::parse(&self.status)
            .ok_or_else(|| Error::Internal(format!("slashing_cases.status {}", self.status)))
    }

    pub fn view(self, events: Vec<CaseEvent>) -> Result<SlashingCase> {
        let status = self.status()?;
        let rule = Rule::parse(&self.rule)
            .ok_or_else(|| Error::Internal(format!("slashing_cases.rule {}", self.rule)))?;
        let evidence: Vec<Evidence> = serde_json::from_str(&self.evidence)
            .map_err(|e| Error::Internal(format!("slashing_cases.evidence: {e}")))?;
        Ok(SlashingCase {
            id: self.id,
            device_id: self.device_id,
            org_id: self.org_id,
            rule,
            opened_by: if self.opened_by == "detector" {
                "detector".into()
            } else {
                "operator".into()
            },
            statement: self.statement,
            evidence,
            amount: io(self.amount),
            from_stake: io(self.from_stake),
            from_rewards: io(self.from_rewards),
            from_costake: io(self.from_costake),
            status,
            appeal_deadline: self.appeal_deadline.into(),
            appeal: self.appeal,
            decision_reason: self.decision_reason,
            decided_at: self.decided_at.map(Timestamp::from),
            closed_at: self.closed_at.map(Timestamp::from),
            created_at: self.created_at.into(),
            events,
        })
    }
}

/// An operator's case.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "OpenSlashingCaseInput")
)]
#[serde(deny_unknown_fields)]
pub struct OpenCase {
    pub device_id: String,
    /// Any rule; `operator` for a breach the detectors do not know.
    pub rule: String,
    /// $IO to take into escrow, from the stake first and then from unwithdrawn rewards; `"0"`
    /// opens a case that only stops the device earning.
    #[schema(example = "400")]
    pub amount: String,
    /// 1 to 2000 characters: what happened.
    pub statement: String,
    /// At most 50 references.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// A provider's appeal.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealRequest {
    /// 1 to 4000 characters.
    pub statement: String,
}

/// An operator's decision.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// `uphold` (burned once the appeal window ends) or `overturn` (returned now).
    pub decision: String,
    /// 1 to 2000 characters.
    pub reason: String,
}
