//! Clusters: what customers rent. A spec is placed, reserved (GPUs, quota and a hold in one
//! transaction), brought up by the agents of the chosen devices, metered while it runs, and
//! ended by the customer, by its expiry or by a failure.
//!
//! State lives in the `clusters` row; every change of it is a compare-and-set on
//! `resource_version` that also writes one event (its `seq` is the version it made), so the
//! event log is the row's history and two replicas can never both apply a step. The
//! reconciler ([`reconcile`]) is level-triggered: it looks at the row and the nodes, and does
//! whatever step brings them closer to the spec.
//!
//! The cluster's types sit in `types`, its rows and their SQL in `storage`, the reads of them in
//! `reads`; the steps of a life sit in the submodules named after them (create, lifecycle,
//! reconcile, settle, quota, credentials), and what the nodes run, SSH keys included, in
//! `workload`.
//!
//! A cluster is named in requests by its id (`clu_…`) or by its name, the one a declarative
//! spec carries, so the methods that look one up take that key as text and tell the two
//! apart in `reads` (an id is matched within the caller's organisation, a name picks its live
//! cluster of that name): both kinds of key answer 404 for another organisation's cluster.

pub mod apply;
mod bootstrap;
mod claim;
mod create;
pub mod credentials;
pub mod events;
mod lifecycle;
pub mod quota;
mod reads;
mod reconcile;
mod settle;
pub mod spec;
mod storage;
mod string_map;
mod types;
mod workload;

pub use apply::{ApplyAction, ApplyPlan, ApplyResult, SpecChange};
pub use credentials::ClusterCredentials;
pub use events::ClusterEvent;
pub use lifecycle::Extension;
pub use quota::{QuotaExceeded, QuotaLimits, QuotaUpdate, QuotaView};
pub(crate) use settle::SettleQueue;
pub use spec::{ClusterKind, ClusterSpec, Connectivity};
pub(crate) use storage::{
    COLUMNS, ClusterRow, LATEST_EVENTS, NodeRow, StoredStatus, nodes_of_clusters_in, row_in,
};
pub use types::{ClusterStatus, ClusterView, NodeView};

use std::sync::Arc;

use iocloud_billing::Ledger;
use iocloud_billing::prices::PriceFeed;
use iocloud_db::{Db, Kv};

use crate::Settings;
use crate::audit::Audit;
use crate::capacity::Capacity;
use crate::directory::Directory;
use crate::governance::Governance;
use crate::providers::agent::Agents;
use crate::quotes::Quotes;

/// Clusters and their quota: create, read, apply, extend, terminate, follow, and the
/// reconciler that brings each to its spec. Cheap to clone.
#[derive(Clone)]
pub struct Clusters {
    db: Db,
    /// Carries cluster events to the other replicas.
    kv: Kv,
    ledger: Ledger,
    prices: Arc<PriceFeed>,
    settings: Arc<Settings>,
    audit: Audit,
    /// The organisation's billing currency.
    directory: Directory,
    capacity: Capacity,
    quotes: Quotes,
    /// Gives nodes to devices and takes them back.
    agents: Agents,
    /// The platform fee in force, for settlements.
    governance: Governance,
    events: Arc<events::EventHub>,
    settling: Arc<SettleQueue>,
}

impl Clusters {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Db,
        kv: Kv,
        ledger: Ledger,
        prices: Arc<PriceFeed>,
        settings: Arc<Settings>,
        audit: Audit,
        directory: Directory,
        capacity: Capacity,
        quotes: Quotes,
        agents: Agents,
        governance: Governance,
    ) -> Clusters {
        Clusters {
            db,
            kv,
            ledger,
            prices,
            settings,
            audit,
            directory,
            capacity,
            quotes,
            agents,
            governance,
            events: Default::default(),
            // One batch at a time could not keep up with clusters ending together
            // (docs/benchmarks.md, settlement).
            settling: Arc::new(SettleQueue::with_lanes(4)),
        }
    }
}
