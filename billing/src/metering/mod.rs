//! Metering: per-second charging of running nodes from their cluster's hold.
//!
//! A usage record says what a node costs per hour, since when, and how far it has been charged
//! (`accrued_until`). An accrual pass (every minute by default) charges each due record up to
//! the end of the current period. Each record's charge is one database transaction that moves
//! `accrued_until` conditionally, captures from the hold under a reference naming the record and
//! period, and adds the charge to the record's usage line for that clock hour: with several
//! replicas, or a crash half-way, every period is charged exactly once.
//!
//! Usage lines are hourly (UTC): a pass adds to the hour's line in place, so in steady state
//! it writes no new rows except in the first minute of an hour. A charge that spans an hour
//! boundary is split into one part per hour.
//!
//! The charge for a stretch is computed from cumulative billable time, so per-period rounding
//! never drifts: `floor(rate × billable(until) / 1 h) − floor(rate × billable(from) / 1 h)`.
//! Time a node was down is not billable.
//!
//! Four parts, one file each, keep one invariant together (a record is charged exactly to
//! `accrued_until`, once): `records` (usage records, starting and stopping them, their downtime,
//! what a stretch of billable time owes), `lines` (a charge split into clock hours and added to
//! the hourly usage lines), `settlement` (a hold's final settlement when its cluster ends) and
//! `accrual` (the pass every period). Each part that moves `accrued_until` does so with a
//! conditional update in the same transaction as its capture and its lines.

mod accrual;
mod lines;
mod records;
mod settlement;

pub use accrual::AccrualReport;
pub use records::{NewUsage, UsageRecord, start_usage_in, stop_usage_in};
pub use settlement::{
    HoldToSettle, HoldUsage, HoldsSettled, Settled, settle_hold_in, settle_holds_in,
};
