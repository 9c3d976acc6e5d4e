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

    /// Appends an entry, dropping the oldest at the bound.
    pub fn push(&self, e: TelemetryEntry) {
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
}
