//! Counting the replies in a pinned connection's reply stream without
//! buffering them, once for both of its users ([`ReplyStream`]): the near
//! cache's write marks ([`PinnedWrites`](crate::near::pinned::PinnedWrites))
//! and unblocking an ending session (`client::unblock::track`).
//!
//! The reply side streams Redis's bytes to the client as they arrive, so
//! a frame is usually split across reads. The [`Scanner`](crate::resp::Scanner)
//! needs a frame's bytes from its start; keeping them would hold a copy of
//! every large reply (a 100 MiB `GET` on a pinned connection). This counter
//! keeps only its position instead: the elements still expected by each
//! open aggregate, the bytes of a bulk payload still to skip, and the line
//! being read (one header or simple value, at most [`MAX_LINE`] bytes).

/// Longest line (a header or a simple value such as `+...` or `-...`)
/// followed across reads; a longer one stops counting.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Deepest nesting followed (Redis nests a few levels).
const MAX_DEPTH: usize = 128;

/// Resumable reply counter; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
    /// Bytes of a bulk payload (and its CRLF) still to skip.
    skip: u64,
    /// The start of a line not yet ended.
    line: Vec<u8>,
    /// The type byte of the top-level frame being read.
    top: u8,
}

/// The stream is not RESP (or exceeds the bounds above): counting stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unframed;

impl Counter {
    /// Feeds `bytes`, calling `reply` with the type byte of each complete
    /// top-level frame, in order.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        mut reply: impl FnMut(u8),
    ) -> Result<(), Unframed> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.done(&mut reply);
                }
                continue;
            }
            let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                if self.line.len() + bytes.len() > MAX_LINE {
                    return Err(Unframed);
                }
                self.line.extend_from_slice(bytes);
                return Ok(());
            };
            let (head, rest) = bytes.split_at(end + 1);
            bytes = rest;
            if self.line.is_empty() {
                self.line_done(head, &mut reply)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let r = self.line_done(&line, &mut reply);
                line.clear();
                self.line = line;
                r?;
            }
        }
        Ok(())
    }

    /// One whole line, CRLF included.
    fn line_done(&mut self, line: &[u8], reply: &mut impl FnMut(u8)) -> Result<(), Unframed> {
        let body = line.strip_suffix(b"\r\n").ok_or(Unframed)?;
        let (&ty, rest) = body.split_first().ok_or(Unframed)?;
        if self.stack.is_empty() {
            self.top = ty;
        }
        let len = || -> Result<Option<u64>, Unframed> {
            if rest == b"-1" {
                return Ok(None);
            }
            let s = std::str::from_utf8(rest).map_err(|_| Unframed)?;
            s.parse::<u64>().map(Some).map_err(|_| Unframed)
        };
        match ty {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => self.done(reply),
            b'$' | b'!' | b'=' => match len()? {
                None => self.done(reply),
                Some(n) => self.skip = n.checked_add(2).ok_or(Unframed)?,
            },
            b'*' | b'~' | b'>' | b'%' => {
                let per = if ty == b'%' { 2 } else { 1 };
                match len()? {
                    None | Some(0) => self.done(reply),
                    Some(n) => {
                        if self.stack.len() >= MAX_DEPTH {
                            return Err(Unframed);
                        }
                        self.stack.push(n.checked_mul(per).ok_or(Unframed)?);
                    }
                }
            }
            // Attributes (`|`, unused by Redis) and anything else.
            _ => return Err(Unframed),
        }
        Ok(())
    }

    /// One element complete: closes the aggregates it completes, and
    /// reports a complete top-level frame.
    fn done(&mut self, reply: &mut impl FnMut(u8)) {
        while let Some(left) = self.stack.last_mut() {
            *left -= 1;
            if *left > 0 {
                return;
            }
            self.stack.pop();
        }
        reply(self.top);
    }
}

/// A pinned session's reply stream, counted once: each chunk Redis sends
/// is fed once, and its replies are handed to every tracker that matches
/// them to commands (each keeps its own count of replies sent and
/// answered).
#[derive(Debug, Default)]
pub(crate) struct ReplyStream {
    counter: Counter,
    /// The type bytes of the replies the last chunk completed (reused; at
    /// most one per 3 bytes of the largest chunk).
    types: Vec<u8>,
    /// The stream could not be framed: nothing is counted any more.
    broken: bool,
}

