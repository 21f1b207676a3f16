//! Short-lived, in-process copies of what every API-key request reads (the key and its
//! organisation, and the organisation's billing currency that every create prices in), so an
//! authenticated request costs no database round trip.
//!
//! An entry lives `ttl` at most. A change (a key revoked, an organisation renamed) drops the
//! entry at once on the replica that made it and, through the shared key-value store's
//! `INVALIDATE_CHANNEL`, on every other replica; the TTL bounds staleness if a message is lost.
//!
//! A cache kept elsewhere (the device tokens, `providers::tokens`) is built from the generic
//! [`Entry`] and [`ByHash`] here and registered with [`Cache::also_forget`], so every `forget`
//! reaches it too without this module knowing what it holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iocloud_billing::Currency;
use iocloud_db::Kv;
use parking_lot::Mutex;

use crate::api_keys::KeyRow;
use crate::orgs::Organization;

pub const INVALIDATE_CHANNEL: &str = "cache:invalidate";
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A cached value and when it was loaded.
pub struct Entry<T> {
    value: Arc<T>,
    loaded: Instant,
}

impl<T> Entry<T> {
    pub fn new(value: Arc<T>) -> Entry<T> {
        Entry {
            value,
            loaded: Instant::now(),
        }
    }

    /// The value, while it is younger than `ttl`.
    pub fn fresh(&self, ttl: Duration) -> Option<Arc<T>> {
        (self.loaded.elapsed() < ttl).then(|| self.value.clone())
    }
}

/// Values found by the hash of their secret (an API key's, a device token's), each also known
/// by its id, so that a change made by id drops it.
pub struct ByHash<T> {
    by_hash: HashMap<String, Entry<T>>,
    /// id → hash.
    hash_of: HashMap<String, String>,
}

impl<T> Default for ByHash<T> {
    fn default() -> Self {
        ByHash {
            by_hash: HashMap::new(),
            hash_of: HashMap::new(),
        }
    }
}

impl<T> ByHash<T> {
    /// The value of `hash`, while it is younger than `ttl`.
    pub fn get(&self, hash: &str, ttl: Duration) -> Option<Arc<T>> {
        self.by_hash.get(hash)?.fresh(ttl)
    }

    /// The value of id `id`, while it is younger than `ttl`.
    pub fn get_by_id(&self, id: &str, ttl: Duration) -> Option<Arc<T>> {
        self.get(self.hash_of.get(id)?, ttl)
    }

    /// Caches `value` (of id `id`) under `hash`. Past `max` entries everything is dropped
    /// first: a flood of distinct secrets starts over rather than grows without bound.
    pub fn insert(&mut self, id: &str, hash: &str, value: Arc<T>, max: usize) {
        if self.by_hash.len() > max {
            *self = ByHash::default();
        }
        self.hash_of.insert(id.to_string(), hash.to_string());
        self.by_hash.insert(hash.to_string(), Entry::new(value));
    }

    /// Replaces the value of `hash` with `change(value)`, keeping its age.
    pub fn update(&mut self, hash: &str, change: impl FnOnce(&T) -> T) {
        if let Some(entry) = self.by_hash.get_mut(hash) {
            entry.value = Arc::new(change(&entry.value));
        }
    }

    pub fn remove_id(&mut self, id: &str) {
        if let Some(hash) = self.hash_of.remove(id) {
            self.by_hash.remove(&hash);
        }
    }

    /// Keeps only the values `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.by_hash.retain(|_, e| keep(&e.value));
        let ByHash { by_hash, hash_of } = self;
        hash_of.retain(|_, hash| by_hash.contains_key(hash));
    }
}

