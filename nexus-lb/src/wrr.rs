//! Smooth weighted round robin (nginx's algorithm), precomputed.
//!
//! nginx keeps a `current` weight per peer; each pick adds every peer's
//! weight to its `current`, takes the peer with the largest `current` and
//! subtracts the total from it. The sequence of choices repeats every
//! `W = sum(weights)` picks (after dividing the weights by their gcd), and
//! within that period it never bunches a heavy peer's picks together:
//! weights 5,1,1 give `a a b a c a a`, not `a a a a a b c`.
//!
//! Running that loop on every pick is O(n) and needs a lock around the
//! `current` array. Because the sequence is periodic, we run it once per
//! endpoint-set change and store the period as a table of indices; a pick is
//! then `table[cursor.fetch_add(1) % W]`: O(1), lock-free, and exactly
//! nginx's sequence. Building costs O(W·n); when `W·n` would exceed
//! [`TABLE_BUILD_LIMIT`] (very many heavy endpoints) we fall back to nginx's
//! live loop under a mutex, O(n) per pick.

use std::sync::Mutex;

/// Upper bound on `W·n` for a precomputed table (~4 M steps, a few ms of
/// build time on a reload; table memory is at most 2·W bytes).
pub const TABLE_BUILD_LIMIT: u64 = 1 << 22;

/// The smooth WRR schedule over a snapshot's ready endpoints.
#[derive(Debug)]
pub(crate) enum Wrr {
    /// No ready endpoint, or the strategy does not need a schedule.
    Empty,
    /// One period of nginx's sequence, as indices into the ready list.
    Table(Box<[u16]>),
    /// nginx's live loop: `(weight, current)` per ready endpoint.
    Live(Mutex<Vec<(i64, i64)>>),
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Wrr {
    /// Builds the schedule for `weights` (index = position in the ready
    /// list, at most `u16::MAX + 1` entries).
    pub(crate) fn build(weights: &[u32]) -> Self {
        if weights.is_empty() {
            return Wrr::Empty;
        }
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let reduced: Vec<i64> = weights.iter().map(|&w| i64::from(w / g)).collect();
        let total: i64 = reduced.iter().sum();
        let n = weights.len() as u64;
        let mut peers: Vec<(i64, i64)> = reduced.iter().map(|&w| (w, 0)).collect();
        if (total as u64).saturating_mul(n) > TABLE_BUILD_LIMIT || weights.len() > 1 << 16 {
            return Wrr::Live(Mutex::new(peers));
        }
        let mut table = Vec::with_capacity(total as usize);
        for _ in 0..total {
            // Fits: the ready list has at most 2^16 entries (checked above).
            #[allow(clippy::cast_possible_truncation)]
            table.push(step(&mut peers, total) as u16);
        }
        Wrr::Table(table.into_boxed_slice())
    }
}

/// nginx's step with the total precomputed: add weights, take the largest
/// `current` (first on ties), subtract the total from it.
pub(crate) fn step(peers: &mut [(i64, i64)], total: i64) -> usize {
    let mut best = 0;
    let mut best_cur = i64::MIN;
    for (i, p) in peers.iter_mut().enumerate() {
        p.1 += p.0;
        if p.1 > best_cur {
            best_cur = p.1;
            best = i;
        }
    }
    peers[best].1 -= total;
    best
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seq(weights: &[u32]) -> Vec<u16> {
        match Wrr::build(weights) {
            Wrr::Table(t) => t.into_vec(),
            other => panic!("expected a table, got {other:?}"),
        }
    }

    #[test]
    fn matches_nginx_reference_sequence() {
        // The example from nginx's commit introducing smooth WRR.
        assert_eq!(seq(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        // The seed's pool: weight 2 and 1 interleave instead of bursting.
        assert_eq!(seq(&[2, 1]), vec![0, 1, 0]);
        // gcd reduction keeps the period short.
        assert_eq!(seq(&[200, 100]), vec![0, 1, 0]);
    }

    #[test]
    fn huge_schedules_fall_back_to_the_live_loop() {
        let mut w = vec![1000u32; 5000];
        w[0] = 999; // gcd 1, W ~ 5M
        assert!(matches!(Wrr::build(&w), Wrr::Live(_)));
        assert!(matches!(Wrr::build(&[]), Wrr::Empty));
    }
}
