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
pub mod cache;
pub mod capacity;
pub mod clusters;
mod error;
pub mod idempotency;
pub mod invitations;
pub mod jwt;
mod listen;
pub mod login_guard;
pub mod mail;
pub mod orgs;
pub mod page;
pub mod permissions;
pub mod placement;
pub mod providers;
pub mod quotes;
pub mod retention;
pub mod secrets;
mod settings;
pub mod types;
pub mod usage;

use iocloud_db::{Db, Kv};

pub use actor::{Actor, Principal};
pub use error::{Error, ErrorCode};
pub use page::{Page, PageRequest};
pub use permissions::{Action, Role, Scope};
pub use settings::Settings;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Handles the domain services share. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub db: Db,
    pub kv: Kv,
    pub jwt: jwt::JwtKeys,
    pub cache: std::sync::Arc<cache::Cache>,
    pub ledger: iocloud_billing::Ledger,
    pub prices: std::sync::Arc<iocloud_billing::prices::PriceFeed>,
    pub settings: std::sync::Arc<Settings>,
    pub catalog: std::sync::Arc<providers::Catalog>,
    pub heartbeats: std::sync::Arc<providers::heartbeats::HeartbeatBuffer>,
    pub wakeups: std::sync::Arc<providers::wakeups::Wakeups>,
    pub capacity: capacity::SharedCapacity,
    pub events: std::sync::Arc<clusters::events::EventHub>,
    /// The email this replica delivered lately ([`mail`]).
    pub mailbox: std::sync::Arc<mail::Mailbox>,
    pub(crate) settling: std::sync::Arc<clusters::SettleQueue>,
    audit_queue: std::sync::Arc<audit::AuditQueue>,
    provider_outcomes: std::sync::Arc<providers::reliability::ProviderOutcomes>,
}

impl Control {
    /// `catalog`: [`providers::Catalog::load`] from the same database.
    pub fn new(
        db: Db,
        kv: Kv,
        jwt: jwt::JwtKeys,
        settings: Settings,
        catalog: providers::Catalog,
    ) -> Self {
        let cache = std::sync::Arc::new(cache::Cache::new(settings.cache_ttl));
        let ledger = iocloud_billing::Ledger::new(db.clone());
        // A rate is observed (and stored) at most once a minute.
        let prices = iocloud_billing::prices::PriceFeed::new(
            db.clone(),
            settings.io_price.clone(),
            std::time::Duration::from_secs(60),
        );
        Self {
            db,
            kv,
            jwt,
            cache,
            ledger,
            prices: std::sync::Arc::new(prices),
            settings: std::sync::Arc::new(settings),
            capacity: std::sync::Arc::new(capacity::CapacityIndex::new(&catalog)),
            catalog: std::sync::Arc::new(catalog),
            heartbeats: Default::default(),
            wakeups: Default::default(),
            events: Default::default(),
            mailbox: Default::default(),
            // One batch at a time could not keep up (docs/benchmarks.md, session 10).
            settling: std::sync::Arc::new(clusters::SettleQueue::with_lanes(4)),
            audit_queue: Default::default(),
            provider_outcomes: Default::default(),
        }
    }

    /// Drops a cached entry here and tells the other replicas to drop theirs.
    pub async fn invalidate(&self, what: cache::Forget<'_>) {
        self.cache.forget(&what);
        if let Err(e) = self
            .kv
            .publish(cache::INVALIDATE_CHANNEL, &what.message())
            .await
        {
            tracing::warn!(error = %e, "could not tell other replicas to drop a cached entry; it expires on its own");
        }
    }

    /// Applies other replicas' invalidations until the process ends. Whenever messages may
    /// have been missed, everything cached is dropped.
    pub fn spawn_invalidation_listener(&self) -> tokio::task::JoinHandle<()> {
        let (this, again) = (self.clone(), self.clone());
        listen::spawn_listener(
            self.kv.clone(),
            cache::INVALIDATE_CHANNEL,
            move |m| this.cache.forget(&cache::Forget::parse(&m)),
            move || again.cache.forget(&cache::Forget::All),
        )
    }
}
