//! Asking for payouts, reading them, and the decisions on them: a provider cancels one that
//! has not been signed, an operator approves or rejects one above the approval threshold.

use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::prices::{PriceFeed, Rate};
use iocloud_billing::rails::solana::{ChainToken, decimal, from_micros, payout_reference};
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, Rounding, TransactionKind};
use iocloud_db::ids::new_id;
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{DbError, Timestamp, Tx, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Payouts;
use crate::page::{Page, PageRequest};
use crate::{Action, Actor, Error, ErrorCode, Result};

/// A payout to ask for.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "PayoutInput")
)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequest {
    /// Earnings to pay out, a decimal string in `currency`.
    pub amount: String,
    /// The earnings paid out: `USD`, `IOSD` or `IO`.
    pub currency: String,
    /// What the wallet receives: `IOSD`, `USDC` or `IO` (converted at the price feed's rate
    /// when the earnings are in another currency). By default IO for IO earnings, else IOSD.
    #[serde(default)]
    pub token: Option<String>,
    /// The wallet (`wal_…`); the default wallet when left out.
    #[serde(default)]
    pub wallet_id: Option<String>,
}

/// An operator's decision on a payout waiting for approval.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "PayoutDecisionInput")
)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why, shown to the provider (required to reject).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Above the approval threshold: an operator decides.
    AwaitingApproval,
    /// To be signed and sent.
    Ready,
    /// The treasury holds too little of the token for now; operators are alerted, and it is
    /// sent once the treasury is refilled.
    Queued,
    /// Signed and sent; waiting for the transfer to be finalized.
    Sent,
    /// The transfer is finalized: the tokens are in the wallet.
    Paid,
    /// The transfer failed for good; the earnings are back.
    Failed,
    /// An operator refused it; the earnings are back.
    Rejected,
    /// The provider took it back before it was signed; the earnings are back.
    Canceled,
}

impl PayoutStatus {
    const ALL: [PayoutStatus; 8] = [
        PayoutStatus::AwaitingApproval,
        PayoutStatus::Ready,
        PayoutStatus::Queued,
        PayoutStatus::Sent,
        PayoutStatus::Paid,
        PayoutStatus::Failed,
        PayoutStatus::Rejected,
        PayoutStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::AwaitingApproval => "awaiting_approval",
            PayoutStatus::Ready => "ready",
            PayoutStatus::Queued => "queued",
            PayoutStatus::Sent => "sent",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Rejected => "rejected",
            PayoutStatus::Canceled => "canceled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing signed for it can land any more: taking it back is safe.
    fn can_be_taken_back(self) -> bool {
        matches!(
            self,
            PayoutStatus::AwaitingApproval | PayoutStatus::Ready | PayoutStatus::Queued
        )
    }
}

/// A payout and where it stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Payout")
)]
pub struct Payout {
    /// `po_…`.
    pub id: String,
    pub org_id: String,
    pub status: PayoutStatus,
    /// Why it waits, failed or was refused.
    pub reason: Option<String>,
    pub wallet_id: String,
    /// The wallet paid (its associated token account for the token receives).
    pub address: String,
    pub token: ChainToken,
    /// The earnings paid out.
    pub currency: Currency,
    pub amount: String,
    /// Tokens the wallet receives.
    pub token_amount: String,
    /// What it is worth in USD (limits and approval are in USD).
    pub usd_value: String,
    /// The IO/USD rate it was converted at, when it was.
    pub rate_id: Option<String>,
    /// The Solana Pay reference key its transfer carries.
    pub reference: String,
    /// The transfer's signature, once signed (the latest, if it had to be signed again).
    pub signature: Option<String>,
    /// How many times its transfer was signed.
    pub attempts: i32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<Timestamp>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub(super) struct PayoutRow {
    pub id: String,
    pub org_id: String,
    pub wallet_id: String,
    pub address: String,
    pub token: String,
    pub currency: Currency,
    pub amount: i64,
    pub token_amount: i64,
    pub rate_id: Option<String>,
    pub usd_value: i64,
    pub day: i64,
    pub reference: String,
    pub status: String,
    pub reason: Option<String>,
    pub signature: Option<String>,
    pub signed_tx: Option<String>,
    pub last_valid_height: Option<i64>,
    pub attempts: i32,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub paid_at: Option<i64>,
}

pub(super) const PAYOUT_COLUMNS: &str = "id, org_id, wallet_id, address, token, currency, amount, token_amount, rate_id, \
     usd_value, day, reference, status, reason, signature, signed_tx, last_valid_height, attempts, created_at, sent_at, paid_at";

impl PayoutRow {
    pub(super) fn status(&self) -> Result<PayoutStatus> {
        PayoutStatus::parse(&self.status)
            .ok_or_else(|| Error::corrupt("payouts.status", &self.status))
    }

