//! The `iocloud` server: the axum application (REST under `/v1`, GraphQL at `/graphql`), its
//! middleware and telemetry, and the command line.

// The GraphQL roots merge many objects, and proving their futures `Send` walks Stripe's deeply
// nested types: past the default limit of 128 once the whole workspace's features are on.
#![recursion_limit = "256"]

pub mod agent;
mod app;
pub mod bench;
mod bench_blocks;
mod bench_clusters;
mod bench_console;
mod bench_deposits;
mod bench_explorer;
mod bench_heartbeats;
mod bench_ledger;
mod bench_soak;
mod bench_webhooks;
pub mod cli;
pub mod config;
pub mod ctl;
mod demo;
pub mod drain;
pub mod error;
pub mod extract;
pub mod graphql;
pub mod metrics;
pub mod middleware;
mod openapi;
pub mod proxy;
mod rest;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use config::Config;
pub use startup::{Server, build_state, router};
