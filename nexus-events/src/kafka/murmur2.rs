//! Key partitioning exactly as the Java client's `BuiltInPartitioner`:
//! `toPositive(murmur2(keyBytes)) % numPartitions`, so keys land on the
//! partitions other Kafka clients expect.

/// Kafka's murmur2 (seed `0x9747b28c`), bit for bit as `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java casts the length to int; keys over 2 GiB are not a real concern.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client picks for `key` among `partitions`
/// (`partitions` must be positive).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Apache Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn matches_java_reference_values() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "key {:?}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partition_is_to_positive_modulo() {
        // toPositive(murmur2("21")) = toPositive(-973932308) = 1173551340.
        assert_eq!(partition_for_key(b"21", 4), 1_173_551_340 % 4);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        for n in 1..20 {
            assert!(partition_for_key(b"foobar", n) < n);
        }
    }
}
