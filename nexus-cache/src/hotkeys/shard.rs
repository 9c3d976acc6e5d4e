//! One shard of the detector: a HeavyKeeper sketch and its top-k list.
//!
//! HeavyKeeper (Gong et al., USENIX ATC 2018): each of `depth` rows has
//! `width` buckets holding a key fingerprint and a count. A key's own bucket
//! counts up; a bucket held by another key is decremented with probability
//! `b^-count` ("exponential weakening"), so small flows cannot displace large
//! ones while large flows quickly claim buckets from small ones. Unlike a
//! count-min sketch it does not overestimate from collisions of many small
//! keys, which is what makes top-k recall high with little memory.

/// Largest count with a non-zero decay probability in the table.
pub(crate) const DECAY_TABLE: usize = 512;
/// Base of the exponential weakening.
const DECAY_BASE: f64 = 1.08;

/// `table[c]` = `b^-c` scaled to `u32`: decrement when a random `u32` is below.
pub(crate) fn decay_table() -> Box<[u32]> {
    (0..DECAY_TABLE)
        .map(|c| (DECAY_BASE.powi(-(c as i32)) * f64::from(u32::MAX)) as u32)
        .collect()
}

pub(crate) struct TopEntry {
    pub(crate) hash: u64,
    pub(crate) count: u32,
    /// Accesses left before the key's next one that is due
    /// ([`super::HotKeys::observe_due`]); 0 when the entry is (re)filled.
    pub(crate) countdown: u16,
    pub(crate) hot: bool,
    /// Reused when the entry is replaced (capacity at most `max_key_len`).
    pub(crate) key: Vec<u8>,
}

pub(crate) struct Shard {
    /// `depth * width` buckets: fingerprint in the high 32 bits, count low.
    buckets: Box<[u64]>,
    width_mask: usize,
    depth: usize,
    pub(crate) top: Vec<TopEntry>,
    top_cap: usize,
    /// A lower bound of the smallest count in `top` (exact after a rescan).
    top_min: u32,
    pub(crate) epoch: u64,
    rng: u64,
}

impl Shard {
    pub(crate) fn new(depth: usize, width: usize, top_cap: usize, seed: u64) -> Self {
        Self {
            buckets: vec![0; depth * width].into_boxed_slice(),
            width_mask: width - 1,
            depth,
            top: Vec::with_capacity(top_cap),
            top_cap,
            top_min: 0,
            epoch: 0,
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Halves every count once per elapsed epoch. Checked on every
    /// observation, so the check is inlined and the halving is not.
    #[inline]
    pub(crate) fn decay_to(&mut self, epoch: u64) {
        if epoch > self.epoch {
            self.decay(epoch);
        }
    }

    #[cold]
    fn decay(&mut self, epoch: u64) {
        let shift = (epoch - self.epoch).min(32) as u32;
        self.epoch = epoch;
        for b in self.buckets.iter_mut() {
            let count = (*b as u32).checked_shr(shift).unwrap_or(0);
            *b = if count == 0 {
                0
            } else {
                (*b & !0xffff_ffff) | u64::from(count)
            };
        }
        for e in &mut self.top {
            e.count = e.count.checked_shr(shift).unwrap_or(0);
        }
        self.top.retain(|e| e.count > 0);
        self.top_min = self.top.iter().map(|e| e.count).min().unwrap_or(0);
    }

    /// Counts one access to `key` (hash `h`); returns the new estimate and
    /// the top entry if the key is in the top list.
    #[inline]
    pub(crate) fn observe(
        &mut self,
        h: u64,
        key: &[u8],
        table: &[u32],
        max_key_len: usize,
    ) -> (u32, Option<usize>) {
        let fp = fingerprint(h);
        let mut est = 0u32;
        for row in 0..self.depth {
            let i = row * (self.width_mask + 1) + index(h, row, self.width_mask);
            let b = self.buckets[i];
            let (bfp, count) = ((b >> 32) as u32, b as u32);
            if count == 0 {
                self.buckets[i] = pack(fp, 1);
                est = est.max(1);
            } else if bfp == fp {
                let c = count.saturating_add(1);
                self.buckets[i] = pack(fp, c);
                est = est.max(c);
            } else {
                let threshold = table.get(count as usize).copied().unwrap_or(0);
                if self.next_random() < threshold {
                    if count == 1 {
                        self.buckets[i] = pack(fp, 1);
                        est = est.max(1);
                    } else {
                        self.buckets[i] = pack(bfp, count - 1);
                    }
                }
            }
        }
        if est == 0 {
            return (0, None);
        }
        if let Some(pos) = self.top.iter().position(|e| e.hash == h && *e.key == *key) {
            let e = &mut self.top[pos];
            e.count = e.count.max(est);
            return (est, Some(pos));
        }
        if key.len() > max_key_len {
            return (est, None);
        }
        if self.top.len() < self.top_cap {
            self.top.push(TopEntry {
                hash: h,
                count: est,
                countdown: 0,
                hot: false,
                key: key.into(),
            });
            self.top_min = self.top.iter().map(|e| e.count).min().unwrap_or(0);
            return (est, Some(self.top.len() - 1));
        }
        if est <= self.top_min {
            return (est, None);
        }
        // Rescan for the true minimum; replace it if we beat it.
        let (pos, min) = self
            .top
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.count))
            .min_by_key(|&(_, c)| c)
            .unwrap_or((0, 0));
        if est > min {
            let e = &mut self.top[pos];
            e.hash = h;
            e.count = est;
            e.countdown = 0;
            e.hot = false;
            e.key.clear();
            // Exact, so a buffer never grows past `max_key_len`.
            e.key.reserve_exact(key.len());
            e.key.extend_from_slice(key);
            self.top_min = self.top.iter().map(|e| e.count).min().unwrap_or(0);
            (est, Some(pos))
        } else {
            self.top_min = min;
            (est, None)
        }
    }

    /// The sketch's estimate for a key, without counting an access.
    pub(crate) fn estimate(&self, h: u64) -> u32 {
        let fp = fingerprint(h);
        (0..self.depth)
            .map(|row| self.buckets[row * (self.width_mask + 1) + index(h, row, self.width_mask)])
            .filter(|b| (b >> 32) as u32 == fp)
            .map(|b| b as u32)
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.len() * 8
            + self.top.capacity() * std::mem::size_of::<TopEntry>()
            + self.top.iter().map(|e| e.key.capacity()).sum::<usize>()
    }
}

#[inline]
fn fingerprint(h: u64) -> u32 {
    // Never 0, so an empty bucket (all zero) can be told from a key.
    ((h >> 32) as u32) | 1
}

#[inline]
fn index(h: u64, row: usize, mask: usize) -> usize {
    // Double hashing from the two halves; the shard index uses the top bits.
    let lo = h as u32 as usize;
    let step = ((h >> 24) as u32 as usize) | 1;
    lo.wrapping_add(row.wrapping_mul(step)) & mask
}

#[inline]
fn pack(fp: u32, count: u32) -> u64 {
    (u64::from(fp) << 32) | u64::from(count)
}
