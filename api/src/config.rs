//! Settings: flags over environment variables over an optional TOML file over defaults that
//! work on a laptop. `iocloud serve --help` lists every one.
//!
//! One file: the `Config` struct is the one list of settings (clap reads it from flags, the
//! environment and the file), and turning it into the domain's `Settings` reads the same
//! fields; split, every new setting would be written in two places that must agree.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use iocloud_db::DatabaseUrl;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/iocloud.db";

#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "IOCLOUD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// `postgres://…` or `sqlite://FILE`; the SQLite file and its folder are created.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, value_parser = parse_url)]
    pub database_url: DatabaseUrl,

    /// `redis://…`; unset, rate limits and pub/sub stay in this process.
    #[arg(long, env = "REDIS_URL", value_parser = parse_url)]
    pub redis_url: Option<DatabaseUrl>,

    /// Prefix of every Redis key and channel this deployment uses.
    #[arg(long, env = "IOCLOUD_REDIS_PREFIX", default_value = "iocloud:")]
    pub redis_prefix: String,

    /// A file holding the JWT signing secret (32 bytes or more). Unset, a key is generated on
    /// first start and kept in the database, so every replica shares it.
    #[arg(long, env = "IOCLOUD_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,

    /// OTLP/gRPC endpoint for traces and metrics (e.g. http://127.0.0.1:4317); unset, none are exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,

    /// Origins allowed by CORS, comma-separated (`*` for any); empty, no CORS headers are sent.
    #[arg(
        long,
        env = "IOCLOUD_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_origins: Vec<String>,

    /// Requests per minute allowed from one client address.
    #[arg(long, env = "IOCLOUD_RATE_LIMIT_PER_IP", default_value_t = 1200)]
    pub rate_limit_per_ip: u32,

    /// Requests per minute allowed with one API key.
    #[arg(long, env = "IOCLOUD_RATE_LIMIT_PER_KEY", default_value_t = 6000)]
    pub rate_limit_per_key: u32,

    /// Requests per minute one device's agent may make (heartbeats every 20 s, long polls,
    /// node reports), in bursts of as many.
    #[arg(long, env = "IOCLOUD_RATE_LIMIT_PER_DEVICE", default_value_t = 60)]
    pub rate_limit_per_device: u32,

    /// Requests per minute to the agent API from one address (a farm of agents behind NAT).
    #[arg(
        long,
        env = "IOCLOUD_RATE_LIMIT_PER_AGENT_IP",
        default_value_t = 60_000
    )]
    pub rate_limit_per_agent_ip: u32,

    /// Take the client address from `X-Forwarded-For` (only behind a proxy you run).
    #[arg(long, env = "IOCLOUD_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Seconds a request may take before it is answered 408.
    #[arg(long, env = "IOCLOUD_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Connections this replica keeps to Postgres at most. Every replica's add up against the
    /// server's `max_connections`.
    #[arg(long, env = "IOCLOUD_DB_MAX_CONNECTIONS", default_value_t = iocloud_db::PG_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub db_max_connections: u32,

    /// Requests one replica works on at once (long polls and probes aside). More wait their
    /// turn for up to `IOCLOUD_ADMISSION_WAIT_MS`, then are answered 503 `overloaded` with
    /// `Retry-After` before anything of them runs.
    #[arg(long, env = "IOCLOUD_MAX_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,

    /// Milliseconds a request may wait for its turn before it is answered 503 `overloaded`.
    #[arg(long, env = "IOCLOUD_ADMISSION_WAIT_MS", default_value_t = 250)]
    pub admission_wait_ms: u64,

    /// Log format: `text` or `json`. Levels come from `RUST_LOG` (default `info`).
    #[arg(long, env = "IOCLOUD_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Seconds an API key and its organisation stay cached in a replica (0: no cache). Revoking
    /// a key drops it everywhere at once; this bounds staleness if a message is lost.
    #[arg(long, env = "IOCLOUD_AUTH_CACHE_SECS", default_value_t = 30)]
    pub auth_cache_secs: u64,

    /// The platform's share of every charge, in basis points (500 = 5%).
    #[arg(long, env = "IOCLOUD_PLATFORM_FEE_BPS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub platform_fee_bps: u32,

    /// USD for one IO when no price feed is configured (a placeholder: set the real rate).
    #[arg(long, env = "IOCLOUD_IO_USD_RATE", default_value = "0.50")]
    pub io_usd_rate: String,

    /// A URL answering `{"usd_per_io": "0.42"}`; when set, IO is priced from it.
    #[arg(long, env = "IOCLOUD_PRICE_FEED_URL")]
    pub price_feed_url: Option<String>,

    /// Seconds between metering passes that charge running nodes (0: no passes here).
    #[arg(long, env = "IOCLOUD_ACCRUAL_INTERVAL_SECS", default_value_t = 60)]
    pub accrual_interval_secs: u64,

    /// Seconds between heartbeats that agents are asked for.
    #[arg(long, env = "IOCLOUD_HEARTBEAT_INTERVAL_SECS", default_value_t = 20)]
    pub heartbeat_interval_secs: u64,

    /// Seconds without a heartbeat after which a listed device is marked offline.
    #[arg(long, env = "IOCLOUD_HEARTBEAT_TIMEOUT_SECS", default_value_t = 90)]
    pub heartbeat_timeout_secs: u64,

    /// Seconds an agent has to answer its verification challenge.
    #[arg(long, env = "IOCLOUD_CHALLENGE_DEADLINE_SECS", default_value_t = 30)]
    pub challenge_deadline_secs: u64,

    /// Seconds between passes of the cluster reconciler (0: none here; node reports still
    /// move their clusters at once).
    #[arg(long, env = "IOCLOUD_RECONCILE_INTERVAL_SECS", default_value_t = 2)]
    pub reconcile_interval_secs: u64,

    /// Seconds a cluster may take to have every node ready before it fails.
    #[arg(long, env = "IOCLOUD_PROVISIONING_TIMEOUT_SECS", default_value_t = 600)]
    pub provisioning_timeout_secs: u64,

    /// Seconds between passes that write the hourly reward blocks that are due (0: none here).
    /// One replica at a time writes them.
    #[arg(long, env = "IOCLOUD_BLOCK_INTERVAL_SECS", default_value_t = 30)]
    pub block_interval_secs: u64,

    /// Seconds after an hour ends before its block is written, so the hour's last heartbeats
    /// and proofs are in.
    #[arg(long, env = "IOCLOUD_BLOCK_DELAY_SECS", default_value_t = 180)]
    pub block_delay_secs: u64,

    /// Squarings per lane of the test every cluster node answers before it is ready (lanes
    /// scale with the GPU model and count).
    #[arg(long, env = "IOCLOUD_NODE_TEST_SQUARINGS", default_value_t = 10_000)]
    pub node_test_squarings: u64,

    /// Seconds a node has for its test, from when its agent can see it.
    #[arg(long, env = "IOCLOUD_NODE_TEST_LIMIT_SECS", default_value_t = 300)]
    pub node_test_limit_secs: u64,

    /// Bits of the node tests' modulus, made once and kept in the database (512 to 4096).
    #[arg(long, env = "IOCLOUD_NODE_TEST_KEY_BITS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(512..=4096))]
    pub node_test_key_bits: u64,

    /// Seconds between sweeps that delete rows past their retention (0: no sweeps here).
    #[arg(
        long,
        env = "IOCLOUD_RETENTION_SWEEP_INTERVAL_SECS",
        default_value_t = 300
    )]
    pub retention_sweep_interval_secs: u64,

    /// Seconds an `Idempotency-Key` and its kept answer are remembered (at least 60).
    #[arg(
        long,
        env = "IOCLOUD_IDEMPOTENCY_RETENTION_SECS",
        default_value_t = 86_400
    )]
    pub idempotency_retention_secs: u64,

    /// Seconds a price or placement quote is kept after it expired (until then it answers
    /// `quote_expired`; after, `not_found`).
    #[arg(long, env = "IOCLOUD_QUOTE_RETENTION_SECS", default_value_t = 3600)]
    pub quote_retention_secs: u64,

    /// Seconds an outbox email (logged when written) is kept.
    #[arg(long, env = "IOCLOUD_OUTBOX_RETENTION_SECS", default_value_t = 86_400)]
    pub outbox_retention_secs: u64,

    /// Default quota: GPUs in use per organisation.
    #[arg(long, env = "IOCLOUD_QUOTA_MAX_GPUS", default_value_t = 64)]
    pub quota_max_gpus: i64,

    /// Default quota: live clusters per organisation.
    #[arg(long, env = "IOCLOUD_QUOTA_MAX_CLUSTERS", default_value_t = 20)]
    pub quota_max_clusters: i64,

    /// Default quota: USD per hour across an organisation's live clusters.
    #[arg(
        long,
        env = "IOCLOUD_QUOTA_MAX_SPEND_PER_HOUR_USD",
        default_value = "500.00"
    )]
    pub quota_max_spend_per_hour_usd: String,

    /// Credit every new organisation receives, in USD (e.g. "25.00"); unset, none.
    #[arg(long, env = "IOCLOUD_SIGNUP_CREDIT_USD")]
    pub signup_credit_usd: Option<String>,

    /// A demo deployment: new organisations get 500 USD of credit (unless
    /// IOCLOUD_SIGNUP_CREDIT_USD says otherwise), so a newcomer can rent at once.
    #[arg(long, env = "IOCLOUD_DEMO", default_value_t = false)]
    pub demo: bool,

    /// Deepest GraphQL query accepted. GraphiQL's introspection query is 13 deep.
    #[arg(long, env = "IOCLOUD_GRAPHQL_MAX_DEPTH", default_value_t = 16)]
    pub graphql_max_depth: usize,

    /// Most complex GraphQL query accepted (one point a field, lists count their page size).
    #[arg(long, env = "IOCLOUD_GRAPHQL_MAX_COMPLEXITY", default_value_t = 500)]
    pub graphql_max_complexity: usize,

    /// Most fields a GraphQL query may select, `__typename` and aliases included, counted
    /// through every fragment (GraphiQL's introspection query selects about 150).
    #[arg(long, env = "IOCLOUD_GRAPHQL_MAX_FIELDS", default_value_t = 1000)]
    pub graphql_max_fields: usize,

    /// Operations one GraphQL WebSocket connection may run at once (each subscription counts
    /// until it ends).
    #[arg(long, env = "IOCLOUD_GRAPHQL_WS_MAX_OPERATIONS", default_value_t = 32)]
    pub graphql_ws_max_operations: usize,

    /// How often a GraphQL WebSocket's credential is checked again while its subscriptions
    /// run. Logout and key revocation end them at once; this catches the rest (removal from
    /// the organisation, an access token's expiry).
    #[arg(long, env = "IOCLOUD_GRAPHQL_WS_RECHECK_SECS", default_value_t = 30)]
    pub graphql_ws_recheck_secs: u64,

    /// Logins one account may attempt in a window (right or wrong) before it is paused until
    /// the window ends; a successful login starts the count again.
    #[arg(long, env = "IOCLOUD_LOGIN_MAX_ATTEMPTS", default_value_t = 10)]
    pub login_max_attempts: u32,

    /// The window of `IOCLOUD_LOGIN_MAX_ATTEMPTS`, in seconds from an account's first attempt.
    #[arg(long, env = "IOCLOUD_LOGIN_WINDOW_SECS", default_value_t = 900)]
    pub login_window_secs: u64,

    /// A bearer token `/metrics` asks for (Prometheus's `authorization` setting); unset, the
    /// metrics are public. Put it in the config file or the environment, not on the command line.
    #[arg(long, env = "IOCLOUD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<MetricsToken>,

    /// Stripe's secret API key (`sk_…` or a restricted `rk_…`); unset, card payments are off.
    /// Put it in the config file or the environment, not on the command line.
    #[arg(long, env = "IOCLOUD_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretText>,

    /// The signing secret of Stripe's webhook endpoint (`whsec_…`); needed with the key.
    #[arg(long, env = "IOCLOUD_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretText>,

    /// Stripe's publishable key (`pk_…`), which the console's card form gives Stripe.js.
    #[arg(long, env = "IOCLOUD_STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,

    /// Where Stripe's API is (a stand-in's address in tests); unset, Stripe itself.
    #[arg(long, env = "IOCLOUD_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,

    /// Where the console's card form loads Stripe.js from (a stand-in's copy in tests); the
    /// card page's Content-Security-Policy allows that origin and no other.
    #[arg(
        long,
        env = "IOCLOUD_STRIPE_JS_URL",
        default_value = "https://js.stripe.com/v3/"
    )]
    pub stripe_js_url: String,

    /// The largest card top-up, in USD.
    #[arg(long, env = "IOCLOUD_TOP_UP_MAX_USD", default_value = "10000.00")]
    pub top_up_max_usd: String,

    /// Seconds between passes that ask Stripe for card payments no webhook brought (0: none
    /// here). One replica at a time runs them.
    #[arg(
        long,
        env = "IOCLOUD_CARD_RECONCILE_INTERVAL_SECS",
        default_value_t = 300
    )]
    pub card_reconcile_interval_secs: u64,

    /// Seconds between passes that tell organisations their balance fell under their
    /// low-balance alert (0: none here).
    #[arg(
        long,
        env = "IOCLOUD_BALANCE_ALERT_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub balance_alert_interval_secs: u64,

    /// Seconds between auto-reload passes, which charge the default card of organisations
    /// whose balance fell under their threshold (0: none here).
    #[arg(long, env = "IOCLOUD_AUTO_RELOAD_INTERVAL_SECS", default_value_t = 30)]
    pub auto_reload_interval_secs: u64,

    /// The Solana node's JSON-RPC URL; unset, deposits and payouts on chain are off.
    #[arg(long, env = "IOCLOUD_SOLANA_RPC_URL")]
    pub solana_rpc_url: Option<String>,

    /// The commitment deposits are credited at: `finalized` (the default) or `confirmed`.
    #[arg(long, env = "IOCLOUD_SOLANA_COMMITMENT")]
    pub solana_commitment: Option<String>,

    /// The $IOSD mint (credits IOSD).
    #[arg(long, env = "IOCLOUD_SOLANA_MINT_IOSD")]
    pub solana_mint_iosd: Option<String>,

    /// The USDC mint (credits IOSD at 1:1 less `IOCLOUD_SOLANA_USDC_FEE_BPS`).
    #[arg(long, env = "IOCLOUD_SOLANA_MINT_USDC")]
    pub solana_mint_usdc: Option<String>,

    /// The $IO mint (credits IO).
    #[arg(long, env = "IOCLOUD_SOLANA_MINT_IO")]
    pub solana_mint_io: Option<String>,

    /// The fee on USDC deposits, in basis points.
    #[arg(long, env = "IOCLOUD_SOLANA_USDC_FEE_BPS")]
    pub solana_usdc_fee_bps: Option<u32>,

    /// The treasury's keypair file (the Solana CLI's JSON array of 64 bytes): it owns the
    /// token accounts deposits land in and signs payouts. Never printed.
    #[arg(long, env = "IOCLOUD_SOLANA_TREASURY_KEYPAIR")]
    pub solana_treasury_keypair: Option<std::path::PathBuf>,

    /// Seconds between passes of the deposit watcher (0: none here). One replica at a time
    /// runs it.
    #[arg(long, env = "IOCLOUD_SOLANA_WATCH_INTERVAL_SECS", default_value_t = 5)]
    pub solana_watch_interval_secs: u64,

    /// Seconds between passes of the payout sender, which signs, sends and follows payouts
    /// (0: none here). One replica at a time runs it.
    #[arg(long, env = "IOCLOUD_SOLANA_PAYOUT_INTERVAL_SECS", default_value_t = 5)]
    pub solana_payout_interval_secs: u64,

    /// The smallest payout, in USD.
    #[arg(long, env = "IOCLOUD_PAYOUT_MIN_USD", default_value = "10.00")]
    pub payout_min_usd: String,

    /// The most one provider is paid out per UTC day, in USD.
    #[arg(
        long,
        env = "IOCLOUD_PAYOUT_DAILY_LIMIT_USD",
        default_value = "10000.00"
    )]
    pub payout_daily_limit_usd: String,

    /// Payouts above this many USD wait for an operator's approval.
    #[arg(
        long,
        env = "IOCLOUD_PAYOUT_APPROVAL_ABOVE_USD",
        default_value = "5000.00"
    )]
    pub payout_approval_above_usd: String,

    /// The mail server: `smtp://host:port` (`?tls=required` for STARTTLS) or
    /// `smtps://host:port`, with `user:password@` when it asks. Unset, email (invitations,
    /// alerts) is written to the log instead. Never printed.
    #[arg(long, env = "IOCLOUD_SMTP_URL")]
    pub smtp_url: Option<SecretText>,

    /// The `From` of every email.
    #[arg(
        long,
        env = "IOCLOUD_MAIL_FROM",
        default_value = "IO Cloud <no-reply@iocloud.localhost>"
    )]
    pub mail_from: String,

    /// Where people and agents reach this server (`https://cloud.example.com`, behind a proxy
    /// say): links in invitation emails and the agent command the console shows begin with
    /// it. Unset, `http://` and the address this server listens on.
    #[arg(long, env = "IOCLOUD_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// A secret setting: readable by the code that needs it, never printed.
