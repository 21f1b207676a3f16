//! `iocloud governance …`: read proposals, their votes and the parameters in force (no key
//! needed), put a proposal, and vote (an owner's or admin's key).

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::billing::{all, text};
use super::client::{Client, Conn, CtlError, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct GovernanceArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: GovernanceCommand,
}

#[derive(Subcommand, Debug)]
enum GovernanceCommand {
    /// Proposals, newest first, with their tallies.
    Proposals {
        /// Only those in this state: voting, passed, rejected, queued, vetoed or executed.
        #[arg(long)]
        status: Option<String>,
    },
    /// One proposal and its votes.
    Show {
        /// The proposal's id (`prp_…`).
        id: String,
    },
    /// The parameters in force, the next version if one awaits its hour, and the ranges.
    Params,
    /// Put a proposal to the vote (needs 100,000 $IO staked, or an operator).
    Propose {
        /// A short title, at most 120 characters.
        #[arg(long)]
        title: String,
        /// The proposal's text.
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// A file holding the proposal's text.
        #[arg(long)]
        body_file: Option<std::path::PathBuf>,
        /// A parameter to change, `name=value` (e.g. `platform_fee_bps=400`); repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// A model's multiplier, `model=multiplier` (e.g. `h100-sxm=6`); repeatable.
        #[arg(long = "multiplier", value_name = "MODEL=N")]
        multipliers: Vec<String>,
    },
    /// Vote yes, no or abstain; voting again replaces your vote until the close.
    Vote {
        /// The proposal's id (`prp_…`).
        id: String,
        /// yes, no or abstain.
        choice: String,
    },
}

/// `name=value` with an integer value.
fn pair(flag: &str, s: &str) -> CtlResult<(String, i64)> {
    let bad = || {
        CtlError::new(
            exit::USAGE,
            format!("--{flag} {s}: expected NAME=INTEGER, e.g. platform_fee_bps=400"),
        )
    };
    let (name, value) = s.split_once('=').ok_or_else(bad)?;
    let value = value.trim().parse().map_err(|_| bad())?;
    Ok((name.trim().to_string(), value))
}

/// The change a proposal carries, from `--set` and `--multiplier`; none when neither is given.
fn change(set: &[String], multipliers: &[String]) -> CtlResult<Option<Value>> {
    let mut change = Map::new();
    for s in set {
        let (name, value) = pair("set", s)?;
        change.insert(name, json!(value));
    }
    if !multipliers.is_empty() {
        let list = multipliers
            .iter()
            .map(|m| {
                pair("multiplier", m).map(|(model, n)| json!({"gpu_model": model, "multiplier": n}))
            })
            .collect::<CtlResult<Vec<_>>>()?;
        change.insert("model_multipliers".into(), Value::from(list));
    }
    Ok((!change.is_empty()).then_some(Value::Object(change)))
}

pub async fn run(a: GovernanceArgs) -> CtlResult<i32> {
    let json = a.conn.json();
    let shown = match a.command {
        GovernanceCommand::Proposals { status } => {
            let client = Client::public(&a.conn);
            let path = match status {
                Some(s) => format!("/v1/governance/proposals?status={}", seg(&s)),
                None => "/v1/governance/proposals".to_string(),
            };
            let items = all(&client, &path).await?;
            if !json {
                if items.is_empty() {
                    println!("no proposals");
                }
                for p in &items {
                    println!("{}", proposal_line(p));
                }
            }
            Value::from(items)
        }
        GovernanceCommand::Show { id } => {
            let client = Client::public(&a.conn);
            let p = client
                .get(&format!("/v1/governance/proposals/{}", seg(&id)))
                .await?;
            let votes = all(
                &client,
                &format!("/v1/governance/proposals/{}/votes", seg(&id)),
            )
            .await?;
            if !json {
                println!("{}", proposal_line(&p));
                println!("\n{}\n", text(&p["body"]));
                if let Some(c) = p["change"].as_object() {
                    for (name, value) in c.iter().filter(|(_, v)| !v.is_null()) {
                        println!("  sets {name} = {value}");
                    }
                }
                if let Some(reason) = p["veto_reason"].as_str() {
                    println!("  vetoed: {reason}");
                }
                for v in &votes {
                    println!(
                        "  {}  {:<7}  {:>14} IO  {}",
                        text(&v["voter"]),
                        text(&v["choice"]),
                        text(&v["weight"]),
                        text(&v["voted_at"])
                    );
                }
            }
            json!({"proposal": p, "votes": votes})
        }
        GovernanceCommand::Params => {
            let client = Client::public(&a.conn);
            let v = client.get("/v1/governance/params").await?;
            if !json {
                print_version("in force", &v["in_force"]);
                if !v["next"].is_null() {
                    print_version("next", &v["next"]);
                }
                println!("ranges:");
                for r in v["ranges"].as_array().into_iter().flatten() {
                    println!("  {:<24} {} to {}", text(&r["name"]), r["min"], r["max"]);
                }
            }
            v
        }
        GovernanceCommand::Propose {
            title,
            body,
            body_file,
            set,
            multipliers,
        } => {
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|e| CtlError::new(exit::USAGE, format!("{}: {e}", path.display())))?,
                (None, None) => {
                    return Err(CtlError::new(
                        exit::USAGE,
                        "give the proposal's text with --body or --body-file",
                    ));
                }
            };
            let mut request = json!({"title": title, "body": body});
            if let Some(c) = change(&set, &multipliers)? {
                request["change"] = c;
            }
            let client = Client::from_conn(&a.conn)?;
            let p = client.post("/v1/governance/proposals", &request).await?;
            if !json {
                println!("proposed {}", proposal_line(&p));
            }
            p
        }
        GovernanceCommand::Vote { id, choice } => {
            let client = Client::from_conn(&a.conn)?;
            let v = client
                .put(
                    &format!("/v1/governance/proposals/{}/vote", seg(&id)),
                    &json!({"choice": choice}),
                )
                .await?;
            if !json {
                println!(
                    "voted {} with {} IO on {id}",
                    text(&v["choice"]),
                    text(&v["weight"])
                );
            }
            v
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

fn proposal_line(p: &Value) -> String {
    format!(
        "{}  {:<9}  yes {} / no {} / abstain {} of {} IO  ends {}  {}",
        text(&p["id"]),
        text(&p["status"]),
        text(&p["yes"]),
        text(&p["no"]),
        text(&p["abstain"]),
        text(&p["total_weight"]),
        text(&p["ends_at"]),
        text(&p["title"])
    )
}

fn print_version(label: &str, v: &Value) {
    let since = v["effective_at"].as_str().unwrap_or("launch");
    println!("{label}: version {} (from {since})", v["version"]);
    if let Some(params) = v["params"].as_object() {
        for (name, value) in params {
            println!("  {name:<24} {value}");
        }
    }
}
