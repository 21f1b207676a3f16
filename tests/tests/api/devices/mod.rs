//! The supply side, one file per area: a device's life from registration to retirement
//! (`lifecycle`), the catalogs and what the registry refuses (`registry`), verification
//! (`verification`), heartbeats and offline sweeps (`heartbeats`), node assignments as the agent
//! sees them (`assignments`), the hourly proof of an idle listed device (`proofs`), operators'
//! suspensions (`suspension`) and the simulator's agents (`simulator`). The rig and the agent's
//! side of the protocol they share are in the harness (`iocloud_tests`).

mod assignments;
mod heartbeats;
mod lifecycle;
mod proofs;
mod registry;
mod simulator;
mod suspension;
mod verification;
