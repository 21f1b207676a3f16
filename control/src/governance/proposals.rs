//! Proposals and votes: who may propose, the stake snapshot a vote is weighed by, a vote and
//! its replacement, an operator's veto, and the public reads.
//!
//! A voter is shown by a pseudonym (`v_` and twelve hex digits of a hash of its organisation's
//! id): the same organisation is the same voter on every proposal, as an address is on chain,
//! but the explorer never names it.

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::new_id;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Governance, ParamChange};
use crate::page::{Page, PageRequest};
use crate::{Action, Actor, Error, ErrorCode, Result};

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Open for votes until `ends_at`.
    Voting,
    /// Passed; a proposal in words only has nothing to apply.
    Passed,
    /// Short of the quorum or of the threshold.
    Rejected,
    /// A passed change waiting out its timelock.
    Queued,
    /// Vetoed by an operator during the timelock.
    Vetoed,
    /// A change applied: `params_version` is the version it made.
    Executed,
}

impl ProposalStatus {
    pub const ALL: [ProposalStatus; 6] = [
        ProposalStatus::Voting,
        ProposalStatus::Passed,
        ProposalStatus::Rejected,
        ProposalStatus::Queued,
        ProposalStatus::Vetoed,
        ProposalStatus::Executed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Voting => "voting",
            ProposalStatus::Passed => "passed",
            ProposalStatus::Rejected => "rejected",
            ProposalStatus::Queued => "queued",
            ProposalStatus::Vetoed => "vetoed",
            ProposalStatus::Executed => "executed",
        }
    }

    pub fn parse(s: &str) -> Option<ProposalStatus> {
        ProposalStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A vote's choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Yes,
    No,
    Abstain,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Yes => "yes",
            Choice::No => "no",
            Choice::Abstain => "abstain",
        }
    }

    pub fn parse(s: &str) -> Option<Choice> {
        [Choice::Yes, Choice::No, Choice::Abstain]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A new proposal.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "NewProposalInput")
)]
#[serde(deny_unknown_fields)]
pub struct NewProposal {
    /// 1 to 120 characters.
    pub title: String,
    /// 1 to 20,000 characters; lines allowed.
    pub body: String,
    /// The parameters it would set; none for a proposal in words only.
    pub change: Option<ParamChange>,
}

/// A vote, or its replacement.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// `yes`, `no` or `abstain`.
    pub choice: String,
}

/// An operator's veto of a queued change.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VetoRequest {
    /// Why, in words: shown with the proposal. 1 to 2,000 characters.
    pub reason: String,
}

/// A proposal as anyone may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Proposal {
    pub id: String,
    pub title: String,
    pub body: String,
    pub change: Option<ParamChange>,
    /// Put by an operator (else by a staked organisation, shown as `proposer`).
    pub by_operator: bool,
    /// The proposing organisation's voter pseudonym.
    pub proposer: Option<String>,
    /// `voting`, `passed`, `rejected`, `queued`, `vetoed` or `executed`.
    pub status: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    /// $IO staked when the vote opened: what the quorum is a share of.
    pub total_weight: String,
    pub quorum_bps: i64,
    /// The share of yes among yes and no it must exceed.
    pub threshold_bps: i64,
    /// The tally in $IO: live while voting, final from the close.
    pub yes: String,
    pub no: String,
    pub abstain: String,
    pub votes: i64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Timestamp>,
    /// When a queued change applies, unless vetoed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub executes_at: Option<Timestamp>,
    pub veto_reason: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub executed_at: Option<Timestamp>,
    /// The parameters' version the change made.
    pub params_version: Option<i64>,
}

/// A vote as anyone may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ProposalVote")
)]
pub struct Vote {
    /// The voting organisation's pseudonym.
    pub voter: String,
    /// `yes`, `no` or `abstain`.
    pub choice: String,
    /// $IO it weighs: the organisation's stake when the vote opened.
    pub weight: String,
    #[schema(value_type = String, format = DateTime)]
    pub voted_at: Timestamp,
}

pub(super) const COLUMNS: &str = "id, org_id, title, body, change, status, starts_at, ends_at, total_weight, \
     quorum_bps, threshold_bps, yes_weight, no_weight, abstain_weight, closed_at, executes_at, veto_reason, \
     executed_at, params_version";

