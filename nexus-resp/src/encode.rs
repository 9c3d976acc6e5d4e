//! Encoding RESP into any [`BufMut`].
//!
//! These functions write wire bytes directly; [`Frame::encode`](crate::Frame::encode)
//! is built on them. Lengths are formatted by hand into a stack buffer.

use bytes::BufMut;

/// Writes a command as an array of bulk strings:
/// `*N\r\n$len\r\narg\r\n...`.
///
/// ```
/// let mut out = Vec::new();
/// nexus_resp::encode::command(&mut out, &[b"SET", b"key:123", b"value"]);
/// assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$7\r\nkey:123\r\n$5\r\nvalue\r\n");
/// ```
pub fn command(dst: &mut impl BufMut, args: &[&[u8]]) {
    header(dst, b'*', args.len() as u64);
    for arg in args {
        bulk(dst, arg);
    }
}

/// Writes a bulk string: `$len\r\npayload\r\n`.
pub fn bulk(dst: &mut impl BufMut, payload: &[u8]) {
    header(dst, b'$', payload.len() as u64);
    dst.put_slice(payload);
    dst.put_slice(b"\r\n");
}

/// Writes an aggregate or bulk header: `ty` followed by `len` and `\r\n`
/// (for example `header(dst, b'*', 3)` writes `*3\r\n`).
pub fn header(dst: &mut impl BufMut, ty: u8, len: u64) {
    let mut tmp = [0u8; 24];
    tmp[0] = ty;
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let nd = digits.len() - i;
    tmp[1..1 + nd].copy_from_slice(&digits[i..]);
    tmp[1 + nd..3 + nd].copy_from_slice(b"\r\n");
    dst.put_slice(&tmp[..3 + nd]);
}

/// Writes an integer line: `ty` followed by the signed decimal and `\r\n`
/// (`integer(dst, b':', -5)` writes `:-5\r\n`).
pub fn integer(dst: &mut impl BufMut, ty: u8, value: i64) {
    if value < 0 {
        dst.put_u8(ty);
        header(dst, b'-', value.unsigned_abs());
    } else {
        header(dst, ty, value as u64);
    }
}

/// Writes a simple line: `ty`, the content, `\r\n`.
///
/// The content must not contain `\r` or `\n`; this is the caller's contract
/// (RESP has no escaping), and is not checked here.
pub fn line(dst: &mut impl BufMut, ty: u8, content: &[u8]) {
    dst.put_u8(ty);
    dst.put_slice(content);
    dst.put_slice(b"\r\n");
}

/// Writes the RESP2 null bulk string `$-1\r\n`.
pub fn null_bulk(dst: &mut impl BufMut) {
    dst.put_slice(b"$-1\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_integers() {
        let mut out = Vec::new();
        header(&mut out, b'*', 0);
        header(&mut out, b'$', 1234567890);
        header(&mut out, b'%', u64::MAX);
        integer(&mut out, b':', -42);
        integer(&mut out, b':', i64::MIN);
        integer(&mut out, b':', 7);
        null_bulk(&mut out);
        line(&mut out, b'+', b"OK");
        assert_eq!(
            out,
            b"*0\r\n$1234567890\r\n%18446744073709551615\r\n:-42\r\n:-9223372036854775808\r\n:7\r\n$-1\r\n+OK\r\n"
        );
    }

    #[test]
    fn commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"GET", b"key:123"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$7\r\nkey:123\r\n");
        out.clear();
        command(&mut out, &[b"SET", b"bin\r\n\0", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$6\r\nbin\r\n\0\r\n$0\r\n\r\n");
        out.clear();
        command(&mut out, &[]);
        assert_eq!(out, b"*0\r\n");
    }
}
