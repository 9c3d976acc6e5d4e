//! The upstream address and credentials.

use std::fmt;

use crate::error::ConfigError;

/// Credentials sent to Redis (`AUTH [username] password`) or expected from clients.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name; `None` means the `default` user (`AUTH password`).
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the proxy sends traffic: a parsed `redis://[[user]:password@]host:port[/db]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// `host:port` as written (resolved on every connect, so DNS changes are seen).
    pub host_port: String,
    /// Credentials the proxy authenticates its upstream connections with.
    pub credentials: Option<Credentials>,
    /// Logical database selected on every upstream connection (default 0).
    pub db: u32,
}

impl UpstreamAddr {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (port defaults to 6379).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::InvalidUpstream {
            url: redact(url),
            reason: why.to_owned(),
        };
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("only redis:// URLs are supported (no TLS yet)"))?;
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (a, d.parse().map_err(|_| bad("database must be a number"))?),
            None => (rest, 0),
        };
        let (creds, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or(("", userinfo));
                let credentials = Credentials {
                    username: (!user.is_empty()).then(|| user.to_owned()),
                    password: pass.to_owned(),
                };
                (Some(credentials), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let host_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else if host.contains(':') && !host.ends_with(']') {
            return Err(bad("port must be a number 0-65535"));
        } else {
            format!("{host}:6379")
        };
        Ok(Self {
            host_port,
            credentials: creds,
            db,
        })
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Which credentials clients must present to the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients authenticate with the same credentials the proxy uses upstream
    /// (no upstream password means no client password). The default: putting the
    /// proxy in front of a protected Redis does not open it up.
    #[default]
    SameAsUpstream,
    /// No client authentication; `AUTH` is answered like a Redis without a password.
    Open,
    /// Clients must present these credentials.
    Required(Credentials),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstream_urls_parse() {
        let a = UpstreamAddr::parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(
            (a.host_port.as_str(), a.db, a.credentials),
            ("127.0.0.1:6379", 0, None)
        );
        let a = UpstreamAddr::parse("redis://:pw@localhost/2").unwrap();
        assert_eq!(a.host_port, "localhost:6379");
        assert_eq!(a.db, 2);
        let c = a.credentials.unwrap();
        assert_eq!((c.username, c.password.as_str()), (None, "pw"));
        let a = UpstreamAddr::parse("redis://app:p:w@h:7000/").unwrap();
        let c = a.credentials.unwrap();
        assert_eq!(
            (c.username.as_deref(), c.password.as_str()),
            (Some("app"), "p:w")
        );
        assert_eq!(a.host_port, "h:7000");
    }

    #[test]
    fn bad_urls_name_the_problem_and_hide_the_password() {
        let e = UpstreamAddr::parse("rediss://:secret@h:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only redis://") && !e.contains("secret"), "{e}");
        let e = UpstreamAddr::parse("redis://:secret@h:1/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("database") && !e.contains("secret"), "{e}");
        assert!(UpstreamAddr::parse("redis://h:99999").is_err());
        assert!(UpstreamAddr::parse("redis://").is_err());
    }
}
