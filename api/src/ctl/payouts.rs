//! `iocloud payouts …`: a provider's payouts of earnings on chain and the wallets they go to.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::billing::{all, text};
use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct PayoutsArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: PayoutsCommand,
}

#[derive(Subcommand, Debug)]
enum PayoutsCommand {
    /// Ask for a payout of earnings to a wallet (the default one unless `--wallet`).
    Request {
        /// Earnings to pay out, e.g. 25 or 25.50.
        amount: String,
        /// The earnings' currency: USD, IOSD or IO.
        currency: String,
        /// What the wallet receives: IOSD, USDC or IO (IO for IO earnings, else IOSD).
        #[arg(long)]
        token: Option<String>,
        /// The wallet (`wal_…`).
        #[arg(long)]
        wallet: Option<String>,
    },
    /// The organisation's payouts.
    List,
    /// One payout (`po_…`) and where it stands.
    Show {
        /// The payout (`po_…`).
        payout: String,
    },
    /// Take back a payout not signed yet.
    Cancel {
        /// The payout (`po_…`).
        payout: String,
    },
    /// The organisation's payout wallets.
    Wallets,
}

pub async fn run(a: PayoutsArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command {
        PayoutsCommand::Request {
            amount,
            currency,
            token,
            wallet,
        } => {
            let mut body = json!({ "amount": amount, "currency": currency });
            if let Some(token) = token {
                body["token"] = json!(token);
            }
            if let Some(wallet) = wallet {
                body["wallet_id"] = json!(wallet);
            }
            let p = client.post("/v1/payouts", &body).await?;
            if !json {
                println!(
                    "{}: {} {} of earnings as {} {} to {}, {}",
                    text(&p["id"]),
                    text(&p["amount"]),
                    text(&p["currency"]),
                    text(&p["token_amount"]),
                    text(&p["token"]),
                    text(&p["address"]),
                    text(&p["status"])
                );
            }
            p
        }
        PayoutsCommand::List => {
            let items = all(&client, "/v1/payouts").await?;
            if !json {
                for p in &items {
                    line(p);
                }
            }
            Value::from(items)
        }
        PayoutsCommand::Show { payout } => {
            let p = client.get(&format!("/v1/payouts/{}", seg(&payout))).await?;
            if !json {
                line(&p);
                if let Some(reason) = p["reason"].as_str() {
                    println!("  {reason}");
                }
                if let Some(signature) = p["signature"].as_str() {
                    println!("  transfer {signature}");
                }
            }
            p
        }
        PayoutsCommand::Cancel { payout } => {
            let p = client
                .post(&format!("/v1/payouts/{}/cancel", seg(&payout)), &json!({}))
                .await?;
            if !json {
                line(&p);
            }
            p
        }
        PayoutsCommand::Wallets => {
            let wallets = client.get("/v1/payouts/wallets").await?;
            if !json {
                for w in wallets.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}{}",
                        text(&w["id"]),
                        text(&w["address"]),
                        w["label"].as_str().unwrap_or(""),
                        if w["is_default"] == true {
                            "  (default)"
                        } else {
                            ""
                        }
                    );
                }
            }
            wallets
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

fn line(p: &Value) {
    println!(
        "{}  {:<17}  {:>12} {:<4} -> {:>14} {:<4}  {}",
        text(&p["id"]),
        text(&p["status"]),
        text(&p["amount"]),
        text(&p["currency"]),
        text(&p["token_amount"]),
        text(&p["token"]),
        text(&p["created_at"])
    );
}
