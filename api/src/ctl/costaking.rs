//! `iocloud costake …`: offer a device's stake to others, take an offer, and follow, unstake and
//! withdraw co-stakes.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::billing::{all, text};
use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct CostakeArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: CostakeCommand,
}

#[derive(Subcommand, Debug)]
enum CostakeCommand {
    /// Open offers: device, model, GPUs, region, reliability, $IO, share, term.
    Offers {
        /// Only devices of this GPU model, e.g. h100-sxm.
        #[arg(long)]
        model: Option<String>,
        /// Only devices at least this reliable, 0 to 1.
        #[arg(long)]
        min_reliability: Option<f64>,
    },
    /// Offer the stake one of your devices needs, for a share of its block rewards.
    Offer {
        /// The device's id (`dev_…`).
        #[arg(long)]
        device: String,
        /// $IO, at most what the device needs staked.
        #[arg(long)]
        amount: String,
        /// The co-staker's share of the device's block rewards, basis points (5000 = 50 %).
        #[arg(long)]
        share_bps: i64,
        /// Days before the co-stake may be unstaked.
        #[arg(long)]
        term_days: i64,
    },
    /// Take an open offer with $IO from your balance.
    Take {
        /// The offer's id (`cso_…`).
        id: String,
        /// $IO, at most the offer's.
        #[arg(long)]
        amount: String,
    },
    /// Your co-stakes: state, $IO, share, earned.
    Positions,
    /// Start unstaking a co-stake whose term is over (7 days' notice, then 14 days' cooldown).
    Unstake {
        /// The co-stake's id (`csp_…`).
        id: String,
    },
    /// Move an unstaked co-stake's $IO back to your balance after its cooldown.
    Withdraw {
        /// The co-stake's id (`csp_…`).
        id: String,
    },
}

pub async fn run(a: CostakeArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command {
        CostakeCommand::Offers {
            model,
            min_reliability,
        } => {
            let mut query = Vec::new();
            if let Some(m) = model {
                query.push(format!("model={}", seg(&m)));
            }
            if let Some(r) = min_reliability {
                query.push(format!("min_reliability={r}"));
            }
            let path = if query.is_empty() {
                "/v1/costaking/offers".to_string()
            } else {
                format!("/v1/costaking/offers?{}", query.join("&"))
            };
            let items = all(&client, &path).await?;
            if !json {
                if items.is_empty() {
                    println!("no open offers");
                }
                for o in &items {
                    println!(
                        "{}  {}  {:<12} ×{:<2}  {:<14}  reliability {:.2}  {:>12} IO  share {} bps  {} days",
                        text(&o["id"]),
                        text(&o["device_id"]),
                        o["gpu_model"].as_str().unwrap_or("cpu"),
                        o["gpu_count"],
                        text(&o["region"]),
                        o["reliability"].as_f64().unwrap_or(0.0),
                        text(&o["amount"]),
                        o["reward_share_bps"],
                        o["term_days"]
                    );
                }
            }
            Value::from(items)
        }
        CostakeCommand::Offer {
            device,
            amount,
            share_bps,
            term_days,
        } => {
            let o = client
                .post(
                    "/v1/costaking/offers",
                    &json!({"device_id": device, "amount": amount, "reward_share_bps": share_bps, "term_days": term_days}),
                )
                .await?;
            if !json {
                println!(
                    "offered {}: {} IO for device {}",
                    text(&o["id"]),
                    text(&o["amount"]),
                    text(&o["device_id"])
                );
            }
            o
        }
        CostakeCommand::Take { id, amount } => {
            let p = client
                .post(
                    &format!("/v1/costaking/offers/{}/take", seg(&id)),
                    &json!({"amount": amount}),
                )
                .await?;
            if !json {
                println!(
                    "co-staked {}: {} IO on device {}",
                    text(&p["id"]),
                    text(&p["amount"]),
                    text(&p["device_id"])
                );
            }
            p
        }
        CostakeCommand::Positions => {
            let items = all(&client, "/v1/costaking/positions").await?;
            if !json {
                if items.is_empty() {
                    println!("no co-stakes: see `iocloud costake offers`");
                }
                for p in &items {
                    println!("{}", position_line(p));
                }
            }
            Value::from(items)
        }
        CostakeCommand::Unstake { id } => {
            let p = client
                .post(
                    &format!("/v1/costaking/positions/{}/unstake", seg(&id)),
                    &json!({}),
                )
                .await?;
            if !json {
                println!("{}", position_line(&p));
            }
            p
        }
        CostakeCommand::Withdraw { id } => {
            let p = client
                .post(
                    &format!("/v1/costaking/positions/{}/withdraw", seg(&id)),
                    &json!({}),
                )
                .await?;
            if !json {
                println!("{}", position_line(&p));
            }
            p
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

fn position_line(p: &Value) -> String {
    format!(
        "{}  {}  {:<12}  {:>12} IO  share {} bps  earned {} IO{}",
        text(&p["id"]),
        text(&p["device_id"]),
        text(&p["state"]),
        text(&p["amount"]),
        p["reward_share_bps"],
        text(&p["earned"]),
        p["available_at"]
            .as_str()
            .map(|t| format!("  withdrawable from {t}"))
            .unwrap_or_default()
    )
}
