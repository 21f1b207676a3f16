//! `iocloud billing …`: balances, usage and invoices, card top-ups, refunds, deposits on
//! Solana and low-balance alerts.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct BillingArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: BillingCommand,
}

#[derive(Subcommand, Debug)]
enum BillingCommand {
    /// Available, held and owed balances in every currency.
    Balance,
    /// Spend of a month, by cluster (default) or by day.
    Usage {
        /// `YYYY-MM`; this month when left out.
        #[arg(long)]
        month: Option<String>,
        /// `cluster` or `day`.
        #[arg(long, default_value = "cluster")]
        by: String,
    },
    /// The invoice of a month: a line per cluster and price, and the totals.
    Invoice {
        /// `YYYY-MM`; this month when left out.
        month: Option<String>,
    },
    /// Top up the USD balance by card: the default saved card, or `--card pm_…`, is charged
    /// now.
    TopUp {
        /// US dollars, e.g. 25 or 25.00.
        amount: String,
        /// The card to charge (`pm_…`) instead of the default one.
        #[arg(long)]
        card: Option<String>,
    },
    /// The organisation's saved cards.
    Cards,
    /// The organisation's card top-ups.
    TopUps,
    /// The receipt of a paid top-up (`top_…`).
    Receipt {
        /// The top-up (`top_…`).
        top_up: String,
    },
    /// Refund unused card credit to the cards it came from (all that is refundable when no
    /// amount is given).
    Refund {
        /// USD to refund, e.g. 25 or 25.00.
        amount: Option<String>,
    },
    /// Ask for a deposit on Solana: prints the Solana Pay request to open in a wallet.
    Deposit {
        /// IOSD, USDC (credited as IOSD less a fee) or IO.
        currency: String,
        /// Tokens, e.g. 25 or 1.5; left out, the wallet asks.
        amount: Option<String>,
    },
    /// The organisation's deposits on Solana and what arrived for each.
    Deposits,
    /// Low-balance alerts: lists them; with `--threshold`, sets the one of `--currency`.
    LowBalance {
        /// The balance watched: USD, IOSD or IO.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Be told when the available balance falls under this.
        #[arg(long)]
        threshold: Option<String>,
    },
}

