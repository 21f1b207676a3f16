//! The rails money enters and leaves by. Each is a thin client of its outside system that speaks
//! our types (cents, our ids in metadata) and maps that system's failures into
//! [`BillingError`](crate::BillingError); crediting the ledger is the caller's.

pub mod solana;
pub mod stripe;
