//! Validated `dashboard:` section.

use http::Uri;

use super::ConfigError;
use super::raw::DashboardConfig;

/// Validated `dashboard:`: where the cache proxy's and the consumer's admin
/// servers answer (`None`: that dashboard panel says "not configured").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardSettings {
    /// The cache proxy's admin server.
    pub cache_admin: Option<AdminUrl>,
    /// The consumer's admin server.
    pub consumer_admin: Option<AdminUrl>,
}

/// An admin server's base URL, `http://host[:port][/prefix]`, and the
/// `<base>/stats` URI fetched from it.
///
/// Plain `http` only (the gateway has no TLS client; admin servers listen on
/// loopback or a private network), no credentials, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    base: String,
    stats: Uri,
}

impl AdminUrl {
    /// Validates `text`; errors name `field`.
    pub fn parse(field: &str, text: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::invalid(field, format!("{text:?}: {reason}"));
        let uri: Uri = text.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported (no TLS client): give the admin server's plain http address",
                ));
            }
            _ => return Err(bad("must start with http://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?.as_str();
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if text.contains('?') || text.contains('#') {
            return Err(bad("must not have a query or fragment"));
        }
        let path = uri.path().trim_end_matches('/');
        let base = format!("http://{authority}{path}");
        let stats = format!("{base}/stats")
            .parse()
            .map_err(|e| bad(&format!("not a URL ({e})")))?;
        Ok(Self { base, stats })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `<base>/stats`.
    pub fn stats_uri(&self) -> &Uri {
        &self.stats
    }
}

impl DashboardConfig {
    pub(crate) fn validate(&self) -> Result<DashboardSettings, ConfigError> {
        let parse = |field: &str, v: &Option<String>| {
            v.as_deref().map(|t| AdminUrl::parse(field, t)).transpose()
        };
        Ok(DashboardSettings {
            cache_admin: parse("dashboard.cache_admin", &self.cache_admin)?,
            consumer_admin: parse("dashboard.consumer_admin", &self.consumer_admin)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field(r: Result<AdminUrl, ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn accepts_http_bases() {
        let u = AdminUrl::parse("f", "http://127.0.0.1:9380").unwrap();
        assert_eq!(u.base(), "http://127.0.0.1:9380");
        assert_eq!(u.stats_uri().to_string(), "http://127.0.0.1:9380/stats");
        let u = AdminUrl::parse("f", "http://admin.local/cache/").unwrap();
        assert_eq!(u.stats_uri().to_string(), "http://admin.local/cache/stats");
    }

    #[test]
    fn refuses_what_it_cannot_fetch() {
        for (text, why) in [
            ("https://127.0.0.1:9380", "https is not supported"),
            ("127.0.0.1:9380", "must start with http://"),
            ("ftp://x", "must start with http://"),
            ("http://u:p@127.0.0.1:9380", "credentials"),
            ("http://127.0.0.1:9380/?x=1", "query"),
            ("http://", "not a URL"),
            ("not a url", "not a URL"),
        ] {
            let e = field(AdminUrl::parse("dashboard.cache_admin", text));
            assert!(e.starts_with("dashboard.cache_admin: "), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