    pub(super) fn token(&self) -> Result<ChainToken> {
        ChainToken::parse(&self.token).ok_or_else(|| Error::corrupt("payouts.token", &self.token))
    }

    fn view(&self, decimals: u8) -> Result<Payout> {
        let token = self.token()?;
        let tokens = from_micros(self.token_amount, decimals)
            .map(|units| decimal(units, decimals))
            .unwrap_or_else(|| Money::from_micros(self.token_amount, token.credits()).to_decimal());
        Ok(Payout {
            id: self.id.clone(),
            org_id: self.org_id.clone(),
            status: self.status()?,
            reason: self.reason.clone(),
            wallet_id: self.wallet_id.clone(),
            address: self.address.clone(),
            token,
            currency: self.currency,
            amount: Money::from_micros(self.amount, self.currency).to_decimal(),
            token_amount: tokens,
            usd_value: Money::from_micros(self.usd_value, Currency::Usd).to_decimal(),
            rate_id: self.rate_id.clone(),
            reference: self.reference.clone(),
            signature: self.signature.clone(),
            attempts: self.attempts,
            created_at: Timestamp::from_micros(self.created_at),
            sent_at: self.sent_at.map(Timestamp::from_micros),
            paid_at: self.paid_at.map(Timestamp::from_micros),
        })
    }
}

/// The UTC day `micros` falls in, counted from 1970.
fn day_of(micros: i64) -> i64 {
    micros.div_euclid(86_400 * MICROS_PER_SEC)
}

/// What the wallet receives and what the payout is worth, in micro-units of the token and of
/// USD, for `amount` of earnings at `rate` (IO converts at the feed's rate, rounded down: the
/// treasury never pays more than the earnings are worth).
fn converted(amount: Money, token: ChainToken, rate: Option<&Rate>) -> Result<(i64, i64)> {
    let io_rate = || rate.ok_or_else(|| Error::Internal("an IO payout without a rate".into()));
    let usd = match amount.currency() {
        Currency::Usd | Currency::Iosd => Money::from_micros(amount.micros(), Currency::Usd),
        Currency::Io => Money::from_micros(amount.micros(), Currency::Usd).mul_div(
            io_rate()?.usd_per_io,
            1_000_000,
            Rounding::Down,
        )?,
    };
    let tokens = match (amount.currency(), token) {
        (Currency::Io, ChainToken::Io) => amount.micros(),
        (_, ChainToken::Io) => PriceFeed::convert(usd, Currency::Io, io_rate()?)?.micros(),
        (_, ChainToken::Iosd | ChainToken::Usdc) => usd.micros(),
    };
    Ok((tokens, usd.micros()))
}

impl Payouts {
    /// Asks for a payout of earnings to a wallet of the organisation: the earnings move to
    /// `payout_pending` at once; the sender pays it (after an operator's approval above the
    /// threshold).
    pub async fn request_payout(&self, actor: &Actor, request: &PayoutRequest) -> Result<Payout> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let currency = Currency::parse(request.currency.trim())
            .ok_or_else(|| Error::validation("currency", "earnings are in USD, IOSD or IO"))?;
        let amount = Money::parse(request.amount.trim(), currency)
            .ok()
            .filter(|m| m.is_positive())
            .ok_or_else(|| {
                Error::validation("amount", "a positive amount with at most six decimals")
            })?;
        let token = match request.token.as_deref() {
            Some(text) => ChainToken::parse(text)
                .ok_or_else(|| Error::validation("token", "payouts are in IOSD, USDC or IO"))?,
            None if currency == Currency::Io => ChainToken::Io,
            None => ChainToken::Iosd,
        };
        let mint = rail.mint(token).ok_or_else(|| {
            Error::validation("token", format!("{} is not paid out here", token.code()))
        })?;
        let wallet = match request.wallet_id.as_deref() {
            Some(id) => self.wallet(actor, id.trim()).await?,
            None => self
                .wallets(actor)
                .await?
                .into_iter()
                .find(|w| w.is_default)
                .ok_or_else(|| {
                    Error::conflict(
                        ErrorCode::InvalidState,
                        "no payout wallet: add one (a signed challenge) first",
                    )
                })?,
        };
        let rate = if currency == Currency::Io || token == ChainToken::Io {
            Some(self.prices.current().await?)
        } else {
            None
        };
        let (token_micros, usd_value) = converted(amount, token, rate.as_ref())?;
        if from_micros(token_micros, mint.decimals).is_none_or(|units| units == 0) {
            return Err(Error::validation(
                "amount",
                "too small to pay in this token",
            ));
        }
        let limits = self.limits;
        if usd_value < limits.minimum.micros() {
            return Err(Error::Validation {
                field: "amount",
                message: format!(
                    "the smallest payout is {} USD (this one is worth {})",
                    limits.minimum.to_decimal(),
                    Money::from_micros(usd_value, Currency::Usd).to_decimal()
                ),
                code: ErrorCode::PayoutBelowMinimum,
            });
        }
        let over_limit = || {
            Error::conflict(
                ErrorCode::PayoutLimitExceeded,
                format!(
                    "at most {} USD is paid out per day (UTC); try a smaller amount or tomorrow",
                    limits.daily.to_decimal()
                ),
            )
        };
        if usd_value > limits.daily.micros() {
            return Err(over_limit());
        }
        let status = if usd_value > limits.approval_above.micros() {
            PayoutStatus::AwaitingApproval
        } else {
            PayoutStatus::Ready
        };
        let id = new_id("po");
        let now = now_micros();
        let day = day_of(now);
        let mut tx = self.db.begin().await?;
        // Raised only while it stays within the limit: two requests at once cannot both pass.
        let counted = tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO payout_days (org_id, day, usd_total) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, day) DO UPDATE SET usd_total = payout_days.usd_total + excluded.usd_total \
             WHERE payout_days.usd_total + excluded.usd_total <= $4"
        )
        .bind(&actor.org_id)
        .bind(day)
        .bind(usd_value)
        .bind(limits.daily.micros())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if counted == 0 {
            return Err(over_limit());
        }
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO payouts (id, org_id, wallet_id, address, token, currency, amount, token_amount, rate_id, usd_value, day, \
             reference, status, requested_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(&wallet.id)
        .bind(&wallet.address)
        .bind(token.code())
        .bind(currency.code())
        .bind(amount.micros())
        .bind(token_micros)
        .bind(rate.as_ref().map(|r| r.id.as_str()))
        .bind(usd_value)
        .bind(day)
        .bind(payout_reference(&id).to_string())
        .bind(status.as_str())
        .bind(actor.id())
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        // Refused (402 insufficient_funds) when the earnings are not there; nothing is kept.
        post_in(
            &mut tx,
            &NewTransaction {
                external_ref: format!("payout:{id}:asked"),
                kind: TransactionKind::Payout,
                org_id: Some(actor.org_id.to_string()),
                memo: format!("payout {id} asked for"),
                postings: Posting::transfer(
                    AccountRef::org(&actor.org_id, AccountKind::ProviderEarnings, currency),
                    AccountRef::org(&actor.org_id, AccountKind::PayoutPending, currency),
                    amount,
                )?
                .to_vec(),
            },
        )
        .await?;
        tx.commit().await?;
        self.payout(actor, &id).await
    }

    /// One of the organisation's payouts; another's reads as missing.
    pub async fn payout(&self, actor: &Actor, id: &str) -> Result<Payout> {
        actor.authorize(Action::BillingRead)?;
        let row = self.row(Some(actor.org_id.as_str()), id).await?;
        self.view(&row)
    }

    /// The organisation's payouts, oldest first.
    pub async fn payouts(&self, actor: &Actor, page: &PageRequest) -> Result<Page<Payout>> {
        actor.authorize(Action::BillingRead)?;
        self.list(Some(actor.org_id.as_str()), None, page).await
    }

    /// Every organisation's payouts, optionally of one status (platform operators).
    pub async fn all_payouts(
        &self,
        actor: &Actor,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Payout>> {
        operator(actor)?;
        let status = match status {
            None => None,
            Some(text) => Some(PayoutStatus::parse(text).ok_or_else(|| {
                Error::validation("status", "a payout status (awaiting_approval, queued, …)")
            })?),
        };
        self.list(None, status, page).await
    }

    /// Takes back a payout that was not signed yet; its earnings come back.
    pub async fn cancel_payout(&self, actor: &Actor, id: &str) -> Result<Payout> {
        actor.authorize(Action::BillingManage)?;
        let row = self.row(Some(actor.org_id.as_str()), id).await?;
        self.take_back(
            &row,
            PayoutStatus::Canceled,
            Some("canceled by the provider"),
            Some(actor.id()),
        )
        .await?;
        self.payout(actor, id).await
    }

    /// An operator approves a payout above the threshold: the sender pays it.
    pub async fn approve_payout(
        &self,
        actor: &Actor,
        id: &str,
        decision: &DecisionRequest,
    ) -> Result<Payout> {
        operator(actor)?;
        let reason = decision_reason(decision)?;
        let moved = db_run!(&self.db, |p| {
            sqlx::query(
            "UPDATE payouts SET status = 'ready', decided_by = $1, reason = $2, updated_at = $3 \
             WHERE id = $4 AND status = 'awaiting_approval'"
        )
        .bind(actor.id())
        .bind(&reason)
        .bind(now_micros())
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        let row = self.row(None, id).await?;
        if moved == 0 {
            return Err(not_now(&row, "approved"));
        }
        self.view(&row)
    }

    /// An operator refuses a payout waiting for approval; its earnings come back.
    pub async fn reject_payout(
        &self,
        actor: &Actor,
        id: &str,
        decision: &DecisionRequest,
    ) -> Result<Payout> {
        operator(actor)?;
        let reason = decision_reason(decision)?
            .ok_or_else(|| Error::validation("reason", "say why the payout is refused"))?;
        let row = self.row(None, id).await?;
        if row.status()? != PayoutStatus::AwaitingApproval {
            return Err(not_now(&row, "rejected"));
        }
        self.take_back(
            &row,
            PayoutStatus::Rejected,
            Some(&reason),
            Some(actor.id()),
        )
        .await?;
        let row = self.row(None, id).await?;
        self.view(&row)
    }

    /// Ends a payout that nothing signed can pay any more with `status`, in one transaction:
    /// the earnings back and the day's total lowered. Refused when the payout moved on.
    async fn take_back(
        &self,
        row: &PayoutRow,
        status: PayoutStatus,
        reason: Option<&str>,
        decided_by: Option<&str>,
    ) -> Result<()> {
        let now_status = row.status()?;
        if !now_status.can_be_taken_back() {
            return Err(not_now(row, "taken back"));
        }
        let mut tx = self.db.begin().await?;
        let claimed = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE payouts SET status = $1, reason = $2, decided_by = COALESCE($3, decided_by), updated_at = $4 \
             WHERE id = $5 AND status = $6"
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(decided_by)
        .bind(now_micros())
        .bind(&row.id)
        .bind(now_status.as_str())
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if claimed == 0 {
            // The sender signed it meanwhile.
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!("payout {} moved on meanwhile: read it again", row.id),
            ));
        }
        give_back_in(&mut tx, row, status).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn row(&self, org_id: Option<&str>, id: &str) -> Result<PayoutRow> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1 AND ($2 IS NULL OR org_id = $2)"
        );
        let row: Option<PayoutRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        row.ok_or(Error::NotFound("payout"))
    }

    async fn list(
        &self,
        org_id: Option<&str>,
        status: Option<PayoutStatus>,
        page: &PageRequest,
    ) -> Result<Page<Payout>> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR status = $2) \
             AND id > $3 ORDER BY id LIMIT $4"
        );
        let rows: Vec<PayoutRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org_id)
            .bind(status.map(PayoutStatus::as_str))
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let items = rows
            .iter()
            .map(|r| self.view(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |p| &p.id))
    }

    pub(super) fn view(&self, row: &PayoutRow) -> Result<Payout> {
        let token = row.token()?;
        let decimals = self
            .rail
            .as_ref()
            .and_then(|r| r.mint(token))
            .map_or(6, |m| m.decimals);
        row.view(decimals)
    }
}

