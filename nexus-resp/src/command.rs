//! A borrowed view of one client command.

use crate::Error;
use crate::keys::{self, KeysIter};
use crate::lines::{self, Header};

/// Number of leading arguments whose positions are cached in the view; later
/// arguments are found by walking from the last cached one.
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
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// Array: the whole frame. Inline: the line without its terminator.
    src: &'a [u8],
    inline: bool,
    argc: usize,
    head: [&'a [u8]; HEAD],
    /// Offset in `src` of argument `HEAD`, when there is one.
    rest: usize,
}

impl<'a> Command<'a> {
    /// Parses exactly one complete frame (as delimited by
    /// [`Scanner`](crate::Scanner)): a non-empty array of bulk strings or an
    /// inline command line ending in `\n` (or `\r\n`).
    ///
    /// An empty inline line or `*0\r\n` is [`Error::NotACommand`]; Redis
    /// silently skips both.
    pub fn parse(frame: &'a [u8]) -> Result<Command<'a>, Error> {
        match frame.first() {
            None => Err(Error::NotOneFrame),
            Some(b'*') => Self::parse_array(frame),
            Some(&b) if crate::is_type_byte(b) => Err(Error::NotACommand("not an array")),
            Some(_) => Self::parse_inline(frame),
        }
    }

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
            if cmd.argc == HEAD {
                cmd.rest = pos;
            }
            let (arg, next) = bulk_arg(frame, pos)?;
            if cmd.argc < HEAD {
                cmd.head[cmd.argc] = arg;
            }
            cmd.argc += 1;
            pos = next;
            i += 1;
        }
        if pos != frame.len() {
            return Err(Error::NotOneFrame);
        }
        Ok(cmd)
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
        while let Some((arg, next)) = inline_arg(line, pos)? {
            if cmd.argc == HEAD {
                cmd.rest = pos;
            }
            if cmd.argc < HEAD {
                cmd.head[cmd.argc] = arg;
            }
            cmd.argc += 1;
            pos = next;
        }
        if cmd.argc == 0 {
            return Err(Error::NotACommand("empty line"));
        }
        Ok(cmd)
    }

    fn empty(src: &'a [u8], inline: bool) -> Self {
        Command {
            src,
            inline,
            argc: 0,
            head: [&[]; HEAD],
            rest: 0,
        }
    }

    /// The command name as sent (any case).
    pub fn name(&self) -> &'a [u8] {
        self.head[0]
    }

    /// Whether the name equals `upper_name`, ASCII case-insensitively.
    /// `upper_name` must be upper case (`cmd.is(b"GET")`).
    pub fn is(&self, upper_name: &[u8]) -> bool {
        let name = self.name();
        name.len() == upper_name.len()
            && name
                .iter()
                .zip(upper_name)
                .all(|(a, b)| a.to_ascii_uppercase() == *b)
    }

    /// Number of arguments, including the name (never 0).
    pub fn len(&self) -> usize {
        self.argc
    }

    /// Always `false`: a parsed command has at least its name.
    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// Argument `i`; `0` is the name.
    pub fn arg(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.argc {
            return None;
        }
        if i < HEAD {
            return Some(self.head[i]);
        }
        self.walk(self.rest).nth(i - HEAD)
    }

    /// The arguments after the name.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let head_end = self.argc.min(HEAD);
        self.head[1.min(head_end)..head_end]
            .iter()
            .copied()
            .chain(self.walk(if self.argc > HEAD {
                self.rest
            } else {
                self.src.len()
            }))
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
    /// offset, at or past `HEAD`) so that increasing indices cost O(1) each.
    pub(crate) fn arg_seq(&self, i: usize, cursor: &mut (usize, usize)) -> Option<&'a [u8]> {
        if i >= self.argc {
            return None;
        }
        if i < HEAD {
            return Some(self.head[i]);
        }
        if cursor.0 < HEAD || cursor.0 > i {
            *cursor = (HEAD, self.rest);
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
        let (arg, next) = if self.inline {
            inline_arg(self.src, self.pos).ok().flatten()?
        } else {
            bulk_arg(self.src, self.pos).ok()?
        };
        self.pos = next;
        Some(arg)
    }
}

/// One `$len\r\npayload\r\n` element of a command array at `pos`.
fn bulk_arg(frame: &[u8], pos: usize) -> Result<(&[u8], usize), Error> {
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
        Some(b"\r\n") => Ok((&frame[body..end], end + 2)),
        Some(_) => Err(Error::MissingCrlf),
        None => Err(Error::NotOneFrame),
    }
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// The next inline argument at or after `pos`, and the offset after it.
fn inline_arg(line: &[u8], mut pos: usize) -> Result<Option<(&[u8], usize)>, Error> {
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
        let arg = &line[start..start + len];
        if memchr::memchr(b'\\', arg).is_some() {
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
        return Ok(Some((arg, after)));
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
    Ok(Some((&line[start..pos], pos)))
}
