//! Policy loading errors.

use std::fmt;
use std::path::PathBuf;

/// Why a policy could not be loaded. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not a valid policy.
    #[error("invalid policy: {location}field `{field}`: {message}")]
    Invalid {
        /// Dotted path of the offending field, e.g. `rules[1].hot.max_ttl`.
        field: String,
        /// Where in the file, when known.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than the reloader accepts.
    #[error("policy file {path} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// A position in the policy text (1-based), if known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Location {
    /// Line, 1-based.
    pub line: Option<usize>,
    /// Column, 1-based.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l} column {c}: "),
            (Some(l), None) => write!(f, "line {l}: "),
            _ => Ok(()),
        }
    }
}

impl PolicyError {
    pub(crate) fn from_yaml(e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> Self {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner
            .location()
            .map(|l| Location {
                line: Some(l.line()),
                column: Some(l.column()),
            })
            .unwrap_or_default();
        // serde_yaml_ng appends " at line L column C" to its messages; the
        // location is reported separately, so strip it.
        let mut message = inner.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // ... and prefixes its own (shorter) path to custom messages.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.contains(' ')
            && field.starts_with(prefix)
        {
            message = rest.to_owned();
        }
        Self::Invalid {
            field: if field == "." {
                "(top level)".into()
            } else {
                field
            },
            location,
            message,
        }
    }

    pub(crate) fn invalid(field: &str, message: String) -> Self {
        Self::Invalid {
            field: field.into(),
            location: Location::default(),
            message,
        }
    }

    /// The line of the error, when it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { location, .. } => location.line,
            _ => None,
        }
    }

    /// The field path of the error, when it has one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