#[derive(Clone)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(SecretText(s.trim().to_string()))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The token `/metrics` asks for; printed redacted.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// Whether `offered` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, offered: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let (a, b) = (
            sha2::Sha256::digest(self.0.as_bytes()),
            sha2::Sha256::digest(offered.as_bytes()),
        );
        a.ct_eq(&b).into()
    }
}

impl std::str::FromStr for MetricsToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < 16 {
            return Err("the metrics token must be at least 16 characters".into());
        }
        Ok(MetricsToken(s.to_string()))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

impl Config {
    pub fn auth_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.auth_cache_secs)
    }

    /// Where people reach this server, without a trailing `/`: the setting when given (an
    /// `http` or `https` address with nothing after the path), else the listening address
    /// (loopback for an unspecified one).
    pub fn public_url(&self) -> Result<String, String> {
        let Some(text) = self.public_url.as_deref().filter(|t| !t.trim().is_empty()) else {
            let mut addr = self.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            return Ok(format!("http://{addr}"));
        };
        let refused = || {
            format!(
                "IOCLOUD_PUBLIC_URL: {text:?} is not an http(s) address such as https://cloud.example.com"
            )
        };
        let url = reqwest::Url::parse(text.trim()).map_err(|_| refused())?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(refused());
        }
        Ok(url.as_str().trim_end_matches('/').to_string())
    }

    /// What the domain needs from these settings; refuses a malformed sign-up credit.
    pub fn domain_settings(&self) -> Result<iocloud_control::Settings, String> {
        let signup_credit = match (&self.signup_credit_usd, self.demo) {
            (Some(text), _) => Some(
                iocloud_billing::Money::parse(text, iocloud_billing::Currency::Usd)
                    .map_err(|e| format!("IOCLOUD_SIGNUP_CREDIT_USD: {e}"))?,
            ),
            (None, true) => Some(iocloud_billing::Money::from_micros(
                500_000_000,
                iocloud_billing::Currency::Usd,
            )),
            (None, false) => None,
        };
        let io_price = match &self.price_feed_url {
            Some(url) => iocloud_billing::prices::FeedSource::Http(url.clone()),
            None => iocloud_billing::prices::FeedSource::Static(
                iocloud_billing::Money::parse(&self.io_usd_rate, iocloud_billing::Currency::Usd)
                    .ok()
                    .filter(|m| m.is_positive())
                    .ok_or_else(|| {
                        format!(
                            "IOCLOUD_IO_USD_RATE: {:?} is not a positive amount",
                            self.io_usd_rate
                        )
                    })?,
            ),
        };
        let card_payments = self.card_payments()?;
        let top_up_max =
            iocloud_billing::Money::parse(&self.top_up_max_usd, iocloud_billing::Currency::Usd)
                .ok()
                .filter(|m| m.micros() >= 1_000_000)
                .ok_or_else(|| {
                    format!(
                        "IOCLOUD_TOP_UP_MAX_USD: {:?} is not an amount of at least 1.00",
                        self.top_up_max_usd
                    )
                })?;
        Ok(iocloud_control::Settings {
            public_url: self.public_url()?,
            card_payments,
            top_up_limits: iocloud_control::payments::TopUpLimits {
                max: top_up_max,
                ..Default::default()
            },
            // Connected at start (it reads the chain), not here.
            chain: None,
            payout_limits: self.payout_limits()?,
            smtp: self
                .smtp_url
                .as_ref()
                .map(|u| u.expose().to_string())
                .filter(|u| !u.is_empty())
                .map(|url| iocloud_control::mail::SmtpSettings {
                    url,
                    from: self.mail_from.clone(),
                }),
            cache_ttl: self.auth_cache_ttl(),
            platform_fee_bps: self.platform_fee_bps,
            signup_credit,
            io_price,
            heartbeat_interval: Duration::from_secs(self.heartbeat_interval_secs.max(1)),
            heartbeat_timeout: Duration::from_secs(self.heartbeat_timeout_secs.max(1)),
            heartbeat_flush: Duration::from_millis(250),
            challenge_deadline: Duration::from_secs(self.challenge_deadline_secs.max(1)),
            block_delay: Duration::from_secs(self.block_delay_secs),
            node_tests: iocloud_control::providers::agent::NodeTestSettings {
                key_bits: self.node_test_key_bits as usize,
                squarings: self.node_test_squarings,
                limit: Duration::from_secs(self.node_test_limit_secs.max(1)),
            },
            quota: iocloud_control::clusters::QuotaLimits {
                max_gpus: self.quota_max_gpus.max(0),
                max_clusters: self.quota_max_clusters.max(0),
                max_spend_per_hour: iocloud_billing::Money::parse(
                    &self.quota_max_spend_per_hour_usd,
                    iocloud_billing::Currency::Usd,
                )
                .map_err(|e| format!("IOCLOUD_QUOTA_MAX_SPEND_PER_HOUR_USD: {e}"))?
                .micros(),
            },
            provisioning_timeout: Duration::from_secs(self.provisioning_timeout_secs.max(1)),
            login_throttle: iocloud_control::login_guard::LoginThrottle {
                max_attempts: self.login_max_attempts.max(1),
                window: Duration::from_secs(self.login_window_secs.max(1)),
            },
            retention: iocloud_control::retention::Retention {
                idempotency_keys: Duration::from_secs(self.idempotency_retention_secs.max(60)),
                expired_quotes: Duration::from_secs(self.quote_retention_secs),
                sent_emails: Duration::from_secs(self.outbox_retention_secs),
            },
        })
    }

    /// Solana's settings as given; checked, and the rail connected, at start.
    fn payout_limits(&self) -> Result<iocloud_control::payouts::PayoutLimits, String> {
        let usd = |var: &str, text: &str| {
            iocloud_billing::Money::parse(text, iocloud_billing::Currency::Usd)
                .ok()
                .filter(|m| m.is_positive())
                .ok_or_else(|| format!("{var}: {text:?} is not a positive amount of USD"))
        };
        Ok(iocloud_control::payouts::PayoutLimits {
            minimum: usd("IOCLOUD_PAYOUT_MIN_USD", &self.payout_min_usd)?,
            daily: usd(
                "IOCLOUD_PAYOUT_DAILY_LIMIT_USD",
                &self.payout_daily_limit_usd,
            )?,
            approval_above: usd(
                "IOCLOUD_PAYOUT_APPROVAL_ABOVE_USD",
                &self.payout_approval_above_usd,
            )?,
        })
    }

    pub fn chain_settings(&self) -> iocloud_billing::rails::solana::SolanaSettingsText {
        iocloud_billing::rails::solana::SolanaSettingsText {
            rpc_url: self.solana_rpc_url.clone(),
            commitment: self.solana_commitment.clone(),
            mint_iosd: self.solana_mint_iosd.clone(),
            mint_usdc: self.solana_mint_usdc.clone(),
            mint_io: self.solana_mint_io.clone(),
            usdc_fee_bps: self.solana_usdc_fee_bps,
            treasury_keypair: self.solana_treasury_keypair.clone(),
        }
    }

    /// Stripe's settings when the secret key is given; the key without the webhook secret
    /// is refused, since a payment could then be taken and never credited.
    fn card_payments(
        &self,
    ) -> Result<Option<iocloud_billing::rails::stripe::StripeSettings>, String> {
        use iocloud_billing::rails::stripe::{DEFAULT_API_BASE, DEFAULT_TIMEOUT, StripeSettings};
        let given = |s: &Option<SecretText>| {
            s.as_ref()
                .map(|t| t.expose().to_string())
                .filter(|t| !t.is_empty())
        };
        let Some(secret_key) = given(&self.stripe_secret_key) else {
            return Ok(None);
        };
        let webhook_secret = given(&self.stripe_webhook_secret)
            .ok_or("IOCLOUD_STRIPE_SECRET_KEY is set but IOCLOUD_STRIPE_WEBHOOK_SECRET is not")?;
        Ok(Some(StripeSettings {
            secret_key,
            webhook_secret,
            publishable_key: self
                .stripe_publishable_key
                .clone()
                .filter(|k| !k.is_empty()),
            api_base: self
                .stripe_api_base
                .clone()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| DEFAULT_API_BASE.to_string()),
            timeout: DEFAULT_TIMEOUT,
        }))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    pub fn admission_wait(&self) -> Duration {
        Duration::from_millis(self.admission_wait_ms)
    }

    /// Settings for tests and benchmarks: loopback, the given database, generous limits.
    pub fn for_tests(database_url: &str) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("static address"),
            database_url: DatabaseUrl::new(database_url),
            redis_url: None,
            redis_prefix: "iocloud:".into(),
            jwt_key_file: None,
            otel_endpoint: None,
            cors_origins: Vec::new(),
            rate_limit_per_ip: 100_000,
            rate_limit_per_device: 100_000,
            rate_limit_per_agent_ip: 1_000_000,
            rate_limit_per_key: 100_000,
            trust_forwarded_for: false,
            request_timeout_secs: 30,
            db_max_connections: iocloud_db::PG_CONNECTIONS,
            max_in_flight: 64,
            admission_wait_ms: 250,
            log_format: "text".into(),
            auth_cache_secs: 30,
            platform_fee_bps: 500,
            accrual_interval_secs: 0,
            heartbeat_interval_secs: 20,
            heartbeat_timeout_secs: 90,
            challenge_deadline_secs: 30,
            reconcile_interval_secs: 1,
            provisioning_timeout_secs: 600,
            retention_sweep_interval_secs: 0,
            block_interval_secs: 0,
            block_delay_secs: 180,
            node_test_squarings: 50,
            node_test_limit_secs: 120,
            node_test_key_bits: 512,
            idempotency_retention_secs: 86_400,
            quote_retention_secs: 3600,
            outbox_retention_secs: 86_400,
            quota_max_gpus: 64,
            quota_max_clusters: 20,
            quota_max_spend_per_hour_usd: "500.00".into(),
            io_usd_rate: "0.50".into(),
            price_feed_url: None,
            signup_credit_usd: None,
            demo: false,
            graphql_max_depth: 16,
            graphql_max_complexity: 500,
            graphql_max_fields: 1000,
            graphql_ws_max_operations: 32,
            graphql_ws_recheck_secs: 30,
            login_max_attempts: 10,
            login_window_secs: 900,
            metrics_token: None,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_publishable_key: None,
            stripe_api_base: None,
            stripe_js_url: "https://js.stripe.com/v3/".into(),
            top_up_max_usd: "10000.00".into(),
            card_reconcile_interval_secs: 0,
            balance_alert_interval_secs: 0,
            auto_reload_interval_secs: 0,
            solana_rpc_url: None,
            solana_commitment: None,
            solana_mint_iosd: None,
            solana_mint_usdc: None,
            solana_mint_io: None,
            solana_usdc_fee_bps: None,
            solana_treasury_keypair: None,
            solana_watch_interval_secs: 0,
            solana_payout_interval_secs: 0,
            payout_min_usd: "10.00".into(),
            payout_daily_limit_usd: "10000.00".into(),
            payout_approval_above_usd: "5000.00".into(),
            smtp_url: None,
            mail_from: "IO Cloud <no-reply@iocloud.localhost>".into(),
            public_url: None,
        }
    }
}

