//! `/telemetry`: a bounded ring of the last N requests.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One finished request.
#[derive(Debug, Clone, Serialize)]
pub struct TelemetryEntry {
    /// Method.
    #[serde(serialize_with = "ser_method")]
    pub method: http::Method,
    /// Normalised path (no query).
    pub path: String,
    /// Status code.
    pub status: u16,
    /// Latency, milliseconds.
    pub latency_ms: f64,
    /// Client id from the token, or `anonymous`.
    #[serde(serialize_with = "ser_arc_str")]
    pub client: Arc<str>,
    /// Peer IP.
    pub ip: Option<IpAddr>,
    /// Completion time (serialised as RFC 3339, formatted only when read).
    #[serde(serialize_with = "ser_time")]
    pub timestamp: std::time::SystemTime,
}

fn ser_time<S: serde::Serializer>(t: &std::time::SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::util::rfc3339_millis(*t))
}

fn ser_method<S: serde::Serializer>(m: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn ser_arc_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

/// Longest path (bytes) kept in a telemetry entry or an event; longer ones are
/// cut on a character boundary and end in [`TRUNCATED_MARK`]. With it an entry
/// holds at most a few hundred bytes, so the ring's memory is bounded by its
/// capacity times that.
pub const MAX_RECORDED_PATH: usize = 256;

/// Appended to a path cut at [`MAX_RECORDED_PATH`].
pub const TRUNCATED_MARK: &str = "...(truncated)";

/// Longest method name kept as is; longer (extension) methods are recorded as `OTHER`.
const MAX_RECORDED_METHOD: usize = 16;

/// Cuts `path` to [`MAX_RECORDED_PATH`] bytes (plus [`TRUNCATED_MARK`]) and
/// gives back the excess capacity. Paths within the bound are left untouched.
pub(crate) fn bound_path(path: &mut String) {
    if path.len() <= MAX_RECORDED_PATH {
        return;
    }
    let mut end = MAX_RECORDED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path.truncate(end);
    path.push_str(TRUNCATED_MARK);
    path.shrink_to_fit();
}

/// Ring buffer of the last `capacity` requests (older entries are dropped).
#[derive(Debug)]
pub struct Telemetry {
    capacity: usize,
    // std Mutex: held only for a push/pop or a clone, never across `.await`.
    ring: Mutex<VecDeque<TelemetryEntry>>,
}

impl Telemetry {
    /// A ring holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
        }
    }

    /// Appends an entry, dropping the oldest at the bound. The path is cut to
    /// [`MAX_RECORDED_PATH`] bytes and an overlong extension method recorded as
    /// `OTHER`.
    pub fn push(&self, mut e: TelemetryEntry) {
        bound_path(&mut e.path);
        if e.method.as_str().len() > MAX_RECORDED_METHOD {
            e.method = http::Method::from_bytes(b"OTHER").unwrap_or_default();
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(e);
    }

    /// Newest-last copy of the ring.
    pub fn snapshot(&self) -> Vec<TelemetryEntry> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded() {
        let t = Telemetry::new(3);
        for i in 0..10u16 {
            t.push(TelemetryEntry {
                method: http::Method::GET,
                path: "/x".into(),
                status: 200 + i,
                latency_ms: 1.0,
                client: Arc::from("anonymous"),
                ip: None,
                timestamp: std::time::SystemTime::UNIX_EPOCH,
            });
        }
        let s = t.snapshot();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].status, 207);
        assert_eq!(s[2].status, 209);
    }

    #[test]
    fn long_paths_and_methods_are_cut() {
        let t = Telemetry::new(2);
        // 'é' is two bytes: the cut must land on a character boundary.
        let long = format!("/{}", "é".repeat(40_000));
        t.push(TelemetryEntry {
            method: http::Method::from_bytes("M".repeat(5000).as_bytes()).unwrap(),
            path: long.clone(),
            status: 200,
            latency_ms: 1.0,
            client: Arc::from("anonymous"),
            ip: None,
            timestamp: std::time::SystemTime::UNIX_EPOCH,
        });
        let e = &t.snapshot()[0];
        assert!(e.path.len() <= MAX_RECORDED_PATH + TRUNCATED_MARK.len());
        assert!(e.path.ends_with(TRUNCATED_MARK));
        assert!(long.starts_with(e.path.trim_end_matches(TRUNCATED_MARK)));
        assert_eq!(e.method.as_str(), "OTHER");
        let mut short = "/api/products".to_owned();
        bound_path(&mut short);
        assert_eq!(short, "/api/products");
    }
}
