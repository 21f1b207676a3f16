//! Who a device token belongs to, cached per replica so that an agent's heartbeat costs no
//! database read. The control plane's cache (`crate::cache`) tells this one of every `forget`:
//! retiring a device or rotating its token drops the entry at once on every replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::cache::{ByHash, Forget, Forgets};

/// Device tokens live longer than other cached entries: retiring a device or rotating its
/// token forgets the entry at once on every replica, and an agent heartbeats every 20 s, so a
/// shorter life would turn half of all heartbeats into a database read.
const TTL_FACTOR: u32 = 10;
/// Entries kept before starting over.
const MAX_ENTRIES: usize = 1_000_000;

/// Who a device token belongs to (cached per replica).
#[derive(Clone, Debug)]
pub struct DeviceAuth {
    pub id: String,
    pub org_id: String,
    pub gpu_count: i64,
}

/// Device tokens by their hash.
pub(crate) struct DeviceTokens {
    /// How long an entry lives; zero caches nothing.
    ttl: Duration,
    /// Bumped by every `forget`. A device read from the database before a `forget` must not be
    /// cached after it: it may be the very token that was just rotated.
    generation: AtomicU64,
    entries: Mutex<ByHash<DeviceAuth>>,
}

impl DeviceTokens {
    /// `cache_ttl`: the life of the control plane's other cached entries.
    pub(crate) fn new(cache_ttl: Duration) -> DeviceTokens {
        DeviceTokens {
            ttl: cache_ttl * TTL_FACTOR,
            generation: AtomicU64::new(0),
            entries: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, hash: &str) -> Option<Arc<DeviceAuth>> {
        self.entries.lock().get(hash, self.ttl)
    }

    /// Read before loading from the database; hand it to [`DeviceTokens::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches a device loaded while `generation` was current; a `forget` since then wins.
    pub(crate) fn put(&self, hash: &str, device: DeviceAuth, generation: u64) -> Arc<DeviceAuth> {
        let value = Arc::new(device);
        if self.ttl.is_zero() {
            return value;
        }
        let mut entries = self.entries.lock();
        if self.generation() != generation {
            return value;
        }
        entries.insert(&value.id, hash, value.clone(), MAX_ENTRIES);
        value
    }
}

impl Forgets for DeviceTokens {
    fn forget(&self, what: &Forget<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match what {
            Forget::Device(id) => self.entries.lock().remove_id(id),
            Forget::All => *self.entries.lock() = ByHash::default(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;

    fn rig(id: &str) -> DeviceAuth {
        DeviceAuth {
            id: id.into(),
            org_id: "org_1".into(),
            gpu_count: 8,
        }
    }

    #[test]
    fn the_cache_forgets_devices_here() {
        let tokens = Arc::new(DeviceTokens::new(Duration::from_secs(30)));
        let mut cache = Cache::new(Duration::from_secs(30), iocloud_db::Kv::memory());
        cache.also_forget(tokens.clone());
        for id in ["dev_1", "dev_2"] {
            tokens.put(&format!("hash_{id}"), rig(id), tokens.generation());
        }
        assert_eq!(
            tokens.get("hash_dev_1").map(|d| d.id.clone()),
            Some("dev_1".into())
        );
        cache.forget(&Forget::Org("org_1"));
        assert!(tokens.get("hash_dev_1").is_some(), "not a device's forget");
        cache.forget(&Forget::Device("dev_1"));
        assert!(tokens.get("hash_dev_1").is_none());
        assert!(tokens.get("hash_dev_2").is_some());
        cache.forget(&Forget::All);
        assert!(tokens.get("hash_dev_2").is_none());
    }

    #[test]
    fn a_read_from_before_a_forget_is_not_kept() {
        let tokens = DeviceTokens::new(Duration::from_secs(30));
        let before = tokens.generation();
        tokens.forget(&Forget::Key("key_1"));
        tokens.put("hash", rig("dev_1"), before);
        assert!(tokens.get("hash").is_none());
        let off = DeviceTokens::new(Duration::ZERO);
        off.put("hash", rig("dev_1"), off.generation());
        assert!(off.get("hash").is_none());
    }
}
