//! The `iocloud` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use iocloud_db::{DatabaseUrl, Db};

use crate::config::{Config, DEFAULT_DATABASE_URL};
use crate::startup::Server;

#[derive(Parser, Debug)]
#[command(name = "iocloud", version, about = "IO Cloud control plane")]
pub struct Cli {
    /// A TOML file of settings (below environment variables and flags).
    #[arg(long, global = true, env = "IOCLOUD_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane.
    Serve(Box<Config>),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Benchmarks, each beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
    /// Node agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    #[command(flatten)]
    Ctl(crate::ctl::CtlCommand),
    /// Operator tasks, run on the server's own machine (never over the API).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args, Debug)]
pub struct DbArgs {
    /// The database: `postgres://…` or `sqlite://FILE`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Run N simulated agents over HTTP against a server: they register as devices of the
    /// API key's organisation, answer their challenges, heartbeat, run nodes and prove
    /// themselves each hour while they run none.
    Simulate(SimulateArgs),
    /// Run the agent of one device already added (in the console or by `POST /v1/devices`):
    /// it answers the device's challenge, heartbeats, brings up the nodes placed on it and,
    /// while it runs none, answers the device's proof once an hour. This build has no
    /// container runtime, so its nodes are simulated as `agent simulate`'s are, and it measures
    /// no GPU: its hourly proof reports each GPU's VRAM as the device's model has it. Use it to
    /// try the network end to end, not to serve customers.
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The control plane's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The device's id (`dev_…`), as the console shows it.
    #[arg(long)]
    pub device: String,
    /// The device's agent token, shown once when it was added or its token replaced.
    #[arg(long, env = "IOCLOUD_AGENT_TOKEN")]
    pub token: String,
    /// GPUs on the machine (what the device was added with).
    #[arg(long)]
    pub gpus: i64,
    /// Seconds between heartbeats (the server's `heartbeat_interval_secs` by default).
    #[arg(long)]
    pub heartbeat_secs: Option<f64>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The control plane's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API key (`ioc_…`, write scope) of the provider organisation.
    #[arg(long, env = "IOCLOUD_API_KEY")]
    pub api_key: String,
    /// How many devices to register and run.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Stop after this many seconds (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    pub duration_secs: u64,
    #[command(flatten)]
    pub options: crate::simulator::SimOptions,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Make a user a platform operator.
    GrantOperator {
        /// The user's email.
        email: String,
    },
    /// Take the platform-operator flag away.
    RevokeOperator {
        /// The user's email.
        email: String,
    },
    /// Check the books: every device's GPU bookings, every organisation's quota against what
    /// it runs, and the whole ledger. Exits 1 when anything is wrong (after restoring a
    /// backup, say).
    Books,
}

/// Parses the settings file (when one is named) into the environment, then the flags.
pub fn parse() -> Cli {
    let file = std::env::args()
        .zip(std::env::args().skip(1))
        .find(|(flag, _)| flag == "--config")
        .map(|(_, path)| PathBuf::from(path))
        .or_else(|| std::env::var_os("IOCLOUD_CONFIG").map(PathBuf::from));
    if let Some(path) = file
        && let Err(e) = crate::config::load_file_into_env(&path)
    {
        eprintln!("iocloud: cannot read the settings file {e}");
        std::process::exit(2);
    }
    Cli::parse()
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(args) => {
            let db = Db::connect(&DatabaseUrl::new(args.database_url)).await?;
            db.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin { command, db } => admin(command, db).await,
        Command::Agent {
            command: AgentCommand::Simulate(args),
        } => simulate(args).await,
        Command::Agent {
            command: AgentCommand::Run(args),
        } => run_agent(args).await,
        Command::Bench { command } => crate::bench::run(command).await,
        Command::Ctl(command) => {
            crate::ctl::quiet_when_the_reader_leaves();
            std::process::exit(crate::ctl::run(command).await)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _telemetry =
        crate::telemetry::init(config.log_format == "json", config.otel_endpoint.as_deref())?;
    tracing::info!(database = %config.database_url, redis = ?config.redis_url.as_ref().map(|u| u.redacted()), "starting");
    let demo = config.demo;
    let server = Server::start(config).await?;
    let base = server.url();
    if demo {
        crate::demo::start(&server.state.control, &base).await?;
        println!(
            "demo: a provider network of simulated machines is running; its provider signs in as {} / {:?}",
            crate::demo::PROVIDER_EMAIL,
            crate::demo::PROVIDER_PASSWORD
        );
    }
    println!(
        "IO Cloud control plane listening on {base}\n  console      {base}/app/\n  REST API     {base}/v1\n  API reference {base}/docs\n  OpenAPI      {base}/openapi.json\n  GraphQL      {base}/graphql (GraphiQL in a browser; subscriptions at ws://{}/graphql/ws)\n  metrics      {base}/metrics, health {base}/healthz, readiness {base}/readyz",
        server.addr
    );
    server.run_until_signal().await
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let devices =
        crate::simulator::register(&args.server, &args.api_key, args.devices, args.options.seed)
            .await?;
    println!(
        "registered {} simulated devices; running their agents against {}",
        devices.len(),
        args.server
    );
    let stats = crate::simulator::spawn(&args.server, devices, args.options.clone());
    let started = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        println!("{stats:?}");
        if args.duration_secs > 0 && started.elapsed().as_secs() >= args.duration_secs {
            break;
        }
    }
    Ok(())
}

pub async fn run_agent(args: RunArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    anyhow::ensure!(
        args.device.starts_with("dev_"),
        "--device takes a device id such as dev_…"
    );
    anyhow::ensure!(args.gpus >= 0, "--gpus is the machine's GPU count");
    if let Some(secs) = args.heartbeat_secs {
        anyhow::ensure!(
            secs.is_finite() && secs > 0.0,
            "--heartbeat-secs is a number of seconds above 0"
        );
    }
    let device = crate::simulator::SimDevice {
        id: args.device,
        token: args.token,
        gpus: args.gpus,
    };
    println!("running the agent of {} against {}", device.id, args.server);
    // One machine that does its job: no simulated failures, no silences, no staggered start.
    let options = crate::simulator::SimOptions {
        heartbeat_secs: args.heartbeat_secs,
        node_ready_secs: 1.0,
        node_failure_rate: 0.0,
        offline_rate: 0.0,
        proof_failure_rate: 0.0,
        start_spread_secs: 0.0,
        ..crate::simulator::SimOptions::default()
    };
    let stats = crate::simulator::spawn(&args.server, vec![device], options);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => println!("{stats:?}"),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn admin(command: AdminCommand, args: DbArgs) -> anyhow::Result<()> {
    let db = Db::connect(&DatabaseUrl::new(args.database_url)).await?;
    db.migrate().await?;
    // Operator tasks sign no token: a throwaway key, so that none is stored in a database
    // whose replicas sign with a key file.
    let throwaway: [u8; 32] = rand::random();
    let jwt = iocloud_control::jwt::JwtKeys::load(&db, Some(&throwaway)).await?;
    let catalog = iocloud_control::providers::Catalog::load(&db).await?;
    let control = iocloud_control::Control::new(
        db,
        iocloud_db::Kv::memory(),
        jwt,
        Default::default(),
        catalog,
    )?;
    let (email, grant) = match &command {
        AdminCommand::GrantOperator { email } => (email, true),
        AdminCommand::RevokeOperator { email } => (email, false),
        AdminCommand::Books => {
            let books = control.check_books().await?;
            println!(
                "devices with GPUs booked wrong: {}\norganisations whose quota differs from what they run: {}\nledger balanced: {}",
                books.devices_wrong, books.quotas_wrong, books.ledger_balanced
            );
            if !books.are_right() {
                anyhow::bail!("the books are wrong");
            }
            return Ok(());
        }
    };
    let user = control
        .accounts
        .set_operator(email, grant)
        .await
        .map_err(|e| anyhow::anyhow!("{email}: {e}"))?;
    println!(
        "{} is {}a platform operator",
        user.email,
        if user.is_operator {
            "now "
        } else {
            "no longer "
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and every flag says what it is for in `--help`.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.trim() != "iocloud" {
                missing.push(format!("{path} (the command)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
