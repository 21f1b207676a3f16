//! Clusters end to end, with the simulator's agents running the nodes over the real agent API,
//! one file per surface: a cluster's life from create to its end (`lifecycle`), what a create
//! refuses and the currency it prices in (`create`), quota (`quota`), declarative applies
//! (`apply`), nodes lost and replaced and what their outcomes score (`nodes`), settlements that
//! meet (`settlement`), the event stream (`events`) and the admin credential (`credentials`);
//! another tenant's cluster is not found, in `create` and `credentials`. What the files share
//! (the fleet, making, listing and reading clusters) is in the harness (`iocloud_tests`).

mod apply;
mod create;
mod credentials;
mod events;
mod lifecycle;
mod node_tests;
mod nodes;
mod quota;
mod settlement;
