//! Sharing a block: the split between the pools, and each pool among its devices in proportion
//! to their scores, to the micro-$IO. Shares round down and the micro-units left over go one
//! each to the largest remainders (ties to the earlier device), so a pool with any eligible
//! device is paid out exactly: nothing minted is lost to rounding.

/// Splits a block's emission into (GPU pool, CPU pool); the CPU pool takes the rounding.
pub fn split_emission(emission: i64, gpu_share_bps: u32) -> (i64, i64) {
    let gpu = (i128::from(emission.max(0)) * i128::from(gpu_share_bps.min(10_000)) / 10_000) as i64;
    (gpu, emission.max(0) - gpu)
}

/// One device's part of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub score: i64,
    pub amount: i64,
}

/// Shares `pool` micro-$IO among `scores` (negative scores count as zero). Answers one amount
/// per score, in order; they sum to `pool` unless every score is zero (then all are zero and
/// the pool stays undistributed).
pub fn share_pool(pool: i64, scores: &[i64]) -> Vec<i64> {
    let total: i128 = scores.iter().map(|s| i128::from((*s).max(0))).sum();
    if total == 0 || pool <= 0 {
        return vec![0; scores.len()];
    }
    let pool = i128::from(pool);
    let mut amounts = Vec::with_capacity(scores.len());
    let mut remainders = Vec::with_capacity(scores.len());
    let mut paid: i128 = 0;
    for (i, s) in scores.iter().enumerate() {
        let exact = pool * i128::from((*s).max(0));
        let amount = exact / total;
        paid += amount;
        amounts.push(amount as i64);
        remainders.push((exact % total, i));
    }
    let left = (pool - paid) as usize;
    // Largest remainder first; among equals the earlier device.
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(left) {
        amounts[i] += 1;
    }
    amounts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_pool_is_paid_out_exactly_in_proportion() {
        assert_eq!(split_emission(1_000, 8_000), (800, 200));
        assert_eq!(split_emission(1_001, 8_000), (800, 201));
        assert_eq!(share_pool(100, &[1, 1, 2]), vec![25, 25, 50]);
        // 100 / 3: 33 each and the one left to the first of the equal remainders.
        assert_eq!(share_pool(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(share_pool(10, &[0, 5, 0]), vec![0, 10, 0]);
        assert_eq!(
            share_pool(10, &[0, 0]),
            vec![0, 0],
            "nobody eligible: nothing paid"
        );
        assert_eq!(share_pool(10, &[]), Vec::<i64>::new());
    }

    proptest! {
        #[test]
        fn shares_sum_to_the_pool_and_follow_the_scores(
            pool in 0i64..10_000_000_000_000,
            scores in proptest::collection::vec(0i64..100_000_000, 1..200),
        ) {
            let amounts = share_pool(pool, &scores);
            let total: i128 = scores.iter().map(|s| i128::from(*s)).sum();
            let paid: i64 = amounts.iter().sum();
            if total > 0 {
                prop_assert_eq!(paid, pool);
            } else {
                prop_assert_eq!(paid, 0);
            }
            for (s, a) in scores.iter().zip(&amounts) {
                // Within one micro-unit of the exact proportion, and nothing for a zero score.
                if total > 0 {
                    let exact = i128::from(pool) * i128::from(*s) / total;
                    prop_assert!(i128::from(*a) - exact <= 1 && i128::from(*a) >= exact);
                }
                if *s == 0 {
                    prop_assert_eq!(*a, 0);
                }
            }
        }
    }
}