fn parse_url(s: &str) -> Result<DatabaseUrl, String> {
    if s.contains("://") || s.starts_with("sqlite:") {
        Ok(DatabaseUrl::new(s))
    } else {
        Err("expected a URL such as postgres://user@host/db, sqlite://data/iocloud.db or redis://127.0.0.1/".into())
    }
}

/// Reads a TOML file of settings into the environment before the flags are parsed, so the file
/// sits below environment variables and flags. Keys are the settings' names: `listen`,
/// `database_url`, `redis_url`, `rate_limit_per_ip`, …; a variable already set wins.
pub fn load_file_into_env(path: &Path) -> Result<(), String> {
    for (var, value) in read_settings_file(path)? {
        if std::env::var_os(&var).is_none() {
            set_env(&var, &value);
        }
    }
    Ok(())
}

/// The file's settings as (environment variable, value) pairs.
pub fn read_settings_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (env_name(&key), value)
        })
        .collect())
}

fn env_name(key: &str) -> String {
    match key {
        "database_url" | "redis_url" => key.to_uppercase(),
        "otel_endpoint" => "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        other => format!("IOCLOUD_{}", other.to_uppercase()),
    }
}

#[allow(unsafe_code)]
fn set_env(var: &str, value: &str) {
    // Edition 2024 marks set_var unsafe because other threads may read the environment; this
    // runs before the runtime and its threads exist.
    unsafe { std::env::set_var(var, value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_grants_500_usd_unless_told_otherwise() {
        let mut c = Config::for_tests("sqlite::memory:");
        assert_eq!(c.domain_settings().unwrap().signup_credit, None);
        c.demo = true;
        assert_eq!(
            c.domain_settings().unwrap().signup_credit.unwrap().micros(),
            500_000_000
        );
        c.signup_credit_usd = Some("25".into());
        assert_eq!(
            c.domain_settings().unwrap().signup_credit.unwrap().micros(),
            25_000_000
        );
        c.signup_credit_usd = Some("lots".into());
        assert!(c.domain_settings().is_err());
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("listen"), "IOCLOUD_LISTEN");
        assert_eq!(env_name("database_url"), "DATABASE_URL");
        assert_eq!(env_name("otel_endpoint"), "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn settings_files_map_to_variables() {
        let dir = std::env::temp_dir().join(format!("iocloud-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("iocloud.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nrate_limit_per_ip = 30\ncors_origins = [\"https://a\", \"https://b\"]\ndatabase_url = \"sqlite://x.db\"\n").unwrap();
        let mut got = read_settings_file(&file).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("DATABASE_URL".to_string(), "sqlite://x.db".to_string()),
                ("IOCLOUD_CORS_ORIGINS".into(), "https://a,https://b".into()),
                ("IOCLOUD_LISTEN".into(), "0.0.0.0:9000".into()),
                ("IOCLOUD_RATE_LIMIT_PER_IP".into(), "30".into()),
            ]
        );
        std::fs::write(&file, "listen = ").unwrap();
        assert!(read_settings_file(&file).is_err());
        assert!(read_settings_file(&dir.join("missing.toml")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn config_debug_masks_passwords() {
        let mut c = Config::for_tests("postgres://u:hunter2@h/db");
        c.redis_url = Some(DatabaseUrl::new("redis://:topsecret@h/"));
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("topsecret"), "{s}");
    }
}
