//! The foundation's integration suite: each test starts the real server and talks HTTP and
//! GraphQL to it, on SQLite and (when `IOCLOUD_TEST_POSTGRES_URL` is set) on Postgres.

mod api_keys;
mod app_cards;
mod app_clusters;
mod app_console;
mod app_statements;
mod app_team;
mod app_worker;
mod audit;
mod auth;
mod bad_input;
mod balance_alerts;
mod billing;
mod browser;
mod cli;
mod clusters;
mod console_client;
mod crash;
mod devices;
mod dropped_creates;
mod graphql;
mod idempotency;
mod invitation_email;
mod invitations;
mod node_endpoints;
mod operators;
mod payout_wallets;
mod permissions;
mod prices;
mod quotes;
mod rate_limit;
mod replicas;
mod ssh_keys;
mod surface;
mod tenancy;
mod usage;
