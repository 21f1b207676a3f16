//! The payment rails against stand-ins of the systems they talk to, through the real clients.
//! Each test is skipped, saying so, when its peer is not configured.

mod card_auto_reload;
mod card_receipts;
mod card_refunds;
mod card_top_ups;
mod chain_deposits;
mod chain_payouts;
mod explorer_payments;
mod payout_crash;
mod stripe;
