//! The `iocloud` command line, run in the test's process as a user would run it.

use clap::Parser;
use iocloud_api::cli::{Cli, Command};

/// Runs `iocloud ARGS…` in this process and answers its exit code.
pub async fn iocloud(args: &[&str]) -> i32 {
    let cli = Cli::try_parse_from(std::iter::once("iocloud").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Ctl(c) => iocloud_api::ctl::run(c).await,
        other => panic!("not a client command: {other:?}"),
    }
}

/// Runs `iocloud ARGS… --server <the app> --api-key KEY` and answers its exit code.
pub async fn iocloud_with_key(app: &crate::TestApp, args: &[&str], key: &str) -> i32 {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", app.base.as_str(), "--api-key", key]);
    iocloud(&all).await
}
