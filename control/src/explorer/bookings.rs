//! The bookings ledger as the network sees it: every rental of a device (one node of a
//! cluster) with its time, GPU-hours, model, region, amount and currency, and every payment in
//! (card top-ups, deposits on Solana) and out (payouts on Solana) with its amount and, when it
//! moved on chain, its signature. Never who rented or paid: no organisation, cluster or name.

use iocloud_billing::{Currency, Money};
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::Explorer;
use super::staking::before_id;
use crate::page::{Page, PageRequest};
use crate::rewards::MICROS_PER_HOUR;
use crate::{Error, Result};

/// One device rented for one node of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Rental {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// None while it runs.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    pub device_id: String,
    /// The catalog's model id; `cpu` for a CPU-only device.
    pub gpu_model: String,
    pub region: String,
    pub gpus: i64,
    /// GPU-hours billed so far (node-hours for a CPU-only device), to the thousandth.
    pub gpu_hours: String,
    /// Charged so far, in `currency` (`USD` or `IOSD`).
    pub amount: String,
    pub currency: String,
}

/// Money that moved between the network and the outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Payment {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `card` (Stripe) or `solana`.
    pub rail: String,
    /// `in` (a top-up or a deposit) or `out` (a provider's payout).
    pub direction: String,
    /// What the ledger credited or paid, in `currency` (`USD`, `IOSD` or `IO`).
    pub amount: String,
    pub currency: String,
    /// The token that moved on chain (`IOSD`, `USDC` or `IO`).
    pub token: Option<String>,
    /// The transaction's signature on Solana.
    pub signature: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RentalRow {
    id: String,
    started_at: i64,
    ended_at: Option<i64>,
    device_id: String,
    gpu_model: Option<String>,
    region: Option<String>,
    gpus: i64,
    billable_micros: i64,
    amount: i64,
    currency: String,
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    at: i64,
    id: String,
    rail: String,
    direction: String,
    amount: i64,
    currency: String,
    token: Option<String>,
    signature: Option<String>,
}

/// Money as its ledger currency prints it (an unknown code prints as micro-units).
fn money(micros: i64, code: &str) -> String {
    Currency::parse(code).map_or_else(
        || micros.to_string(),
        |c| Money::from_micros(micros, c).to_decimal(),
    )
}

/// A payments page's cursor: the last payment's time and id (`p<micros>_<id>`).
fn payment_cursor(page: &PageRequest) -> Result<(i64, String)> {
    let Some(c) = page.after.as_deref() else {
        return Ok((i64::MAX, String::new()));
    };
    c.strip_prefix('p')
        .and_then(|c| c.split_once('_'))
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_string())))
        .ok_or_else(|| Error::validation("cursor", "is not a cursor this API issued"))
}

impl Explorer {
    /// The rentals, newest first.
    pub async fn rentals(&self, page: &PageRequest) -> Result<Page<Rental>> {
        // The page's records first, then their hourly lines: the sums never scan past a page.
        let rows: Vec<RentalRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT r.id, r.started_at, r.ended_at, r.device_id, d.gpu_model, d.region, r.gpus, r.currency, \
             CAST(COALESCE(SUM(l.billable_micros), 0) AS BIGINT) AS billable_micros, \
             CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS amount \
             FROM (SELECT * FROM usage_records WHERE id < $1 ORDER BY id DESC LIMIT $2) r \
             LEFT JOIN devices d ON d.id = r.device_id LEFT JOIN usage_lines l ON l.record_id = r.id \
             GROUP BY r.id, r.started_at, r.ended_at, r.device_id, d.gpu_model, d.region, r.gpus, r.currency \
             ORDER BY r.id DESC"
        )
        .bind(before_id(page))
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let rentals: Vec<Rental> = rows
            .into_iter()
            .map(|r| {
                // A CPU-only node counts as one unit, as it is priced.
                let units = i128::from(r.gpus.max(1));
                let milli =
                    i128::from(r.billable_micros) * units * 1000 / i128::from(MICROS_PER_HOUR);
                Rental {
                    id: r.id,
                    started_at: r.started_at.into(),
                    ended_at: r.ended_at.map(Timestamp::from),
                    device_id: r.device_id,
                    gpu_model: r.gpu_model.unwrap_or_else(|| "cpu".into()),
                    region: r.region.unwrap_or_default(),
                    gpus: r.gpus,
                    gpu_hours: format!("{}.{:03}", milli / 1000, milli % 1000),
                    amount: money(r.amount, &r.currency),
                    currency: r.currency,
                }
            })
            .collect();
        Ok(Page::from_rows(rentals, page, |r| r.id.as_str()))
    }

    /// Payments in and out, newest first.
    pub async fn payments(&self, page: &PageRequest) -> Result<Page<Payment>> {
        let (before_at, before_id) = payment_cursor(page)?;
        // The page first, then each deposit's amount from its ledger transaction (what the
        // ledger credited, the token's base units converted): never a lookup past the page.
        let rows: Vec<PaymentRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT at, id, rail, direction, \
               COALESCE(amount, (SELECT MAX(lp.amount) FROM ledger_postings lp WHERE lp.transaction_id = x.transaction_id), 0) AS amount, \
               COALESCE((SELECT MAX(lp.currency) FROM ledger_postings lp WHERE lp.transaction_id = x.transaction_id), currency) AS currency, \
               token, signature FROM ( \
               SELECT at, id, rail, direction, amount, currency, token, signature, transaction_id FROM ( \
                 SELECT succeeded_at AS at, id, 'card' AS rail, 'in' AS direction, \
                   COALESCE(received, amount) AS amount, 'USD' AS currency, \
                   CAST(NULL AS TEXT) AS token, CAST(NULL AS TEXT) AS signature, CAST(NULL AS TEXT) AS transaction_id \
                 FROM top_ups WHERE status = 'succeeded' \
                 UNION ALL \
                 SELECT seen_at, id, 'solana', 'in', CAST(NULL AS BIGINT), token, token, signature, transaction_id \
                 FROM chain_deposits WHERE status IN ('credited', 'assigned') AND transaction_id IS NOT NULL \
                 UNION ALL \
                 SELECT paid_at, id, 'solana', 'out', amount, currency, token, signature, CAST(NULL AS TEXT) \
                 FROM payouts WHERE status = 'paid' \
               ) u WHERE at < $1 OR (at = $1 AND id < $2) ORDER BY at DESC, id DESC LIMIT $3 \
             ) x ORDER BY at DESC, id DESC"
        )
        .bind(before_at)
        .bind(&before_id)
        .bind(page.fetch_limit())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let keyed: Vec<(String, Payment)> = rows
            .into_iter()
            .map(|r| {
                let key = format!("p{}_{}", r.at, r.id);
                let payment = Payment {
                    id: r.id,
                    at: r.at.into(),
                    rail: r.rail,
                    direction: r.direction,
                    amount: money(r.amount, &r.currency),
                    currency: r.currency,
                    token: r.token,
                    signature: r.signature,
                };
                (key, payment)
            })
            .collect();
        Ok(Page::from_rows(keyed, page, |(k, _)| k).map(|(_, p)| p))
    }
}
