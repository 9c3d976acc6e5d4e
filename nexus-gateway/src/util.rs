//! Small helpers: request ids and timestamps without extra dependencies.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Longest client-supplied `x-request-id` that is kept.
pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a client-sent request id is kept: 1..=128 bytes of `[A-Za-z0-9._:-]`
/// (so it is safe in logs, headers and JSON without escaping).
pub(crate) fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9e37_79b9_7f4a_7c15);
        h.finish() | 1
    });
}

/// A fast non-cryptographic random u64 (xorshift64*, per-thread, randomly seeded).
/// Request ids need uniqueness, not secrecy.
pub(crate) fn fast_random() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// Generates `nexus-<unix ms>-<10 base36 chars>` (the seed's shape).
pub(crate) fn new_request_id() -> HeaderValue {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut r = fast_random();
    let mut tail = [0u8; 10];
    for c in tail.iter_mut() {
        *c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(r % 36) as usize];
        r /= 36;
    }
    let mut s = format!("nexus-{ms}-");
    s.extend(tail.iter().map(|&c| c as char));
    HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("nexus-0"))
}

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-04-27T20:35:08.090Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instant() {
        let t = UNIX_EPOCH + Duration::from_millis(1_777_322_108_090);
        assert_eq!(rfc3339_millis(t), "2026-04-27T20:35:08.090Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn request_ids_are_valid_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert!(valid_request_id(&a) && valid_request_id(&b));
        assert_ne!(a, b);
        assert!(!valid_request_id(&HeaderValue::from_static("a b")));
        assert!(!valid_request_id(&HeaderValue::from_static("")));
    }
}
