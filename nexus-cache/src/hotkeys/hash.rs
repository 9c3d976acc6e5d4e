//! A seeded 64-bit hash for sketch indexing: folded multiplies over 8-byte
//! words (the construction of foldhash/wyhash), a few ns for short keys.
//! Seeded per detector so a client cannot aim many keys at one bucket.

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hashes `key` with `seed`.
#[inline]
pub(crate) fn hash(seed: u64, key: &[u8]) -> u64 {
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K0);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = fold_mul(h ^ u64::from_le_bytes(w), K1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = fold_mul(h ^ u64::from_le_bytes(w), K2);
    }
    fold_mul(h ^ (h >> 29), K0)
}

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn spreads_and_depends_on_seed() {
        assert_ne!(hash(1, b"product:1"), hash(1, b"product:2"));
        assert_ne!(hash(1, b"product:1"), hash(2, b"product:1"));
        assert_ne!(hash(1, b"a"), hash(1, b"a\0"));
        // Low bits used for bucket indices must vary across similar keys.
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            seen.insert(hash(7, format!("k:{i}").as_bytes()) & 1023);
        }
        assert!(seen.len() > 550, "poor spread: {}", seen.len());
    }
}
