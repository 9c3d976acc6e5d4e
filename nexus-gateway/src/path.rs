//! Path normalisation and route classification.
//!
//! Routes are matched on the normalised path only, so no spelling of a protected
//! path can look public: `//` collapses, `.`/`..` segments are resolved (escaping
//! the root is rejected), a trailing slash is dropped, the query never takes part,
//! and percent-encoded dots, slashes and backslashes (`%2e`, `%2f`, `%5c`), raw
//! backslashes and control bytes, and a `%` not followed by two hex digits, are
//! rejected outright (400) rather than guessed at.

/// A classified route. Its [`template`](Route::template) is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /health` (public).
    Health,
    /// `GET /metrics` (public).
    Metrics,
    /// `POST /auth/token` (public).
    Token,
    /// `GET /telemetry`.
    Telemetry,
    /// `GET /lb-stats`.
    LbStats,
    /// `GET /cb-stats`.
    CbStats,
    /// `GET /dashboard`: the live page (public: static HTML, no data; the
    /// page reads the admin routes below with a token).
    Dashboard,
    /// `GET /admin/overview`: the gateway's own dashboard data.
    AdminOverview,
    /// `GET /admin/dashboard`: overview, cache and consumer panels in one.
    AdminDashboard,
    /// `GET /admin/dashboard/cache`: the cache proxy's admin `/stats`.
    AdminCache,
    /// `GET /admin/dashboard/consumer`: the consumer's admin `/stats`.
    AdminConsumer,
    /// `/api` and everything under it, proxied.
    Api,
    /// Anything else (authenticated, then 404).
    NotFound,
}

impl Route {
    /// Classifies a normalised path.
    pub fn classify(path: &str) -> Self {
        match path {
            "/health" => Self::Health,
            "/metrics" => Self::Metrics,
            "/auth/token" => Self::Token,
            "/telemetry" => Self::Telemetry,
            "/lb-stats" => Self::LbStats,
            "/cb-stats" => Self::CbStats,
            "/dashboard" => Self::Dashboard,
            "/admin/overview" => Self::AdminOverview,
            "/admin/dashboard" => Self::AdminDashboard,
            "/admin/dashboard/cache" => Self::AdminCache,
            "/admin/dashboard/consumer" => Self::AdminConsumer,
            p if p == "/api" || p.starts_with("/api/") => Self::Api,
            _ => Self::NotFound,
        }
    }

    /// Whether the route is reachable without a token.
    pub fn is_public(self) -> bool {
        matches!(
            self,
            Self::Health | Self::Metrics | Self::Token | Self::Dashboard
        )
    }

