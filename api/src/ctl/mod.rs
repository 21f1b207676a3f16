//! The command line: `iocloud login | offers | quote | apply | destroy | get | kubeconfig | list |
//! events | extend | delete | billing | payouts | ssh-keys | rewards | slashing | costake |
//! explorer | governance`, over the REST API. Plans are
//! shown before anything changes, `--output json` prints what scripts parse, and exit codes say
//! what happened (`client::exit`).
//!
//! Each command has a file of its own holding its arguments and its `run`; this file keeps the
//! command list, the argument shapes several commands share, and the dispatch that turns a
//! failure into a printed error and an exit code.

mod apply;
mod billing;
pub(crate) mod client;
mod confirm;
mod costaking;
mod delete;
mod destroy;
mod events;
mod explorer;
mod extend;
mod get;
mod governance;
mod kubeconfig;
mod list;
mod login;
mod offers;
mod payouts;
mod quote;
mod render;
mod rewards;
mod slashing;
pub mod specs;
mod ssh_keys;
mod wait;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

pub use apply::ApplyArgs;
pub use billing::BillingArgs;
use client::Conn;
pub use client::drain_sse;
pub use costaking::CostakeArgs;
pub use events::EventsArgs;
pub use explorer::ExplorerArgs;
pub use extend::ExtendArgs;
pub use governance::GovernanceArgs;
pub use list::ListArgs;
pub use login::LoginArgs;
pub use offers::OffersArgs;
pub use payouts::PayoutsArgs;
pub use quote::QuoteArgs;
pub use rewards::RewardsArgs;
pub use slashing::SlashingArgs;
pub use ssh_keys::SshKeysArgs;

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Sign in (with an API key, or an email and password that make one) and store the key.
    Login(LoginArgs),
    /// What can be rented now, by GPU model and region: free GPUs, price range, reliability.
    Offers(OffersArgs),
    /// Where a cluster would go and what it would cost.
    Quote(QuoteArgs),
    /// Make the clusters in a file (YAML, TOML or JSON) match it: shows the plan, asks, applies,
    /// and waits for them to run.
    Apply(ApplyArgs),
    /// Terminate the clusters a file names (shows them and asks first).
    Destroy(FileArgs),
    /// One cluster, by name or id.
    Get(OneArgs),
    /// A Kubernetes cluster's kubeconfig, by name or id (needs a `write` key; every read is
    /// audited). `iocloud kubeconfig NAME > kubeconfig.yaml`; `--output json` adds the token.
    Kubeconfig(OneArgs),
    /// The organisation's clusters.
    List(ListArgs),
    /// A cluster's events; `--follow` streams them until the cluster ends.
    Events(EventsArgs),
    /// Give a cluster more hours (and hold funds for them).
    Extend(ExtendArgs),
    /// Terminate a cluster, by name or id.
    Delete(OneArgs),
    /// Balances, card top-ups, refunds and low-balance alerts.
    Billing(BillingArgs),
    /// Payouts of a provider's earnings on chain, and its wallets.
    Payouts(PayoutsArgs),
    /// The organisation's SSH public keys, which its clusters' nodes let in as root.
    SshKeys(SshKeysArgs),
    /// A provider's hourly block rewards: what each device earned, or why it did not.
    Rewards(RewardsArgs),
    /// Slashing cases against your devices: evidence, escrow, appeal.
    Slashing(SlashingArgs),
    /// Co-staking: offer a device's stake, take offers, unstake and withdraw co-stakes.
    Costake(CostakeArgs),
    /// IO Explorer's public reads: the network, devices, blocks and supply.
    Explorer(ExplorerArgs),
    /// Proposals, votes and the protocol's parameters; propose and vote.
    Governance(GovernanceArgs),
}

/// A file of cluster specs, for `apply` and `destroy`.
#[derive(Args, Debug)]
pub struct FileArgs {
    #[command(flatten)]
    conn: Conn,
    /// The file of cluster specs.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Do not ask.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// One cluster, for `get`, `kubeconfig` and `delete`.
#[derive(Args, Debug)]
pub struct OneArgs {
    #[command(flatten)]
    conn: Conn,
    /// The cluster's name or id.
    cluster: String,
}

/// Output piped into a reader that stops early (`iocloud list | head -1`) is not an error:
/// printing then fails with a broken pipe, which `println!` turns into a panic. The command
/// ends there, quietly, with exit code 0; any other panic is reported as usual.
pub fn quiet_when_the_reader_leaves() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") || message.contains("os error 32") {
            std::process::exit(client::exit::OK);
        }
        report(info);
    }));
}

/// Runs a command and answers its exit code; errors are printed here.
pub async fn run(command: CtlCommand) -> i32 {
    let json_errors = match &command {
        CtlCommand::Login(a) => a.conn.json(),
        CtlCommand::Offers(a) => a.conn.json(),
        CtlCommand::Quote(a) => a.conn.json(),
        CtlCommand::Apply(a) => a.files.conn.json(),
        CtlCommand::Destroy(a) => a.conn.json(),
        CtlCommand::Get(a) | CtlCommand::Delete(a) | CtlCommand::Kubeconfig(a) => a.conn.json(),
        CtlCommand::List(a) => a.conn.json(),
        CtlCommand::Events(a) => a.conn.json(),
        CtlCommand::Extend(a) => a.conn.json(),
        CtlCommand::Billing(a) => a.conn.json(),
        CtlCommand::Payouts(a) => a.conn.json(),
        CtlCommand::SshKeys(a) => a.conn.json(),
        CtlCommand::Rewards(a) => a.conn.json(),
        CtlCommand::Slashing(a) => a.conn.json(),
        CtlCommand::Costake(a) => a.conn.json(),
        CtlCommand::Explorer(a) => a.conn.json(),
        CtlCommand::Governance(a) => a.conn.json(),
    };
    let result = match command {
        CtlCommand::Login(a) => login::run(a).await,
        CtlCommand::Offers(a) => offers::run(a).await,
        CtlCommand::Quote(a) => quote::run(a).await,
        CtlCommand::Apply(a) => apply::run(a).await,
        CtlCommand::Destroy(a) => destroy::run(a).await,
        CtlCommand::Get(a) => get::run(a).await,
        CtlCommand::Kubeconfig(a) => kubeconfig::run(a).await,
        CtlCommand::List(a) => list::run(a).await,
        CtlCommand::Events(a) => events::run(a).await,
        CtlCommand::Extend(a) => extend::run(a).await,
        CtlCommand::Delete(a) => delete::run(a).await,
        CtlCommand::Billing(a) => billing::run(a).await,
        CtlCommand::Payouts(a) => payouts::run(a).await,
        CtlCommand::SshKeys(a) => ssh_keys::run(a).await,
        CtlCommand::Rewards(a) => rewards::run(a).await,
        CtlCommand::Slashing(a) => slashing::run(a).await,
        CtlCommand::Costake(a) => costaking::run(a).await,
        CtlCommand::Explorer(a) => explorer::run(a).await,
        CtlCommand::Governance(a) => governance::run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if json_errors {
                let body = e
                    .problem
                    .clone()
                    .unwrap_or_else(|| json!({"detail": e.message}));
                println!("{}", json!({"error": body, "exit_code": e.exit}));
            } else {
                eprintln!("iocloud: {}", e.message);
            }
            e.exit
        }
    }
}
