//! The control plane's domain: accounts, tenancy, permissions, API keys, sessions, audit,
//! billing views, the providers' devices, the placement optimiser and clusters.
//!
//! Every service method that touches tenant data takes an [`Actor`] first, checks the
//! [`permissions`] table, and filters every query by the actor's organisation.

pub mod accounts;
pub mod actor;
pub mod api_keys;
pub mod audit;
pub mod batcher;
pub mod billing;
pub mod books;
pub mod cache;
pub mod capacity;
pub mod clusters;
pub mod costaking;
mod defaults;
pub mod deposits;
pub mod directory;
pub mod error;
pub mod explorer;
pub mod governance;
pub mod idempotency;
pub mod jwt;
pub mod leases;
mod listen;
pub mod login_guard;
pub mod mail;
pub mod offers;
pub mod orgs;
pub mod page;
pub mod payments;
pub mod payouts;
pub mod periodic;
pub mod permissions;
pub mod placement;
pub mod providers;
pub mod quotes;
pub mod retention;
pub mod rewards;
pub mod secrets;
mod settings;
pub mod slashing;
pub mod ssh_keys;
pub mod types;

use std::sync::Arc;

use iocloud_db::{Db, Kv};

pub use actor::{Actor, Principal};
pub use billing::usage;
pub use error::{Error, ErrorCode};
pub use orgs::invitations;
pub use page::{Page, PageRequest};
pub use permissions::{Action, Role, Scope};
pub use settings::Settings;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The control plane: one service per area, built once over shared handles. Cheap to clone.
///
/// A service holds only the handles it needs, in private fields, and owns the transactions of
/// its use cases. The shared handles below the services stay public for the operators' tools
/// and the benchmarks.
#[derive(Clone)]
pub struct Control {
    /// Users and sessions: sign-up, login, refresh, logout, who a bearer is.
    pub accounts: accounts::Accounts,
    /// Organisations, members and invitations.
    pub orgs: orgs::Orgs,
    pub keys: api_keys::ApiKeys,
    /// The SSH public keys an organisation's nodes let in.
    pub ssh_keys: ssh_keys::SshKeys,
    /// Users and organisations by id.
    pub directory: directory::Directory,
    /// Balances, holds, payment preference, credits, rates, usage and invoices.
    pub billing: billing::Billing,
    pub audit: audit::Audit,
    pub idempotency: idempotency::Idempotency,
    /// Outgoing email.
    pub outbox: mail::Outbox,
    /// Deletes rows past their retention.
    pub sweeper: retention::Sweeper,
    /// Providers' stake, and listing the devices it covers.
    pub stake: providers::stake::Stake,
    /// Devices' and providers' learned reliability.
    pub reliability: providers::reliability::Reliability,
    /// The providers' devices: registry, heartbeats, sweeps and uptime.
    pub devices: providers::devices::Devices,
    /// The agent protocol, and the nodes given to devices.
    pub agents: providers::agent::Agents,
    /// Free capacity, placement and claims of GPUs.
    pub capacity: capacity::Capacity,
    /// Placement quotes.
    pub quotes: quotes::Quotes,
    /// What can be rented now, by model and region.
    pub offers: offers::Offers,
    /// Clusters, their quota and their reconciler.
    pub clusters: clusters::Clusters,
    /// Card payments (Stripe): top-ups, webhooks, the missed-webhook pass.
    pub payments: payments::Payments,
    /// Deposits on Solana: intents, the watcher, unmatched deposits.
    pub deposits: deposits::Deposits,
    /// Payouts on chain: wallets proved by a signed challenge, payouts and their sender.
    pub payouts: payouts::Payouts,
    /// Hourly block rewards: minted, shared among the devices that earned them, explained.
    pub rewards: rewards::Rewards,
    /// Slashing cases: escrow, appeal, decision, burn; and the detectors that open them.
    pub slashing: slashing::Slashing,
    /// Co-staking: offers of a device's stake, the positions that take them, unstaking.
    pub costaking: costaking::Costaking,
    /// IO Explorer: the network, its devices and blocks, as anyone may read them.
    pub explorer: explorer::Explorer,
    /// Proposals, votes weighed by stake, and the protocol parameters they change.
    pub governance: governance::Governance,
    pub db: Db,
    pub kv: Kv,
    pub cache: Arc<cache::Cache>,
    pub ledger: iocloud_billing::Ledger,
    pub prices: Arc<iocloud_billing::prices::PriceFeed>,
    pub settings: Arc<Settings>,
    pub catalog: Arc<providers::Catalog>,
    pub leases: leases::Leases,
}

