//! Small helpers: request ids and timestamps, formatted on the stack.

use std::cell::{Cell, RefCell};
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
///
/// Formatted on the stack: the only allocation is the header value's own copy.
pub(crate) fn new_request_id() -> HeaderValue {
    let ms = unix_millis(SystemTime::now());
    let mut r = fast_random();
    // "nexus-" + at most 20 digits + "-" + 10 chars.
    let mut buf = [0u8; 37];
    buf[..6].copy_from_slice(b"nexus-");
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(ms).as_bytes();
    let mut n = 6 + digits.len();
    buf[6..n].copy_from_slice(digits);
    buf[n] = b'-';
    n += 1;
    for c in &mut buf[n..n + 10] {
        *c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(r % 36) as usize];
        r /= 36;
    }
    n += 10;
    // The id is cloned several times per request (context, headers both ways,
    // telemetry): a buffer owned by the `Bytes` is one allocation and every
    // clone a reference count, where a copied slice would be promoted to a
    // shared buffer, a second allocation, on its first clone.
    let id = RequestIdBytes { buf, len: n };
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or(HeaderValue::from_static("nexus-0"))
}

/// A generated request id's bytes (see [`new_request_id`]).
struct RequestIdBytes {
    buf: [u8; 37],
    len: usize,
}

impl AsRef<[u8]> for RequestIdBytes {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Length of [`rfc3339_millis`]'s output for years 0..=9999.
const RFC3339_MILLIS_LEN: usize = 24;

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-04-27T20:35:08.090Z`.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let buf = rfc3339_millis_bytes(unix_millis(t));
    // Only ASCII digits and separators are written.
    String::from_utf8_lossy(&buf).into_owned()
}

/// [`rfc3339_millis`] of `ms` since the epoch into a fixed buffer (years past
/// 9999 wrap their digits; the gateway's clock will not get there).
fn rfc3339_millis_bytes(ms: u64) -> [u8; RFC3339_MILLIS_LEN] {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.max(0) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(dd));
    put(11, 2, rem / 3600);
    put(14, 2, (rem / 60) % 60);
    put(17, 2, rem % 60);
    put(20, 3, ms % 1000);
    out
}

thread_local! {
    /// The last `X-Gateway-Timestamp` value built on this thread, by millisecond.
    static TIMESTAMP: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// The current time as an RFC 3339 header value (see [`rfc3339_millis`]),
/// built at most once per millisecond per thread: within a millisecond every
/// request shares one value (a reference-count increment, no formatting).
pub(crate) fn timestamp_header(now: SystemTime) -> HeaderValue {
    let ms = unix_millis(now);
    TIMESTAMP.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != ms {
            let text = rfc3339_millis_bytes(ms);
            let v = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(&text))
                .unwrap_or(HeaderValue::from_static(""));
            *cached = (ms, v);
        }
        cached.1.clone()
    })
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instant() {
        let t = UNIX_EPOCH + Duration::from_millis(1_777_322_108_090);
        assert_eq!(rfc3339_millis(t), "2026-04-27T20:35:08.090Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_007); // 2000-02-29 leap day
        assert_eq!(rfc3339_millis(t), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn timestamp_header_is_cached_per_millisecond() {
        let t = UNIX_EPOCH + Duration::from_millis(1_777_322_108_090);
        let a = timestamp_header(t);
        assert_eq!(a, "2026-04-27T20:35:08.090Z");
        let b = timestamp_header(t + Duration::from_micros(500));
        assert_eq!(
            a.as_bytes().as_ptr(),
            b.as_bytes().as_ptr(),
            "same ms: shared bytes"
        );
        assert_eq!(
            timestamp_header(t + Duration::from_millis(1)),
            "2026-04-27T20:35:08.091Z"
        );
    }

    #[test]
    fn request_id_shape() {
        let id = new_request_id();
        let s = id.to_str().unwrap();
        let mut parts = s.splitn(3, '-');
        assert_eq!(parts.next(), Some("nexus"));
        let ms: u64 = parts.next().unwrap().parse().unwrap();
        assert!(ms > 1_700_000_000_000);
        let tail = parts.next().unwrap();
        assert_eq!(tail.len(), 10);
        assert!(
            tail.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
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
