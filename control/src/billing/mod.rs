//! The organisation's side of billing: balances, ledger postings, holds, how it pays, and
//! credits granted by platform operators. The money itself moves in `iocloud_billing`.

pub mod alerts;
pub mod usage;

use iocloud_db::ids::OrgId;
use std::sync::Arc;

use iocloud_billing::Ledger;
use iocloud_billing::ledger::{NewTransaction, Posting};
use iocloud_billing::prices::PriceFeed;
use iocloud_billing::{AccountKind, AccountRef, Currency, Money, TransactionKind};
use iocloud_db::ids::new_id;
use iocloud_db::{Db, DbError, Timestamp, db_run};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::{Cache, Forget};
use crate::directory::Directory;
use crate::governance::Governance;
use crate::{Action, Actor, Error, Page, PageRequest, Result};

/// An organisation's money in one currency.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Balance")
)]
pub struct Balance {
    pub currency: Currency,
    /// Spendable now, as a decimal string of the currency unit.
    pub available: String,
    /// Reserved by holds for running clusters.
    pub held: String,
    /// Owed by the organisation (a disputed card payment it had already spent); new
    /// clusters wait until it is paid. Zero almost always.
    pub owed: String,
    /// On its way back to a card (refunds Stripe has not finished).
    pub refund_pending: String,
    /// A provider's earnings not yet paid out.
    pub earnings: String,
    /// Earnings on their way to a wallet (payouts not yet finalized on chain).
    pub payout_pending: String,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Posting")
)]
pub struct PostingView {
    pub id: String,
    pub transaction_id: String,
    /// The account the posting moved: `available`, `held`, `provider_earnings`, …
    pub account: String,
    pub currency: String,
    /// Signed decimal: positive adds to the account.
    #[sqlx(skip)]
    pub amount: String,
    #[serde(skip)]
    #[cfg_attr(feature = "graphql", graphql(skip))]
    pub amount_micros: i64,
    /// What the transaction was: `credit_grant`, `hold`, `capture`, `release`, …
    pub kind: String,
    pub memo: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Hold")
)]
pub struct HoldView {
    pub id: String,
    pub currency: Currency,
    pub amount: String,
    pub captured: String,
    pub released: String,
    pub remaining: String,
    /// `open` or `settled`.
    pub status: String,
    /// What the hold is for (a cluster id).
    pub reference: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<iocloud_billing::ledger::Hold> for HoldView {
    fn from(h: iocloud_billing::ledger::Hold) -> Self {
        let c = h.currency();
        let m = |micros| Money::from_micros(micros, c).to_decimal();
        HoldView {
            remaining: h.remaining().to_decimal(),
            amount: m(h.amount),
            captured: m(h.captured),
            released: m(h.released),
            id: h.id,
            currency: c,
            status: h.status,
            reference: h.reference,
            created_at: h.created_at.into(),
            updated_at: h.updated_at.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingPreference {
    /// The currency clusters are paid in; the prepaid balance in it is drawn first.
    pub currency: Currency,
}

#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CreditGrant")
)]
pub struct CreditGrant {
    pub transaction_id: String,
    pub org_id: String,
    pub amount: String,
    pub currency: Currency,
    pub reason: String,
    /// True when this reference had been granted before and nothing changed now.
    pub replayed: bool,
}

/// A compensating transaction and what it corrects.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Correction")
)]
pub struct Correction {
    /// The new, compensating transaction.
    pub transaction_id: String,
    /// The transaction it reverses.
    pub corrects: String,
    /// The kind of the transaction reversed (`credit_grant`, `capture`, ...).
    pub corrected_kind: String,
    pub reason: String,
    /// True when this transaction had been corrected before and nothing changed now.
    pub replayed: bool,
}

fn parse_currency(field: &'static str, text: &str) -> Result<Currency> {
    Currency::parse(text).ok_or_else(|| Error::validation(field, "use USD, IOSD or IO"))
}

