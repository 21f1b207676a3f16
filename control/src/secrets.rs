//! Long random secrets (API keys, refresh and invitation tokens): generated here, stored only
//! as their SHA-256, looked up by that hash and compared in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A fresh secret: `prefix` followed by 43 base-62 characters (about 256 bits).
pub fn generate(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 43);
    s.push_str(prefix);
    for _ in 0..43 {
        s.push(BASE62[rng.random_range(0..BASE62.len())] as char);
    }
    s
}

/// Hex SHA-256 of a secret; what the database stores.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two stored hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_and_distinct() {
        let a = generate("ioc_");
        let b = generate("ioc_");
        assert!(a.starts_with("ioc_") && a.len() == 47);
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 64);
        assert!(hashes_equal(&hash(&a), &hash(&a)));
        assert!(!hashes_equal(&hash(&a), &hash(&b)));
    }
}