impl ReplyStream {
    /// Feeds the next chunk; returns the type byte of each reply it
    /// completes, in order (RESP3 pushes are not replies and are left
    /// out), or [`Unframed`] from the first chunk that cannot be framed on.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<&[u8], Unframed> {
        if self.broken {
            return Err(Unframed);
        }
        self.types.clear();
        let types = &mut self.types;
        let fed = self.counter.feed(bytes, |first| {
            if first != b'>' {
                types.push(first);
            }
        });
        if fed.is_err() {
            self.broken = true;
            self.counter = Counter::default();
            self.types = Vec::new();
            return Err(Unframed);
        }
        Ok(&self.types)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resp::{Limits, Scanner};

    /// Replies of every shape, RESP2 and RESP3, pushes included.
    const STREAM: &[u8] = b"+OK\r\n-ERR x\r\n:12\r\n$5\r\na\r\nb\n\r\n$-1\r\n$0\r\n\r\n\
        *-1\r\n*0\r\n*2\r\n$1\r\nk\r\n*2\r\n:1\r\n$2\r\n\r\n\r\n\
        %1\r\n+a\r\n*1\r\n_\r\n~2\r\n#t\r\n,1.5\r\n(123\r\n\
        >2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n=8\r\ntxt:abcd\r\n!3\r\nerr\r\n*1\r\n*1\r\n*0\r\n";

    /// The type bytes of the frames, by the crate's scanner.
    fn scanned(stream: &[u8]) -> Vec<u8> {
        let mut scanner = Scanner::new(Limits::default()).inline(false);
        let mut at = 0;
        let mut types = Vec::new();
        while at < stream.len() {
            let n = scanner.scan(&stream[at..]).unwrap().unwrap();
            types.push(stream[at]);
            at += n;
        }
        types
    }

    #[test]
    fn counts_like_the_scanner_however_the_stream_is_split() {
        let expected = scanned(STREAM);
        assert_eq!(expected.len(), 16);
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let mut c = Counter::default();
                let mut got = Vec::new();
                for part in [&STREAM[..a], &STREAM[a..b], &STREAM[b..]] {
                    c.feed(part, |t| got.push(t)).unwrap();
                }
                assert_eq!(got, expected, "split at {a}, {b}");
            }
        }
        let mut c = Counter::default();
        let mut got = Vec::new();
        for byte in STREAM.chunks(1) {
            c.feed(byte, |t| got.push(t)).unwrap();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_large_payload_is_skipped_not_kept() {
        let mut c = Counter::default();
        let mut n = 0;
        c.feed(b"$1000000\r\n", |_| n += 1).unwrap();
        for _ in 0..1000 {
            c.feed(&[b'x'; 1000], |_| n += 1).unwrap();
        }
        assert_eq!((n, c.line.capacity()), (0, 0));
        c.feed(b"\r\n:1\r\n", |_| n += 1).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_stream_reports_replies_without_pushes_and_stays_broken() {
        let mut s = ReplyStream::default();
        assert_eq!(s.feed(b"+OK\r\n:1").unwrap(), b"+");
        assert_eq!(s.feed(b"\r\n>2\r\n+a\r\n+b\r\n$1\r\nx").unwrap(), b":");
        assert_eq!(s.feed(b"\r\n").unwrap(), b"$");
        assert_eq!(s.feed(b"?\r\n"), Err(Unframed));
        assert_eq!(s.feed(b"+OK\r\n"), Err(Unframed));
    }

    #[test]
    fn what_is_not_resp_stops_counting() {
        for bad in [
            &b"hello\r\n"[..],
            b"+no cr\n",
            b"$x\r\n",
            b"*-2\r\n",
            b"|1\r\n",
            b"*?\r\n",
        ] {
            assert_eq!(
                Counter::default().feed(bad, |_| {}),
                Err(Unframed),
                "{bad:?}"
            );
        }
        let long = vec![b'+'; MAX_LINE + 1];
        assert_eq!(Counter::default().feed(&long, |_| {}), Err(Unframed));
    }
}
