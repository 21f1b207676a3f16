//! Short-lived, in-process copies of what every API-key request reads (the key and its
//! organisation, and the organisation's billing currency that every create prices in), so an
//! authenticated request costs no database round trip.
//!
//! An entry lives `ttl` at most. A change (a key revoked, an organisation renamed) drops the
//! entry at once on the replica that made it and, through the shared key-value store's
//! `INVALIDATE_CHANNEL`, on every other replica; the TTL bounds staleness if a message is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iocloud_billing::Currency;
use iocloud_db::Kv;
use parking_lot::Mutex;

use crate::api_keys::KeyRow;
use crate::orgs::Organization;
use crate::providers::agent::DeviceAuth;

pub const INVALIDATE_CHANNEL: &str = "cache:invalidate";
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Device tokens live longer: retiring a device or rotating its token forgets the entry at once
/// on every replica, and an agent heartbeats every 20 s, so a shorter life would turn half of
/// all heartbeats into a database read.
const DEVICE_TTL_FACTOR: u32 = 10;

struct Entry<T> {
    value: Arc<T>,
    loaded: Instant,
}

#[derive(Default)]
struct Keys {
    by_hash: HashMap<String, Entry<KeyRow>>,
    /// key id → hash, to drop a key by id and to read it back for `me`.
    hash_of: HashMap<String, String>,
}

#[derive(Default)]
struct Devices {
    by_hash: HashMap<String, Entry<DeviceAuth>>,
    /// device id → token hash, to drop a device by id.
    hash_of: HashMap<String, String>,
}

pub struct Cache {
    ttl: Duration,
    /// Where a `forget` is told to the other replicas.
    kv: Kv,
    /// Bumped by every `forget`. A value read from the database before a `forget` must not be
    /// cached after it: it may be the very row that was just revoked.
    generation: std::sync::atomic::AtomicU64,
    keys: Mutex<Keys>,
    orgs: Mutex<HashMap<String, Entry<Organization>>>,
    /// Organisation id → its billing currency; forgotten with the organisation.
    currencies: Mutex<HashMap<String, Entry<Currency>>>,
    devices: Mutex<Devices>,
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
            devices: Mutex::default(),
            forgotten: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// The messages of every `forget` from now on, from this replica and (through the
    /// invalidation listener) every other.
    pub fn forgotten(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.forgotten.subscribe()
    }

    fn fresh<T>(&self, e: &Entry<T>) -> bool {
        e.loaded.elapsed() < self.ttl
    }

    pub(crate) fn key_by_hash(&self, hash: &str) -> Option<Arc<KeyRow>> {
        let keys = self.keys.lock();
        keys.by_hash
            .get(hash)
            .filter(|e| self.fresh(e))
            .map(|e| e.value.clone())
    }

    pub(crate) fn key_by_id(&self, id: &str) -> Option<Arc<KeyRow>> {
        let keys = self.keys.lock();
        let hash = keys.hash_of.get(id)?;
        keys.by_hash
            .get(hash)
            .filter(|e| self.fresh(e))
            .map(|e| e.value.clone())
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
        if keys.by_hash.len() > 100_000 {
            // A flood of distinct keys: start over rather than grow without bound.
            *keys = Keys::default();
        }
        keys.hash_of.insert(value.id.clone(), hash.to_string());
        keys.by_hash.insert(
            hash.to_string(),
            Entry {
                value: value.clone(),
                loaded: Instant::now(),
            },
        );
        value
    }

    /// Notes a key's use in its cached row, keeping the row's age: a busy key is still
    /// re-read from the database once its TTL runs out.
    pub(crate) fn touch_key(&self, hash: &str, last_used_at: i64) {
        let mut keys = self.keys.lock();
        if let Some(entry) = keys.by_hash.get_mut(hash) {
            let mut row = entry.value.as_ref().clone();
            row.last_used_at = Some(last_used_at);
            entry.value = Arc::new(row);
        }
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
        map.lock()
            .get(id)
            .filter(|e| self.fresh(e))
            .map(|e| e.value.clone())
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
        map.insert(
            id.to_string(),
            Entry {
                value: Arc::new(value),
                loaded: Instant::now(),
            },
        );
    }

    pub(crate) fn device_by_hash(&self, hash: &str) -> Option<Arc<DeviceAuth>> {
        let devices = self.devices.lock();
        devices
            .by_hash
            .get(hash)
            .filter(|e| e.loaded.elapsed() < self.ttl * DEVICE_TTL_FACTOR)
            .map(|e| e.value.clone())
    }

    /// Caches a device loaded while `generation` was current; a `forget` since then wins.
    pub(crate) fn put_device(
        &self,
        hash: &str,
        device: DeviceAuth,
        generation: u64,
    ) -> Arc<DeviceAuth> {
        let value = Arc::new(device);
        if self.ttl.is_zero() {
            return value;
        }
        let mut devices = self.devices.lock();
        if self.generation() != generation {
            return value;
        }
        if devices.by_hash.len() > 1_000_000 {
            *devices = Devices::default();
        }
        devices.hash_of.insert(value.id.clone(), hash.to_string());
        devices.by_hash.insert(
            hash.to_string(),
            Entry {
                value: value.clone(),
                loaded: Instant::now(),
            },
        );
        value
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
            Forget::Key(id) => {
                let mut keys = self.keys.lock();
                if let Some(hash) = keys.hash_of.remove(*id) {
                    keys.by_hash.remove(&hash);
                }
            }
            Forget::KeysOf(user_id) => {
                let mut keys = self.keys.lock();
                keys.by_hash
                    .retain(|_, e| e.value.maker_user_id.as_deref() != Some(*user_id));
                let Keys { by_hash, hash_of } = &mut *keys;
                hash_of.retain(|_, hash| by_hash.contains_key(hash));
            }
            Forget::Org(id) => {
                self.orgs.lock().remove(*id);
                self.currencies.lock().remove(*id);
            }
            Forget::Device(id) => {
                let mut devices = self.devices.lock();
                if let Some(hash) = devices.hash_of.remove(*id) {
                    devices.by_hash.remove(&hash);
                }
            }
            Forget::Session(_) => {}
            Forget::All => {
                *self.keys.lock() = Keys::default();
                self.orgs.lock().clear();
                self.currencies.lock().clear();
                *self.devices.lock() = Devices::default();
            }
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
