//! Prices are in USD; $IOSD is 1:1 with USD; $IO is converted at a price feed. The feed is a
//! configured static rate by default, or an HTTP source. Every rate used is stored with its
//! source and time, and a quote locks the rate it was made with for `QUOTE_TTL`.

use std::time::{Duration, Instant};

use iocloud_db::ids::new_id;
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{Db, db_run};
use parking_lot::Mutex;
use serde::Serialize;

use crate::money::{Currency, MICROS_PER_UNIT, Money, Rounding};
use crate::{BillingError, Result};

pub const QUOTE_TTL_MICROS: i64 = 5 * 60 * MICROS_PER_SEC;

/// Where the IO/USD rate comes from.
#[derive(Clone, Debug)]
pub enum FeedSource {
    /// A configured rate: USD for one IO.
    Static(Money),
    /// A URL answering `{"usd_per_io": "0.42"}` (or a bare decimal).
    Http(String),
}

/// One observed rate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Rate {
    pub id: String,
    /// Micro-USD for one IO.
    #[serde(skip)]
    pub usd_per_io: i64,
    pub source: String,
    #[serde(skip)]
    pub observed_at: i64,
}

impl Rate {
    pub fn usd_per_io(&self) -> Money {
        Money::from_micros(self.usd_per_io, Currency::Usd)
    }
}

/// A USD price in the currency a customer pays with, at a locked rate.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PriceQuote {
    pub id: String,
    pub org_id: String,
    pub usd_amount: i64,
    pub currency: String,
    pub amount: i64,
    pub rate_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub struct PriceFeed {
    db: Db,
    source: FeedSource,
    /// How long an observed rate is reused before the source is asked again.
    max_age: Duration,
    client: reqwest::Client,
    last: Mutex<Option<(Rate, Instant)>>,
}

impl PriceFeed {
    pub fn new(db: Db, source: FeedSource, max_age: Duration) -> PriceFeed {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        PriceFeed {
            db,
            source,
            max_age,
            client,
            last: Mutex::new(None),
        }
    }

