//! A borrowed view of one client command.

use crate::keys::{self, KeysIter};
use crate::lines::{self, Header};
use crate::{Error, Limits};

/// Number of leading arguments whose positions are cached in the view; later
/// arguments are found by walking from the first one not cached.
const HEAD: usize = 8;

/// Borrowed view of a command: an array of bulk strings, or an inline command
/// line. Arguments are slices of the frame; nothing is copied or allocated.
///
/// ```
/// use nexus_resp::Command;
///
/// let cmd = Command::parse(b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n").unwrap();
/// assert!(cmd.is(b"SET"));
/// assert_eq!(cmd.len(), 3);
/// assert_eq!(cmd.arg(1), Some(&b"k"[..]));
/// assert_eq!(cmd.keys().collect::<Vec<_>>(), [&b"k"[..]]);
///
/// let inline = Command::parse(b"GET \"my key\"\r\n").unwrap();
/// assert!(inline.is_inline());
/// assert_eq!(inline.args().collect::<Vec<_>>(), [&b"my key"[..]]);
/// ```
///
/// # Inline commands
///
/// Inline commands are split like Redis does (`sdssplitargs`): arguments are
/// separated by spaces, tabs, `\r`, `\n`, `\v` or `\f`; an argument may be
/// wrapped in double or single quotes, which may contain separators; `""` is
/// an empty argument. Because arguments are borrowed, this subset is
/// rejected with [`Error::InvalidInline`]: backslash escapes inside quotes
/// (`"a\nb"`, `"\x00"`, `'it\'s'`) and quotes that start in the middle of an
/// unquoted argument (`a"b c"`). A closing quote must be followed by a
/// separator or the end of the line, as in Redis.
///
/// The view is small (104 bytes on 64-bit targets: positions are kept as
/// `u32` offsets), so that moving it, as returning it by value does, costs a
/// few register moves rather than a `memcpy` call.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// Array: the whole frame. Inline: the line without its terminator.
    src: &'a [u8],
    /// `(start, end)` in `src` of the first `cached` arguments.
    head: [(u32, u32); HEAD],
    argc: usize,
    /// Offset in `src` where the walk to argument `cached` starts, when
    /// there is one.
    rest: usize,
    /// At most [`HEAD`]; fewer only when an argument ends past `u32::MAX`
    /// (the arguments from there on are walked).
    cached: u8,
    inline: bool,
}

