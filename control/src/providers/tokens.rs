//! Who a device token belongs to, cached per replica so that an agent's heartbeat costs no
//! database read. The control plane's cache (`crate::cache`) tells this one of every `forget`:
//! retiring a device or rotating its token drops the entry at once on every replica.

use iocloud_db::ids::OrgId;
use std::time::Duration;

use crate::cache::{Cached, Drops, Forget, Secret, SecretCache};

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
    pub org_id: OrgId,
    pub gpu_count: i64,
}

/// Device tokens by their hash.
pub(crate) type DeviceTokens = SecretCache<DeviceAuth>;

/// `cache_ttl`: the life of the control plane's other cached entries.
pub(crate) fn device_tokens(cache_ttl: Duration) -> DeviceTokens {
    SecretCache::new(cache_ttl * TTL_FACTOR, MAX_ENTRIES)
}

impl Cached for DeviceAuth {
    fn drops<'a>(what: &Forget<'a>) -> Drops<'a> {
        match what {
            Forget::Device(id) => Drops::Id(id),
            Forget::All => Drops::Everything,
            _ => Drops::Nothing,
        }
    }
}

impl Secret for DeviceAuth {
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::{Cache, Forgets};

    fn rig(id: &str) -> DeviceAuth {
        DeviceAuth {
            id: id.into(),
            org_id: iocloud_db::ids::OrgId::trusted("org_1"),
            gpu_count: 8,
        }
    }

    #[test]
    fn the_cache_forgets_devices_here() {
        let tokens = Arc::new(device_tokens(Duration::from_secs(30)));
        let mut cache = Cache::new(iocloud_db::Kv::memory());
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
        let tokens = device_tokens(Duration::from_secs(30));
        let before = tokens.generation();
        tokens.forget(&Forget::Key("key_1"));
        tokens.put("hash", rig("dev_1"), before);
        assert!(tokens.get("hash").is_none());
        let off = device_tokens(Duration::ZERO);
        off.put("hash", rig("dev_1"), off.generation());
        assert!(off.get("hash").is_none());
    }
}
