//! Opaque, prefixed, time-ordered ids (`org_01j…`): logs and support tickets show what an id is,
//! and ordering by id is ordering by creation, which cursor pagination relies on.

use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id: `prefix_` + 10 base-32 characters of milliseconds since the epoch + 16 random ones.
pub fn new_id(prefix: &str) -> String {
    let millis = crate::time::now_micros() / 1000;
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..10).rev() {
        out.push(ALPHABET[((millis >> (i * 5)) & 31) as usize] as char);
    }
    let mut rng = rand::rng();
    for _ in 0..16 {
        out.push(ALPHABET[rng.random_range(0..32)] as char);
    }
    out
}

/// True when `s` looks like an id with this prefix. Used to reject garbage before it reaches SQL.
pub fn is_valid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| ALPHABET.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_ordered() {
        let a = new_id("org");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("org");
        assert!(a.starts_with("org_") && a.len() == 30);
        assert!(is_valid("org", &a));
        assert!(!is_valid("usr", &a));
        assert!(!is_valid("org", "org_../../etc"));
        assert!(a < b, "later ids sort after earlier ones");
    }
}
