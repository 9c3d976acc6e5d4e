//! Byte-level primitives shared by the scanner, the decoder and the command
//! parser: line ends, length headers and integers, parsed by hand (no UTF-8
//! checks, no allocation).
//!
//! Every function takes the whole buffer and an offset and returns
//! `Ok(None)` when more bytes are needed, so callers can resume later.

use crate::Error;

/// At most this many digits in a length header: 10^19 - 1 still fits in a
/// `u64`, and no limit can be that large, so a longer header is invalid.
const MAX_LEN_DIGITS: usize = 19;

/// A decoded length or count header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// `-1`: RESP2 null bulk string or null array.
    Null,
    /// A non-negative length or count.
    Len(u64),
}

/// Parses a length header whose digits start at `start` (just after the type
/// byte). Returns the header and the offset just past its `\r\n`.
///
/// Rejects anything that is not `-1` or a run of decimal digits, without waiting
/// for a line end once the header is known to be invalid.
#[inline]
pub(crate) fn header(buf: &[u8], start: usize) -> Result<Option<(Header, usize)>, Error> {
    // Fast path: one or two digits then CRLF, as most lengths and counts are.
    if let Some(&[a, b, c]) = buf.get(start..start.wrapping_add(3))
        && a.is_ascii_digit()
    {
        let a = u64::from(a - b'0');
        if b == b'\r' && c == b'\n' {
            return Ok(Some((Header::Len(a), start + 3)));
        }
        if b.is_ascii_digit() && c == b'\r' && buf.get(start + 3) == Some(&b'\n') {
            return Ok(Some((Header::Len(a * 10 + u64::from(b - b'0')), start + 4)));
        }
    }
    header_slow(buf, start)
}

/// The general case of [`header`].
fn header_slow(buf: &[u8], start: usize) -> Result<Option<(Header, usize)>, Error> {
    let mut i = start;
    let neg = match buf.get(i) {
        None => return Ok(None),
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'?') => return Err(Error::StreamedUnsupported),
        Some(_) => false,
    };
    let digits = i;
    let mut value: u64 = 0;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' => {
                if i - digits == MAX_LEN_DIGITS {
                    return Err(Error::InvalidLength);
                }
                value = value * 10 + u64::from(b - b'0');
            }
            b'\r' => break,
            _ => return Err(Error::InvalidLength),
        }
        i += 1;
    }
    if i == digits {
        return Err(Error::InvalidLength);
    }
    match buf.get(i + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::MissingCrlf),
    }
    if neg {
        if value == 1 && i == digits + 1 {
            Ok(Some((Header::Null, i + 2)))
        } else {
            Err(Error::InvalidLength)
        }
    } else {
        Ok(Some((Header::Len(value), i + 2)))
    }
}

/// Finds the `\r\n` ending a simple line whose content starts at `start`,
/// searching only from `from` (bytes in `start..from` are known to hold no
/// `\r`). Returns the offset of the `\r`.
///
/// On `Ok(None)`, `*searched` is advanced to where the next call may resume.
#[inline]
pub(crate) fn line_end(
    buf: &[u8],
    start: usize,
    from: usize,
    max: usize,
    searched: &mut usize,
) -> Result<Option<usize>, Error> {
    let from = from.max(start);
    let Some(rest) = buf.get(from..) else {
        return Ok(None);
    };
    match memchr::memchr(b'\r', rest) {
        Some(off) => {
            let cr = from + off;
            if cr - start > max {
                return Err(Error::LineTooLong { max });
            }
            match buf.get(cr + 1) {
                None => {
                    *searched = cr;
                    Ok(None)
                }
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(Error::MissingCrlf),
            }
        }
        None => {
            if buf.len() - start > max {
                return Err(Error::LineTooLong { max });
            }
            *searched = buf.len();
            Ok(None)
        }
    }
}

/// Parses a signed 64-bit decimal (`[+-]?[0-9]+`), as sent in `:` frames.
pub(crate) fn integer(s: &[u8]) -> Result<i64, Error> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(Error::InvalidInteger);
    }
    // Accumulate negatively so that i64::MIN parses without overflow.
    let mut value: i64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => i64::from(b - b'0'),
            _ => return Err(Error::InvalidInteger),
        };
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(d))
            .ok_or(Error::InvalidInteger)?;
    }
    if neg {
        Ok(value)
    } else {
        value.checked_neg().ok_or(Error::InvalidInteger)
    }
}

