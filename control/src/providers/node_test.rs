//! The node test: a computation every cluster node runs before it may turn ready, whose answer
//! the control plane knows without doing the work.
//!
//! It is a set of time-lock puzzles (Rivest, Shamir and Wagner): each lane starts from a base
//! derived from the test's seed and squares it `squarings` times modulo `N`. Without the
//! factors of `N` there is no shortcut: the squarings of a lane are sequential, the lanes run
//! in parallel, and the node reports SHA-256 over the results. The control plane knows
//! `φ(N)`, so it reduces the exponent `2^squarings` modulo `φ(N)` and finds each result with one
//! modular exponentiation. A wrong answer is caught however fast it came; an answer that took
//! longer than the test's limit means hardware weaker than claimed.
//!
//! The lanes scale with the model's fp16 throughput and the node's GPUs, so a card weaker than
//! its claim (or a CPU posing as GPUs) runs out of time where the real one does not.

use rsa::BigUint;
use rsa::traits::PrivateKeyParts;
use sha2::{Digest, Sha256};

/// Lanes per GPU: one per this many fp16 TFLOPS of the model, at least one.
const TFLOPS_PER_LANE: f64 = 100.0;
/// Most lanes one GPU is given.
const MAX_LANES_PER_GPU: u32 = 16;
/// Most lanes a test may have (8 GPUs of the fastest model).
pub const MAX_LANES: u32 = 8 * MAX_LANES_PER_GPU;

/// The key of node tests: a modulus and, kept secret, its totient.
#[derive(Clone)]
pub struct TestKey {
    pub id: String,
    modulus: BigUint,
    phi: BigUint,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("id", &self.id)
            .field("bits", &self.modulus.bits())
            .finish_non_exhaustive()
    }
}

impl TestKey {
    /// A new key of `bits` bits (two random primes of half the size each).
    pub fn generate(id: String, bits: usize) -> Result<TestKey, String> {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .map_err(|e| format!("node test key: {e}"))?;
        let [p, q] = key.primes() else {
            return Err("node test key: expected two primes".into());
        };
        let one = BigUint::from(1u32);
        Ok(TestKey {
            id,
            modulus: p * q,
            phi: (p - &one) * (q - &one),
        })
    }

    /// A key as stored: modulus and totient in hexadecimal.
    pub fn from_hex(id: String, modulus: &str, phi: &str) -> Result<TestKey, String> {
        let parse = |s: &str| {
            BigUint::parse_bytes(s.as_bytes(), 16).ok_or_else(|| format!("bad hex in key {id}"))
        };
        Ok(TestKey {
            modulus: parse(modulus)?,
            phi: parse(phi)?,
            id,
        })
    }

    pub fn modulus_hex(&self) -> String {
        self.modulus.to_str_radix(16)
    }

    pub fn phi_hex(&self) -> String {
        self.phi.to_str_radix(16)
    }

    /// The answer an honest node reports, found with the totient: one exponentiation per lane.
    ///
    /// `x^(2^t) ≡ x^(2^t mod φ(N))` holds for bases coprime to `N`; a base that is not would
    /// have revealed a factor of `N`, which a random base does with probability about 2^-500.
    pub fn expected(&self, puzzle: &Puzzle) -> String {
        let two = BigUint::from(2u32);
        let exponent = two.modpow(&BigUint::from(puzzle.squarings), &self.phi);
        let results = (0..puzzle.lanes).map(|lane| {
            lane_base(&self.modulus, &puzzle.seed, lane).modpow(&exponent, &self.modulus)
        });
        digest(&self.modulus, results)
    }
}

/// What a node is asked to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Puzzle {
    /// 32 random bytes, hexadecimal.
    pub seed: String,
    pub lanes: u32,
    pub squarings: u64,
}

impl Puzzle {
    pub fn new(lanes: u32, squarings: u64) -> Puzzle {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        Puzzle {
            seed: hex::encode(bytes),
            lanes,
            squarings,
        }
    }
}

/// The lanes of a node with `gpus` GPUs of a model with `fp16_tflops` (a CPU-only node: one).
pub fn lanes_for(fp16_tflops: Option<f64>, gpus: u32) -> u32 {
    let per_gpu = fp16_tflops
        .map(|t| {
            (t / TFLOPS_PER_LANE)
                .ceil()
                .clamp(1.0, f64::from(MAX_LANES_PER_GPU)) as u32
        })
        .unwrap_or(1);
    (per_gpu * gpus.max(1)).min(MAX_LANES)
}