impl<'a> Command<'a> {
    /// Parses exactly one complete frame (as delimited by
    /// [`Scanner`](crate::Scanner)): a non-empty array of bulk strings or an
    /// inline command line ending in `\n` (or `\r\n`).
    ///
    /// An empty inline line or `*0\r\n` is [`Error::NotACommand`]; Redis
    /// silently skips both.
    #[inline]
    pub fn parse(frame: &'a [u8]) -> Result<Command<'a>, Error> {
        match frame.first() {
            None => Err(Error::NotOneFrame),
            Some(b'*') => Self::parse_array(frame),
            Some(&b) if crate::is_type_byte(b) => Err(Error::NotACommand("not an array")),
            Some(_) => Self::parse_inline(frame),
        }
    }

    #[inline]
    fn parse_array(frame: &'a [u8]) -> Result<Command<'a>, Error> {
        let (header, mut pos) = lines::header(frame, 1)?.ok_or(Error::NotOneFrame)?;
        let argc = match header {
            Header::Null => return Err(Error::NotACommand("null array")),
            Header::Len(0) => return Err(Error::NotACommand("empty array")),
            Header::Len(n) => n,
        };
        let mut cmd = Command::empty(frame, false);
        let mut i: u64 = 0;
        while i < argc {
            let (start, end, next) = bulk_span(frame, pos)?;
            cmd.push(pos, start, end);
            pos = next;
            i += 1;
        }
        if pos != frame.len() {
            return Err(Error::NotOneFrame);
        }
        Ok(cmd)
    }

    /// The common case in one pass: when `buf` starts with a complete
    /// array of bulk strings within `limits` (a command as clients send
    /// it), that command and the length of its frame.
    ///
    /// `None` in every other case (incomplete, inline, invalid, over a
    /// limit, `*0`): frame the input with a [`Scanner`](crate::Scanner)
    /// and [`parse`](Self::parse) the frame then. Both accept every frame
    /// accepted here, with the same length and the same command, so a
    /// reader can try this first and fall back to them; it saves the
    /// second pass over each command.
    ///
    /// ```
    /// use nexus_resp::{Command, Limits};
    ///
    /// let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
    /// let (cmd, n) = Command::parse_prefix(buf, &Limits::default()).unwrap();
    /// assert!(cmd.is(b"GET") && n == 20);
    /// // The next one is incomplete.
    /// assert!(Command::parse_prefix(&buf[n..], &Limits::default()).is_none());
    /// ```
    #[inline]
    pub fn parse_prefix(buf: &'a [u8], limits: &Limits) -> Option<(Command<'a>, usize)> {
        if buf.first() != Some(&b'*') || limits.depth() == 0 {
            return None;
        }
        let (Header::Len(argc), mut pos) = lines::header(buf, 1).ok()?? else {
            return None;
        };
        if argc == 0 || limits.check_elements(argc).is_err() {
            return None;
        }
        let mut cmd = Command::empty(buf, false);
        for _ in 0..argc {
            if buf.get(pos) != Some(&b'$') {
                return None;
            }
            let (Header::Len(len), body) = lines::header(buf, pos + 1).ok()?? else {
                return None;
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= limits.max_bulk_len)?;
            let end = body.checked_add(len)?;
            if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            cmd.push(pos, body, end);
            pos = end + 2;
        }
        // The frame alone: walks end at its end.
        cmd.src = &buf[..pos];
        Some((cmd, pos))
    }

    fn parse_inline(frame: &'a [u8]) -> Result<Command<'a>, Error> {
        let line = match frame.split_last() {
            Some((b'\n', line)) => line.strip_suffix(b"\r").unwrap_or(line),
            _ => return Err(Error::NotOneFrame),
        };
        if memchr::memchr(b'\n', line).is_some() {
            return Err(Error::NotOneFrame);
        }
        let mut cmd = Command::empty(line, true);
        let mut pos = 0;
        while let Some((start, end, next)) = inline_span(line, pos)? {
            cmd.push(pos, start, end);
            pos = next;
        }
        if cmd.argc == 0 {
            return Err(Error::NotACommand("empty line"));
        }
        Ok(cmd)
    }

    #[inline]
    fn empty(src: &'a [u8], inline: bool) -> Self {
        Command {
            src,
            head: [(0, 0); HEAD],
            argc: 0,
            rest: 0,
            cached: 0,
            inline,
        }
    }

    /// Records the next argument, `src[start..end]`, whose walk starts at
    /// `pos`.
    #[inline]
    fn push(&mut self, pos: usize, start: usize, end: usize) {
        let cached = usize::from(self.cached);
        if cached == self.argc {
            match u32::try_from(end) {
                // `start <= end`, so it fits too.
                Ok(e) if cached < HEAD => {
                    self.head[cached] = (start as u32, e);
                    self.cached += 1;
                }
                _ => self.rest = pos,
            }
        }
        self.argc += 1;
    }

    /// Cached argument `i` (`i < self.cached`).
    #[inline]
    fn cached(&self, i: usize) -> &'a [u8] {
        let (start, end) = self.head[i];
        &self.src[start as usize..end as usize]
    }

    /// The command name as sent (any case).
    #[inline]
    pub fn name(&self) -> &'a [u8] {
        if self.cached > 0 {
            self.cached(0)
        } else {
            self.walk(self.rest).next().unwrap_or_default()
        }
    }

    /// Whether the name equals `upper_name`, ASCII case-insensitively.
    /// `upper_name` must be upper case (`cmd.is(b"GET")`).
    #[inline]
    pub fn is(&self, upper_name: &[u8]) -> bool {
        let name = self.name();
        name.len() == upper_name.len()
            && name
                .iter()
                .zip(upper_name)
                .all(|(a, b)| a.to_ascii_uppercase() == *b)
    }

    /// Number of arguments, including the name (never 0).
    #[inline]
    pub fn len(&self) -> usize {
        self.argc
    }

    /// Always `false`: a parsed command has at least its name.
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i`; `0` is the name.
    ///
    /// The first few arguments are indexed; past them this walks the frame,
    /// O(`i`). To visit many arguments use [`Command::args`] (one walk), not
    /// `arg` in a loop.
    #[inline]
    pub fn arg(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.argc {
            return None;
        }
        let cached = usize::from(self.cached);
        if i < cached {
            return Some(self.cached(i));
        }
        self.walk(self.rest).nth(i - cached)
    }

    /// The arguments after the name.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let cached = usize::from(self.cached);
        (1.min(cached)..cached).map(|i| self.cached(i)).chain(
            self.walk(if self.argc > cached {
                self.rest
            } else {
                self.src.len()
            })
            // A name not cached is not an argument after the name.
            .skip(usize::from(cached == 0)),
        )
    }

    /// The key arguments of common commands. Unknown commands yield no keys.
    ///
    /// Positions count the name as argument 0; `-1` is the last argument.
    ///
    /// | commands | keys |
    /// |---|---|
    /// | single-key commands on strings, hashes, lists, sets, sorted sets, streams, geo, HyperLogLog, bitmaps and expiry (`GET`, `SET`, `GETEX`, `GETDEL`, `INCR`..., `HGET`, `HSET`, `HMGET`..., `LPUSH`, `LRANGE`..., `SADD`..., `ZADD`, `ZRANGE`..., `XADD`, `XRANGE`..., `GEOADD`..., `PFADD`, `SETBIT`..., `EXPIRE`, `TTL`, `PERSIST`, `TYPE`, `DUMP`, `RESTORE`, `SORT`, `SORT_RO`) | 1 |
    /// | `MGET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`, `WATCH`, `SINTER`, `SUNION`, `SDIFF`, `SINTERSTORE`, `SUNIONSTORE`, `SDIFFSTORE`, `PFCOUNT`, `PFMERGE` | 1 to -1 |
    /// | `MSET`, `MSETNX` | 1, 3, 5, ... |
    /// | `RENAME`, `RENAMENX`, `COPY`, `SMOVE`, `RPOPLPUSH`, `LMOVE`, `BRPOPLPUSH`, `BLMOVE`, `GEOSEARCHSTORE`, `ZRANGESTORE` | 1 and 2 |
    /// | `BLPOP`, `BRPOP`, `BZPOPMIN`, `BZPOPMAX` | 1 to -2 (the last is the timeout) |
    /// | `OBJECT <sub> key`, `MEMORY USAGE key` | 2 |
    /// | `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`, `FCALL`, `FCALL_RO` | `numkeys` at 2, then that many |
    /// | `ZUNIONSTORE`, `ZINTERSTORE`, `ZDIFFSTORE` | 1, then `numkeys` at 2 and that many |
    /// | `ZUNION`, `ZINTER`, `ZDIFF`, `ZINTERCARD`, `SINTERCARD`, `LMPOP`, `ZMPOP` | `numkeys` at 1, then that many |
    /// | `BLMPOP`, `BZMPOP` | `numkeys` at 2 (after the timeout), then that many |
    /// | `XREAD`, `XREADGROUP` | the first half of the arguments after `STREAMS` |
    ///
    /// A `numkeys` that is not a non-negative integer yields no keys; a count
    /// larger than the arguments present is cut at the last argument.
    pub fn keys(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        KeysIter::new(self, keys::spec(self))
    }

    /// Argument `i`, walking forward from `cursor` (an argument index and its
    /// offset, past the cached ones) so that increasing indices cost O(1) each.
    pub(crate) fn arg_seq(&self, i: usize, cursor: &mut (usize, usize)) -> Option<&'a [u8]> {
        if i >= self.argc {
            return None;
        }
        let cached = usize::from(self.cached);
        if i < cached {
            return Some(self.cached(i));
        }
        // At `cached` the cursor is where a fresh walk starts (and the
        // caller's first cursor, `(0, 0)`, is never trusted).
        if cursor.0 <= cached || cursor.0 > i {
            *cursor = (cached, self.rest);
        }
        let mut walk = self.walk(cursor.1);
        while cursor.0 < i {
            walk.next()?;
            cursor.0 += 1;
        }
        cursor.1 = walk.pos;
        walk.next()
    }

    /// Whether the command was sent inline rather than as an array.
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// The arguments starting at byte offset `pos` of the source (which was
    /// validated by `parse`, so errors cannot occur; they end the walk).
    fn walk(&self, pos: usize) -> Walk<'a> {
        Walk {
            src: self.src,
            inline: self.inline,
            pos,
        }
    }
}

struct Walk<'a> {
    src: &'a [u8],
    inline: bool,
    pos: usize,
}

impl<'a> Iterator for Walk<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.src.len() {
            return None;
        }
        let (start, end, next) = if self.inline {
            inline_span(self.src, self.pos).ok().flatten()?
        } else {
            bulk_span(self.src, self.pos).ok()?
        };
        self.pos = next;
        Some(&self.src[start..end])
    }
}

/// One `$len\r\npayload\r\n` element of a command array at `pos`: where
/// its payload starts and ends, and the offset after it.
#[inline]
fn bulk_span(frame: &[u8], pos: usize) -> Result<(usize, usize, usize), Error> {
    match frame.get(pos) {
        None => return Err(Error::NotOneFrame),
        Some(b'$') => {}
        Some(_) => return Err(Error::NotACommand("element is not a bulk string")),
    }
    let (header, body) = lines::header(frame, pos + 1)?.ok_or(Error::NotOneFrame)?;
    let len = match header {
        Header::Null => return Err(Error::NotACommand("null bulk string argument")),
        Header::Len(len) => usize::try_from(len).map_err(|_| Error::NotOneFrame)?,
    };
    let end = body.checked_add(len).ok_or(Error::NotOneFrame)?;
    match frame.get(end..end.saturating_add(2)) {
        Some(b"\r\n") => Ok((body, end, end + 2)),
        Some(_) => Err(Error::MissingCrlf),
        None => Err(Error::NotOneFrame),
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// The next inline argument at or after `pos`: where it starts and ends in
/// `line`, and the offset after it.
fn inline_span(line: &[u8], mut pos: usize) -> Result<Option<(usize, usize, usize)>, Error> {
    while line.get(pos).is_some_and(|&b| is_separator(b)) {
        pos += 1;
    }
    let Some(&first) = line.get(pos) else {
        return Ok(None);
    };
    if first == b'"' || first == b'\'' {
        let start = pos + 1;
        let Some(len) = line
            .get(start..)
            .and_then(|rest| memchr::memchr(first, rest))
        else {
            return Err(Error::InvalidInline("unbalanced quotes"));
        };
        if memchr::memchr(b'\\', &line[start..start + len]).is_some() {
            return Err(Error::InvalidInline(
                "backslash escapes in quotes are not supported",
            ));
        }
        let after = start + len + 1;
        if line.get(after).is_some_and(|&b| !is_separator(b)) {
            return Err(Error::InvalidInline(
                "closing quote must be followed by a space",
            ));
        }
        return Ok(Some((start, start + len, after)));
    }
    let start = pos;
    while let Some(&b) = line.get(pos) {
        if is_separator(b) {
            break;
        }
        if b == b'"' || b == b'\'' {
            return Err(Error::InvalidInline("quote inside an unquoted argument"));
        }
        pos += 1;
    }
    Ok(Some((start, pos, pos)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `cmd` as if only its first `n` arguments had fitted in `u32` offsets
    /// (the path of frames over 4 GiB, too large to build in a test).
    fn cached_only(mut cmd: Command<'_>, n: u8) -> Command<'_> {
        let mut walk = cmd.walk(0);
        if !cmd.inline {
            // Past the array header.
            walk.pos = lines::header(cmd.src, 1).unwrap().unwrap().1;
        }
        for _ in 0..n {
            walk.next().unwrap();
        }
        cmd.rest = walk.pos;
        cmd.cached = n;
        cmd
    }

    #[test]
    fn parse_prefix_agrees_with_the_scanner_and_parse_or_declines() {
        let limits = Limits {
            max_bulk_len: 8,
            max_elements: 4,
            ..Limits::default()
        };
        let mut two = Vec::new();
        crate::encode::command(&mut two, &[b"SET", b"k", b"v\r\n"]);
        crate::encode::command(&mut two, &[b"GET", b"k"]);
        let cases: &[&[u8]] = &[
            &two,
            b"*1\r\n$4\r\nPING\r\n",
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"*2\r\n$3\r\nGET\r\n$8\r\n12345678\r\n",
            // Declined: over the limits, invalid, not bulk, null, empty,
            // inline, incomplete.
            b"*2\r\n$3\r\nGET\r\n$9\r\n123456789\r\n",
            b"*5\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$-1\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*1\r\n$x\r\n",
            b"PING\r\n",
            b"*2\r\n$3\r\nGET\r\n$1\r\n",
            b"*2\r\n$3\r\nGET\r\n",
            b"",
        ];
        for (i, &buf) in cases.iter().enumerate() {
            let fast = Command::parse_prefix(buf, &limits);
            let slow = crate::Scanner::new(limits)
                .scan(buf)
                .ok()
                .flatten()
                .and_then(|n| Command::parse(&buf[..n]).ok().map(|c| (c, n)));
            match (fast, slow) {
                (Some((f, fl)), Some((s, sl))) => {
                    assert_eq!(fl, sl, "case {i}");
                    assert_eq!(f.args().collect::<Vec<_>>(), s.args().collect::<Vec<_>>());
                    assert_eq!(f.name(), s.name());
                    assert_eq!(f.len(), s.len());
                    assert!(i < 4, "case {i} should be declined");
                }
                (None, _) => assert!(i >= 4, "case {i} declined"),
                (Some(_), None) => panic!("case {i} accepted, the scanner does not"),
            }
        }
        let no_depth = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        assert!(Command::parse_prefix(&two, &no_depth).is_none());
    }

    #[test]
    fn the_view_is_small_enough_to_move_without_memcpy() {
        assert!(
            size_of::<Command<'_>>() <= 104,
            "{}",
            size_of::<Command<'_>>()
        );
        assert!(size_of::<Result<Command<'_>, Error>>() <= 112);
    }

    #[test]
    fn arguments_past_the_cached_ones_are_walked() {
        let mut frame = Vec::new();
        crate::encode::command(
            &mut frame,
            &[
                b"MSET", b"a", b"", b"c", b"d\r\n", b"e", b"f", b"g", b"h", b"i",
            ],
        );
        let inline = b"mset a \"\" c 'd e' e f g h i\r\n";
        for src in [&frame[..], &inline[..]] {
            let full = Command::parse(src).unwrap();
            assert_eq!(usize::from(full.cached), HEAD);
            let all: Vec<&[u8]> = (0..full.len()).map(|i| full.arg(i).unwrap()).collect();
            for n in 0..=HEAD as u8 {
                let cmd = cached_only(full, n);
                assert!(cmd.name().eq_ignore_ascii_case(b"MSET"), "{n}");
                assert!(cmd.is(b"MSET"), "{n}");
                let got: Vec<&[u8]> = (0..cmd.len()).map(|i| cmd.arg(i).unwrap()).collect();
                assert_eq!(got, all, "{n}");
                assert_eq!(cmd.arg(cmd.len()), None);
                assert_eq!(cmd.args().collect::<Vec<_>>(), all[1..], "{n}");
                let keys: Vec<_> = cmd.keys().collect();
                assert_eq!(keys, full.keys().collect::<Vec<_>>(), "{n}");
                assert_eq!(keys.len(), 5, "{n}");
            }
        }
    }
}
