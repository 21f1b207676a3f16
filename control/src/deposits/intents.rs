//! Deposit intents: Solana Pay transfer requests made for an organisation.

use iocloud_billing::rails::solana::{ChainToken, TransferRequest, decimal};
use iocloud_billing::{Currency, Money};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{DbError, Timestamp, db_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Deposits, INTENT_LIFETIME_SECS};
use crate::page::{Page, PageRequest};
use crate::{Action, Actor, Error, Result};

/// A deposit to ask for.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "DepositInput")
)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// `IOSD`, `USDC` (credited as IOSD less a fee) or `IO`.
    pub currency: String,
    /// Tokens as a decimal string, at most six decimals; left out, the wallet asks the payer.
    #[serde(default)]
    pub amount: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    /// Waiting for the payment.
    Open,
    /// A payment arrived and was credited (at least the amount asked, when one was).
    Paid,
    /// No payment in time; one that still comes is credited all the same.
    Expired,
}

impl DepositStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DepositStatus::Open => "open",
            DepositStatus::Paid => "paid",
            DepositStatus::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        [
            DepositStatus::Open,
            DepositStatus::Paid,
            DepositStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| Error::corrupt("deposit_intents.status", text))
    }
}

/// A deposit intent and what arrived for it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "DepositIntent")
)]
pub struct DepositIntent {
    /// `dep_…`.
    pub id: String,
    pub currency: ChainToken,
    /// What it credits: IOSD for IOSD and USDC, IO for IO.
    pub credits: Currency,
    pub status: DepositStatus,
    /// The wallet to pay (the treasury); its token account for `mint` receives.
    pub recipient: String,
    pub mint: String,
    /// The Solana Pay reference key the payment must carry.
    pub reference: String,
    /// Tokens asked for, when named.
    pub amount: Option<String>,
    /// Tokens received so far.
    pub received: String,
    /// The Solana Pay transfer request; `qr_url` draws it as a QR code.
    pub url: String,
    pub qr_url: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
pub(super) struct IntentRow {
    pub id: String,
    pub org_id: String,
    pub token: String,
    pub mint: String,
    pub reference: String,
    pub amount: Option<i64>,
    pub received: i64,
    pub status: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub paid_at: Option<i64>,
}

pub(super) const INTENT_COLUMNS: &str =
    "id, org_id, token, mint, reference, amount, received, status, created_at, expires_at, paid_at";

/// What a transfer request shows the payer.
const LABEL: &str = "IO Cloud";

impl Deposits {
    /// Makes a deposit intent: a transfer request to the treasury with a fresh reference key.
    pub async fn create_deposit(
        &self,
        actor: &Actor,
        request: &DepositRequest,
    ) -> Result<DepositIntent> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let token = ChainToken::parse(&request.currency)
            .ok_or_else(|| Error::validation("currency", "deposits are in IOSD, USDC or IO"))?;
        let mint = rail.mint(token).ok_or_else(|| {
            Error::validation("currency", format!("{} is not taken here", token.code()))
        })?;
        let amount = match request.amount.as_deref() {
            None => None,
            Some(text) => {
                let micros = Money::parse(text, token.credits()).map_err(|_| {
                    Error::validation("amount", "a positive amount with at most six decimals")
                })?;
                if !micros.is_positive() {
                    return Err(Error::validation(
                        "amount",
                        "a positive amount with at most six decimals",
                    ));
                }
                let units =
                    iocloud_billing::rails::solana::from_micros(micros.micros(), mint.decimals)
                        .ok_or_else(|| {
                            Error::validation(
                                "amount",
                                format!(
                                    "{} takes at most {} decimals",
                                    token.code(),
                                    mint.decimals
                                ),
                            )
                        })?;
                Some(i64::try_from(units).map_err(|_| Error::validation("amount", "too large"))?)
            }
        };
        let id = new_id("dep");
        let reference = iocloud_billing::rails::solana::fresh_reference().to_string();
        let now = now_micros();
        let expires_at = now + INTENT_LIFETIME_SECS * MICROS_PER_SEC;
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO deposit_intents (id, org_id, token, mint, reference, amount, received, status, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 'open', $7, $8, $9)"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(token.code())
        .bind(mint.mint.to_string())
        .bind(&reference)
        .bind(amount)
        .bind(actor.id())
        .bind(now)
        .bind(expires_at)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        self.read_intent(&actor.org_id, &id).await
    }

