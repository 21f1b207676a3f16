//! What an organisation used and owes (usage by cluster or day, monthly invoices, CSV export),
//! and what a provider organisation earned (by device or day), all read from the usage lines
//! that metering writes. A line opened ahead for an hour its node never ran in holds no time
//! (`period_end = period_start`) and is left out everywhere.

use std::fmt::Write;

use iocloud_billing::metering::AccrualReport;
use iocloud_billing::{Currency, Money};
use iocloud_db::time::{day_string, month_bounds, month_of, now_micros};
use iocloud_db::{DbError, db_run};
use serde::Serialize;
use utoipa::ToSchema;

use super::Billing;
use crate::{Action, Actor, Error, Result};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// One row of a usage or earnings summary.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "UsageRow")
)]
pub struct UsageRow {
    /// The cluster id, device id or day (`2026-11-25`) the row sums.
    pub key: String,
    pub currency: Currency,
    /// GPU-hours billed (up time × GPUs), two decimals.
    pub gpu_hours: String,
    /// Charged (usage) or earned after the platform fee (earnings).
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "InvoiceLine")
)]
pub struct InvoiceLine {
    pub cluster_id: String,
    pub currency: Currency,
    pub gpu_hours: String,
    /// Price per GPU-hour.
    pub rate: String,
    pub amount: String,
    /// Usage the cluster's hold could not cover.
    pub unpaid: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "InvoiceTotal")
)]
pub struct InvoiceTotal {
    pub currency: Currency,
    pub amount: String,
    pub unpaid: String,
}

/// A monthly statement: a line per cluster and price.
#[derive(Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Invoice")
)]
pub struct Invoice {
    pub org_id: String,
    pub organization: String,
    /// `2026-11`.
    pub month: String,
    pub lines: Vec<InvoiceLine>,
    pub totals: Vec<InvoiceTotal>,
}

/// How a summary is grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Cluster,
    Device,
    Day,
}

impl Grouping {
    pub fn parse(text: &str, allowed: &[Grouping]) -> Result<Grouping> {
        let g = match text {
            "cluster" => Grouping::Cluster,
            "device" => Grouping::Device,
            "day" => Grouping::Day,
            _ => return Err(Error::validation("group_by", "use cluster, device or day")),
        };
        if allowed.contains(&g) {
            Ok(g)
        } else {
            Err(Error::validation(
                "group_by",
                format!("{text} is not offered here"),
            ))
        }
    }

    fn key_sql(self) -> &'static str {
        match self {
            Grouping::Cluster => "cluster_id",
            Grouping::Device => "device_id",
            // Lines are hourly, so each lies within one day.
            Grouping::Day => "CAST(hour_start / 86400000000 AS TEXT)",
        }
    }
}

/// The month asked for (default: this one) as bounds on a line's `hour_start`: `[from, to)`.
fn month(month: Option<&str>) -> Result<(String, i64, i64)> {
    let m = month
        .map(str::to_string)
        .unwrap_or_else(|| month_of(now_micros()));
    let (from, to) =
        month_bounds(&m).ok_or_else(|| Error::validation("month", "write it as YYYY-MM"))?;
    Ok((m, from, to))
}

fn gpu_hours(gpu_micros: i64) -> String {
    // GPU-microseconds to GPU-hours, shown like money: two decimals at least.
    Money::from_micros(gpu_micros / (MICROS_PER_HOUR / 1_000_000), Currency::Usd).to_decimal()
}

fn currency(code: &str) -> Result<Currency> {
    super::stored_currency("usage_lines.currency", code)
}

#[derive(sqlx::FromRow)]
struct SumRow {
    key: String,
    currency: String,
    gpu_micros: i64,
    amount: i64,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    cluster_id: String,
    currency: String,
    rate_per_hour: i64,
    gpus: i64,
    gpu_micros: i64,
    amount: i64,
    unpaid: i64,
}

impl Billing {
    /// What the organisation used in a month, by `cluster` (the default) or by `day`.
    pub async fn usage(
        &self,
        actor: &Actor,
        group_by: Option<&str>,
        month_text: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        actor.authorize(Action::BillingRead)?;
        let group = Grouping::parse(
            group_by.unwrap_or("cluster"),
            &[Grouping::Cluster, Grouping::Day],
        )?;
        self.sums("org_id", "amount", group, &actor.org_id, month_text)
            .await
    }

