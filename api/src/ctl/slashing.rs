//! `iocloud slashing …`: the slashing cases against the organisation's devices, each with its
//! evidence and steps, and the appeal.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::billing::{all, text};
use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct SlashingArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: SlashingCommand,
}

#[derive(Subcommand, Debug)]
enum SlashingCommand {
    /// The cases against your devices: id, device, rule, $IO in escrow, status, appeal deadline.
    List {
        /// Only cases in this status: open, appealed, upheld, overturned or burned.
        #[arg(long)]
        status: Option<String>,
    },
    /// One case: its statement, evidence and every step.
    Show {
        /// The case's id (`slc_…`).
        id: String,
    },
    /// Appeal an open case within its window (30 days); an operator decides.
    Appeal {
        /// The case's id (`slc_…`).
        id: String,
        /// What you have to say, 1 to 4000 characters.
        #[arg(long)]
        statement: String,
    },
}

pub async fn run(a: SlashingArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command {
        SlashingCommand::List { status } => {
            let path = match status {
                Some(s) => format!("/v1/slashing/cases?status={}", seg(&s)),
                None => "/v1/slashing/cases".to_string(),
            };
            let items = all(&client, &path).await?;
            if !json {
                if items.is_empty() {
                    println!("no slashing cases");
                }
                for c in &items {
                    println!("{}", line(c));
                }
            }
            Value::from(items)
        }
        SlashingCommand::Show { id } => {
            let c = client
                .get(&format!("/v1/slashing/cases/{}", seg(&id)))
                .await?;
            if !json {
                print_case(&c);
            }
            c
        }
        SlashingCommand::Appeal { id, statement } => {
            let c = client
                .post(
                    &format!("/v1/slashing/cases/{}/appeal", seg(&id)),
                    &json!({ "statement": statement }),
                )
                .await?;
            if !json {
                println!("appealed {}: an operator decides", text(&c["id"]));
            }
            c
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

fn line(c: &Value) -> String {
    format!(
        "{}  {}  {:<18}  {:>14} IO  {:<10}  appeal by {}",
        text(&c["id"]),
        text(&c["device_id"]),
        text(&c["rule"]),
        text(&c["amount"]),
        text(&c["status"]),
        text(&c["appeal_deadline"])
    )
}

fn print_case(c: &Value) {
    println!("{}", line(c));
    println!("  {}", text(&c["statement"]));
    println!(
        "  {} IO from stake, {} IO from rewards",
        text(&c["from_stake"]),
        text(&c["from_rewards"])
    );
    for e in c["evidence"].as_array().into_iter().flatten() {
        println!(
            "  evidence {} {}: {}",
            text(&e["kind"]),
            text(&e["ref"]),
            text(&e["summary"])
        );
    }
    for e in c["events"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<10}  {}: {}",
            text(&e["created_at"]),
            text(&e["kind"]),
            text(&e["actor"]),
            text(&e["text"])
        );
    }
}