/// A cache kept outside this module that drops its entries on every `forget` (registered
/// with [`Cache::also_forget`]).
pub trait Forgets: Send + Sync {
    fn forget(&self, what: &Forget<'_>);
}

pub struct Cache {
    ttl: Duration,
    /// Where a `forget` is told to the other replicas.
    kv: Kv,
    /// Bumped by every `forget`. A value read from the database before a `forget` must not be
    /// cached after it: it may be the very row that was just revoked.
    generation: std::sync::atomic::AtomicU64,
    /// API keys by their hash; by key id to drop a key and to read it back for `me`.
    keys: Mutex<ByHash<KeyRow>>,
    orgs: Mutex<HashMap<String, Entry<Organization>>>,
    /// Organisation id → its billing currency; forgotten with the organisation.
    currencies: Mutex<HashMap<String, Entry<Currency>>>,
    /// Caches kept elsewhere, told of every `forget`.
    others: Vec<Arc<dyn Forgets>>,
    /// Every `forget`, as its message, for whoever holds on to a credential beyond one request
    /// (a GraphQL WebSocket's subscriptions) and must look at it again when it may be revoked.
    forgotten: tokio::sync::broadcast::Sender<String>,
}

/// What to forget: one key, the keys one user made, one organisation, one device, or
/// everything. A session holds nothing in the cache, but its end is announced the same way, for
/// connections that outlive a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Forget<'a> {
    Key(&'a str),
    /// Every key whose maker is this user: their role changed, and a key's rights follow it.
    KeysOf(&'a str),
    Org(&'a str),
    Device(&'a str),
    Session(&'a str),
    All,
}

impl Forget<'_> {
    pub fn message(&self) -> String {
        match self {
            Forget::Key(id) => format!("key:{id}"),
            Forget::KeysOf(user_id) => format!("maker:{user_id}"),
            Forget::Org(id) => format!("org:{id}"),
            Forget::Device(id) => format!("dev:{id}"),
            Forget::Session(id) => format!("ses:{id}"),
            Forget::All => "*".into(),
        }
    }

    pub fn parse(message: &str) -> Forget<'_> {
        match message.split_once(':') {
            Some(("key", id)) => Forget::Key(id),
            Some(("maker", id)) => Forget::KeysOf(id),
            Some(("org", id)) => Forget::Org(id),
            Some(("dev", id)) => Forget::Device(id),
            Some(("ses", id)) => Forget::Session(id),
            _ => Forget::All,
        }
    }
}

impl Cache {
    pub fn new(ttl: Duration, kv: Kv) -> Cache {
        Cache {
            ttl,
            kv,
            generation: Default::default(),
            keys: Mutex::default(),
            orgs: Mutex::default(),
            currencies: Mutex::default(),
            others: Vec::new(),
            forgotten: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Tells `other` of every `forget` from now on (made here or on another replica).
    pub fn also_forget(&mut self, other: Arc<dyn Forgets>) {
        self.others.push(other);
    }

    /// The messages of every `forget` from now on, from this replica and (through the
    /// invalidation listener) every other.
    pub fn forgotten(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.forgotten.subscribe()
    }

    pub(crate) fn key_by_hash(&self, hash: &str) -> Option<Arc<KeyRow>> {
        self.keys.lock().get(hash, self.ttl)
    }

    pub(crate) fn key_by_id(&self, id: &str) -> Option<Arc<KeyRow>> {
        self.keys.lock().get_by_id(id, self.ttl)
    }

    /// Read before loading from the database; hand it to `put_key`.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches a row loaded while `generation` was current; a `forget` since then wins.
    pub(crate) fn put_key(&self, hash: &str, row: KeyRow, generation: u64) -> Arc<KeyRow> {
        let value = Arc::new(row);
        if self.ttl.is_zero() {
            return value;
        }
        let mut keys = self.keys.lock();
        if self.generation() != generation {
            return value;
        }
        keys.insert(&value.id, hash, value.clone(), 100_000);
        value
    }

    /// Notes a key's use in its cached row, keeping the row's age: a busy key is still
    /// re-read from the database once its TTL runs out.
    pub(crate) fn touch_key(&self, hash: &str, last_used_at: i64) {
        self.keys.lock().update(hash, |row| {
            let mut row = row.clone();
            row.last_used_at = Some(last_used_at);
            row
        });
    }

    pub(crate) fn org(&self, id: &str) -> Option<Organization> {
        self.get_in(&self.orgs, id).map(|org| org.as_ref().clone())
    }

    pub(crate) fn put_org(&self, org: &Organization) {
        self.put_in(&self.orgs, &org.id, org.clone(), None);
    }

    pub(crate) fn currency(&self, org_id: &str) -> Option<Currency> {
        self.get_in(&self.currencies, org_id).map(|c| *c)
    }

    /// Caches a currency read while `generation` was current; a `forget` since then wins.
    pub(crate) fn put_currency(&self, org_id: &str, currency: Currency, generation: u64) {
        self.put_in(&self.currencies, org_id, currency, Some(generation));
    }

    /// A fresh entry of a map keyed by organisation id.
    fn get_in<T>(&self, map: &Mutex<HashMap<String, Entry<T>>>, id: &str) -> Option<Arc<T>> {
        map.lock().get(id)?.fresh(self.ttl)
    }

    /// Caches `value` under `id`, unless caching is off or (given the generation it was read
    /// in) a `forget` came since.
    fn put_in<T>(
        &self,
        map: &Mutex<HashMap<String, Entry<T>>>,
        id: &str,
        value: T,
        generation: Option<u64>,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = map.lock();
        if generation.is_some_and(|g| g != self.generation()) {
            return;
        }
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(id.to_string(), Entry::new(Arc::new(value)));
    }

    /// Drops an entry here and tells the other replicas to drop theirs.
    pub async fn invalidate(&self, what: Forget<'_>) {
        self.forget(&what);
        if let Err(e) = self.kv.publish(INVALIDATE_CHANNEL, &what.message()).await {
            tracing::warn!(error = %e, "could not tell other replicas to drop a cached entry; it expires on its own");
        }
    }

    /// Applies other replicas' invalidations until the process ends. Whenever messages may
    /// have been missed, everything cached is dropped.
    pub fn spawn_listener(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (this, again) = (self.clone(), self.clone());
        crate::listen::spawn_listener(
            self.kv.clone(),
            INVALIDATE_CHANNEL,
            move |m| this.forget(&Forget::parse(&m)),
            move || again.forget(&Forget::All),
        )
    }

    pub fn forget(&self, what: &Forget<'_>) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Nobody listening is the common case, not an error.
        let _ = self.forgotten.send(what.message());
        match what {
            Forget::Key(id) => self.keys.lock().remove_id(id),
            Forget::KeysOf(user_id) => self
                .keys
                .lock()
                .retain(|row| row.maker_user_id.as_deref() != Some(*user_id)),
            Forget::Org(id) => {
                self.orgs.lock().remove(*id);
                self.currencies.lock().remove(*id);
            }
            // Device tokens are cached by the agent protocol (`providers::tokens`), one of
            // `others`.
            Forget::Device(_) => {}
            Forget::Session(_) => {}
            Forget::All => {
                *self.keys.lock() = ByHash::default();
                self.orgs.lock().clear();
                self.currencies.lock().clear();
            }
        }
        for other in &self.others {
            other.forget(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for f in [
            Forget::Key("key_1"),
            Forget::KeysOf("usr_1"),
            Forget::Org("org_1"),
            Forget::Device("dev_1"),
            Forget::Session("ses_1"),
            Forget::All,
        ] {
            assert_eq!(Forget::parse(&f.message()), f);
        }
        assert_eq!(
            Forget::parse("garbage"),
            Forget::All,
            "an unknown message forgets everything, to be safe"
        );
    }

    #[test]
    fn entries_expire_and_are_forgotten() {
        let c = Cache::new(Duration::from_secs(60), Kv::memory());
        let org = Organization {
            id: "org_1".into(),
            name: "A".into(),
            created_at: 0.into(),
            updated_at: 0.into(),
        };
        c.put_org(&org);
        assert_eq!(c.org("org_1").map(|o| o.name), Some("A".into()));
        c.forget(&Forget::Org("org_1"));
        assert!(c.org("org_1").is_none());
        let expired = Cache::new(Duration::ZERO, Kv::memory());
        expired.put_org(&org);
        assert!(expired.org("org_1").is_none());
    }
}
