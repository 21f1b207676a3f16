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
//! * `history.rs`: the network by day and month, and the emission schedule to the cap.
//! * `staking.rs`: stake, co-staking offers, slashing cases (redacted) and burns.
//! * `bookings.rs`: rentals and payments without who made them.

mod blocks;
mod bookings;
mod devices;
mod history;
mod network;
mod staking;

use std::sync::Arc;

use iocloud_billing::{Currency, Money};
use iocloud_db::Db;

use crate::costaking::Costaking;
use crate::providers::Catalog;
use crate::providers::stake::Stake;
use crate::rewards::Rewards;

pub use blocks::{ExplorerBlock, ExplorerBlockDetail, ReasonCount, TopEarner};
pub use bookings::{Payment, Rental};
pub use devices::{
    DeviceFilter, ExplorerDevice, ExplorerDeviceDetail, HourOutcome, ProofCounts, UptimeDay,
};
pub use history::{EmissionSchedule, EmissionYear, NetworkPeriod, Period};
pub use network::{MAX_HOURS, ModelCount, NetworkHour, NetworkNow, RegionCount};
pub use staking::{CaseCount, CaseFilter, EvidenceCount, ExplorerCase, ModelStake, StakingNow};

/// The explorer's reads (see the module's documentation).
#[derive(Clone)]
pub struct Explorer {
    db: Db,
    catalog: Arc<Catalog>,
    /// The emission schedule.
    rewards: Rewards,
    /// The open co-staking offers, as the market lists them.
    costaking: Costaking,
    /// The stake a device needs under the parameters in force.
    stake: Stake,
    /// The network now, as last read, and when: every visitor's first page reads it, and it
    /// is one grouped read of the whole market, so a replica reads it at most this often.
    network: Arc<parking_lot::Mutex<Option<(std::time::Instant, NetworkNow)>>>,
    /// The network by day or month, as last read, and when: a year of blocks summed, which
    /// changes once an hour.
    history: Arc<parking_lot::Mutex<HistoryCache>>,
}

/// Each history asked for (by period and count), with when it was read.
type HistoryCache =
    std::collections::HashMap<(Period, i64), (std::time::Instant, Vec<NetworkPeriod>)>;

/// How long a replica answers the network now from its last read.
const NETWORK_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a replica answers the network by day or month from its last read.
const HISTORY_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl Explorer {
    pub(crate) fn new(
        db: Db,
        catalog: Arc<Catalog>,
        rewards: Rewards,
        costaking: Costaking,
        stake: Stake,
    ) -> Explorer {
        Explorer {
            db,
            catalog,
            rewards,
            costaking,
            stake,
            network: Default::default(),
            history: Default::default(),
        }
    }
}

/// $IO micro-units as a decimal string.
fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// The statuses of a device on the market.
const LISTED_SQL: &str = "d.status IN ('available', 'busy')";
