//! The verification challenge: a proof of work whose size scales with the GPU class the
//! provider claims, to be answered before a deadline.
//!
//! The agent must find a number `n` such that SHA-256 of `"{nonce}:{n}"` starts with
//! `difficulty` zero bits. This proves the agent speaks the protocol and does work within the
//! deadline; it does not benchmark the GPU (that needs code on the GPU: out of scope here).

use rand::Rng;
use sha2::{Digest, Sha256};

/// Leading zero bits asked of a device of this class. Each extra bit doubles the expected work
/// (2^18 hashes ≈ 0.1 s on one core of this machine).
pub fn difficulty_for(class: Option<&str>) -> u32 {
    match class {
        Some("datacenter") => 18,
        Some("workstation") => 17,
        Some("consumer") => 16,
        _ => 14,
    }
}

pub fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for b in digest {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// Whether `answer` solves the challenge.
pub fn check(nonce: &str, difficulty: u32, answer: u64) -> bool {
    let digest = Sha256::digest(format!("{nonce}:{answer}").as_bytes());
    leading_zero_bits(&digest) >= difficulty
}

/// Finds an answer (what an agent does). Blocking: run it off the async threads.
pub fn solve(nonce: &str, difficulty: u32) -> u64 {
    (0u64..)
        .find(|n| check(nonce, difficulty, *n))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solution_checks_and_a_guess_does_not() {
        let nonce = new_nonce();
        let n = solve(&nonce, 10);
        assert!(check(&nonce, 10, n));
        // The first answer is the smallest, so every smaller number fails.
        assert!((0..n).all(|m| !check(&nonce, 10, m)));
        assert!(difficulty_for(Some("datacenter")) > difficulty_for(Some("consumer")));
        assert_eq!(leading_zero_bits(&[0, 0x10, 0xff]), 11);
    }
}