/// Gives a payout's earnings back and lowers its day's total, in `tx` (whose caller has
/// claimed the payout's row for `status`).
pub(super) async fn give_back_in(tx: &mut Tx, row: &PayoutRow, status: PayoutStatus) -> Result<()> {
    let amount = Money::from_micros(row.amount, row.currency);
    post_in(
        tx,
        &NewTransaction {
            external_ref: format!("payout:{}:returned", row.id),
            kind: TransactionKind::Payout,
            org_id: Some(row.org_id.clone()),
            memo: format!("payout {} {}", row.id, status.as_str()),
            postings: Posting::transfer(
                AccountRef::org(&row.org_id, AccountKind::PayoutPending, row.currency),
                AccountRef::org(&row.org_id, AccountKind::ProviderEarnings, row.currency),
                amount,
            )?
            .to_vec(),
        },
    )
    .await?;
    tx_run!(tx, |c| sqlx::query(
        "UPDATE payout_days SET usd_total = usd_total - $1 WHERE org_id = $2 AND day = $3"
    )
    .bind(row.usd_value)
    .bind(&row.org_id)
    .bind(row.day)
    .execute(c)
    .await
    .map(|_| ()))
    .map_err(DbError::from)?;
    Ok(())
}

fn decision_reason(decision: &DecisionRequest) -> Result<Option<String>> {
    match decision.reason.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) => Ok(Some(crate::types::parse_name("reason", r)?)),
    }
}

fn not_now(row: &PayoutRow, what: &str) -> Error {
    Error::conflict(
        ErrorCode::InvalidState,
        format!(
            "payout {} is {}: it cannot be {what} now",
            row.id, row.status
        ),
    )
}

fn operator(actor: &Actor) -> Result<()> {
    if actor.is_operator {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "payouts of others (platform operators only)",
        ))
    }
}
