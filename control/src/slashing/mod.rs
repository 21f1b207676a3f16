//! Slashing: a case against a device names the rule it broke and the evidence, and takes $IO
//! from its provider's stake and unwithdrawn rewards into escrow at once; the device earns
//! nothing while the case is open. The provider may appeal within the window (30 days); an
//! operator decides. Upheld, or unanswered when the window ends, the escrow is burned;
//! overturned, it returns. Cases are opened by operators or by the detectors
//! ([`detect`]); every step is an event on the case, and the provider's audit log says so.

mod detect;
mod escrow;
mod types;

pub use types::{
    AppealRequest, CaseEvent, CaseStatus, DecideRequest, EVIDENCE_KINDS, Evidence, OpenCase, Rule,
    SlashingCase,
};

use std::sync::Arc;
use std::time::Duration;

use iocloud_billing::{Currency, Money};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Tx, db_run, tx_run};

use crate::audit::Audit;
use crate::leases::Leases;
use crate::page::{Page, PageRequest};
use crate::providers::Catalog;
use crate::{Action, Actor, Error, ErrorCode, Result};
use types::{CASE_COLUMNS, CaseRow};

/// How long a provider has to appeal a case at launch; governance may change it
/// (`appeal_window_hours`).
pub const APPEAL_WINDOW_HOURS: i64 = 30 * 24;

/// The lease one replica at a time runs the detectors and the burns under.
const LEASE: &str = "slashing";

/// Most evidence references one case holds.
const MAX_EVIDENCE: usize = 50;

/// Slashing cases. Cheap to clone.
#[derive(Clone)]
pub struct Slashing {
    db: Db,
    catalog: Arc<Catalog>,
    audit: Audit,
    leases: Leases,
    /// The appeal window in force.
    governance: crate::governance::Governance,
}

/// What one pass of the detectors and burns did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlashingPass {
    pub opened: usize,
    pub burned: usize,
}

fn operator(actor: &Actor) -> Result<()> {
    if actor.is_operator {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "slashing cases of others (platform operators only)",
        ))
    }
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(value.to_string())
}

fn check_evidence(evidence: &[Evidence]) -> Result<()> {
    if evidence.len() > MAX_EVIDENCE {
        return Err(Error::validation(
            "evidence",
            format!("at most {MAX_EVIDENCE} references"),
        ));
    }
    for e in evidence {
        if !EVIDENCE_KINDS.contains(&e.kind.as_str()) {
            return Err(Error::validation(
                "evidence",
                format!("kind is one of {}", EVIDENCE_KINDS.join(", ")),
            ));
        }
        if e.reference.chars().count() > 200 || e.reference.chars().any(char::is_control) {
            return Err(Error::validation(
                "evidence",
                "ref is at most 200 characters",
            ));
        }
        text("evidence", &e.summary, 1000)?;
    }
    Ok(())
}