/// A currency code read from storage: one we do not know is corrupt data, never a default.
pub(crate) fn stored_currency(column: &'static str, code: &str) -> Result<Currency> {
    Currency::parse(code).ok_or_else(|| Error::corrupt(column, code))
}

/// The organisation's side of billing (see the module's documentation), and its usage
/// reports ([`usage`]).
#[derive(Clone)]
pub struct Billing {
    db: Db,
    ledger: Ledger,
    prices: Arc<PriceFeed>,
    cache: Arc<Cache>,
    directory: Directory,
    /// Granted once to every new organisation, when set.
    signup_credit: Option<Money>,
    /// The platform's share of each capture is the fee in force.
    governance: Governance,
}

impl Billing {
    pub(crate) fn new(
        db: Db,
        ledger: Ledger,
        prices: Arc<PriceFeed>,
        cache: Arc<Cache>,
        directory: Directory,
        signup_credit: Option<Money>,
        governance: Governance,
    ) -> Self {
        Billing {
            db,
            ledger,
            prices,
            cache,
            directory,
            signup_credit,
            governance,
        }
    }

    /// Available and held balances in every currency.
    pub async fn balances(&self, actor: &Actor) -> Result<Vec<Balance>> {
        actor.authorize(Action::BillingRead)?;
        let accounts = self.ledger.accounts_of(&actor.org_id).await?;
        let amount = |kind, c| {
            accounts
                .iter()
                .find(|(k, m)| *k == kind && m.currency() == c)
                .map(|(_, m)| *m)
                .unwrap_or(Money::zero(c))
                .to_decimal()
        };
        Ok(Currency::ALL
            .into_iter()
            .map(|c| Balance {
                currency: c,
                available: amount(AccountKind::Available, c),
                held: amount(AccountKind::Held, c),
                owed: Money::from_micros(
                    -accounts
                        .iter()
                        .find(|(k, m)| *k == AccountKind::Debt && m.currency() == c)
                        .map_or(0, |(_, m)| m.micros()),
                    c,
                )
                .to_decimal(),
                refund_pending: amount(AccountKind::RefundPending, c),
                earnings: amount(AccountKind::ProviderEarnings, c),
                payout_pending: amount(AccountKind::PayoutPending, c),
            })
            .collect())
    }

