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
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Make a user a platform operator.
    GrantOperator { email: String },
    /// Take the platform-operator flag away.
    RevokeOperator { email: String },
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
        Command::Bench { command } => crate::bench::run(command).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let _telemetry =
        crate::telemetry::init(config.log_format == "json", config.otel_endpoint.as_deref())?;
    tracing::info!(database = %config.database_url, redis = ?config.redis_url.as_ref().map(|u| u.redacted()), "starting");
    let server = Server::start(config).await?;
    let base = server.url();
    println!(
        "IO Cloud control plane listening on {base}\n  console      {base}/console/\n  REST API     {base}/v1\n  API reference {base}/docs\n  OpenAPI      {base}/openapi.json\n  GraphQL      {base}/graphql (GraphiQL in a browser; subscriptions at ws://{}/graphql/ws)\n  metrics      {base}/metrics, health {base}/healthz, readiness {base}/readyz",
        server.addr
    );
    server.run_until_signal().await
}

async fn admin(command: AdminCommand, args: DbArgs) -> anyhow::Result<()> {
    let db = Db::connect(&DatabaseUrl::new(args.database_url)).await?;
    db.migrate().await?;
    let jwt = iocloud_control::jwt::JwtKeys::load(&db, None).await?;
    let control =
        iocloud_control::Control::new(db, iocloud_db::Kv::memory(), jwt, Default::default());
    let (email, grant) = match &command {
        AdminCommand::GrantOperator { email } => (email, true),
        AdminCommand::RevokeOperator { email } => (email, false),
    };
    let user = control
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