/// Records a step of a case.
async fn event_in(
    tx: &mut Tx,
    case_id: &str,
    kind: &str,
    actor: &str,
    text: &str,
    now: i64,
) -> Result<()> {
    tx_run!(tx, |c| sqlx::query(
        "INSERT INTO slashing_events (id, case_id, kind, actor, text, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(new_id("sle"))
    .bind(case_id)
    .bind(kind)
    .bind(actor)
    .bind(text)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

/// A new case to write: who opens it and what it takes.
pub(crate) struct NewCase<'a> {
    pub device_id: &'a str,
    pub org_id: &'a str,
    pub rule: Rule,
    pub opened_by: &'a str,
    pub statement: String,
    pub evidence: Vec<Evidence>,
    /// Micro-$IO asked.
    pub amount: i64,
    /// Take what there is when the provider holds less (a detector), rather than refuse.
    pub cap_to_holdings: bool,
}

impl Slashing {
    pub(crate) fn new(
        db: Db,
        catalog: Arc<Catalog>,
        audit: Audit,
        leases: Leases,
        governance: crate::governance::Governance,
    ) -> Self {
        Slashing {
            db,
            catalog,
            audit,
            leases,
            governance,
        }
    }

    /// Writes a case and takes its $IO into escrow, in one transaction. `Ok(None)`: a
    /// detector's case for that device and rule is open already.
    pub(crate) async fn open_in(&self, new: NewCase<'_>, now: i64) -> Result<Option<String>> {
        let mut tx = self.db.begin().await?;
        crate::providers::stake::lock_stake(&mut tx, &OrgId::trusted(new.org_id)).await?;
        let (own_stake, rewards) = escrow::holdings_in(&mut tx, new.org_id).await?;
        // A co-stake backing the device shares the slash in proportion to what each staked.
        let costake = crate::costaking::Costaking::backing_device_in(&mut tx, new.device_id, now)
            .await?
            .filter(|b| b.amount > 0);
        let co_staked = costake.as_ref().map_or(0, |b| b.amount);
        let staked = own_stake + co_staked;
        let amount = if new.cap_to_holdings {
            new.amount.min(staked + rewards)
        } else if new.amount > staked + rewards {
            return Err(Error::conflict(
                ErrorCode::SlashExceedsHoldings,
                format!(
                    "the device is backed by {} $IO of stake and its provider holds {} $IO of unwithdrawn rewards; a case may take at most that",
                    Money::from_micros(staked, Currency::Io).to_decimal(),
                    Money::from_micros(rewards, Currency::Io).to_decimal()
                ),
            ));
        } else {
            new.amount
        };
        let from_stakes = amount.min(staked);
        let from_costake = if staked > 0 {
            (i128::from(from_stakes) * i128::from(co_staked) / i128::from(staked)) as i64
        } else {
            0
        };
        let from_stake = from_stakes - from_costake;
        let from_rewards = amount - from_stakes;
        let id = new_id("slc");
        let evidence =
            serde_json::to_string(&new.evidence).map_err(|e| Error::Internal(e.to_string()))?;
        let inserted = tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO slashing_cases (id, device_id, org_id, rule, opened_by, statement, evidence, amount, from_stake, \
             from_rewards, status, appeal_deadline, created_at, updated_at, from_costake, costake_position_id, costaker_org_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'open', $11, $12, $12, $13, $14, $15) ON CONFLICT DO NOTHING"
        )
        .bind(&id)
        .bind(new.device_id)
        .bind(new.org_id)
        .bind(new.rule.as_str())
        .bind(new.opened_by)
        .bind(&new.statement)
        .bind(&evidence)
        .bind(amount)
        .bind(from_stake)
        .bind(from_rewards)
        .bind(now + self.governance.in_force().params.appeal_window_hours * 3_600_000_000)
        .bind(now)
        .bind(from_costake)
        .bind(costake.as_ref().map(|b| b.id.as_str()))
        .bind(costake.as_ref().map(|b| b.costaker_org_id.as_str()))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Ok(None);
        }
        escrow::take_in(&mut tx, new.org_id, &id, from_stake, from_rewards).await?;
        if let Some(b) = costake.as_ref().filter(|_| from_costake > 0) {
            crate::costaking::Costaking::slash_in(&mut tx, &b.id, from_costake).await?;
            escrow::take_costake_in(&mut tx, &b.costaker_org_id, &id, from_costake).await?;
        }
        let io = |m| Money::from_micros(m, Currency::Io).to_decimal();
        event_in(
            &mut tx,
            &id,
            "opened",
            if new.opened_by == "detector" {
                "detector"
            } else {
                new.opened_by
            },
            &format!(
                "{}: {} $IO into escrow ({} from stake, {} from the co-stake, {} from rewards)",
                new.rule.as_str().replace('_', " "),
                io(amount),
                io(from_stake),
                io(from_costake),
                io(from_rewards)
            ),
            now,
        )
        .await?;
        tx.commit().await?;
        self.audit
            .record_background(
                "slashing",
                new.org_id,
                &format!("slashing case opened ({})", new.rule.as_str()),
                Some(id.clone()),
                201,
            )
            .await;
        Ok(Some(id))
    }

    /// An operator opens a case against a device of any provider.
    pub async fn open(&self, actor: &Actor, req: &OpenCase) -> Result<SlashingCase> {
        operator(actor)?;
        let rule = Rule::parse(req.rule.trim()).ok_or_else(|| {
            Error::validation(
                "rule",
                "one of failed_proofs, hardware_mismatch, abandoned_rental, idle_rule, operator",
            )
        })?;
        let amount = Money::parse(req.amount.trim(), Currency::Io)
            .ok()
            .filter(|m| m.micros() >= 0)
            .ok_or_else(|| {
                Error::validation("amount", "$IO, zero or more, with at most six decimals")
            })?;
        let statement = text("statement", &req.statement, 2000)?;
        check_evidence(&req.evidence)?;
        let device_id = req.device_id.trim();
        let owner: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT org_id FROM devices WHERE id = $1"
        )
        .bind(device_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let org_id = owner.ok_or(Error::NotFound("device"))?;
        let id = self
            .open_in(
                NewCase {
                    device_id,
                    org_id: &org_id,
                    rule,
                    opened_by: actor.id(),
                    statement,
                    evidence: req.evidence.clone(),
                    amount: amount.micros(),
                    cap_to_holdings: false,
                },
                now_micros(),
            )
            .await?
            .ok_or_else(|| Error::Internal("an operator's case was not written".into()))?;
        self.row(None, &id).await?.view(self.events(&id).await?)
    }

    /// The provider appeals an open case within its window, with a statement.
    pub async fn appeal(
        &self,
        actor: &Actor,
        id: &str,
        req: &AppealRequest,
    ) -> Result<SlashingCase> {
        actor.authorize(Action::BillingManage)?;
        let statement = text("statement", &req.statement, 4000)?;
        let row = self.row(Some(&actor.org_id), id).await?;
        if row.org_id != actor.org_id.as_str() {
            return Err(Error::Forbidden(
                "appealing a case (its device's provider only; a co-staker reads it)",
            ));
        }
        let now = now_micros();
        if now > row.appeal_deadline {
            return Err(Error::conflict(
                ErrorCode::AppealWindowClosed,
                format!(
                    "the appeal window of case {id} closed at {}",
                    iocloud_db::time::to_rfc3339(row.appeal_deadline)
                ),
            ));
        }
        let mut tx = self.db.begin().await?;
        let moved = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE slashing_cases SET status = 'appealed', appeal = $1, appealed_at = $2, updated_at = $2 \
             WHERE id = $3 AND org_id = $4 AND status = 'open' AND appeal_deadline >= $2"
        )
        .bind(&statement)
        .bind(now)
        .bind(id)
        .bind(&actor.org_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if moved == 0 {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!(
                    "case {id} is {}: only an open case can be appealed",
                    row.status
                ),
            ));
        }
        event_in(&mut tx, id, "appealed", "provider", &statement, now).await?;
        tx.commit().await?;
        self.row(Some(&actor.org_id), id)
            .await?
            .view(self.events(id).await?)
    }

    /// An operator decides an open or appealed case: upheld, it is burned once the window has
    /// ended; overturned, its $IO returns now.
    pub async fn decide(
        &self,
        actor: &Actor,
        id: &str,
        req: &DecideRequest,
    ) -> Result<SlashingCase> {
        operator(actor)?;
        let reason = text("reason", &req.reason, 2000)?;
        let to = match req.decision.trim() {
            "uphold" => CaseStatus::Upheld,
            "overturn" => CaseStatus::Overturned,
            _ => return Err(Error::validation("decision", "uphold or overturn")),
        };
        let row = self.row(None, id).await?;
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let closed = (to == CaseStatus::Overturned).then_some(now);
        let moved = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE slashing_cases SET status = $1, decision_reason = $2, decided_by = $3, decided_at = $4, \
             closed_at = $5, updated_at = $4 WHERE id = $6 AND status IN ('open', 'appealed')"
        )
        .bind(to.as_str())
        .bind(&reason)
        .bind(actor.id())
        .bind(now)
        .bind(closed)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if moved == 0 {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!("case {id} is {}: it was decided already", row.status),
            ));
        }
        event_in(&mut tx, id, to.as_str(), actor.id(), &reason, now).await?;
        if to == CaseStatus::Overturned {
            escrow::return_in(
                &mut tx,
                &row.org_id,
                id,
                row.from_stake,
                row.from_rewards,
                now,
            )
            .await?;
            if let (Some(position), Some(costaker)) =
                (&row.costake_position_id, &row.costaker_org_id)
                && row.from_costake > 0
            {
                crate::costaking::Costaking::restore_in(&mut tx, position, row.from_costake)
                    .await?;
                escrow::settle_costake_in(&mut tx, costaker, id, row.from_costake, false).await?;
            }
            event_in(
                &mut tx,
                id,
                "returned",
                "settlement",
                &format!(
                    "{} $IO back: {} to stake, {} to rewards",
                    Money::from_micros(row.amount, Currency::Io).to_decimal(),
                    Money::from_micros(row.from_stake, Currency::Io).to_decimal(),
                    Money::from_micros(row.from_rewards, Currency::Io).to_decimal()
                ),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.audit
            .record_background(
                "slashing",
                &row.org_id,
                &format!("slashing case {}", to.as_str()),
                Some(id.to_string()),
                200,
            )
            .await;
        self.row(None, id).await?.view(self.events(id).await?)
    }

    /// Burns the escrow of every case upheld, or left open, whose appeal window ended before
    /// `now`. An appealed case waits for its decision. Each case in its own transaction, once.
    pub async fn settle_due(&self, now: i64) -> Result<usize> {
        let due: Vec<(String, String, i64, i64, Option<String>)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT id, org_id, amount, from_costake, costaker_org_id FROM slashing_cases \
             WHERE status IN ('open', 'upheld') AND appeal_deadline < $1 ORDER BY appeal_deadline LIMIT 1000"
        )
        .bind(now)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut burned = 0;
        for (id, org_id, amount, from_costake, costaker) in due {
            let mut tx = self.db.begin().await?;
            let moved = tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE slashing_cases SET status = 'burned', closed_at = $1, updated_at = $1 \
                 WHERE id = $2 AND status IN ('open', 'upheld') AND appeal_deadline < $1"
            )
            .bind(now)
            .bind(&id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(DbError::from)?;
            if moved == 0 {
                continue;
            }
            escrow::burn_in(&mut tx, &org_id, &id, amount - from_costake).await?;
            if let Some(costaker) = costaker.as_deref().filter(|_| from_costake > 0) {
                escrow::settle_costake_in(&mut tx, costaker, &id, from_costake, true).await?;
            }
            event_in(
                &mut tx,
                &id,
                "burned",
                "settlement",
                &format!(
                    "{} $IO burned after the appeal window",
                    Money::from_micros(amount, Currency::Io).to_decimal()
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            burned += 1;
        }
        Ok(burned)
    }

    /// The detectors and the burns, under the lease (another replica holding it: nothing).
    pub async fn run_pass(&self, now: i64) -> Result<SlashingPass> {
        if !self.leases.acquire(LEASE, Duration::from_secs(120)).await? {
            return Ok(SlashingPass::default());
        }
        let opened = self.detect(now).await?;
        let burned = self.settle_due(now).await?;
        Ok(SlashingPass { opened, burned })
    }

    /// Runs [`Slashing::run_pass`] every `interval` until the process ends.
    pub fn spawn(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                match this.run_pass(now_micros()).await {
                    Ok(p) if p.opened > 0 || p.burned > 0 => {
                        tracing::info!(opened = p.opened, burned = p.burned, "slashing pass")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "slashing pass failed"),
                }
            }
        })
    }

    async fn row(&self, org_id: Option<&OrgId>, id: &str) -> Result<CaseRow> {
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM slashing_cases WHERE id = $1 AND ($2 IS NULL OR org_id = $2 OR costaker_org_id = $2)"
        );
        let org = org_id.map(|o| o.to_string());
        db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(&org)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("slashing case"))
    }

    async fn events(&self, id: &str) -> Result<Vec<CaseEvent>> {
        Ok(db_run!(&self.db, |p| sqlx::query_as(
            "SELECT kind, actor, text, created_at FROM slashing_events WHERE case_id = $1 ORDER BY id"
        )
        .bind(id)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?)
    }

    /// One case of the organisation's devices (or of a device it co-stakes), with its evidence
    /// and every step.
    pub async fn case(&self, actor: &Actor, id: &str) -> Result<SlashingCase> {
        actor.authorize(Action::ResourcesRead)?;
        let row = self.row(Some(&actor.org_id), id).await?;
        row.view(self.events(id).await?)
    }

    /// Any case (platform operators).
    pub async fn case_for_operator(&self, actor: &Actor, id: &str) -> Result<SlashingCase> {
        operator(actor)?;
        let row = self.row(None, id).await?;
        row.view(self.events(id).await?)
    }

    async fn list(
        &self,
        org_id: Option<&OrgId>,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<SlashingCase>> {
        if let Some(s) = status
            && CaseStatus::parse(s).is_none()
        {
            return Err(Error::validation(
                "status",
                "open, appealed, upheld, overturned or burned",
            ));
        }
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM slashing_cases WHERE ($1 IS NULL OR org_id = $1 OR costaker_org_id = $1) \
             AND ($2 IS NULL OR status = $2) AND id > $3 ORDER BY id LIMIT $4"
        );
        let org = org_id.map(|o| o.to_string());
        let rows: Vec<CaseRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&org)
            .bind(status)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let page = Page::from_rows(rows, page, |r| &r.id);
        let mut items = Vec::with_capacity(page.items.len());
        for r in page.items {
            let events = self.events(&r.id).await?;
            items.push(r.view(events)?);
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// The cases against the organisation's devices, oldest first.
    pub async fn cases(
        &self,
        actor: &Actor,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<SlashingCase>> {
        actor.authorize(Action::ResourcesRead)?;
        self.list(Some(&actor.org_id), status, page).await
    }

    /// Every case (platform operators), oldest first.
    pub async fn all_cases(
        &self,
        actor: &Actor,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<SlashingCase>> {
        operator(actor)?;
        self.list(None, status, page).await
    }

    /// Devices under a case open at some point of `[start, end)`: the block's slashing rule.
    pub(crate) async fn open_during(
        db: &Db,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, String)>> {
        Ok(db_run!(db, |p| sqlx::query_as(
            "SELECT device_id, MIN(id) FROM slashing_cases WHERE created_at < $1 \
             AND (closed_at IS NULL OR closed_at > $2) GROUP BY device_id"
        )
        .bind(end)
        .bind(start)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?)
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}