/// Parses a RESP3 double: `inf`, `-inf`, `nan` or a decimal with optional
/// exponent.
pub(crate) fn double(s: &[u8]) -> Result<f64, Error> {
    let valid = !s.is_empty()
        && s.iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E' | b'a'..=b'z' | b'A'..=b'Z'));
    if !valid {
        return Err(Error::InvalidDouble);
    }
    let text = std::str::from_utf8(s).map_err(|_| Error::InvalidDouble)?;
    text.parse::<f64>().map_err(|_| Error::InvalidDouble)
}

/// Checks a RESP3 big number: `[+-]?[0-9]+`.
pub(crate) fn big_number(s: &[u8]) -> Result<(), Error> {
    let digits = match s.split_first() {
        Some((b'-' | b'+', rest)) => rest,
        _ => s,
    };
    if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        Ok(())
    } else {
        Err(Error::InvalidBigNumber)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(header(b"$5\r\n", 1), Ok(Some((Header::Len(5), 4))));
        assert_eq!(header(b"*-1\r\n", 1), Ok(Some((Header::Null, 5))));
        assert_eq!(header(b"*0\r\n", 1), Ok(Some((Header::Len(0), 4))));
        assert_eq!(header(b"$12", 1), Ok(None));
        assert_eq!(header(b"$12\r", 1), Ok(None));
        assert_eq!(header(b"$", 1), Ok(None));
        assert_eq!(header(b"$12\rx", 1), Err(Error::MissingCrlf));
        assert_eq!(header(b"$\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$-2\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$-01\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$-\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$1a\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$+1\r\n", 1), Err(Error::InvalidLength));
        assert_eq!(header(b"$?\r\n", 1), Err(Error::StreamedUnsupported));
        assert_eq!(
            header(b"$9999999999999999999\r\n", 1),
            Ok(Some((Header::Len(9_999_999_999_999_999_999), 22)))
        );
        // Twenty digits are rejected before any line end arrives.
        assert_eq!(
            header(b"$11111111111111111111", 1),
            Err(Error::InvalidLength)
        );
    }

    #[test]
    fn integers() {
        assert_eq!(integer(b"0"), Ok(0));
        assert_eq!(integer(b"+12"), Ok(12));
        assert_eq!(integer(b"-12"), Ok(-12));
        assert_eq!(integer(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(integer(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(integer(b"9223372036854775808"), Err(Error::InvalidInteger));
        assert_eq!(integer(b""), Err(Error::InvalidInteger));
        assert_eq!(integer(b"-"), Err(Error::InvalidInteger));
        assert_eq!(integer(b"1.5"), Err(Error::InvalidInteger));
    }

    #[test]
    fn doubles_and_big_numbers() {
        assert_eq!(double(b"1.5"), Ok(1.5));
        assert_eq!(double(b"-1e3"), Ok(-1000.0));
        assert_eq!(double(b"inf"), Ok(f64::INFINITY));
        assert_eq!(double(b"-inf"), Ok(f64::NEG_INFINITY));
        assert!(double(b"nan").unwrap().is_nan());
        assert_eq!(double(b""), Err(Error::InvalidDouble));
        assert_eq!(double(b"1 5"), Err(Error::InvalidDouble));
        assert_eq!(double(b"abc"), Err(Error::InvalidDouble));
        assert_eq!(big_number(b"-123456789012345678901234567890"), Ok(()));
        assert_eq!(big_number(b"12a"), Err(Error::InvalidBigNumber));
        assert_eq!(big_number(b"-"), Err(Error::InvalidBigNumber));
    }

    #[test]
    fn line_ends_resume() {
        let mut searched = 0;
        assert_eq!(line_end(b"+hello", 1, 0, 100, &mut searched), Ok(None));
        assert_eq!(searched, 6);
        assert_eq!(
            line_end(b"+hello\r", 1, searched, 100, &mut searched),
            Ok(None)
        );
        assert_eq!(searched, 6);
        assert_eq!(
            line_end(b"+hello\r\n", 1, searched, 100, &mut searched),
            Ok(Some(6))
        );
        assert_eq!(
            line_end(b"+hello\rx", 1, 0, 100, &mut searched),
            Err(Error::MissingCrlf)
        );
        assert_eq!(
            line_end(b"+hello", 1, 0, 3, &mut searched),
            Err(Error::LineTooLong { max: 3 })
        );
    }
}