    /// The organisation's postings, oldest first, optionally of one currency.
    pub async fn postings(
        &self,
        actor: &Actor,
        page: &PageRequest,
        currency: Option<&str>,
    ) -> Result<Page<PostingView>> {
        actor.authorize(Action::BillingRead)?;
        let currency = currency
            .map(|c| parse_currency("currency", c))
            .transpose()?;
        let filter = currency.map(|c| c.code()).unwrap_or("");
        let mut rows: Vec<PostingView> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT p.id, p.transaction_id, a.kind AS account, p.currency, p.amount AS amount_micros, t.kind, t.memo, p.created_at \
                 FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id JOIN ledger_transactions t ON t.id = p.transaction_id \
                 WHERE p.owner = $1 AND p.id > $2 AND ($3 = '' OR p.currency = $3) ORDER BY p.id LIMIT $4",
            )
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(filter)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await
        })
        .map_err(DbError::from)?;
        for r in &mut rows {
            let c = Currency::parse(&r.currency).unwrap_or(Currency::Usd);
            r.amount = Money::from_micros(r.amount_micros, c).to_decimal();
        }
        Ok(Page::from_rows(rows, page, |r| &r.id))
    }

    pub async fn holds(&self, actor: &Actor, page: &PageRequest) -> Result<Page<HoldView>> {
        actor.authorize(Action::BillingRead)?;
        let rows = self
            .ledger
            .holds(&actor.org_id, page.after_id(), page.fetch_limit())
            .await?;
        Ok(Page::from_rows(rows, page, |h| &h.id).map(HoldView::from))
    }

    /// What each of these holds is for (a cluster id), by hold id; the organisation's only.
    pub async fn hold_references(
        &self,
        actor: &Actor,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        actor.authorize(Action::BillingRead)?;
        let rows = self.ledger.hold_references(&actor.org_id, ids).await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn hold(&self, actor: &Actor, id: &str) -> Result<HoldView> {
        actor.authorize(Action::BillingRead)?;
        match self.ledger.hold(&actor.org_id, id).await {
            Ok(h) => Ok(h.into()),
            Err(iocloud_billing::BillingError::HoldNotFound(_)) => Err(Error::NotFound("hold")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn preference(&self, actor: &Actor) -> Result<BillingPreference> {
        actor.authorize(Action::BillingRead)?;
        let code: Option<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT billing_currency FROM organizations WHERE id = $1")
                .bind(&actor.org_id)
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        let code = code.ok_or(Error::NotFound("organization"))?;
        Ok(BillingPreference {
            currency: stored_currency("organizations.billing_currency", &code)?,
        })
    }

    pub async fn set_preference(&self, actor: &Actor, currency: &str) -> Result<BillingPreference> {
        actor.authorize(Action::BillingManage)?;
        let currency = parse_currency("currency", currency)?;
        db_run!(&self.db, |p| {
            sqlx::query("UPDATE organizations SET billing_currency = $1 WHERE id = $2")
                .bind(currency.code())
                .bind(&actor.org_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        // Creates price in it, from a cached copy on every replica.
        self.cache.invalidate(Forget::Org(&actor.org_id)).await;
        Ok(BillingPreference { currency })
    }

    /// A platform operator corrects a ledger transaction with a compensating one (each posting
    /// reversed; what a capture took from a hold returns to the available balance). Once per
    /// transaction: asking again answers the first correction.
    pub async fn correct_transaction(
        &self,
        actor: &Actor,
        transaction_id: &str,
        reason: &str,
    ) -> Result<Correction> {
        if !actor.is_operator {
            return Err(Error::Forbidden(
                "correcting the ledger (platform operators only)",
            ));
        }
        let reason = crate::types::parse_name("reason", reason)?;
        let (posted, kind) = match self.ledger.reverse(transaction_id, &reason).await {
            Err(iocloud_billing::BillingError::TransactionNotFound(_)) => {
                return Err(Error::NotFound("transaction"));
            }
            other => other?,
        };
        Ok(Correction {
            transaction_id: posted.transaction_id,
            corrects: transaction_id.to_string(),
            corrected_kind: kind,
            reason,
            replayed: posted.replayed,
        })
    }

    /// A platform operator credits an organisation (a promotion, an SLA credit). `reference`
    /// makes it idempotent: the same reference twice is one grant.
    pub async fn grant_credit(
        &self,
        actor: &Actor,
        org_id: &str,
        amount: &str,
        currency: &str,
        reason: &str,
        reference: Option<&str>,
    ) -> Result<CreditGrant> {
        if !actor.is_operator {
            return Err(Error::Forbidden(
                "granting credit (platform operators only)",
            ));
        }
        let org_id = &crate::types::org_id(org_id)?;
        let currency = parse_currency("currency", currency)?;
        let amount = Money::parse(amount, currency)
            .map_err(|e| Error::validation("amount", e.to_string()))?;
        if !amount.is_positive() {
            return Err(Error::validation("amount", "must be more than zero"));
        }
        let reason = crate::types::parse_name("reason", reason)?;
        self.directory.organization(org_id).await?;
        let external_ref = match reference {
            Some(r) => format!("credit:{org_id}:{r}"),
            None => format!("credit:{org_id}:{}", new_id("grt")),
        };
        self.post_credit(org_id, amount, &reason, &external_ref)
            .await
    }

    /// The sign-up credit (if configured), once per organisation.
    pub(crate) async fn grant_signup_credit(&self, org_id: &OrgId) {
        let Some(amount) = self.signup_credit.filter(|m| m.is_positive()) else {
            return;
        };
        if let Err(e) = self
            .post_credit(
                org_id,
                amount,
                "sign-up credit",
                &format!("signup-credit:{org_id}"),
            )
            .await
        {
            tracing::error!(error = %e, %org_id, "could not grant the sign-up credit");
        }
    }

    async fn post_credit(
        &self,
        org_id: &OrgId,
        amount: Money,
        reason: &str,
        external_ref: &str,
    ) -> Result<CreditGrant> {
        let c = amount.currency();
        let posted = self
            .ledger
            .post(&NewTransaction {
                external_ref: external_ref.to_string(),
                kind: TransactionKind::CreditGrant,
                org_id: Some(org_id.to_string()),
                memo: reason.to_string(),
                postings: Posting::transfer(
                    AccountRef::platform(AccountKind::Promotions, c),
                    AccountRef::org(org_id, AccountKind::Available, c),
                    amount,
                )?
                .to_vec(),
            })
            .await?;
        Ok(CreditGrant {
            transaction_id: posted.transaction_id,
            org_id: org_id.to_string(),
            amount: amount.to_decimal(),
            currency: c,
            reason: reason.to_string(),
            replayed: posted.replayed,
        })
    }
}

/// The IO/USD rate in use.
#[derive(Debug, Serialize, ToSchema)]
pub struct IoRate {
    pub id: String,
    /// USD for one IO.
    pub usd_per_io: String,
    /// `static`, or the URL of the feed.
    pub source: String,
    #[schema(value_type = String, format = DateTime)]
    pub observed_at: Timestamp,
}

/// A USD price in the currency you pay with, locked for five minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceQuoteView {
    pub id: String,
    pub usd_amount: String,
    pub currency: Currency,
    pub amount: String,
    /// The IO/USD rate the quote locked (for IO).
    pub rate_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl From<iocloud_billing::prices::PriceQuote> for PriceQuoteView {
    fn from(q: iocloud_billing::prices::PriceQuote) -> Self {
        let c = Currency::parse(&q.currency).unwrap_or(Currency::Usd);
        PriceQuoteView {
            id: q.id,
            usd_amount: Money::from_micros(q.usd_amount, Currency::Usd).to_decimal(),
            currency: c,
            amount: Money::from_micros(q.amount, c).to_decimal(),
            rate_id: q.rate_id,
            expires_at: q.expires_at.into(),
        }
    }
}

impl Billing {
    pub async fn io_rate(&self, actor: &Actor) -> Result<IoRate> {
        actor.authorize(Action::OrgRead)?;
        let r = self.prices.current().await?;
        Ok(IoRate {
            usd_per_io: r.usd_per_io().to_decimal(),
            id: r.id,
            source: r.source,
            observed_at: r.observed_at.into(),
        })
    }

    /// Prices `amount_usd` in `currency` and locks it for five minutes.
    pub async fn price_quote(
        &self,
        actor: &Actor,
        amount_usd: &str,
        currency: &str,
    ) -> Result<PriceQuoteView> {
        actor.authorize(Action::QuotesCreate)?;
        let currency = parse_currency("currency", currency)?;
        let usd = Money::parse(amount_usd, Currency::Usd)
            .map_err(|e| Error::validation("amount_usd", e.to_string()))?;
        if !usd.is_positive() {
            return Err(Error::validation("amount_usd", "must be more than zero"));
        }
        Ok(self
            .prices
            .quote(&actor.org_id, usd, currency)
            .await?
            .into())
    }

    pub async fn price_quote_by_id(&self, actor: &Actor, id: &str) -> Result<PriceQuoteView> {
        actor.authorize(Action::BillingRead)?;
        match self.prices.quote_for(&actor.org_id, id).await {
            Ok(q) => Ok(q.into()),
            Err(iocloud_billing::BillingError::Db(DbError::NotFound)) => {
                Err(Error::NotFound("quote"))
            }
            Err(e) => Err(e.into()),
        }
    }
}
