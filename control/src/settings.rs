use std::time::Duration;

use iocloud_billing::Money;

/// Policy the domain needs from configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long an API key and its organisation stay cached in a replica.
    pub cache_ttl: Duration,
    /// The platform's share of every charge, in basis points (500 = 5%).
    pub platform_fee_bps: u32,
    /// Credit granted to every new organisation (none by default; `--demo` grants 500 USD).
    pub signup_credit: Option<Money>,
    /// Where the IO/USD rate comes from.
    pub io_price: iocloud_billing::prices::FeedSource,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_ttl: crate::cache::DEFAULT_TTL,
            platform_fee_bps: 500,
            signup_credit: None,
            io_price: iocloud_billing::prices::FeedSource::Static(Money::from_micros(
                500_000,
                iocloud_billing::Currency::Usd,
            )),
        }
    }
}
