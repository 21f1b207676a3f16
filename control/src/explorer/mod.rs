//! IO Explorer: the network as anyone may see it, without an account. Read-only, and never an
//! owner's private data: a device is its id, model and counts, region and country, state,
//! price and scores, never its name, its organisation, its coordinates, its addresses or its
//! agent. The fields each answer carries are the public ones listed in `docs/explorer.md`; a
//! test lists every field of every answer against that list.
//!
//! * `network.rs`: devices and GPUs by model and region, hired and idle, now and by hour.
//! * `devices.rs`: the device directory with its filters, and one device's page.
//! * `blocks.rs`: the hourly reward blocks, each with its ineligible devices by reason and its
//!   top earners.

mod blocks;
mod devices;
mod network;

use std::sync::Arc;

use iocloud_billing::{Currency, Money};
use iocloud_db::Db;

use crate::providers::Catalog;

pub use blocks::{ExplorerBlock, ExplorerBlockDetail, ReasonCount, TopEarner};
pub use devices::{DeviceFilter, ExplorerDevice, ExplorerDeviceDetail, HourOutcome, UptimeDay};
pub use network::{MAX_HOURS, ModelCount, NetworkHour, NetworkNow, RegionCount};

/// The explorer's reads (see the module's documentation).
#[derive(Clone)]
pub struct Explorer {
    db: Db,
    catalog: Arc<Catalog>,
    /// The network now, as last read, and when: every visitor's first page reads it, and it
    /// is one grouped read of the whole market, so a replica reads it at most this often.
    network: Arc<parking_lot::Mutex<Option<(std::time::Instant, NetworkNow)>>>,
}

/// How long a replica answers the network now from its last read.
const NETWORK_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl Explorer {
    pub(crate) fn new(db: Db, catalog: Arc<Catalog>) -> Explorer {
        Explorer {
            db,
            catalog,
            network: Default::default(),
        }
    }
}

/// $IO micro-units as a decimal string.
fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// The statuses of a device on the market.
const LISTED_SQL: &str = "d.status IN ('available', 'busy')";
