//! Invariants: smooth WRR shares within one step over any window of
//! sum(weights) picks; round robin fairness.
#![allow(clippy::unwrap_used, missing_docs)]

use nexus_lb::{Balancer, EndpointSpec, Strategy};
use proptest::prelude::*;

fn balancer(strategy: Strategy, weights: &[u32]) -> Balancer {
    let lb = Balancer::new(strategy);
    let specs: Vec<_> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| EndpointSpec::new(&format!("http://e{i}:80"), *w).unwrap())
        .collect();
    lb.set_endpoints(&specs).unwrap();
    lb
}

fn index(url: &str) -> usize {
    url.trim_start_matches("http://e")
        .trim_end_matches(":80")
        .parse()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn smooth_wrr_share_within_one_over_any_window(
        weights in prop::collection::vec(1u32..=20, 1..8),
        offset in 0usize..200,
    ) {
        let lb = balancer(Strategy::WeightedRoundRobin, &weights);
        let total: u32 = weights.iter().sum();
        let picks: Vec<usize> = (0..offset + 3 * total as usize)
            .map(|_| index(lb.pick().unwrap().url()))
            .collect();
        // Every window of `total` consecutive picks, from any start.
        for start in offset..offset + 2 * total as usize {
            let mut count = vec![0i64; weights.len()];
            for &i in &picks[start..start + total as usize] {
                count[i] += 1;
            }
            for (i, w) in weights.iter().enumerate() {
                prop_assert!((count[i] - i64::from(*w)).abs() <= 1,
                    "endpoint {} weight {} got {} in window at {}", i, w, count[i], start);
            }
        }
    }

    #[test]
    fn round_robin_is_fair(n in 1usize..16, rounds in 1usize..20, skip in 0usize..50) {
        let lb = balancer(Strategy::RoundRobin, &vec![1; n]);
        for _ in 0..skip {
            lb.pick();
        }
        let mut count = vec![0usize; n];
        for _ in 0..n * rounds {
            count[index(lb.pick().unwrap().url())] += 1;
        }
        prop_assert!(count.iter().all(|&c| c == rounds), "{:?}", count);
    }
}