    /// What the organisation earned as a provider in a month, by `device` (the default) or by
    /// `day`, after the platform fee as each capture split it (summed in the lines' `earned`).
    pub async fn earnings(
        &self,
        actor: &Actor,
        group_by: Option<&str>,
        month_text: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        actor.authorize(Action::BillingRead)?;
        let group = Grouping::parse(
            group_by.unwrap_or("device"),
            &[Grouping::Device, Grouping::Day],
        )?;
        self.sums(
            "provider_org_id",
            "earned",
            group,
            &actor.org_id,
            month_text,
        )
        .await
    }

    /// Usage lines of a month summed per group and currency. `owner_column` and `amount` are
    /// fixed SQL from the callers above, never client text.
    async fn sums(
        &self,
        owner_column: &str,
        amount: &str,
        group: Grouping,
        owner: &str,
        month_text: Option<&str>,
    ) -> Result<Vec<UsageRow>> {
        let (_, from, to) = month(month_text)?;
        let sql = format!(
            "SELECT {key} AS key, currency, CAST(SUM(billable_micros * gpus) AS BIGINT) AS gpu_micros, CAST(SUM({amount}) AS BIGINT) AS amount \
             FROM usage_lines WHERE {owner_column} = $1 AND hour_start >= $2 AND hour_start < $3 AND period_end > period_start GROUP BY {key}, currency ORDER BY key, currency",
            key = group.key_sql()
        );
        let rows: Vec<SumRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(owner)
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        rows.into_iter()
            .map(|r| {
                let currency = currency(&r.currency)?;
                Ok(UsageRow {
                    key: label(group, r.key),
                    currency,
                    gpu_hours: gpu_hours(r.gpu_micros),
                    amount: Money::from_micros(r.amount, currency).to_decimal(),
                })
            })
            .collect()
    }

    /// The monthly statement: a line per cluster and price, totals per currency.
    pub async fn invoice(&self, actor: &Actor, month_text: &str) -> Result<Invoice> {
        actor.authorize(Action::BillingRead)?;
        let (m, from, to) = month(Some(month_text))?;
        let org = self.directory.organization(&actor.org_id).await?;
        let rows: Vec<LineRow> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT cluster_id, currency, rate_per_hour, gpus, CAST(SUM(billable_micros * gpus) AS BIGINT) AS gpu_micros, \
                 CAST(SUM(amount) AS BIGINT) AS amount, CAST(SUM(unpaid) AS BIGINT) AS unpaid FROM usage_lines \
                 WHERE org_id = $1 AND hour_start >= $2 AND hour_start < $3 AND period_end > period_start \
                 GROUP BY cluster_id, currency, rate_per_hour, gpus ORDER BY cluster_id, currency, rate_per_hour",
            )
            .bind(&actor.org_id)
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await
        })
        .map_err(DbError::from)?;
        let mut totals: Vec<(Currency, i64, i64)> = Vec::new();
        let lines = rows
            .into_iter()
            .map(|r| {
                let c = currency(&r.currency)?;
                match totals.iter_mut().find(|t| t.0 == c) {
                    Some(t) => {
                        t.1 += r.amount;
                        t.2 += r.unpaid;
                    }
                    None => totals.push((c, r.amount, r.unpaid)),
                }
                let per_gpu = if r.gpus > 0 {
                    r.rate_per_hour / r.gpus
                } else {
                    r.rate_per_hour
                };
                Ok(InvoiceLine {
                    cluster_id: r.cluster_id,
                    currency: c,
                    gpu_hours: gpu_hours(r.gpu_micros),
                    rate: Money::from_micros(per_gpu, c).to_decimal(),
                    amount: Money::from_micros(r.amount, c).to_decimal(),
                    unpaid: Money::from_micros(r.unpaid, c).to_decimal(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        totals.sort_by_key(|t| t.0);
        Ok(Invoice {
            org_id: org.id,
            organization: org.name,
            month: m,
            lines,
            totals: totals
                .into_iter()
                .map(|(c, a, u)| InvoiceTotal {
                    currency: c,
                    amount: Money::from_micros(a, c).to_decimal(),
                    unpaid: Money::from_micros(u, c).to_decimal(),
                })
                .collect(),
        })
    }

    /// Every usage line of a month as CSV, for spreadsheets and accounting.
    pub async fn usage_csv(&self, actor: &Actor, month_text: Option<&str>) -> Result<String> {
        actor.authorize(Action::BillingRead)?;
        let (_, from, to) = month(month_text)?;
        #[allow(clippy::type_complexity)]
        let rows: Vec<(String, String, String, String, String, i64, i64, i64, i64, i64, i64, i64)> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT cluster_id, node_id, device_id, currency, CAST(gpus AS TEXT), rate_per_hour, period_start, period_end, billable_micros, amount, unpaid, params_version \
                 FROM usage_lines WHERE org_id = $1 AND hour_start >= $2 AND hour_start < $3 AND period_end > period_start ORDER BY period_end, id",
            )
            .bind(&actor.org_id)
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await
        })
        .map_err(DbError::from)?;
        let mut out = String::from(
            "cluster_id,node_id,device_id,currency,gpus,rate_per_hour,period_start,period_end,billable_seconds,amount,unpaid,params_version\n",
        );
        for (
            cluster,
            node,
            device,
            cur,
            gpus,
            rate,
            start,
            end,
            billable,
            amount,
            unpaid,
            version,
        ) in rows
        {
            let c = currency(&cur)?;
            let m = |v| Money::from_micros(v, c).to_decimal();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                csv(&cluster),
                csv(&node),
                csv(&device),
                c,
                gpus,
                m(rate),
                iocloud_db::time::to_rfc3339(start),
                iocloud_db::time::to_rfc3339(end),
                Money::from_micros(billable, c).to_decimal(),
                m(amount),
                m(unpaid),
                version
            );
        }
        Ok(out)
    }
}

