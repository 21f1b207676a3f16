//! Short-lived, in-process copies of what every request reads (an API key and its maker's role,
//! an organisation, its billing currency, a device token), so an authenticated request costs no
//! database round trip, and the invalidations that keep them honest.
//!
//! Each service keeps its own store, built from the generic [`SecretCache`] (values found by the
//! hash of a secret) or [`IdCache`] (values by id), and registered with [`Cache::also_forget`].
//! An entry lives `ttl` at most. A change (a key revoked, an organisation renamed) is announced
//! with [`Cache::invalidate`]: every store drops what it names at once on the replica that made
//! it and, through the shared key-value store's `INVALIDATE_CHANNEL`, on every other replica; the
//! TTL bounds staleness if a message is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use iocloud_db::Kv;

use crate::listen::Hearing;
use parking_lot::Mutex;

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

/// A store told of every `forget` (registered with [`Cache::also_forget`]).
pub trait Forgets: Send + Sync {
    fn forget(&self, what: &Forget<'_>);
    /// While this replica cannot hear other replicas' `forget`s, it serves and keeps nothing:
    /// a key revoked through another replica must stop working here at once, not a TTL later.
    fn set_deaf(&self, deaf: bool);
}

/// What a `forget` drops from a store of some kind of value.
pub enum Drops<'a> {
    Nothing,
    /// The entry of this id.
    Id(&'a str),
    /// Every value [`Cached::dropped_by`] says yes to.
    Matching,
    Everything,
}

/// A value kept in a [`SecretCache`] or an [`IdCache`]: which `forget`s drop it.
pub trait Cached: Send + Sync + 'static {
    fn drops<'a>(what: &Forget<'a>) -> Drops<'a>;
    /// For [`Drops::Matching`]: whether `what` drops this value.
    fn dropped_by(&self, _what: &Forget<'_>) -> bool {
        false
    }
}

/// A value found by the hash of its secret, known also by its id.
pub trait Secret: Cached {
    fn id(&self) -> &str;
}

/// Bumped by every `forget`. A value read from the database before a `forget` must not be
/// cached after it: it may be the very row that was just revoked.
#[derive(Default)]
struct Generation(AtomicU64);

impl Generation {
    fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Whether a store is to serve nothing: see [`Forgets::set_deaf`].
#[derive(Default)]
struct Deaf(AtomicBool);

impl Deaf {
    fn is(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, deaf: bool) {
        self.0.store(deaf, Ordering::SeqCst);
    }
}

/// Values found by the hash of their secret (API keys, device tokens), forgotten by id.
pub struct SecretCache<T> {
    /// How long an entry lives; zero caches nothing.
    ttl: Duration,
    /// Entries kept before starting over.
    max: usize,
    generation: Generation,
    deaf: Deaf,
    entries: Mutex<ByHash<T>>,
}

impl<T: Secret> SecretCache<T> {
    pub fn new(ttl: Duration, max: usize) -> SecretCache<T> {
        SecretCache {
            ttl,
            max,
            generation: Generation::default(),
            deaf: Deaf::default(),
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, hash: &str) -> Option<Arc<T>> {
        if self.deaf.is() {
            return None;
        }
        self.entries.lock().get(hash, self.ttl)
    }

    pub fn get_by_id(&self, id: &str) -> Option<Arc<T>> {
        if self.deaf.is() {
            return None;
        }
        self.entries.lock().get_by_id(id, self.ttl)
    }

    /// Read before loading from the database; hand it to `put`.
    pub fn generation(&self) -> u64 {
        self.generation.current()
    }

    /// Caches a value loaded while `generation` was current; a `forget` since then wins.
    pub fn put(&self, hash: &str, value: T, generation: u64) -> Arc<T> {
        let value = Arc::new(value);
        if self.ttl.is_zero() || self.deaf.is() {
            return value;
        }
        let mut entries = self.entries.lock();
        if self.generation() == generation {
            entries.insert(value.id(), hash, value.clone(), self.max);
        }
        value
    }

    /// Replaces the value of `hash` with `change(value)`, keeping its age.
    pub fn update(&self, hash: &str, change: impl FnOnce(&T) -> T) {
        self.entries.lock().update(hash, change);
    }
}

impl<T: Secret> Forgets for SecretCache<T> {
    fn forget(&self, what: &Forget<'_>) {
        self.generation.bump();
        match T::drops(what) {
            Drops::Nothing => {}
            Drops::Id(id) => self.entries.lock().remove_id(id),
            Drops::Matching => self.entries.lock().retain(|v| !v.dropped_by(what)),
            Drops::Everything => *self.entries.lock() = ByHash::default(),
        }
    }