    /// One of the organisation's deposit intents.
    pub async fn deposit(&self, actor: &Actor, id: &str) -> Result<DepositIntent> {
        actor.authorize(Action::BillingRead)?;
        self.read_intent(&actor.org_id, id).await
    }

    /// The transfer request of a deposit intent as a QR code (SVG).
    pub async fn deposit_qr(&self, actor: &Actor, id: &str) -> Result<String> {
        actor.authorize(Action::BillingRead)?;
        let row = self.intent_row(&actor.org_id, id).await?;
        Ok(self.request_of(&row)?.qr_svg())
    }

    /// The organisation's deposit intents, oldest first.
    pub async fn deposits(&self, actor: &Actor, page: &PageRequest) -> Result<Page<DepositIntent>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {INTENT_COLUMNS} FROM deposit_intents WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<IntentRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let items = rows
            .iter()
            .map(|r| self.view(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |d| &d.id))
    }

    async fn intent_row(&self, org_id: &OrgId, id: &str) -> Result<IntentRow> {
        let sql =
            format!("SELECT {INTENT_COLUMNS} FROM deposit_intents WHERE id = $1 AND org_id = $2");
        let row: Option<IntentRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        row.ok_or(Error::NotFound("deposit"))
    }

    async fn read_intent(&self, org_id: &OrgId, id: &str) -> Result<DepositIntent> {
        let row = self.intent_row(org_id, id).await?;
        self.view(&row)
    }

    fn token_of(row: &IntentRow) -> Result<ChainToken> {
        ChainToken::parse(&row.token)
            .ok_or_else(|| Error::corrupt("deposit_intents.token", &row.token))
    }

    fn request_of(&self, row: &IntentRow) -> Result<TransferRequest> {
        let rail = self.rail()?;
        let token = Self::token_of(row)?;
        let decimals = rail.mint(token).map_or(6, |m| m.decimals);
        let parse = |column, text: &str| text.parse().map_err(|_| Error::corrupt(column, text));
        Ok(TransferRequest {
            recipient: rail.treasury(),
            mint: parse("deposit_intents.mint", &row.mint)?,
            amount: row
                .amount
                .map(|a| decimal(u64::try_from(a).unwrap_or(0), decimals)),
            reference: parse("deposit_intents.reference", &row.reference)?,
            label: LABEL.to_string(),
            message: format!("{} deposit {}", token.code(), row.id),
            memo: Some(row.id.clone()),
        })
    }

    fn view(&self, row: &IntentRow) -> Result<DepositIntent> {
        let token = Self::token_of(row)?;
        let decimals = self.rail()?.mint(token).map_or(6, |m| m.decimals);
        let units = |a: i64| decimal(u64::try_from(a).unwrap_or(0), decimals);
        let request = self.request_of(row)?;
        Ok(DepositIntent {
            id: row.id.clone(),
            currency: token,
            credits: token.credits(),
            status: DepositStatus::parse(&row.status)?,
            recipient: request.recipient.to_string(),
            mint: row.mint.clone(),
            reference: row.reference.clone(),
            amount: row.amount.map(units),
            received: units(row.received),
            url: request.url(),
            qr_url: format!("/v1/billing/deposits/{}/qr.svg", row.id),
            created_at: Timestamp::from_micros(row.created_at),
            expires_at: Timestamp::from_micros(row.expires_at),
            paid_at: row.paid_at.map(Timestamp::from_micros),
        })
    }
}
