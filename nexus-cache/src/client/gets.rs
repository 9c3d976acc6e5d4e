//! `GET` hits and misses, counted where replies meet their commands.
//!
//! The proxy forwards raw bytes and never decodes replies, so a hit ratio has
//! to be found without slowing the hot path. The reader marks which commands
//! of a batch are `GET`s (one bit each, [`Gets`]); the writer, which receives
//! the batch's replies as one contiguous slice, looks at the first bytes of
//! just those replies: `$-1` (or RESP3 `_`) is a miss, any other bulk string
//! a hit, an error neither. Batches without a `GET` cost one branch; a batch
//! of `GET`s costs a header parse per reply up to the last `GET` and two
//! relaxed atomic adds per batch. Nothing is allocated unless a `GET` sits
//! past the 64th command of a batch.

use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::Metrics;
use crate::resp::{Limits, Scanner};

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

    /// The single command of a one-command batch is a `GET`.
    pub(crate) const fn first() -> Self {
        Self {
            low: 1,
            more: Vec::new(),
        }
    }

    /// Marks position `i` as a `GET`.
    pub(crate) fn set(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
            return;
        }
        let (w, b) = (i / 64 - 1, i % 64);
        if self.more.len() <= w {
            self.more.resize(w + 1, 0);
        }
        self.more[w] |= 1 << b;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.low == 0 && self.more.is_empty()
    }

    fn has(&self, i: usize) -> bool {
        if i < 64 {
            return self.low & (1 << i) != 0;
        }
        let (w, b) = (i / 64 - 1, i % 64);
        self.more.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Highest marked position (`None` when empty).
    fn last(&self) -> Option<usize> {
        if let Some((w, word)) = self.more.iter().enumerate().rev().find(|(_, w)| **w != 0) {
            return Some(64 * (w + 1) + 63 - word.leading_zeros() as usize);
        }
        (self.low != 0).then(|| 63 - self.low.leading_zeros() as usize)
    }

    /// Counts the hits and misses among `replies`, the replies to the batch's
    /// first commands in order (fewer than the batch held if the connection
    /// failed part-way).
    pub(crate) fn count(&self, replies: &[u8], metrics: &Metrics) {
        let Some(last) = self.last() else { return };
        let (mut hits, mut misses) = (0u64, 0u64);
        let mut scanner: Option<Scanner> = None;
        let mut off = 0;
        for i in 0..=last {
            let Some(rest) = replies.get(off..).filter(|r| !r.is_empty()) else {
                break;
            };
            if self.has(i) {
                match (rest[0], rest.get(1)) {
                    (b'$', Some(b'-')) | (b'_', _) => misses += 1,
                    (b'$', _) => hits += 1,
                    _ => {}
                }
            }
            if i == last {
                break;
            }
            let len = match simple_len(rest) {
                Some(n) => n,
                None => {
                    // An aggregate (a mixed batch): the full scanner, made once.
                    let s = scanner.get_or_insert_with(|| {
                        Scanner::new(Limits {
                            max_bulk_len: usize::MAX >> 1,
                            max_elements: usize::MAX >> 8,
                            ..Limits::default()
                        })
                        .inline(false)
                    });
                    s.reset();
                    match s.scan(rest) {
                        Ok(Some(n)) => n,
                        _ => break,
                    }
                }
            };
            off += len;
        }
        if hits > 0 {
            metrics.get_hits.fetch_add(hits, Relaxed);
        }
        if misses > 0 {
            metrics.get_misses.fetch_add(misses, Relaxed);
        }
    }
}

/// Length of a complete non-aggregate reply at the start of `b`, or `None`
/// for aggregates and anything unexpected (the caller then scans).
fn simple_len(b: &[u8]) -> Option<usize> {
    let cr = b.iter().position(|&c| c == b'\r')?;
    let line = cr + 2;
    match b.first()? {
        b'$' => {
            let digits = b.get(1..cr)?;
            if digits.first() == Some(&b'-') {
                return Some(line);
            }
            let n = std::str::from_utf8(digits).ok()?.parse::<usize>().ok()?;
            line.checked_add(n)?.checked_add(2)
        }
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(line),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(gets: &Gets, replies: &[u8]) -> (u64, u64) {
        let m = Metrics::new();
        gets.count(replies, &m);
        let s = m.snapshot();
        (s.get_hits, s.get_misses)
    }

    #[test]
    fn counts_only_marked_replies() {
        let mut g = Gets::default();
        assert!(g.is_empty());
        // SET, GET (hit), HGETALL (aggregate), GET (miss), GET (error), GET (empty string: hit)
        for i in [1, 3, 4, 5] {
            g.set(i);
        }
        let replies =
            b"+OK\r\n$3\r\nfoo\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n-WRONGTYPE x\r\n$0\r\n\r\n";
        assert_eq!(counted(&g, replies), (2, 1));
        assert_eq!(counted(&Gets::first(), b"$-1\r\n"), (0, 1));
        assert_eq!(counted(&Gets::first(), b"_\r\n"), (0, 1));
        assert_eq!(counted(&Gets::default(), b"$-1\r\n"), (0, 0));
    }

    #[test]
    fn positions_past_64_and_truncated_replies() {
        let mut g = Gets::default();
        g.set(0);
        g.set(130);
        assert!(g.has(130) && !g.has(129) && !g.has(66));
        assert_eq!(g.last(), Some(130));
        let mut replies = Vec::new();
        for i in 0..131 {
            replies.extend_from_slice(if i == 130 { b"$-1\r\n" } else { b"$1\r\nx\r\n" });
        }
        assert_eq!(counted(&g, &replies), (1, 1));
        // The connection failed after 10 replies: only the first GET counted.
        assert_eq!(counted(&g, &replies[..70]), (1, 0));
        // Garbage never panics.
        assert_eq!(counted(&g, b"$99999999999999999999999\r\n"), (1, 0));
        assert_eq!(counted(&g, b"$"), (1, 0));
    }
}
