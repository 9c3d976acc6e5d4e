//! The error type shared by the scanner, decoder and command parser.

/// Why input was rejected.
///
/// Every error is final for the connection it came from: the input is not
/// valid RESP (or breaks a [`Limits`](crate::Limits) bound), so there is no
/// frame boundary to resynchronise on.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A frame (or an element inside an aggregate) started with a byte that is
    /// not a RESP type byte. Inline commands are only recognised at the top
    /// level and only when enabled.
    #[error("invalid RESP type byte 0x{0:02x}")]
    InvalidTypeByte(u8),
    /// A length or count header was empty, not a decimal number, negative
    /// (other than `-1` where RESP2 allows a null), or too long to be a number.
    #[error("invalid length or count header")]
    InvalidLength,
    /// A `\r` was not followed by `\n`, or a bulk payload was not followed by `\r\n`.
    #[error("missing CRLF line terminator")]
    MissingCrlf,
    /// An integer frame (`:`) is not a valid signed 64-bit decimal.
    #[error("invalid integer")]
    InvalidInteger,
    /// A double frame (`,`) is not a valid floating point number.
    #[error("invalid double")]
    InvalidDouble,
    /// A boolean frame (`#`) is neither `t` nor `f`.
    #[error("invalid boolean")]
    InvalidBoolean,
    /// A big number frame (`(`) is not an optionally signed run of digits.
    #[error("invalid big number")]
    InvalidBigNumber,
    /// A null frame (`_`) has content before its line end.
    #[error("invalid null")]
    InvalidNull,
    /// A verbatim string (`=`) is shorter than 4 bytes or lacks the `xxx:` format prefix.
    #[error("invalid verbatim string")]
    InvalidVerbatim,
    /// RESP3 streamed strings and aggregates (`$?`, `*?`, ...) are not supported.
    /// Redis never sends them.
    #[error("streamed RESP3 types are not supported")]
    StreamedUnsupported,
    /// A bulk payload length exceeds [`Limits::max_bulk_len`](crate::Limits::max_bulk_len).
    #[error("bulk length {len} exceeds the limit of {max}")]
    BulkTooLong {
        /// Length announced by the peer.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// An aggregate announces more elements than [`Limits::max_elements`](crate::Limits::max_elements).
    #[error("aggregate of {len} elements exceeds the limit of {max}")]
    TooManyElements {
        /// Count announced by the peer.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// Aggregates nest deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("nesting deeper than the limit of {max}")]
    TooDeep {
        /// Enforced limit.
        max: usize,
    },
    /// A line (inline command or simple line) is longer than
    /// [`Limits::max_inline_len`](crate::Limits::max_inline_len).
    #[error("line longer than the limit of {max} bytes")]
    LineTooLong {
        /// Configured limit.
        max: usize,
    },
    /// An inline command has an unterminated quote, a closing quote not
    /// followed by a space, or a backslash escape inside quotes (unsupported).
    #[error("invalid inline command: {0}")]
    InvalidInline(&'static str),
    /// The frame given to [`Command::parse`](crate::Command::parse) is not a
    /// non-empty array of bulk strings or a non-empty inline command.
    #[error("not a command: {0}")]
    NotACommand(&'static str),
    /// The frame given to a one-shot parser is incomplete or has trailing bytes.
    #[error("expected exactly one complete frame")]
    NotOneFrame,
}
