//! Transfers the watcher saw: those credited, and those it could not credit to anyone (no
//! known reference, the wrong mint, a plain transfer), which a platform operator assigns to an
//! organisation, once. A transaction that failed on chain is listed for support and can never
//! be assigned: nothing arrived.

use iocloud_billing::ledger::post_in;
use iocloud_billing::rails::solana::ChainToken;
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Deposits;
use super::apply::deposit_credit;
use crate::page::{Page, PageRequest};
use crate::{Actor, Error, ErrorCode, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ChainDepositStatus {
    /// Credited to the organisation its reference named.
    Credited,
    /// Credited to nobody yet: an operator may assign it.
    Unmatched,
    /// Assigned by an operator and credited.
    Assigned,
    /// Failed on chain: nothing arrived.
    Failed,
}

impl ChainDepositStatus {
    fn parse(text: &str) -> Result<Self> {
        match text {
            "credited" => Ok(ChainDepositStatus::Credited),
            "unmatched" => Ok(ChainDepositStatus::Unmatched),
            "assigned" => Ok(ChainDepositStatus::Assigned),
            "failed" => Ok(ChainDepositStatus::Failed),
            _ => Err(Error::corrupt("chain_deposits.status", text)),
        }
    }
}

/// A token transfer the watcher saw.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "ChainDeposit")
)]
pub struct ChainDeposit {
    /// `cdp_…`.
    pub id: String,
    pub signature: String,
    pub instruction: i64,
    /// The token, when it is one this platform takes.
    pub currency: Option<ChainToken>,
    pub mint: Option<String>,
    pub destination: String,
    /// Base units of the mint that arrived.
    pub amount: i64,
    pub reference: Option<String>,
    pub intent_id: Option<String>,
    pub org_id: Option<String>,
    pub status: ChainDepositStatus,
    /// Why it was not credited, for those that were not.
    pub reason: Option<String>,
    pub transaction_id: Option<String>,
    pub slot: i64,
    #[schema(value_type = String, format = DateTime)]
    pub seen_at: Timestamp,
}

/// An unmatched deposit to credit to an organisation.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub org_id: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    signature: String,
    instruction: i64,
    token: Option<String>,
    mint: Option<String>,
    destination: String,
    amount: i64,
    reference: Option<String>,
    intent_id: Option<String>,
    org_id: Option<String>,
    status: String,
    reason: Option<String>,
    transaction_id: Option<String>,
    slot: i64,
    seen_at: i64,
}

const COLUMNS: &str = "id, signature, instruction, token, mint, destination, amount, reference, intent_id, \
     org_id, status, reason, transaction_id, slot, seen_at";

impl Row {
    fn view(self) -> Result<ChainDeposit> {
        Ok(ChainDeposit {
            id: self.id,
            currency: match &self.token {
                Some(t) => Some(
                    ChainToken::parse(t)
                        .ok_or_else(|| Error::corrupt("chain_deposits.token", t))?,
                ),
                None => None,
            },
            status: ChainDepositStatus::parse(&self.status)?,
            signature: self.signature,
            instruction: self.instruction,
            mint: self.mint,
            destination: self.destination,
            amount: self.amount,
            reference: self.reference,
            intent_id: self.intent_id,
            org_id: self.org_id,
            reason: self.reason,
            transaction_id: self.transaction_id,
            slot: self.slot,
            seen_at: Timestamp::from_micros(self.seen_at),
        })
    }
}

impl Deposits {
    /// Transfers credited to nobody (and those that failed on chain), for platform operators.
    pub async fn unmatched_deposits(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<ChainDeposit>> {
        operator(actor)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM chain_deposits WHERE status IN ('unmatched', 'failed') AND id > $1 \
             ORDER BY id LIMIT $2"
        );
        let rows: Vec<Row> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let items = rows
            .into_iter()
            .map(Row::view)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |d| &d.id))
    }

    /// Credits an unmatched deposit (`cdp_…`) to an organisation, once: a second assignment (of the same
    /// or another operator) answers 409 `invalid_state` and credits nothing.
    pub async fn assign_deposit(
        &self,
        actor: &Actor,
        id: &str,
        request: &AssignRequest,
    ) -> Result<ChainDeposit> {
        operator(actor)?;
        let rail = self.rail()?;
        let org = crate::types::org_id(&request.org_id)?;
        let mut db = self.db.begin().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM chain_deposits WHERE id = $1{}",
            db.engine().for_update()
        );
        let row: Option<Row> = tx_run!(&mut db, |c| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(c)
            .await)
        .map_err(DbError::from)?;
        let row = row.ok_or(Error::NotFound("deposit"))?;
        let instruction = u32::try_from(row.instruction).map_err(|_| {
            Error::corrupt("chain_deposits.instruction", &row.instruction.to_string())
        })?;
        let signature = row.signature.clone();
        if row.status != "unmatched" {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!(
                    "deposit {id} is {}: only an unmatched deposit can be assigned",
                    row.status
                ),
            ));
        }
        let mint = row
            .mint
            .as_deref()
            .and_then(|m| m.parse().ok())
            .and_then(|m| rail.mint_by_address(&m))
            .filter(|m| row.destination == m.treasury_account.to_string())
            .ok_or_else(|| {
                Error::conflict(
                    ErrorCode::InvalidState,
                    format!("deposit {id} did not reach a treasury account of a token taken here"),
                )
            })?
            .clone();
        // The organisation must exist: a typo would credit nobody's account.
        let exists: Option<String> = tx_run!(&mut db, |c| sqlx::query_scalar(
            "SELECT id FROM organizations WHERE id = $1"
        )
        .bind(&org)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        if exists.is_none() {
            return Err(Error::NotFound("organization"));
        }
        let amount = u64::try_from(row.amount).unwrap_or(0);
        let credit = deposit_credit(rail, &mint, org.as_str(), &signature, instruction, amount)?;
        let posted = post_in(&mut db, &credit).await?;
        tx_run!(&mut db, |c| sqlx::query(
            "UPDATE chain_deposits SET status = 'assigned', org_id = $1, transaction_id = $2, assigned_by = $3 \
             WHERE id = $4"
        )
        .bind(&org)
        .bind(&posted.transaction_id)
        .bind(actor.id())
        .bind(id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        db.commit().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM chain_deposits WHERE signature = $1 AND instruction = $2"
        );
        let row: Row = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&signature)
            .bind(i64::from(instruction))
            .fetch_one(p)
            .await)
        .map_err(DbError::from)?;
        row.view()
    }
}

fn operator(actor: &Actor) -> Result<()> {
    if actor.is_operator {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "deposits of others (platform operators only)",
        ))
    }
}
