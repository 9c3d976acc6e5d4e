//! Scan-only framing: finds where the first complete frame ends without
//! building it.

use crate::lines::{self, Header};
use crate::{Error, Limits};

/// Resumable scan-only framer.
///
/// [`Scanner::scan`] reports the byte length of the first complete frame at
/// the start of a buffer (a RESP2/RESP3 frame, or an inline command line when
/// inline commands are accepted) without building it, so a proxy can forward
/// the raw bytes untouched.
///
/// Progress is kept between calls: the offset of the next unread element, a
/// small stack with the number of elements still expected by each open
/// aggregate, and how far an unterminated line has already been searched.
/// When a large frame arrives in many chunks, each call continues where the
/// previous one stopped, so the frame is scanned once overall. Bulk payloads
/// are skipped by their announced length and never read.
///
/// Contract: between calls the caller passes the same buffer, possibly grown at
/// the end. After `Ok(Some(n))` the caller consumes `n` bytes and the scanner
/// is ready for the next frame. After an error, or if the caller discards the
/// buffer, call [`Scanner::reset`] (an error resets the scanner itself).
///
/// The scan path never allocates: the stack is allocated once, at
/// construction, with room for the nesting-depth limit.
///
/// ```
/// use nexus_resp::{Limits, Scanner};
///
/// let mut scanner = Scanner::new(Limits::default());
/// let stream = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
/// // Feed the first frame in two chunks.
/// assert_eq!(scanner.scan(&stream[..9]).unwrap(), None);
/// assert_eq!(scanner.scan(&stream[..]).unwrap(), Some(20));
/// // The inline command that follows.
/// assert_eq!(scanner.scan(&stream[20..]).unwrap(), Some(6));
/// ```
#[derive(Debug, Clone)]
pub struct Scanner {
    limits: Limits,
    inline: bool,
    /// Offset of the first byte of the next element not yet scanned.
    pos: usize,
    /// For the element at `pos`: the line end search may resume here.
    searched: usize,
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
}

impl Scanner {
    /// Creates a scanner that accepts RESP2/RESP3 frames and, at the top level,
    /// inline commands (any line whose first byte is not a RESP type byte).
    pub fn new(limits: Limits) -> Self {
        Scanner {
            limits,
            inline: true,
            pos: 0,
            searched: 0,
            stack: Vec::with_capacity(limits.depth()),
        }
    }

    /// Sets whether inline commands are accepted (default: yes). Turn this off
    /// when scanning replies: a byte that is not a RESP type byte is then
    /// [`Error::InvalidTypeByte`].
    #[must_use]
    pub fn inline(mut self, accept: bool) -> Self {
        self.inline = accept;
        self
    }

    /// The limits this scanner enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a frame has been partly scanned (progress is being kept).
    pub fn is_partial(&self) -> bool {
        self.pos != 0 || self.searched != 0
    }

    /// Forgets any partial progress.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.searched = 0;
        self.stack.clear();
    }

    /// Returns the length of the first complete frame at the start of `buf`,
    /// `Ok(None)` if more bytes are needed, or an error if the input is not
    /// valid RESP or breaks a limit.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        match self.scan_inner(buf) {
            Ok(Some(n)) => {
                self.reset();
                Ok(Some(n))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    #[inline]
    fn scan_inner(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        loop {
            let pos = self.pos;
            let Some(&ty) = buf.get(pos) else {
                return Ok(None);
            };
            match ty {
                b'$' | b'!' | b'=' => {
                    let Some((header, body)) = lines::header(buf, pos + 1)? else {
                        return Ok(None);
                    };
                    let len = match header {
                        Header::Null if ty == b'$' => 0,
                        Header::Null => return Err(Error::InvalidLength),
                        Header::Len(len) => {
                            let len = self.bulk_len(len)?;
                            if ty == b'=' && len < 4 {
                                return Err(Error::InvalidVerbatim);
                            }
                            // len <= max_bulk_len <= usize::MAX and the
                            // buffer offset is small, so saturate rather than
                            // overflow on absurd limits.
                            let end = body.saturating_add(len);
                            match buf.get(end..end.saturating_add(2)) {
                                None => return Ok(None),
                                Some(b"\r\n") => {}
                                Some(_) => return Err(Error::MissingCrlf),
                            }
                            end + 2 - body
                        }
                    };
                    self.pos = body + len;
                }
                b'*' | b'%' | b'~' | b'>' | b'|' => {
                    let Some((header, body)) = lines::header(buf, pos + 1)? else {
                        return Ok(None);
                    };
                    self.pos = body;
                    let count = match header {
                        Header::Null if ty == b'*' => 0,
                        Header::Null => return Err(Error::InvalidLength),
                        Header::Len(n) => self.aggregate_len(ty, n)?,
                    };
                    if count > 0 {
                        if self.stack.len() >= self.limits.depth() {
                            return Err(Error::TooDeep {
                                max: self.limits.depth(),
                            });
                        }
                        self.stack.push(count);
                        continue;
                    }
                }
                b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {
                    let Some(cr) = lines::line_end(
                        buf,
                        pos + 1,
                        self.searched,
                        self.limits.max_inline_len,
                        &mut self.searched,
                    )?
                    else {
                        return Ok(None);
                    };
                    self.pos = cr + 2;
                    self.searched = 0;
                }
                _ if self.inline && self.stack.is_empty() => return self.inline_line(buf),
                _ => return Err(Error::InvalidTypeByte(ty)),
            }
            // One element is complete: account for it in the open aggregates.
            loop {
                match self.stack.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(remaining) => {
                        *remaining -= 1;
                        if *remaining != 0 {
                            break;
                        }
                        self.stack.pop();
                    }
                }
            }
        }
    }

    fn bulk_len(&self, len: u64) -> Result<usize, Error> {
        let max = self.limits.max_bulk_len;
        match usize::try_from(len) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Error::BulkTooLong { len, max }),
        }
    }

    /// Number of child frames an aggregate header announces: pairs count twice,
    /// and an attribute also owns the frame it is attached to.
    fn aggregate_len(&self, ty: u8, n: u64) -> Result<u64, Error> {
        self.limits.check_elements(n)?;
        Ok(match ty {
            b'%' => n.saturating_mul(2),
            b'|' => n.saturating_mul(2).saturating_add(1),
            _ => n,
        })
    }

    /// An inline command: everything up to `\n` (Redis accepts a bare `\n`).
    fn inline_line(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let max = self.limits.max_inline_len;
        let from = self.searched;
        match buf.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)) {
            Some(off) => {
                let nl = from + off;
                let content = if nl > 0 && buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                if content > max {
                    return Err(Error::LineTooLong { max });
                }
                Ok(Some(nl + 1))
            }
            None => {
                // A trailing `\r` may still be followed by `\n`.
                let content = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                if content > max {
                    return Err(Error::LineTooLong { max });
                }
                self.searched = buf.len();
                Ok(None)
            }
        }
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new(Limits::default())
    }
}