    /// The current rate: reused while younger than `max_age`, otherwise observed again and stored.
    pub async fn current(&self) -> Result<Rate> {
        if let Some((rate, at)) = self.last.lock().clone()
            && at.elapsed() < self.max_age
        {
            return Ok(rate);
        }
        let (usd_per_io, source) = match &self.source {
            FeedSource::Static(m) => (*m, "static".to_string()),
            FeedSource::Http(url) => (self.fetch(url).await?, url.clone()),
        };
        if !usd_per_io.is_positive() {
            return Err(BillingError::InvalidAmount(
                "the IO price must be positive".into(),
            ));
        }
        let rate = Rate {
            id: new_id("fxr"),
            usd_per_io: usd_per_io.micros(),
            source,
            observed_at: now_micros(),
        };
        db_run!(&self.db, |p| {
            sqlx::query("INSERT INTO fx_rates (id, usd_per_io, source, observed_at) VALUES ($1, $2, $3, $4)")
                .bind(&rate.id)
                .bind(rate.usd_per_io)
                .bind(&rate.source)
                .bind(rate.observed_at)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        *self.last.lock() = Some((rate.clone(), Instant::now()));
        Ok(rate)
    }

    async fn fetch(&self, url: &str) -> Result<Money> {
        let unavailable = |why: String| BillingError::PriceFeed(format!("{url}: {why}"));
        let res = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unavailable(format!("answered {}", res.status())));
        }
        let text = res.text().await.map_err(|e| unavailable(e.to_string()))?;
        let decimal = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(o)) => o.get("usd_per_io").and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_f64().map(|f| format!("{f:.6}")))
            }),
            Ok(serde_json::Value::String(s)) => Some(s),
            Ok(serde_json::Value::Number(n)) => n.as_f64().map(|f| format!("{f:.6}")),
            _ => None,
        }
        .ok_or_else(|| unavailable("no usd_per_io in the answer".into()))?;
        Money::parse(&decimal, Currency::Usd).map_err(|e| unavailable(e.to_string()))
    }

    /// What `usd` costs in `currency` at `rate`: USD and IOSD 1:1; IO rounded down (the
    /// customer's favour).
    pub fn convert(usd: Money, currency: Currency, rate: &Rate) -> Result<Money> {
        if usd.currency() != Currency::Usd {
            return Err(BillingError::CurrencyMismatch(
                usd.currency(),
                Currency::Usd,
            ));
        }
        match currency {
            Currency::Usd => Ok(usd),
            Currency::Iosd => Ok(Money::from_micros(usd.micros(), Currency::Iosd)),
            Currency::Io => {
                let io = Money::from_micros(usd.micros(), Currency::Io).mul_div(
                    MICROS_PER_UNIT,
                    rate.usd_per_io,
                    Rounding::Down,
                )?;
                Ok(io)
            }
        }
    }

    /// Locks the price of `usd` in `currency` for five minutes.
    pub async fn quote(&self, org_id: &str, usd: Money, currency: Currency) -> Result<PriceQuote> {
        if !usd.is_positive() {
            return Err(BillingError::InvalidAmount(
                "the amount must be positive".into(),
            ));
        }
        let rate = if currency == Currency::Io {
            Some(self.current().await?)
        } else {
            None
        };
        let amount = match &rate {
            Some(r) => Self::convert(usd, currency, r)?,
            None => Self::convert(
                usd,
                currency,
                &Rate {
                    id: String::new(),
                    usd_per_io: 1,
                    source: String::new(),
                    observed_at: 0,
                },
            )?,
        };
        let now = now_micros();
        let q = PriceQuote {
            id: new_id("pqt"),
            org_id: org_id.to_string(),
            usd_amount: usd.micros(),
            currency: currency.code().to_string(),
            amount: amount.micros(),
            rate_id: rate.map(|r| r.id),
            created_at: now,
            expires_at: now + QUOTE_TTL_MICROS,
        };
        db_run!(&self.db, |p| {
            sqlx::query(
                "INSERT INTO price_quotes (id, org_id, usd_amount, currency, amount, rate_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&q.id)
            .bind(&q.org_id)
            .bind(q.usd_amount)
            .bind(&q.currency)
            .bind(q.amount)
            .bind(&q.rate_id)
            .bind(q.created_at)
            .bind(q.expires_at)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(q)
    }

    /// A live quote of the organisation; an expired one is refused.
    pub async fn quote_for(&self, org_id: &str, id: &str) -> Result<PriceQuote> {
        let q: Option<PriceQuote> = db_run!(&self.db, |p| {
            sqlx::query_as("SELECT id, org_id, usd_amount, currency, amount, rate_id, created_at, expires_at FROM price_quotes WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(id)
                .fetch_optional(p)
                .await
        })?;
        let q = q.ok_or(BillingError::Db(iocloud_db::DbError::NotFound))?;
        if q.expires_at <= now_micros() {
            return Err(BillingError::QuoteExpired(q.id));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_conversion_rounds_down() {
        let rate = Rate {
            id: "r".into(),
            usd_per_io: 420_000,
            source: "static".into(),
            observed_at: 0,
        };
        let usd = Money::from_micros(10_000_000, Currency::Usd);
        // $10 at $0.42 per IO = 23.809523… IO, rounded down to the micro-IO.
        assert_eq!(
            PriceFeed::convert(usd, Currency::Io, &rate)
                .unwrap()
                .micros(),
            23_809_523
        );
        assert_eq!(
            PriceFeed::convert(usd, Currency::Iosd, &rate)
                .unwrap()
                .micros(),
            10_000_000
        );
        assert!(
            PriceFeed::convert(Money::from_micros(1, Currency::Io), Currency::Usd, &rate).is_err()
        );
    }
}
