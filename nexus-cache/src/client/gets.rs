//! `GET` hits and misses, counted where replies meet their commands.
//!
//! The proxy forwards raw bytes and never decodes replies, so a hit ratio has
//! to be found without slowing the hot path. The reader marks which commands
//! of a batch are `GET`s (one bit each, [`Gets`]) and the bitmap travels with
//! the batch to its upstream connection, whose reader frames every reply
//! anyway (to know when a batch is answered): at the boundary of each reply
//! it looks at the first two bytes of the `GET`s' ones ([`classify`]: `$-1`
//! or RESP3 `_` is a miss, any other bulk string a hit, an error neither).
//! No reply is scanned twice, whatever else the batch holds (an `LRANGE` of
//! 10,000 items before a `GET` costs nothing extra); a batch costs two
//! relaxed atomic adds at most. A one-command slot completed elsewhere (a
//! singleflight flight, a guarded read) is counted by the client's writer
//! ([`count_one`]). Nothing is allocated unless a `GET` sits past the 64th
//! command of a batch.

use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::Metrics;

/// Which commands of a batch are `GET`s, by position.
#[derive(Debug, Default)]
pub(crate) struct Gets {
    /// Positions 0..64.
    low: u64,
    /// Positions 64.., word `w` bit `b` = position `64 * (w + 1) + b`.
    /// Bound: one bit per command of a batch (`max_batch`).
    more: Vec<u64>,
}

impl Gets {
    /// No `GET`s.
    pub(crate) const fn new() -> Self {
        Self {
            low: 0,
            more: Vec::new(),
        }
    }

    /// Marks position `i` as a `GET`.
    #[inline]
    pub(crate) fn set(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            self.set_more(i);
        }
    }

    /// [`set`](Self::set) past the first word: batches of over 64 commands.
    #[cold]
    fn set_more(&mut self, i: usize) {
        let (w, b) = (i / 64 - 1, i % 64);
        if self.more.len() <= w {
            self.more.resize(w + 1, 0);
        }
        self.more[w] |= 1 << b;
    }

    /// Whether position `i` is a `GET`.
    #[inline]
    pub(crate) fn has(&self, i: usize) -> bool {
        if i < 64 {
            return self.low & (1 << i) != 0;
        }
        let (w, b) = (i / 64 - 1, i % 64);
        self.more.get(w).is_some_and(|word| word & (1 << b) != 0)
    }
}

/// Whether a reply is a `GET` hit (`Some(true)`), a miss (`Some(false)`,
/// `$-1` or RESP3 `_`), or neither (an error, or no reply: `None`). Looks at
/// the first two bytes only.
pub(crate) fn classify(reply: &[u8]) -> Option<bool> {
    match (reply.first()?, reply.get(1)) {
        (b'$', Some(b'-')) | (b'_', _) => Some(false),
        (b'$', _) => Some(true),
        _ => None,
    }
}

/// Counts the reply of a one-command slot answering a `GET` (a flight or a
/// guarded read, whose reply the upstream reader never sees as this
/// client's).
pub(crate) fn count_one(reply: &[u8], metrics: &Metrics) {
    match classify(reply) {
        Some(true) => _ = metrics.get_hits.fetch_add(1, Relaxed),
        Some(false) => _ = metrics.get_misses.fetch_add(1, Relaxed),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_classes() {
        let mut g = Gets::default();
        assert!(!g.has(0));
        g.set(0);
        g.set(130);
        assert!(g.has(0) && g.has(130) && !g.has(129) && !g.has(66) && !g.has(1));
        assert_eq!(classify(b"$3\r\nfoo\r\n"), Some(true));
        assert_eq!(classify(b"$0\r\n\r\n"), Some(true));
        assert_eq!(classify(b"$-1\r\n"), Some(false));
        assert_eq!(classify(b"_\r\n"), Some(false));
        assert_eq!(classify(b"-WRONGTYPE x\r\n"), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"$"), Some(true));
        let m = Metrics::new();
        count_one(b"$-1\r\n", &m);
        count_one(b"$1\r\nx\r\n", &m);
        count_one(b"-ERR x\r\n", &m);
        let s = m.snapshot();
        assert_eq!((s.get_hits, s.get_misses), (1, 1));
    }
}
