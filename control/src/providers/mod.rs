//! The supply side: the GPU and region catalogs, devices that providers register, their
//! verification, stake, heartbeats and uptime, and the agent protocol.
//!
//! Four services, each over its own handles: [`Devices`] (the providers' registry, its
//! heartbeats and sweeps), [`Agents`] (the agent protocol, and the nodes the clusters give
//! devices), [`Stake`](stake::Stake) and [`Reliability`](reliability::Reliability) (both held by
//! the first two). The registry and the protocol are apart because their callers are: a member
//! acting for an organisation, or a machine holding a device token.
//!
//! * [`catalog`]: GPU models, regions, the RTT model between places.
//! * [`devices`]: registering and managing devices (REST `/v1/devices`); [`heartbeats`]:
//!   their batched heartbeat write path, uptime, and the offline sweep.
//! * [`status`]: device states, allowed changes and their events.
//! * [`verification`]: the proof-of-work challenge an agent answers on first contact.
//! * [`node_test`]: the computation every cluster node answers before it turns ready.
//! * [`stake`]: what listing devices requires of the provider's stake.
//! * [`agent`]: the agent protocol (`/agent/v1`), node assignments and reports.
//! * [`tokens`]: who a device token belongs to, cached per replica.
//! * [`endpoints`]: the addresses agents report for ready nodes, checked before they are kept.
//! * [`reliability`]: the learned reliability of devices and providers, which placement ranks by.
//! * [`wakeups`]: waking long-polling agents when a node is assigned to their device.

pub mod agent;
pub mod catalog;
pub mod certificate;
pub mod devices;
pub mod endpoints;
pub mod node_test;
pub mod reliability;
pub mod stake;
pub mod status;
pub mod tokens;
pub mod verification;
pub mod wakeups;

pub use devices::heartbeats;

pub use agent::Agents;
pub use catalog::{Catalog, GpuModel, GpuModelView, Region};
pub use devices::{CreatedDevice, DeviceSpec, DeviceUpdate, DeviceView, Devices};
pub use status::{DeviceEvent, DeviceStatus};
