//! `iocloud rewards …`: a provider's hourly block rewards: the summary, the recent blocks, one
//! block's devices, and a device's hours with why it earned nothing in any of them.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::billing::text;
use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct RewardsArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: Option<RewardsCommand>,
}

#[derive(Subcommand, Debug)]
enum RewardsCommand {
    /// What the organisation's devices earned: in total, the last 24 hours and 7 days (the
    /// default).
    Summary,
    /// The network's latest blocks, each with what the organisation earned in it.
    Blocks {
        /// How many blocks, newest first (1 to 200).
        #[arg(long, default_value_t = 24)]
        limit: u32,
    },
    /// One block's devices of the organisation: score and $IO, or the rule failed and why.
    Block {
        /// The block's hour, e.g. 2026-12-06T14:00:00Z.
        hour: String,
    },
    /// A device's latest hours: what it earned, or the rule it failed with the evidence.
    Device {
        /// The device's id (`dev_…`).
        id: String,
        /// How many hours, newest first (1 to 200).
        #[arg(long, default_value_t = 24)]
        limit: u32,
    },
}

pub async fn run(a: RewardsArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command.unwrap_or(RewardsCommand::Summary) {
        RewardsCommand::Summary => {
            let s = client.get("/v1/rewards").await?;
            if !json {
                println!("earned in total   {} IO", text(&s["total"]));
                println!("last 24 hours     {} IO", text(&s["last_24h"]));
                println!("last 7 days       {} IO", text(&s["last_7d"]));
                match s["last_block"].as_str() {
                    Some(h) => println!("last block        {h}"),
                    None => println!("last block        none yet"),
                }
                println!("next block mints  {} IO", text(&s["next_emission"]));
            }
            s
        }
        RewardsCommand::Blocks { limit } => {
            let page = client
                .get(&format!("/v1/rewards/blocks?limit={limit}"))
                .await?;
            if !json {
                println!(
                    "{:<22}  {:>18}  {:>9}  {:>10}  {:>16}",
                    "HOUR", "MINTED IO", "ELIGIBLE", "INELIGIBLE", "YOURS IO"
                );
                for b in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{:<22}  {:>18}  {:>9}  {:>10}  {:>16}",
                        text(&b["hour"]),
                        text(&b["emission"]),
                        b["eligible_devices"],
                        b["ineligible_devices"],
                        text(&b["earned"])
                    );
                }
            }
            page
        }
        RewardsCommand::Block { hour } => {
            let detail = client
                .get(&format!("/v1/rewards/blocks/{}", seg(&hour)))
                .await?;
            if !json {
                let b = &detail["block"];
                println!(
                    "block {}: {} IO minted, {} eligible, {} not; yours {} IO",
                    text(&b["hour"]),
                    text(&b["emission"]),
                    b["eligible_devices"],
                    b["ineligible_devices"],
                    text(&b["earned"])
                );
                for d in detail["devices"].as_array().into_iter().flatten() {
                    println!("{}", device_line(d, "device_id"));
                }
            }
            detail
        }
        RewardsCommand::Device { id, limit } => {
            let page = client
                .get(&format!("/v1/devices/{}/blocks?limit={limit}", seg(&id)))
                .await?;
            if !json {
                for d in page["items"].as_array().into_iter().flatten() {
                    println!("{}", device_line(d, "hour"));
                }
            }
            page
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

/// One device's hour: led by `first` (its id in a block, its hour in a device's list).
fn device_line(d: &Value, first: &str) -> String {
    if d["eligible"].as_bool() == Some(true) {
        format!(
            "{:<26}  {:>14} IO  score {}{}",
            text(&d[first]),
            text(&d["amount"]),
            d["score"],
            if d["rented"].as_bool() == Some(true) {
                "  (rented)"
            } else {
                ""
            }
        )
    } else {
        format!(
            "{:<26}  nothing: {}: {}",
            text(&d[first]),
            text(&d["reason"]).replace('_', " "),
            text(&d["evidence"])
        )
    }
}
