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
    /// How often agents are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// A listed device not heard from for this long goes `offline`.
    pub heartbeat_timeout: Duration,
    /// How often buffered heartbeats are written.
    pub heartbeat_flush: Duration,
    /// How long an agent has to answer its verification challenge.
    pub challenge_deadline: Duration,
    /// How long after an hour ends its reward block is written.
    pub block_delay: Duration,
    /// How big the test every cluster node answers before it is ready is, and its limit.
    pub node_tests: crate::providers::agent::NodeTestSettings,
    /// Limits of an organisation that has none of its own.
    pub quota: crate::clusters::QuotaLimits,
    /// A cluster whose nodes are not all ready this long after it was created fails.
    pub provisioning_timeout: Duration,
    /// Logins one account may attempt per window.
    pub login_throttle: crate::login_guard::LoginThrottle,
    /// How long idempotency records, expired quotes and outbox emails are kept.
    pub retention: crate::retention::Retention,
    /// Stripe, for card payments; `None` turns the card rail off.
    pub card_payments: Option<iocloud_billing::rails::stripe::StripeSettings>,
    /// The smallest and largest card top-up.
    pub top_up_limits: crate::payments::TopUpLimits,
    /// Solana, connected, for deposits and payouts on chain; `None` turns the rail off.
    pub chain: Option<iocloud_billing::rails::solana::SolanaRail>,
    /// The smallest payout, the most a provider is paid per day, and the size above which an
    /// operator approves.
    pub payout_limits: crate::payouts::PayoutLimits,
    /// The mail server email goes through; `None` writes email to the log instead.
    pub smtp: Option<crate::mail::SmtpSettings>,
    /// Where people and agents reach this server, without a trailing `/`: links in emails
    /// and the commands the console shows begin with it.
    pub public_url: String,
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
            heartbeat_interval: Duration::from_secs(20),
            heartbeat_timeout: Duration::from_secs(90),
            heartbeat_flush: Duration::from_millis(250),
            challenge_deadline: Duration::from_secs(30),
            block_delay: Duration::from_secs(180),
            node_tests: Default::default(),
            quota: crate::clusters::QuotaLimits::default(),
            provisioning_timeout: Duration::from_secs(600),
            login_throttle: Default::default(),
            retention: crate::retention::Retention::default(),
            card_payments: None,
            top_up_limits: Default::default(),
            chain: None,
            payout_limits: Default::default(),
            smtp: None,
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}