/// Whether the stores the control plane needs answer.
pub struct Readiness {
    pub database: Result<(), iocloud_db::DbError>,
    pub kv: Result<(), iocloud_db::DbError>,
    /// False when the key-value store is the in-process stand-in (one replica only).
    pub kv_shared: bool,
}

impl Control {
    /// `catalog`: [`providers::Catalog::load`] from the same database.
    pub fn new(
        db: Db,
        kv: Kv,
        jwt: jwt::JwtKeys,
        settings: Settings,
        catalog: providers::Catalog,
    ) -> Result<Self> {
        // Each service caches what it reads on every request in a store of its own, registered
        // here: a change announced through `cache` drops it on every replica.
        let mut cache = cache::Cache::new(kv.clone());
        let device_tokens = Arc::new(providers::tokens::device_tokens(settings.cache_ttl));
        cache.also_forget(device_tokens.clone());
        let key_cache = Arc::new(api_keys::key_cache(settings.cache_ttl));
        cache.also_forget(key_cache.clone());
        let directory = directory::Directory::new(db.clone(), &mut cache, settings.cache_ttl);
        let cache = Arc::new(cache);
        let ledger = iocloud_billing::Ledger::new(db.clone());
        // A rate is observed (and stored) at most once a minute.
        let prices = Arc::new(iocloud_billing::prices::PriceFeed::new(
            db.clone(),
            settings.io_price.clone(),
            std::time::Duration::from_secs(60),
        ));
        let catalog = Arc::new(catalog);
        // This replica's claim on the passes one replica at a time runs: one holder, given up
        // at once when the replica stops.
        let leases = leases::Leases::new(db.clone());
        // The protocol's parameters in force: the fee, the reward rules, the stake per GPU and
        // the model multipliers, the appeal window.
        let governance = governance::Governance::new(
            db.clone(),
            leases.clone(),
            catalog.clone(),
            governance::GovernanceSettings::default(),
            governance::ProtocolParams::launch(
                settings.platform_fee_bps,
                slashing::APPEAL_WINDOW_HOURS,
            ),
        );
        let keys = api_keys::ApiKeys::new(db.clone(), cache.clone(), key_cache);
        let ssh_keys = ssh_keys::SshKeys::new(db.clone());
        let outbox = mail::Outbox::new(db.clone(), settings.smtp.as_ref())?;
        let billing = billing::Billing::new(
            db.clone(),
            ledger.clone(),
            prices.clone(),
            cache.clone(),
            directory.clone(),
            settings.signup_credit,
            governance.clone(),
        );
        let accounts = accounts::Accounts::new(
            db.clone(),
            jwt,
            cache.clone(),
            login_guard::LoginGuard::new(kv.clone(), settings.login_throttle),
            directory.clone(),
            keys.clone(),
            billing.clone(),
        );
        let orgs = orgs::Orgs::new(
            db.clone(),
            cache.clone(),
            directory.clone(),
            keys.clone(),
            outbox.clone(),
            settings.public_url.clone(),
        );
        let idempotency =
            idempotency::Idempotency::new(db.clone(), settings.retention.idempotency_keys);
        let sweeper =
            retention::Sweeper::new(db.clone(), settings.retention.clone(), idempotency.clone());
        let stake = providers::stake::Stake::new(db.clone(), catalog.clone(), governance.clone());
        let reliability = providers::reliability::Reliability::new(db.clone());
        let heartbeats = Arc::new(providers::heartbeats::HeartbeatBuffer::default());
        let agents = providers::agent::Agents::new(
            db.clone(),
            catalog.clone(),
            device_tokens,
            heartbeats.clone(),
            Arc::new(providers::wakeups::Wakeups::new(kv.clone())),
            stake.clone(),
            reliability.clone(),
            settings.challenge_deadline,
            settings.heartbeat_interval,
            settings.node_tests,
        );
        let devices = providers::devices::Devices::new(
            db.clone(),
            catalog.clone(),
            cache.clone(),
            stake.clone(),
            reliability.clone(),
            heartbeats,
            settings.heartbeat_timeout,
            settings.heartbeat_flush,
        );
        let capacity = capacity::Capacity::new(db.clone(), agents.clone(), &catalog);
        let quotes = quotes::Quotes::new(
            db.clone(),
            catalog.clone(),
            capacity.clone(),
            governance.clone(),
        );
        let offers = offers::Offers::new(catalog.clone(), capacity.clone());
        let settings = Arc::new(settings);
        let audit = audit::Audit::new(db.clone(), kv.clone());
        let clusters = clusters::Clusters::new(
            db.clone(),
            kv.clone(),
            ledger.clone(),
            prices.clone(),
            settings.clone(),
            audit.clone(),
            directory.clone(),
            capacity.clone(),
            quotes.clone(),
            agents.clone(),
            governance.clone(),
        );
        let payments = payments::Payments::new(
            db.clone(),
            audit.clone(),
            directory.clone(),
            leases.clone(),
            settings.card_payments.as_ref(),
            settings.top_up_limits,
        )?;
        let deposits = deposits::Deposits::new(
            db.clone(),
            audit.clone(),
            leases.clone(),
            settings.chain.clone(),
        );
        let payouts = payouts::Payouts::new(
            db.clone(),
            audit.clone(),
            leases.clone(),
            settings.chain.clone(),
            prices.clone(),
            settings.payout_limits,
        );
        let rewards = rewards::Rewards::new(
            db.clone(),
            catalog.clone(),
            leases.clone(),
            settings.heartbeat_timeout,
            settings.block_delay,
            governance.clone(),
        )?;
        let slashing = slashing::Slashing::new(
            db.clone(),
            catalog.clone(),
            audit.clone(),
            leases.clone(),
            governance.clone(),
        );
        let costaking = costaking::Costaking::new(db.clone(), catalog.clone(), stake.clone());
        let explorer = explorer::Explorer::new(
            db.clone(),
            catalog.clone(),
            rewards.clone(),
            costaking.clone(),
            stake.clone(),
        );
        Ok(Self {
            accounts,
            orgs,
            keys,
            ssh_keys,
            directory,
            billing,
            audit,
            idempotency,
            outbox,
            sweeper,
            stake,
            reliability,
            devices,
            agents,
            capacity,
            quotes,
            offers,
            clusters,
            payments,
            deposits,
            payouts,
            rewards,
            slashing,
            costaking,
            explorer,
            governance,
            db,
            kv,
            cache,
            ledger,
            prices,
            settings,
            catalog,
            leases,
        })
    }

    /// Asks the database and the key-value store whether they answer.
    pub async fn readiness(&self) -> Readiness {
        Readiness {
            database: self.db.ping().await,
            kv: self.kv.ping().await,
            kv_shared: self.kv.is_shared(),
        }
    }

    /// Closes the database's connections (at shutdown).
    /// Gives up this replica's leases (another replica runs those passes at once) and closes
    /// the database pool.
    pub async fn close(&self) {
        if let Err(e) = self.leases.release_all().await {
            tracing::warn!(error = %e, "leases not given up; they run out by themselves");
        }
        self.db.close().await;
    }
}
