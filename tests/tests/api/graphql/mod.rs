//! GraphQL, one file per area: operations and their errors over HTTP (`operations`),
//! subscriptions and what ends them (`subscriptions`), the limits on queries, sockets and logins
//! (`limits`), the audit of mutations (`audit`), and SSH keys with a container's workload
//! (`ssh_keys`). The WebSocket client (graphql-transport-ws) they share is in the harness
//! (`iocloud_tests`).

mod audit;
mod examples;
mod limits;
mod operations;
mod ssh_keys;
mod subscriptions;