    /// Route template used as the `route` metric label (bounded cardinality).
    pub fn template(self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Metrics => "/metrics",
            Self::Token => "/auth/token",
            Self::Telemetry => "/telemetry",
            Self::LbStats => "/lb-stats",
            Self::CbStats => "/cb-stats",
            Self::Dashboard => "/dashboard",
            Self::AdminOverview => "/admin/overview",
            Self::AdminDashboard => "/admin/dashboard",
            Self::AdminCache => "/admin/dashboard/cache",
            Self::AdminConsumer => "/admin/dashboard/consumer",
            Self::Api => "/api/*",
            Self::NotFound => "unmatched",
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Encoded dot/slash/backslash/NUL, a `%` not followed by two hex
    /// digits, a backslash or a control byte.
    #[error("path contains a forbidden encoding or character")]
    Forbidden,
    /// `..` would climb above the root.
    #[error("path escapes the root")]
    EscapesRoot,
    /// Not an origin-form path.
    #[error("path must start with '/'")]
    NotAbsolute,
}

/// Normalises the path part of a request target (no query). Idempotent: a
/// normalised path normalises to itself.
pub fn normalize(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    // One pass: refuse forbidden bytes and encodings, and note whether any
    // segment needs resolving (empty, `.` or `..`: `//`, `/./`, `/../`, a
    // trailing `/.`, `/..` or `/`).
    let mut plain = true;
    let mut seg_start = 1;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::Forbidden);
        }
        if b == b'%' {
            // A `%` not followed by two hex digits is malformed: refused, so
            // that resolution cannot turn it into something else (`x%2/`
            // would otherwise become `x%2`) and normalising stays idempotent.
            let enc = bytes.get(i + 1..i + 3).ok_or(PathError::Forbidden)?;
            if !enc.iter().all(u8::is_ascii_hexdigit)
                || enc.eq_ignore_ascii_case(b"2e")
                || enc.eq_ignore_ascii_case(b"2f")
                || enc.eq_ignore_ascii_case(b"5c")
                || enc == b"00"
            {
                return Err(PathError::Forbidden);
            }
        }
        if b == b'/' && i > 0 {
            plain &= !matches!(&bytes[seg_start..i], b"" | b"." | b"..");
            seg_start = i + 1;
        }
    }
    let last = &bytes[seg_start.min(bytes.len())..];
    plain &= !matches!(last, b"." | b"..") && (bytes.len() == 1 || !last.is_empty());
    // Fast path: already normal (the common case on the hot path).
    if plain {
        return Ok(path.to_owned());
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop().ok_or(PathError::EscapesRoot)?;
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_kept() {
        assert_eq!(normalize("/api/products").as_deref(), Ok("/api/products"));
        assert_eq!(normalize("/").as_deref(), Ok("/"));
        assert_eq!(normalize("/api/a%20b").as_deref(), Ok("/api/a%20b"));
    }

    #[test]
    fn bypass_spellings_normalise_or_fail() {
        assert_eq!(normalize("//telemetry").as_deref(), Ok("/telemetry"));
        assert_eq!(
            normalize("/health/../telemetry").as_deref(),
            Ok("/telemetry")
        );
        assert_eq!(normalize("/health/./").as_deref(), Ok("/health"));
        assert_eq!(normalize("/telemetry/").as_deref(), Ok("/telemetry"));
        assert_eq!(
            normalize("/health/%2e%2e/telemetry"),
            Err(PathError::Forbidden)
        );
        assert_eq!(normalize("/health%2ftelemetry"), Err(PathError::Forbidden));
        assert_eq!(
            normalize("/health\\..\\telemetry"),
            Err(PathError::Forbidden)
        );
        assert_eq!(normalize("/../etc"), Err(PathError::EscapesRoot));
        assert_eq!(normalize("/x%"), Err(PathError::Forbidden));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
    }

    /// Resolves segments always (what the slow path does), as the reference.
    fn resolved(path: &str) -> Result<String, PathError> {
        let mut segs: Vec<&str> = Vec::new();
        for seg in path.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    segs.pop().ok_or(PathError::EscapesRoot)?;
                }
                s => segs.push(s),
            }
        }
        let out: String = segs.iter().map(|s| format!("/{s}")).collect();
        Ok(if out.is_empty() { "/".to_owned() } else { out })
    }

    #[test]
    fn fast_path_only_for_paths_resolution_keeps() {
        // Every path of up to 8 bytes over `/`, `.` and `a`.
        let mut paths = vec!["/".to_owned()];
        let mut frontier = paths.clone();
        for _ in 0..7 {
            let mut next = Vec::new();
            for p in &frontier {
                for c in ['/', '.', 'a'] {
                    next.push(format!("{p}{c}"));
                }
            }
            paths.extend(next.iter().cloned());
            frontier = next;
        }
        for p in &paths {
            assert_eq!(normalize(p), resolved(p), "{p}");
        }
    }

    #[test]
    fn a_percent_without_two_hex_digits_is_refused() {
        for bad in [
            "/api/x%2/",
            "/api/x%2",
            "/api/x%",
            "/api/%zz",
            "/api/%g0/a",
            "/api/x%/",
            "/api/%%41",
            "/api/a%2/..",
        ] {
            assert_eq!(normalize(bad), Err(PathError::Forbidden), "{bad}");
        }
        assert_eq!(normalize("/api/x%41/").as_deref(), Ok("/api/x%41"));
        assert_eq!(normalize("/api/%aF%20").as_deref(), Ok("/api/%aF%20"));
    }

    #[test]
    fn normalising_is_idempotent() {
        // Every path of up to 7 bytes over `/ . a % 2 e g`.
        let mut frontier = vec!["/".to_owned()];
        let mut checked = 0;
        for _ in 0..6 {
            let mut next = Vec::new();
            for p in &frontier {
                for c in ['/', '.', 'a', '%', '2', 'e', 'g'] {
                    next.push(format!("{p}{c}"));
                }
            }
            for p in &next {
                if let Ok(once) = normalize(p) {
                    assert_eq!(normalize(&once).as_deref(), Ok(once.as_str()), "{p}");
                    checked += 1;
                }
            }
            frontier = next;
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn classification_is_exact() {
        assert_eq!(Route::classify("/health"), Route::Health);
        assert!(!Route::classify("/healthz").is_public());
        assert!(!Route::classify("/health/x").is_public());
        assert_eq!(Route::classify("/apix"), Route::NotFound);
        assert_eq!(Route::classify("/api/x"), Route::Api);
        assert_eq!(Route::classify("/api"), Route::Api);
        assert!(Route::classify("/dashboard").is_public());
        assert!(!Route::classify("/admin/overview").is_public());
        assert!(!Route::classify("/admin/dashboard/cache").is_public());
        assert_eq!(Route::classify("/dashboard/x"), Route::NotFound);
    }
}