#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct ProposalRow {
    pub id: String,
    pub org_id: Option<String>,
    pub title: String,
    pub body: String,
    pub change: Option<String>,
    pub status: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub total_weight: i64,
    pub quorum_bps: i64,
    pub threshold_bps: i64,
    pub yes_weight: i64,
    pub no_weight: i64,
    pub abstain_weight: i64,
    pub closed_at: Option<i64>,
    pub executes_at: Option<i64>,
    pub veto_reason: Option<String>,
    pub executed_at: Option<i64>,
    pub params_version: Option<i64>,
}

impl ProposalRow {
    pub fn change(&self) -> Option<ParamChange> {
        self.change
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
    }
}

/// The tally: (yes, no, abstain, votes).
pub(super) type Tally = (i64, i64, i64, i64);

/// An organisation's voter pseudonym.
pub fn voter(org_id: &str) -> String {
    format!(
        "v_{}",
        &hex::encode(Sha256::digest(org_id.as_bytes()))[..12]
    )
}

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

fn text(field: &'static str, value: &str, max: usize, lines: bool) -> Result<String> {
    let value = value.trim();
    let bad = |c: char| c.is_control() && !(lines && (c == '\n' || c == '\t'));
    if value.is_empty() || value.chars().count() > max || value.chars().any(bad) {
        return Err(Error::validation(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(value.to_string())
}

/// The weight of every organisation's stake now: its active stake and its co-stakes.
const WEIGHTS_SQL: &str = "SELECT org_id, CAST(SUM(w) AS BIGINT) AS weight FROM ( \
     SELECT org_id, amount AS w FROM stakes WHERE status = 'active' \
     UNION ALL SELECT costaker_org_id, amount FROM costake_positions WHERE status IN ('active', 'unstaking') \
   ) x GROUP BY org_id";

impl Governance {
    fn view(&self, r: ProposalRow, tally: Tally) -> Proposal {
        let (yes, no, abstain, votes) = tally;
        Proposal {
            change: r.change(),
            id: r.id,
            title: r.title,
            body: r.body,
            by_operator: r.org_id.is_none(),
            proposer: r.org_id.as_deref().map(voter),
            status: r.status,
            starts_at: r.starts_at.into(),
            ends_at: r.ends_at.into(),
            total_weight: io(r.total_weight),
            quorum_bps: r.quorum_bps,
            threshold_bps: r.threshold_bps,
            yes: io(yes),
            no: io(no),
            abstain: io(abstain),
            votes,
            closed_at: r.closed_at.map(Timestamp::from),
            executes_at: r.executes_at.map(Timestamp::from),
            veto_reason: r.veto_reason,
            executed_at: r.executed_at.map(Timestamp::from),
            params_version: r.params_version,
        }
    }

    /// The votes cast so far: (yes, no, abstain, votes).
    pub(super) async fn tally(&self, id: &str) -> Result<Tally> {
        let rows: Vec<(String, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT choice, CAST(SUM(weight) AS BIGINT), COUNT(*) FROM proposal_votes \
             WHERE proposal_id = $1 GROUP BY choice"
        )
        .bind(id)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let of = |c: Choice| {
            rows.iter()
                .find(|(k, _, _)| k == c.as_str())
                .map_or(0, |r| r.1)
        };
        let votes = rows.iter().map(|r| r.2).sum();
        Ok((of(Choice::Yes), of(Choice::No), of(Choice::Abstain), votes))
    }

    pub(super) async fn row(&self, id: &str) -> Result<ProposalRow> {
        let sql = format!("SELECT {COLUMNS} FROM proposals WHERE id = $1");
        db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("proposal"))
    }

    /// One proposal, with its tally (live while voting).
    pub async fn proposal(&self, id: &str) -> Result<Proposal> {
        let r = self.row(id).await?;
        let tally = if r.status == ProposalStatus::Voting.as_str() {
            self.tally(id).await?
        } else {
            let (_, _, _, votes) = self.tally(id).await?;
            (r.yes_weight, r.no_weight, r.abstain_weight, votes)
        };
        Ok(self.view(r, tally))
    }

    /// The proposals, newest first, optionally of one status.
    pub async fn proposals(
        &self,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Proposal>> {
        if let Some(s) = status
            && ProposalStatus::parse(s).is_none()
        {
            return Err(Error::validation(
                "status",
                "one of voting, passed, rejected, queued, vetoed, executed",
            ));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM proposals WHERE id < $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<ProposalRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(page.after.as_deref().unwrap_or("~"))
            .bind(status)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        // The live tallies of the page's open votes, in one read.
        let voting: Vec<&str> = rows
            .iter()
            .filter(|r| r.status == ProposalStatus::Voting.as_str())
            .map(|r| r.id.as_str())
            .collect();
        let mut live: std::collections::HashMap<String, Tally> = Default::default();
        if !voting.is_empty() {
            let marks: Vec<String> = (1..=voting.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT proposal_id, choice, CAST(SUM(weight) AS BIGINT), COUNT(*) FROM proposal_votes \
                 WHERE proposal_id IN ({}) GROUP BY proposal_id, choice",
                marks.join(", ")
            );
            let sums: Vec<(String, String, i64, i64)> = db_run!(&self.db, |p| {
                let mut q = sqlx::query_as(&sql);
                for id in &voting {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })
            .map_err(DbError::from)?;
            for (id, choice, weight, n) in sums {
                let t = live.entry(id).or_default();
                match Choice::parse(&choice) {
                    Some(Choice::Yes) => t.0 += weight,
                    Some(Choice::No) => t.1 += weight,
                    Some(Choice::Abstain) => t.2 += weight,
                    None => {}
                }
                t.3 += n;
            }
        }
        let items: Vec<Proposal> = rows
            .into_iter()
            .map(|r| {
                let tally = if r.status == ProposalStatus::Voting.as_str() {
                    live.get(&r.id).copied().unwrap_or_default()
                } else {
                    (r.yes_weight, r.no_weight, r.abstain_weight, 0)
                };
                self.view(r, tally)
            })
            .collect();
        Ok(Page::from_rows(items, page, |p| p.id.as_str()))
    }

    /// A proposal's votes, heaviest first.
    pub async fn votes(&self, id: &str, page: &PageRequest) -> Result<Page<Vote>> {
        self.row(id).await?;
        // Paged by the voter's organisation id, which never leaves here.
        let rows: Vec<(String, String, i64, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT org_id, choice, weight, voted_at FROM proposal_votes \
             WHERE proposal_id = $1 AND org_id > $2 ORDER BY org_id LIMIT $3"
        )
        .bind(id)
        .bind(page.after_id())
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let page_of = Page::from_rows(rows, page, |r| r.0.as_str());
        Ok(page_of.map(|(org, choice, weight, at)| Vote {
            voter: voter(&org),
            choice,
            weight: io(weight),
            voted_at: at.into(),
        }))
    }

    /// Puts a proposal to the vote: by an organisation with enough stake, or an operator.
    pub async fn propose(&self, actor: &Actor, new: &NewProposal) -> Result<Proposal> {
        actor.authorize(Action::BillingManage)?;
        let title = text("title", &new.title, 120, false)?;
        let body = text("body", &new.body, 20_000, true)?;
        if let Some(change) = &new.change {
            change.check(&self.catalog)?;
        }
        let user = actor.user_id().unwrap_or("api_key").to_string();
        let own: i64 = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(weight), 0) AS BIGINT) FROM (SELECT org_id, CAST(SUM(w) AS BIGINT) AS weight FROM ( \
               SELECT org_id, amount AS w FROM stakes WHERE status = 'active' AND org_id = $1 \
               UNION ALL SELECT costaker_org_id, amount FROM costake_positions \
               WHERE status IN ('active', 'unstaking') AND costaker_org_id = $1) x GROUP BY org_id) y"
        )
        .bind(actor.org_id.as_str())
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        let by_operator = own < self.settings.proposal_stake;
        if by_operator && !actor.is_operator {
            return Err(Error::conflict(
                ErrorCode::ProposalStakeShort,
                format!(
                    "proposing needs {} $IO staked; the organisation has {}",
                    io(self.settings.proposal_stake),
                    io(own)
                ),
            ));
        }
        let now = now_micros();
        let id = new_id("prp");
        let threshold = if new.change.is_some() {
            self.settings.change_threshold_bps
        } else {
            self.settings.threshold_bps
        };
        let change = new
            .change
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let org = (!by_operator).then(|| actor.org_id.as_str().to_string());
        let ends = now + self.settings.voting_period.as_micros() as i64;
        let mut tx = self.db.begin().await?;
        // The snapshot: each organisation's weight now, for the whole vote.
        let snapshot = format!(
            "INSERT INTO proposal_weights (proposal_id, org_id, weight) \
             SELECT $1, org_id, weight FROM ({WEIGHTS_SQL}) s WHERE weight > 0"
        );
        tx_run!(&mut tx, |c| sqlx::query(&snapshot)
            .bind(&id)
            .execute(c)
            .await
            .map(|_| ()))
        .map_err(DbError::from)?;
        let total: i64 = tx_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(weight), 0) AS BIGINT) FROM proposal_weights WHERE proposal_id = $1"
        )
        .bind(&id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO proposals (id, org_id, proposed_by, title, body, change, status, starts_at, ends_at, \
             total_weight, quorum_bps, threshold_bps, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'voting', $7, $8, $9, $10, $11, $7, $7)"
        )
        .bind(&id)
        .bind(&org)
        .bind(&user)
        .bind(&title)
        .bind(&body)
        .bind(&change)
        .bind(now)
        .bind(ends)
        .bind(total)
        .bind(self.settings.quorum_bps)
        .bind(threshold)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        self.proposal(&id).await
    }

    /// Casts the organisation's vote, or replaces it, until the close.
    pub async fn vote(&self, actor: &Actor, id: &str, req: &VoteRequest) -> Result<Vote> {
        actor.authorize(Action::BillingManage)?;
        let choice = Choice::parse(req.choice.trim())
            .ok_or_else(|| Error::validation("choice", "yes, no or abstain"))?;
        let r = self.row(id).await?;
        let now = now_micros();
        if r.status != ProposalStatus::Voting.as_str() || now >= r.ends_at {
            return Err(Error::conflict(
                ErrorCode::VotingClosed,
                "the vote on this proposal has closed",
            ));
        }
        let weight: Option<i64> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT weight FROM proposal_weights WHERE proposal_id = $1 AND org_id = $2"
        )
        .bind(id)
        .bind(actor.org_id.as_str())
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let Some(weight) = weight.filter(|w| *w > 0) else {
            return Err(Error::conflict(
                ErrorCode::NoVotingWeight,
                "the organisation had no $IO staked when this vote opened",
            ));
        };
        let user = actor.user_id().unwrap_or("api_key").to_string();
        // Written only while the vote is open: a close that ran in between wins.
        let written = db_run!(&self.db, |p| {
            sqlx::query(
            "INSERT INTO proposal_votes (proposal_id, org_id, choice, weight, voted_by, voted_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM proposals \
             WHERE id = $1 AND status = 'voting' AND ends_at > $6) \
             ON CONFLICT (proposal_id, org_id) DO UPDATE SET choice = excluded.choice, \
             voted_by = excluded.voted_by, voted_at = excluded.voted_at"
        )
        .bind(id)
        .bind(actor.org_id.as_str())
        .bind(choice.as_str())
        .bind(weight)
        .bind(&user)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if written == 0 {
            return Err(Error::conflict(
                ErrorCode::VotingClosed,
                "the vote on this proposal has closed",
            ));
        }
        Ok(Vote {
            voter: voter(actor.org_id.as_str()),
            choice: choice.as_str().to_string(),
            weight: io(weight),
            voted_at: now.into(),
        })
    }

    /// An operator vetoes a passed change during its timelock, saying why.
    pub async fn veto(&self, actor: &Actor, id: &str, req: &VetoRequest) -> Result<Proposal> {
        if !actor.is_operator {
            return Err(Error::Forbidden(
                "vetoing proposals (platform operators only)",
            ));
        }
        let reason = text("reason", &req.reason, 2_000, true)?;
        let now = now_micros();
        let vetoed = db_run!(&self.db, |p| sqlx::query(
            "UPDATE proposals SET status = 'vetoed', veto_reason = $2, vetoed_by = $3, updated_at = $4 \
             WHERE id = $1 AND status = 'queued'"
        )
        .bind(id)
        .bind(&reason)
        .bind(actor.user_id().unwrap_or("api_key"))
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if vetoed == 0 {
            let r = self.row(id).await?;
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!(
                    "only a passed change waiting out its timelock can be vetoed; this one is {}",
                    r.status
                ),
            ));
        }
        self.proposal(id).await
    }
}
