//! GraphQL, one file per area: operations and their errors over HTTP (`operations`),
//! subscriptions and what ends them (`subscriptions`), the limits on queries, sockets and logins
//! (`limits`) and the audit of mutations (`audit`). The WebSocket client (graphql-transport-ws)
//! they share is in the harness (`iocloud_tests`).

mod audit;
mod examples;
mod limits;
mod operations;
mod subscriptions;