/// Solves `puzzle` the long way, as an agent does: every squaring of every lane.
/// `modulus_hex` is the test's modulus as the bootstrap gives it.
pub fn solve(modulus_hex: &str, puzzle: &Puzzle) -> Option<String> {
    let modulus = BigUint::parse_bytes(modulus_hex.as_bytes(), 16)?;
    if modulus.bits() < 2 {
        return None;
    }
    let results = (0..puzzle.lanes).map(|lane| {
        let mut x = lane_base(&modulus, &puzzle.seed, lane);
        for _ in 0..puzzle.squarings {
            x = (&x * &x) % &modulus;
        }
        x
    });
    Some(digest(&modulus, results))
}

/// Lane `lane`'s base: SHA-256 of the seed, the lane and a counter, as many blocks as the
/// modulus is long and 16 bytes more (so the reduction is near uniform), modulo `N`; never 0
/// or 1, whose squares stand still.
fn lane_base(modulus: &BigUint, seed: &str, lane: u32) -> BigUint {
    let want = modulus.bits().div_ceil(8) + 16;
    let mut bytes = Vec::with_capacity(want + 32);
    let mut counter = 0u32;
    while bytes.len() < want {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(lane.to_be_bytes());
        h.update(counter.to_be_bytes());
        bytes.extend_from_slice(&h.finalize());
        counter += 1;
    }
    let x = BigUint::from_bytes_be(&bytes[..want]) % modulus;
    if x < BigUint::from(2u32) {
        BigUint::from(2u32)
    } else {
        x
    }
}

/// SHA-256 over the lanes' results, each big-endian at the modulus's width, in hexadecimal.
fn digest(modulus: &BigUint, results: impl Iterator<Item = BigUint>) -> String {
    let width = modulus.bits().div_ceil(8);
    let mut h = Sha256::new();
    for y in results {
        let bytes = y.to_bytes_be();
        h.update(vec![0u8; width.saturating_sub(bytes.len())]);
        h.update(&bytes);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TestKey {
        TestKey::generate("ntk_test".into(), 256).expect("key")
    }

    #[test]
    fn the_shortcut_and_the_long_way_agree() {
        let key = key();
        for (lanes, squarings) in [(1, 0), (1, 1), (3, 17), (5, 300)] {
            let puzzle = Puzzle::new(lanes, squarings);
            assert_eq!(
                solve(&key.modulus_hex(), &puzzle).as_deref(),
                Some(key.expected(&puzzle).as_str()),
                "{lanes} lanes of {squarings}"
            );
        }
    }

    #[test]
    fn a_short_cut_answer_is_wrong() {
        let key = key();
        let puzzle = Puzzle::new(4, 200);
        let expected = key.expected(&puzzle);
        // One squaring short, one lane short, another seed: each a different answer.
        for other in [
            Puzzle {
                squarings: 199,
                ..puzzle.clone()
            },
            Puzzle {
                lanes: 3,
                ..puzzle.clone()
            },
            Puzzle::new(4, 200),
        ] {
            assert_ne!(solve(&key.modulus_hex(), &other).unwrap(), expected);
        }
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let key = key();
        let back = TestKey::from_hex(key.id.clone(), &key.modulus_hex(), &key.phi_hex()).unwrap();
        let puzzle = Puzzle::new(2, 50);
        assert_eq!(back.expected(&puzzle), key.expected(&puzzle));
        assert!(TestKey::from_hex("k".into(), "zz", "10").is_err());
        assert_eq!(solve("not hex", &puzzle), None);
        assert!(!format!("{key:?}").contains(&key.phi_hex()));
    }

    #[test]
    fn lanes_scale_with_the_model_and_gpus() {
        assert_eq!(lanes_for(Some(989.5), 8), 80);
        assert_eq!(lanes_for(Some(71.0), 1), 1);
        assert_eq!(lanes_for(Some(165.2), 2), 4);
        assert_eq!(lanes_for(None, 0), 1);
        assert_eq!(lanes_for(Some(10_000.0), 64), MAX_LANES);
    }
}
