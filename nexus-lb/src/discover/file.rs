//! The seed's `services.json`, parsed strictly and watched by polling.
//!
//! # Why polling
//!
//! The file is tiny and a change must land within a second. Reading it every
//! `interval` (default 250 ms) and comparing the bytes with the last version
//! catches every kind of edit — in place, write-to-temp-and-rename (which
//! silently detaches an inotify watch on the file itself), edits within the
//! same mtime tick, network and overlay file systems where notifications do
//! not arrive — with no extra dependency and no watch-descriptor limits. The
//! cost is four reads of a few hundred bytes per second. A reader that
//! catches an editor mid-write sees broken JSON, keeps the previous set, and
//! picks the complete file up on the next tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::Stream;
use serde::Deserialize;

use crate::EndpointSpec;
use crate::error::ConfigError;

/// The largest services file accepted (1 MiB; far above any real pool).
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// `services.json`: `{"services":[{"url":"http://127.0.0.1:3001","weight":2}]}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    /// The upstream endpoints.
    pub services: Vec<ServiceEntry>,
}

/// One entry of [`ServicesFile`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// `http://host:port`.
    pub url: String,
    /// Relative share of traffic, `1..=1000` (default 1).
    #[serde(default = "one")]
    pub weight: u64,
}

fn one() -> u64 {
    1
}

/// Parses and validates a services file: JSON syntax, known fields only,
/// valid URLs, weights in range, no duplicates.
pub fn parse_services(text: &[u8]) -> Result<Vec<EndpointSpec>, ConfigError> {
    let file: ServicesFile =
        serde_json::from_slice(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let mut specs = Vec::with_capacity(file.services.len());
    for entry in &file.services {
        let weight = u32::try_from(entry.weight).map_err(|_| ConfigError::InvalidWeight {
            url: entry.url.clone(),
            weight: entry.weight,
            max: crate::MAX_WEIGHT,
        })?;
        let spec = EndpointSpec::new(&entry.url, weight)?;
        if specs.iter().any(|s: &EndpointSpec| s.url() == spec.url()) {
            return Err(ConfigError::DuplicateEndpoint {
                url: spec.url().to_owned(),
            });
        }
        specs.push(spec);
    }
    if specs.len() > crate::MAX_ENDPOINTS {
        return Err(ConfigError::TooManyEndpoints {
            count: specs.len(),
            max: crate::MAX_ENDPOINTS,
        });
    }
    Ok(specs)
}

async fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_LEN {
        return Err(ConfigError::FileTooLarge {
            len: meta.len(),
            max: MAX_FILE_LEN,
        }
        .to_string());
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    // The file may have grown between the two calls.
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(ConfigError::FileTooLarge {
            len: bytes.len() as u64,
            max: MAX_FILE_LEN,
        }
        .to_string());
    }
    Ok(bytes)
}

struct Watch {
    path: PathBuf,
    interval: tokio::time::Interval,
    last: Option<Vec<u8>>,
}

/// Watches `path` and yields its endpoint set whenever its content changes
/// to a valid one (checking every `interval`; the first valid read is
/// yielded at once).
///
/// A file that cannot be read or is invalid is logged with `tracing::warn!`
/// (once per distinct content) and skipped: the consumer keeps the previous
/// set. An empty `services` list is valid (it empties the pool) but warned
/// about. The stream never ends; drop it (or the discovery task) to stop.
pub fn watch_services_file(
    path: impl Into<PathBuf>,
    interval: Duration,
) -> impl Stream<Item = Vec<EndpointSpec>> + Send + 'static {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Watch {
        path: path.into(),
        interval: ticker,
        last: None,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            st.interval.tick().await;
            let bytes = match read_bounded(&st.path).await {
                Ok(b) => b,
                Err(error) => {
                    // Remember the failure as empty content so that it is
                    // logged once, not every tick.
                    if st.last.as_deref() != Some(b"\0unreadable") {
                        tracing::warn!(path = %st.path.display(), %error, "cannot read services file; keeping the previous endpoints");
                        st.last = Some(b"\0unreadable".to_vec());
                    }
                    continue;
                }
            };
            if st.last.as_deref() == Some(&bytes[..]) {
                continue;
            }
            let parsed = parse_services(&bytes);
            st.last = Some(bytes);
            match parsed {
                Ok(specs) => {
                    if specs.is_empty() {
                        tracing::warn!(path = %st.path.display(), "services file lists no endpoints; every request will fail until one is added");
                    }
                    return Some((specs, st));
                }
                Err(error) => {
                    tracing::warn!(path = %st.path.display(), %error, "ignoring invalid services file; keeping the previous endpoints");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_seed_file() {
        let specs = parse_services(
            br#"{"services":[{"url":"http://127.0.0.1:3001","weight":2},{"url":"http://127.0.0.1:3002","weight":1}]}"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].url(), "http://127.0.0.1:3001");
        assert_eq!(specs[0].weight(), 2);
    }

    #[test]
    fn rejects_invalid_files_with_the_reason() {
        type Check = fn(&ConfigError) -> bool;
        let cases: [(&[u8], Check); 6] = [
            (b"{\"services\":[", |e| matches!(e, ConfigError::Parse(_))),
            (br#"{"services":[{"url":"nope","weight":1}]}"#, |e| {
                matches!(e, ConfigError::InvalidUrl { .. })
            }),
            (br#"{"services":[{"url":"http://a:1","weight":0}]}"#, |e| {
                matches!(e, ConfigError::InvalidWeight { .. })
            }),
            (
                br#"{"services":[{"url":"http://a:1","weight":99999999999}]}"#,
                |e| matches!(e, ConfigError::InvalidWeight { .. }),
            ),
            (
                br#"{"services":[{"url":"http://a:1"},{"url":"http://a:1/"}]}"#,
                |e| matches!(e, ConfigError::DuplicateEndpoint { .. }),
            ),
            (br#"{"services":[{"url":"http://a:1","wieght":2}]}"#, |e| {
                matches!(e, ConfigError::Parse(_))
            }),
        ];
        for (text, check) in cases {
            let err = parse_services(text).unwrap_err();
            assert!(check(&err), "{}: {err}", String::from_utf8_lossy(text));
        }
    }
}