    fn set_deaf(&self, deaf: bool) {
        self.deaf.set(deaf);
    }
}

/// Values by id (organisations, their billing currencies).
pub struct IdCache<T> {
    ttl: Duration,
    max: usize,
    generation: Generation,
    deaf: Deaf,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T: Cached> IdCache<T> {
    pub fn new(ttl: Duration, max: usize) -> IdCache<T> {
        IdCache {
            ttl,
            max,
            generation: Generation::default(),
            deaf: Deaf::default(),
            entries: Mutex::default(),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        if self.deaf.is() {
            return None;
        }
        self.entries.lock().get(id)?.fresh(self.ttl)
    }

    /// Read before loading from the database; hand it to `put`.
    pub fn generation(&self) -> u64 {
        self.generation.current()
    }

    /// Caches a value loaded while `generation` was current; a `forget` since then wins.
    pub fn put(&self, id: &str, value: T, generation: u64) {
        if self.ttl.is_zero() || self.deaf.is() {
            return;
        }
        let mut entries = self.entries.lock();
        if self.generation() != generation {
            return;
        }
        if entries.len() > self.max {
            entries.clear();
        }
        entries.insert(id.to_string(), Entry::new(Arc::new(value)));
    }
}

impl<T: Cached> Forgets for IdCache<T> {
    fn forget(&self, what: &Forget<'_>) {
        self.generation.bump();
        match T::drops(what) {
            Drops::Nothing => {}
            Drops::Id(id) => {
                self.entries.lock().remove(id);
            }
            Drops::Matching => self.entries.lock().retain(|_, e| !e.value.dropped_by(what)),
            Drops::Everything => self.entries.lock().clear(),
        }
    }

    fn set_deaf(&self, deaf: bool) {
        self.deaf.set(deaf);
    }
}

/// Where caches are invalidated: a `forget` reaches every registered store, here and (through
/// the key-value store) on every replica.
pub struct Cache {
    /// Where a `forget` is told to the other replicas.
    kv: Kv,
    /// The stores, told of every `forget`.
    stores: Vec<Arc<dyn Forgets>>,
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
    pub fn new(kv: Kv) -> Cache {
        Cache {
            kv,
            stores: Vec::new(),
            forgotten: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Tells `store` of every `forget` from now on (made here or on another replica).
    pub fn also_forget(&mut self, store: Arc<dyn Forgets>) {
        self.stores.push(store);
    }

    /// The messages of every `forget` from now on, from this replica and (through the
    /// invalidation listener) every other.
    pub fn forgotten(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.forgotten.subscribe()
    }

    /// Drops an entry here and tells the other replicas to drop theirs.
    pub async fn invalidate(&self, what: Forget<'_>) {
        self.forget(&what);
        if let Err(e) = self.kv.publish(INVALIDATE_CHANNEL, &what.message()).await {
            tracing::warn!(error = %e, "could not tell other replicas to drop a cached entry; it expires on its own");
        }
    }

    /// Applies other replicas' invalidations until the process ends. Whenever messages may
    /// have been missed, everything cached is dropped, and while they are being missed nothing
    /// is cached.
    pub fn spawn_listener(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (this, again) = (self.clone(), self.clone());
        crate::listen::spawn_listener(
            self.kv.clone(),
            INVALIDATE_CHANNEL,
            move |m| this.forget(&Forget::parse(&m)),
            move |hearing| again.hearing(hearing),
        )
    }

    fn hearing(&self, hearing: Hearing) {
        let deaf = hearing == Hearing::Deaf;
        if deaf {
            self.set_deaf(true);
        }
        // Also tells holders of long-lived credentials (GraphQL sockets) to look again.
        self.forget(&Forget::All);
        if !deaf {
            self.set_deaf(false);
        }
    }

    fn set_deaf(&self, deaf: bool) {
        for store in &self.stores {
            store.set_deaf(deaf);
        }
    }

    pub fn forget(&self, what: &Forget<'_>) {
        // Nobody listening is the common case, not an error.
        let _ = self.forgotten.send(what.message());
        for store in &self.stores {
            store.forget(what);
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

    struct Named(&'static str);

    impl Cached for Named {
        fn drops<'a>(what: &Forget<'a>) -> Drops<'a> {
            match what {
                Forget::Org(id) => Drops::Id(id),
                Forget::KeysOf(_) => Drops::Matching,
                Forget::All => Drops::Everything,
                _ => Drops::Nothing,
            }
        }

        fn dropped_by(&self, what: &Forget<'_>) -> bool {
            matches!(what, Forget::KeysOf(name) if *name == self.0)
        }
    }

    #[test]
    fn entries_expire_and_are_forgotten() {
        let mut cache = Cache::new(Kv::memory());
        let orgs = Arc::new(IdCache::<Named>::new(Duration::from_secs(60), 10));
        cache.also_forget(orgs.clone());
        orgs.put("org_1", Named("a"), orgs.generation());
        orgs.put("org_2", Named("b"), orgs.generation());
        assert_eq!(orgs.get("org_1").map(|n| n.0), Some("a"));
        cache.forget(&Forget::Key("key_1"));
        assert!(
            orgs.get("org_1").is_some(),
            "a forget that names none keeps all"
        );
        cache.forget(&Forget::Org("org_1"));
        assert!(orgs.get("org_1").is_none());
        cache.forget(&Forget::KeysOf("b"));
        assert!(
            orgs.get("org_2").is_none(),
            "a matching forget drops what it matches"
        );
        let expired = IdCache::<Named>::new(Duration::ZERO, 10);
        expired.put("org_1", Named("a"), expired.generation());
        assert!(expired.get("org_1").is_none());
    }

    impl Secret for Named {
        fn id(&self) -> &str {
            "org_1"
        }
    }

    #[test]
    fn a_value_read_before_a_forget_is_not_cached_after_it() {
        let mut cache = Cache::new(Kv::memory());
        let secrets = Arc::new(SecretCache::<Named>::new(Duration::from_secs(60), 10));
        cache.also_forget(secrets.clone());
        let before = secrets.generation();
        cache.forget(&Forget::Org("org_1"));
        secrets.put("hash", Named("a"), before);
        assert!(secrets.get("hash").is_none());
        secrets.put("hash", Named("a"), secrets.generation());
        assert_eq!(secrets.get_by_id("org_1").map(|n| n.0), Some("a"));
        cache.forget(&Forget::All);
        assert!(secrets.get("hash").is_none());
    }

    #[test]
    fn a_replica_that_cannot_hear_invalidations_serves_nothing_cached() {
        let mut cache = Cache::new(Kv::memory());
        let secrets = Arc::new(SecretCache::<Named>::new(Duration::from_secs(60), 10));
        let orgs = Arc::new(IdCache::<Named>::new(Duration::from_secs(60), 10));
        cache.also_forget(secrets.clone());
        cache.also_forget(orgs.clone());
        secrets.put("hash", Named("a"), secrets.generation());
        orgs.put("org_1", Named("a"), orgs.generation());
        let mut forgotten = cache.forgotten();

        cache.hearing(Hearing::Deaf);
        assert!(secrets.get("hash").is_none() && orgs.get("org_1").is_none());
        assert_eq!(
            forgotten.try_recv().unwrap(),
            "*",
            "long-lived holders look again"
        );
        // Loaded while deaf: handed back, not kept.
        let loaded = secrets.put("hash", Named("b"), secrets.generation());
        assert_eq!(loaded.0, "b");
        orgs.put("org_1", Named("b"), orgs.generation());
        assert!(secrets.get("hash").is_none() && orgs.get("org_1").is_none());

        cache.hearing(Hearing::Listening);
        secrets.put("hash", Named("c"), secrets.generation());
        orgs.put("org_1", Named("c"), orgs.generation());
        assert_eq!(secrets.get("hash").map(|n| n.0), Some("c"));
        assert_eq!(orgs.get("org_1").map(|n| n.0), Some("c"));
    }
}