impl Billing {
    /// Charges every running node up to the end of the period containing `now`, each hour under
    /// the parameters in force in it: when a new version took effect since the last pass,
    /// everything is first charged to its hour under the version before it.
    pub async fn accrue(&self, now: i64, interval_micros: i64) -> Result<AccrualReport> {
        let period_end = now - now.rem_euclid(interval_micros.max(1));
        let current = self.governance.in_force_at(period_end - 1);
        let mut report = AccrualReport::default();
        if let Some(from) = current.effective_at.map(|t| t.micros())
            && from > period_end - 2 * MICROS_PER_HOUR
        {
            // Nothing is left before `from` once a pass after it ran: this one finds nothing due.
            let before = self.governance.in_force_at(from - 1).charge_terms();
            report = self.ledger.accrue(from, interval_micros, before).await?;
        }
        let after = self
            .ledger
            .accrue(now, interval_micros, current.charge_terms())
            .await?;
        report.period_end = after.period_end;
        report.merge(after);
        Ok(report)
    }

    /// Runs an accrual pass every `interval` until the process ends. Every replica may run one:
    /// each period of each node is charged once whoever gets there first.
    pub fn spawn_accrual(&self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let micros = interval.as_micros() as i64;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.accrue(now_micros(), micros).await {
                    Ok(r) if r.charged_records > 0 || !r.short.is_empty() => {
                        tracing::info!(
                            records = r.charged_records,
                            short = r.short.len(),
                            "accrual pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "accrual pass failed; the next one catches up")
                    }
                }
            }
        })
    }
}

fn label(group: Grouping, key: String) -> String {
    match group {
        Grouping::Day => key.parse::<i64>().map(day_string).unwrap_or(key),
        _ => key,
    }
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; and a leading
/// `=`, `+`, `-` or `@` is defused so a spreadsheet does not run it as a formula.
fn csv(field: &str) -> String {
    let defused = if field.starts_with(['=', '+', '-', '@']) {
        format!("'{field}")
    } else {
        field.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_safe() {
        assert_eq!(csv("clu_1"), "clu_1");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    }

    #[test]
    fn gpu_hours_read_like_money() {
        assert_eq!(gpu_hours(8 * 90 * 60 * 1_000_000), "12.00");
        assert_eq!(gpu_hours(3_600_000_000 / 4), "0.25");
    }
}
