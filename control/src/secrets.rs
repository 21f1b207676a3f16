//! Long random secrets (API keys, refresh and invitation tokens): generated here, stored only
//! as their SHA-256, looked up by that hash and compared in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 43;

/// Every kind of secret the platform makes: API keys, device agent tokens, refresh tokens,
/// invitation tokens and cluster join tokens. A secret is recognised by its prefix and form
/// ([`contains_secret`]), which is how kept idempotent answers withhold them wherever they sit.
pub const PREFIXES: [&str; 5] = ["ioc_", "iodt_", "iort_", "ioinv_", "iojt_"];

/// A fresh secret: `prefix` followed by 43 base-62 characters (about 256 bits).
pub fn generate(prefix: &str) -> String {
    debug_assert!(
        PREFIXES.contains(&prefix),
        "a new kind of secret: add {prefix} to PREFIXES so it is never kept in a stored answer"
    );
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 43);
    s.push_str(prefix);
    for _ in 0..RANDOM_LEN {
        s.push(BASE62[rng.random_range(0..BASE62.len())] as char);
    }
    s
}

/// True when `text` holds a secret this platform made (or an access token, a JWT), anywhere in it.
pub fn contains_secret(text: &str) -> bool {
    let made = PREFIXES.iter().any(|prefix| {
        text.match_indices(prefix).any(|(at, _)| {
            let rest = &text.as_bytes()[at + prefix.len()..];
            rest.len() >= RANDOM_LEN && rest[..RANDOM_LEN].iter().all(u8::is_ascii_alphanumeric)
        })
    });
    made || looks_like_jwt(text) || looks_like_client_secret(text)
}

/// A Stripe client secret (`pi_…_secret_…`, `seti_…_secret_…`): it lets whoever holds it
/// confirm the payment in a browser, so it is handed to the caller once and kept nowhere.
fn looks_like_client_secret(text: &str) -> bool {
    text.match_indices("_secret_").any(|(at, _)| {
        let before = &text[..at];
        let id_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let id = &before[id_start..];
        let after = &text[at + "_secret_".len()..];
        let tail = after.bytes().take_while(u8::is_ascii_alphanumeric).count();
        (id.starts_with("pi_") || id.starts_with("seti_")) && id.len() > 4 && tail >= 8
    })
}

/// Three base64url parts, the first a JSON header (`eyJ` is `{"` encoded).
fn looks_like_jwt(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .any(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3 && parts[0].starts_with("eyJ") && parts.iter().all(|p| p.len() >= 4)
        })
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

    #[test]
    fn secrets_are_recognised_in_any_text() {
        for prefix in PREFIXES {
            let s = generate(prefix);
            assert!(contains_secret(&s), "{s}");
            assert!(contains_secret(&format!("token: {s}.")), "{s}");
            assert!(!contains_secret(&s[..s.len() - 1]), "too short to be one");
        }
        assert!(contains_secret(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
        ));
        assert!(contains_secret("pi_3Q2w3E4r5T_secret_a1B2c3D4e5F6"));
        assert!(contains_secret("{\"s\": \"seti_1Abc_secret_ZZZZZZZZ\"}"));
        for plain in [
            "ioc_",
            "clu_01abc",
            "iodt_short",
            "Bearer",
            "a.b.c",
            "2.10",
            "pi_3Q2w3E4r5T",
            "whsec_not_a_client_secret",
            "pi_x_secret_",
        ] {
            assert!(!contains_secret(plain), "{plain}");
        }
    }
}
