//! Placement: where a cluster goes. Pure and free of I/O: a [`Request`] and an [`Inventory`]
//! snapshot in, ranked [`Plan`]s (or why nothing fits) out.
//!
//! * [`objective`]: what "best" means, in integer micro-USD per hour (also docs/placement.md).
//! * [`inventory`]: the index of placeable devices, updated in place as devices change.
//! * [`solve`]: the optimiser, exact for the objective (see its module comment for why).
//! * [`request`]: what is asked.
//! * [`latency`]: the estimated round trip between two places.

pub mod availability;
pub mod inventory;
pub mod latency;
pub mod objective;
pub mod request;
pub mod solve;

pub use availability::Availability;
pub use inventory::{Inventory, InventoryError, Offer, Place, PlacedModel};
pub use objective::Preference;
pub use request::{Colocation, Request};
pub use solve::{Infeasible, Plan, PlanNode, Relaxation, place, place_by_full_scan};