pub async fn run(a: BillingArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command {
        BillingCommand::Balance => {
            let balances = client.get("/v1/balances").await?;
            if !json {
                for b in balances.as_array().into_iter().flatten() {
                    println!(
                        "{:<5} available {:>14}  held {:>14}  owed {:>10}",
                        text(&b["currency"]),
                        text(&b["available"]),
                        text(&b["held"]),
                        text(&b["owed"])
                    );
                }
            }
            balances
        }
        BillingCommand::Usage { month, by } => {
            let mut path = format!("/v1/usage?group_by={}", seg(&by));
            if let Some(month) = &month {
                path.push_str(&format!("&month={}", seg(month)));
            }
            let rows = client.get(&path).await?;
            if !json {
                let rows = rows.as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    println!("no usage");
                }
                for r in &rows {
                    println!(
                        "{:<32}  {:>10} GPU-h  {:>14} {}",
                        text(&r["key"]),
                        text(&r["gpu_hours"]),
                        text(&r["amount"]),
                        text(&r["currency"])
                    );
                }
            }
            rows
        }
        BillingCommand::Invoice { month } => {
            let month =
                month.unwrap_or_else(|| iocloud_db::time::month_of(iocloud_db::time::now_micros()));
            let invoice = client.get(&format!("/v1/invoices/{}", seg(&month))).await?;
            if !json {
                println!(
                    "Invoice {}  {} ({})",
                    text(&invoice["month"]),
                    text(&invoice["organization"]),
                    text(&invoice["org_id"])
                );
                for l in invoice["lines"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<30} {:>10} GPU-h × {:>8} = {:>14} {}",
                        text(&l["cluster_id"]),
                        text(&l["gpu_hours"]),
                        text(&l["rate"]),
                        text(&l["amount"]),
                        text(&l["currency"])
                    );
                }
                for t in invoice["totals"].as_array().into_iter().flatten() {
                    println!(
                        "  total {:>14} {} (unpaid {})",
                        text(&t["amount"]),
                        text(&t["currency"]),
                        text(&t["unpaid"])
                    );
                }
            }
            invoice
        }
        BillingCommand::TopUp { amount, card } => {
            let body = match card {
                Some(card) => json!({ "amount": amount, "payment_method": card }),
                None => json!({ "amount": amount, "default_card": true }),
            };
            let mut t = client.post("/v1/billing/top-ups", &body).await?;
            // The card form's secret is for a browser, not a terminal or a log.
            if let Some(o) = t.as_object_mut() {
                o.remove("client_secret");
            }
            if !json {
                match t["status"].as_str() {
                    Some("succeeded") => println!(
                        "{}: {} USD paid and credited",
                        text(&t["id"]),
                        text(&t["received"])
                    ),
                    _ => println!(
                        "{}: {} USD waiting for the card; finish it in the console",
                        text(&t["id"]),
                        text(&t["amount"])
                    ),
                }
            }
            t
        }
        BillingCommand::Cards => {
            let cards = client.get("/v1/billing/cards").await?;
            if !json {
                for c in cards.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<10} ···· {}  {}/{}{}",
                        text(&c["id"]),
                        text(&c["brand"]),
                        text(&c["last4"]),
                        c["exp_month"],
                        c["exp_year"],
                        if c["is_default"] == true {
                            "  (default)"
                        } else {
                            ""
                        }
                    );
                }
            }
            cards
        }
        BillingCommand::TopUps => {
            let items = all(&client, "/v1/billing/top-ups").await?;
            if !json {
                for t in &items {
                    println!(
                        "{}  {:<9}  {:>10} USD  {}",
                        text(&t["id"]),
                        text(&t["status"]),
                        text(&t["amount"]),
                        text(&t["created_at"])
                    );
                }
            }
            Value::from(items)
        }
        BillingCommand::Receipt { top_up } => {
            let r = client
                .get(&format!("/v1/billing/top-ups/{}/receipt", seg(&top_up)))
                .await?;
            if !json {
                let card = match r["card"].as_object() {
                    Some(c) => format!("{} ···· {}", text(&c["brand"]), text(&c["last4"])),
                    None => "card".into(),
                };
                println!(
                    "Receipt {}  {}\nPaid {} USD on {} with {}\nReference {}\nRefunded {} USD",
                    text(&r["number"]),
                    text(&r["organization"]),
                    text(&r["amount"]),
                    text(&r["paid_at"]),
                    card,
                    text(&r["payment_reference"]),
                    text(&r["refunded"])
                );
            }
            r
        }
        BillingCommand::Deposit { currency, amount } => {
            let mut body = json!({ "currency": currency });
            if let Some(amount) = amount {
                body["amount"] = json!(amount);
            }
            let d = client.post("/v1/billing/deposits", &body).await?;
            if !json {
                println!(
                    "{}: pay {} {} to {} carrying reference {}\nopen in a wallet: {}\nQR code: {}",
                    text(&d["id"]),
                    d["amount"].as_str().unwrap_or("any amount of"),
                    text(&d["currency"]),
                    text(&d["recipient"]),
                    text(&d["reference"]),
                    text(&d["url"]),
                    text(&d["qr_url"])
                );
            }
            d
        }
        BillingCommand::Deposits => {
            let items = all(&client, "/v1/billing/deposits").await?;
            if !json {
                for d in &items {
                    println!(
                        "{}  {:<7}  {:<4}  asked {:>12}  received {:>12}  {}",
                        text(&d["id"]),
                        text(&d["status"]),
                        text(&d["currency"]),
                        d["amount"].as_str().unwrap_or("any"),
                        text(&d["received"]),
                        text(&d["created_at"])
                    );
                }
            }
            Value::from(items)
        }
        BillingCommand::Refund { amount } => {
            let body = match amount {
                Some(a) => json!({ "amount": a }),
                None => json!({}),
            };
            let r = client.post("/v1/billing/refunds", &body).await?;
            if !json {
                println!(
                    "{}: {} USD refunded to {} card payment(s), {}",
                    text(&r["id"]),
                    text(&r["amount"]),
                    r["parts"].as_array().map_or(0, Vec::len),
                    text(&r["status"])
                );
            }
            r
        }
        BillingCommand::LowBalance {
            currency,
            threshold,
        } => {
            if let Some(threshold) = threshold {
                let set = client
                    .put(
                        "/v1/billing/low-balance",
                        &json!({ "currency": currency, "threshold": threshold }),
                    )
                    .await?;
                if !json {
                    println!(
                        "told under {} {}",
                        text(&set["threshold"]),
                        text(&set["currency"])
                    );
                }
                set
            } else {
                let alerts = client.get("/v1/billing/low-balance").await?;
                if !json {
                    for al in alerts.as_array().into_iter().flatten() {
                        let state = if al["below"] == true { "BELOW" } else { "ok" };
                        println!(
                            "{:<5} under {:>12}: {state} (available {})",
                            text(&al["currency"]),
                            text(&al["threshold"]),
                            text(&al["available"])
                        );
                    }
                }
                alerts
            }
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

/// Every item of a paged list.
pub(super) async fn all(client: &Client, path: &str) -> CtlResult<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        // The path may carry filters of its own.
        let joint = if path.contains('?') { '&' } else { '?' };
        let mut page_path = format!("{path}{joint}limit=200");
        if let Some(c) = &cursor {
            page_path.push_str(&format!("&cursor={}", seg(c)));
        }
        let page = client.get(&page_path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            return Ok(items);
        }
    }
}

pub(super) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}
