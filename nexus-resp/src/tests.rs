//! Unit tests for the scanner, decoder and command view on every type and
//! every error.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;

use crate::{Command, Decoder, Error, Frame, Limits, Scanner};

fn scan(input: &[u8]) -> Result<Option<usize>, Error> {
    Scanner::new(Limits::default()).scan(input)
}

fn scan_strict(input: &[u8]) -> Result<Option<usize>, Error> {
    Scanner::new(Limits::default()).inline(false).scan(input)
}

/// Decodes `input` with `Decoder::decode`, checking that the other three
/// decoding paths (`decode_bytes`, `decode_view`, `decode_view_bytes`) give the
/// same result, errors included.
fn decode(input: &[u8]) -> Result<Option<Frame>, Error> {
    let decoder = || Decoder::new(Limits::default()).inline(false);
    let mut buf = BytesMut::from(input);
    let frame = decoder().decode(&mut buf);
    if let Ok(Some(_)) = frame {
        assert!(buf.is_empty(), "decoder left {:?}", buf);
    }
    let mut bytes = bytes::Bytes::copy_from_slice(input);
    assert_eq!(decoder().decode_bytes(&mut bytes), frame, "decode_bytes");
    let mut buf = BytesMut::from(input);
    let mut d = decoder();
    let view = d.decode_view(&mut buf).map(|v| v.map(|v| v.to_frame()));
    assert_eq!(view, frame, "decode_view");
    let mut bytes = bytes::Bytes::copy_from_slice(input);
    let mut d = decoder();
    let view = d
        .decode_view_bytes(&mut bytes)
        .map(|v| v.map(|v| v.to_frame()));
    assert_eq!(view, frame, "decode_view_bytes");
    frame
}

/// Every valid single frame: scanning reports its whole length, every strict
/// prefix needs more bytes, decoding yields `expected`, and encoding it back
/// reproduces the input.
fn check(input: &[u8], expected: Frame) {
    assert_eq!(scan_strict(input), Ok(Some(input.len())), "{:?}", input);
    for cut in 0..input.len() {
        assert_eq!(
            scan_strict(&input[..cut]),
            Ok(None),
            "prefix {cut} of {input:?}"
        );
    }
    assert_eq!(decode(input), Ok(Some(expected.clone())));
    let mut out = Vec::new();
    expected.encode(&mut out);
    assert_eq!(out, input);
}

#[test]
fn resp2_types() {
    check(b"+OK\r\n", Frame::Simple("OK".into()));
    check(b"+\r\n", Frame::Simple("".into()));
    check(b"-ERR bad thing\r\n", Frame::Error("ERR bad thing".into()));
    check(b":0\r\n", Frame::Integer(0));
    check(b":-42\r\n", Frame::Integer(-42));
    check(b":9223372036854775807\r\n", Frame::Integer(i64::MAX));
    check(b"$5\r\nhello\r\n", Frame::Bulk("hello".into()));
    check(b"$0\r\n\r\n", Frame::Bulk("".into()));
    check(
        b"$4\r\n\r\n\0\xff\r\n",
        Frame::Bulk(vec![b'\r', b'\n', 0, 0xff].into()),
    );
    check(b"$-1\r\n", Frame::NullBulk);
    check(b"*-1\r\n", Frame::NullArray);
    check(b"*0\r\n", Frame::Array(vec![]));
    check(
        b"*3\r\n:1\r\n*1\r\n+a\r\n$1\r\nb\r\n",
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Array(vec![Frame::Simple("a".into())]),
            Frame::Bulk("b".into()),
        ]),
    );
}

#[test]
fn resp3_types() {
    check(b"_\r\n", Frame::Null);
    check(b"#t\r\n", Frame::Boolean(true));
    check(b"#f\r\n", Frame::Boolean(false));
    check(b",1.5\r\n", Frame::Double(1.5));
    check(b",-0.25\r\n", Frame::Double(-0.25));
    check(b",1e300\r\n", Frame::Double(1e300));
    check(b",inf\r\n", Frame::Double(f64::INFINITY));
    check(b",-inf\r\n", Frame::Double(f64::NEG_INFINITY));
    check(
        b"(-123456789012345678901234567890\r\n",
        Frame::BigNumber("-123456789012345678901234567890".into()),
    );
    check(
        b"!10\r\nERR \r\nboom\r\n",
        Frame::BulkError("ERR \r\nboom".into()),
    );
    check(
        b"=8\r\ntxt:hi\r\n\r\n",
        Frame::Verbatim {
            format: *b"txt",
            text: "hi\r\n".into(),
        },
    );
    check(
        b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n",
        Frame::Map(vec![
            (Frame::Simple("a".into()), Frame::Integer(1)),
            (Frame::Simple("b".into()), Frame::Null),
        ]),
    );
    check(
        b"~2\r\n#t\r\n#f\r\n",
        Frame::Set(vec![Frame::Boolean(true), Frame::Boolean(false)]),
    );
    check(
        b">2\r\n+message\r\n$2\r\nhi\r\n",
        Frame::Push(vec![
            Frame::Simple("message".into()),
            Frame::Bulk("hi".into()),
        ]),
    );
    check(
        b"|1\r\n+ttl\r\n:3\r\n*1\r\n:7\r\n",
        Frame::Attribute {
            attributes: vec![(Frame::Simple("ttl".into()), Frame::Integer(3))],
            frame: Box::new(Frame::Array(vec![Frame::Integer(7)])),
        },
    );
    check(
        b"*2\r\n|0\r\n:1\r\n:2\r\n",
        Frame::Array(vec![
            Frame::Attribute {
                attributes: vec![],
                frame: Box::new(Frame::Integer(1)),
            },
            Frame::Integer(2),
        ]),
    );
    check(b"%0\r\n", Frame::Map(vec![]));
    let mut buf = BytesMut::from(&b",nan\r\n"[..]);
    match Decoder::default().decode(&mut buf) {
        Ok(Some(Frame::Double(d))) => assert!(d.is_nan()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn framing_errors() {
    assert_eq!(scan_strict(b"x"), Err(Error::InvalidTypeByte(b'x')));
    assert_eq!(scan(b"*1\r\nx"), Err(Error::InvalidTypeByte(b'x')));
    assert_eq!(scan(b"$abc\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"$-2\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"*-5\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"%-1\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"!-1\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"$\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"$99999999999999999999"), Err(Error::InvalidLength));
    assert_eq!(scan(b"$3\r\nabcXY"), Err(Error::MissingCrlf));
    assert_eq!(scan(b"$3\nabc\r\n"), Err(Error::InvalidLength));
    assert_eq!(scan(b"$3\rabc\r\n"), Err(Error::MissingCrlf));
    assert_eq!(scan(b"+OK\rX"), Err(Error::MissingCrlf));
    assert_eq!(scan(b"$?\r\n"), Err(Error::StreamedUnsupported));
    assert_eq!(scan(b"*?\r\n"), Err(Error::StreamedUnsupported));
    assert_eq!(scan(b"=3\r\nabc\r\n"), Err(Error::InvalidVerbatim));
    assert_eq!(
        scan(b"$1099511627776\r\n"),
        Err(Error::BulkTooLong {
            len: 1 << 40,
            max: 512 * 1024 * 1024
        })
    );
}

#[test]
fn value_errors() {
    assert_eq!(decode(b":12a\r\n"), Err(Error::InvalidInteger));
    assert_eq!(
        decode(b":9223372036854775808\r\n"),
        Err(Error::InvalidInteger)
    );
    assert_eq!(decode(b":\r\n"), Err(Error::InvalidInteger));
    assert_eq!(decode(b",1.2.3\r\n"), Err(Error::InvalidDouble));
    assert_eq!(decode(b",\r\n"), Err(Error::InvalidDouble));
    assert_eq!(decode(b"#x\r\n"), Err(Error::InvalidBoolean));
    assert_eq!(decode(b"#\r\n"), Err(Error::InvalidBoolean));
    assert_eq!(decode(b"_x\r\n"), Err(Error::InvalidNull));
    assert_eq!(decode(b"(12x\r\n"), Err(Error::InvalidBigNumber));
    assert_eq!(decode(b"=4\r\ntxt-\r\n"), Err(Error::InvalidVerbatim));
    assert_eq!(decode(b"*1\r\n:x\r\n"), Err(Error::InvalidInteger));
}

#[test]
fn limits() {
    let limits = Limits {
        max_bulk_len: 4,
        max_elements: 2,
        max_depth: 2,
        max_inline_len: 8,
    };
    let scan = |input: &[u8]| Scanner::new(limits).scan(input);
    assert_eq!(scan(b"$4\r\nabcd\r\n"), Ok(Some(10)));
    assert_eq!(scan(b"$5\r\n"), Err(Error::BulkTooLong { len: 5, max: 4 }));
    assert_eq!(scan(b"!5\r\n"), Err(Error::BulkTooLong { len: 5, max: 4 }));
    assert_eq!(
        scan(b"*3\r\n"),
        Err(Error::TooManyElements { len: 3, max: 2 })
    );
    assert_eq!(
        scan(b"%3\r\n"),
        Err(Error::TooManyElements { len: 3, max: 2 })
    );
    assert_eq!(scan(b"*1\r\n*1\r\n:1\r\n"), Ok(Some(12)));
    assert_eq!(scan(b"*1\r\n*1\r\n*1\r\n"), Err(Error::TooDeep { max: 2 }));
    assert_eq!(scan(b"+12345678\r\n"), Ok(Some(11)));
    assert_eq!(scan(b"+123456789"), Err(Error::LineTooLong { max: 8 }));
    assert_eq!(scan(b"+123456789\r\n"), Err(Error::LineTooLong { max: 8 }));
    assert_eq!(scan(b"GET 1234\r\n"), Ok(Some(10)));
    assert_eq!(scan(b"GET 12345"), Err(Error::LineTooLong { max: 8 }));
    assert_eq!(scan(b"GET 1234\r"), Ok(None));
    // The depth limit is capped by the ceiling.
    let deep = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let input = b"*1\r\n".repeat(crate::MAX_DEPTH_CEILING + 1);
    assert_eq!(
        Scanner::new(deep).scan(&input),
        Err(Error::TooDeep {
            max: crate::MAX_DEPTH_CEILING
        })
    );
}

#[test]
fn scanner_resumes_and_resets() {
    let frame = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    let mut scanner = Scanner::default();
    for end in 0..frame.len() {
        assert_eq!(scanner.scan(&frame[..end]), Ok(None));
    }
    assert!(scanner.is_partial());
    assert_eq!(scanner.scan(frame), Ok(Some(frame.len())));
    assert!(!scanner.is_partial());
    // After an error the scanner starts afresh.
    assert_eq!(scanner.scan(b"*1\r\n?"), Err(Error::InvalidTypeByte(b'?')));
    assert_eq!(scanner.scan(b":1\r\n"), Ok(Some(4)));
    // Reset forgets progress.
    assert_eq!(scanner.scan(b"*2\r\n:1\r\n"), Ok(None));
    scanner.reset();
    assert_eq!(scanner.scan(b":2\r\n"), Ok(Some(4)));
    // Only the first frame is reported.
    assert_eq!(scanner.scan(b":1\r\n:2\r\n"), Ok(Some(4)));
}

#[test]
fn inline_commands() {
    assert_eq!(scan(b"PING\r\n"), Ok(Some(6)));
    assert_eq!(scan(b"PING\n"), Ok(Some(5)));
    assert_eq!(scan(b"PING"), Ok(None));
    assert_eq!(scan(b"\r\n"), Ok(Some(2)));
    let mut buf = BytesMut::from(&b"\r\nSET a  \"b c\"\r\nGET ''\n"[..]);
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Array(vec![
            Frame::Bulk("SET".into()),
            Frame::Bulk("a".into()),
            Frame::Bulk("b c".into()),
        ])))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Frame::Array(vec![
            Frame::Bulk("GET".into()),
            Frame::Bulk("".into())
        ])))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    let mut bad = BytesMut::from(&b"GET \"a\\nb\"\r\n"[..]);
    assert!(matches!(
        decoder.decode(&mut bad),
        Err(Error::InvalidInline(_))
    ));
}

#[test]
fn decoder_streams_byte_by_byte() {
    let stream = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n%1\r\n+a\r\n$3\r\nxyz\r\n:5\r\n";
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for &b in stream {
        buf.extend_from_slice(&[b]);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
    }
    assert!(buf.is_empty());
    assert_eq!(
        frames,
        vec![
            Frame::Array(vec![Frame::Bulk("GET".into()), Frame::Bulk("k".into())]),
            Frame::Map(vec![(Frame::Simple("a".into()), Frame::Bulk("xyz".into()))]),
            Frame::Integer(5),
        ]
    );
}

#[test]
fn decoded_payloads_share_the_input_buffer() {
    let mut buf = BytesMut::from(&b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let frame = Decoder::default().decode(&mut buf).unwrap().unwrap();
    let Frame::Array(items) = frame else { panic!() };
    for item in items {
        let Frame::Bulk(b) = item else { panic!() };
        let p = b.as_ptr() as usize;
        assert!(p >= start && p + b.len() <= end, "payload was copied");
    }
}

#[test]
fn command_view() {
    let frame = b"*4\r\n$4\r\nmSeT\r\n$2\r\nk1\r\n$2\r\nv1\r\n$0\r\n\r\n";
    let cmd = Command::parse(frame).unwrap();
    assert!(cmd.is(b"MSET"));
    assert!(!cmd.is(b"MSETNX"));
    assert!(!cmd.is_inline());
    assert_eq!(cmd.name(), b"mSeT");
    assert_eq!(cmd.len(), 4);
    assert_eq!(cmd.arg(3), Some(&b""[..]));
    assert_eq!(cmd.arg(4), None);
    assert_eq!(cmd.args().collect::<Vec<_>>(), [&b"k1"[..], b"v1", b""]);
    // MSET keys sit at 1, 3, ...: the odd trailing argument counts as a key.
    assert_eq!(cmd.keys().collect::<Vec<_>>(), [&b"k1"[..], b""]);

    assert_eq!(
        Command::parse(b"*0\r\n").err(),
        Some(Error::NotACommand("empty array"))
    );
    assert_eq!(
        Command::parse(b"*-1\r\n").err(),
        Some(Error::NotACommand("null array"))
    );
    assert_eq!(
        Command::parse(b"*1\r\n:1\r\n").err(),
        Some(Error::NotACommand("element is not a bulk string"))
    );
    assert_eq!(
        Command::parse(b"*1\r\n$-1\r\n").err(),
        Some(Error::NotACommand("null bulk string argument"))
    );
    assert_eq!(
        Command::parse(b"+OK\r\n").err(),
        Some(Error::NotACommand("not an array"))
    );
    assert_eq!(
        Command::parse(b"*1\r\n$3\r\nGET\r\n:1\r\n").err(),
        Some(Error::NotOneFrame)
    );
    assert_eq!(
        Command::parse(b"*2\r\n$3\r\nGET\r\n").err(),
        Some(Error::NotOneFrame)
    );
    assert_eq!(Command::parse(b"GET a").err(), Some(Error::NotOneFrame));
    assert_eq!(Command::parse(b"").err(), Some(Error::NotOneFrame));
    assert_eq!(
        Command::parse(b"  \r\n").err(),
        Some(Error::NotACommand("empty line"))
    );
    assert!(matches!(
        Command::parse(b"GET \"a\r\n"),
        Err(Error::InvalidInline(_))
    ));
    assert!(matches!(
        Command::parse(b"GET \"a\"b\r\n"),
        Err(Error::InvalidInline(_))
    ));
    assert!(matches!(
        Command::parse(b"GET a\"b\"\r\n"),
        Err(Error::InvalidInline(_))
    ));
}

fn keys_of(args: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut frame = Vec::new();
    crate::encode::command(&mut frame, args);
    let cmd = Command::parse(&frame).unwrap();
    cmd.keys().map(<[u8]>::to_vec).collect()
}

fn owned(keys: &[&str]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.as_bytes().to_vec()).collect()
}

#[test]
fn key_positions() {
    assert_eq!(keys_of(&[b"GET", b"a"]), owned(&["a"]));
    assert_eq!(keys_of(&[b"set", b"a", b"v", b"EX", b"10"]), owned(&["a"]));
    assert_eq!(keys_of(&[b"GET"]), owned(&[]));
    assert_eq!(
        keys_of(&[b"MGET", b"a", b"b", b"c"]),
        owned(&["a", "b", "c"])
    );
    assert_eq!(
        keys_of(&[b"MSET", b"a", b"1", b"b", b"2"]),
        owned(&["a", "b"])
    );
    assert_eq!(keys_of(&[b"DEL", b"a", b"b"]), owned(&["a", "b"]));
    assert_eq!(keys_of(&[b"EXPIRE", b"a", b"10"]), owned(&["a"]));
    assert_eq!(keys_of(&[b"HGET", b"h", b"f"]), owned(&["h"]));
    assert_eq!(keys_of(&[b"RENAME", b"a", b"b"]), owned(&["a", "b"]));
    assert_eq!(keys_of(&[b"BLPOP", b"a", b"b", b"0"]), owned(&["a", "b"]));
    assert_eq!(keys_of(&[b"OBJECT", b"ENCODING", b"a"]), owned(&["a"]));
    assert_eq!(
        keys_of(&[b"EVAL", b"return 1", b"2", b"a", b"b", b"x"]),
        owned(&["a", "b"])
    );
    assert_eq!(keys_of(&[b"EVALSHA", b"abc", b"0", b"x"]), owned(&[]));
    assert_eq!(keys_of(&[b"EVAL", b"s", b"5", b"a"]), owned(&["a"]));
    assert_eq!(keys_of(&[b"EVAL", b"s", b"-1", b"a"]), owned(&[]));
    assert_eq!(keys_of(&[b"EVAL", b"s", b"x", b"a"]), owned(&[]));
    assert_eq!(
        keys_of(&[
            b"ZUNIONSTORE",
            b"d",
            b"2",
            b"a",
            b"b",
            b"WEIGHTS",
            b"1",
            b"2"
        ]),
        owned(&["d", "a", "b"])
    );
    assert_eq!(
        keys_of(&[b"ZUNION", b"2", b"a", b"b", b"WITHSCORES"]),
        owned(&["a", "b"])
    );
    assert_eq!(
        keys_of(&[b"BLMPOP", b"0", b"2", b"a", b"b", b"LEFT"]),
        owned(&["a", "b"])
    );
    assert_eq!(
        keys_of(&[
            b"XREAD", b"COUNT", b"2", b"STREAMS", b"s1", b"s2", b"0", b"0"
        ]),
        owned(&["s1", "s2"])
    );
    assert_eq!(keys_of(&[b"PING"]), owned(&[]));
    assert_eq!(
        keys_of(&[b"AVERYLONGCOMMANDNAMETHATISNOTINTHETABLE", b"a"]),
        owned(&[])
    );
    // Many keys: positions past the cached head are walked once.
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    let names: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    args.extend(names.iter().map(|s| s.as_bytes()));
    let expected: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(keys_of(&args), owned(&expected));
    let cmd_bytes = {
        let mut v = Vec::new();
        crate::encode::command(&mut v, &args);
        v
    };
    let cmd = Command::parse(&cmd_bytes).unwrap();
    assert_eq!(cmd.arg(30), Some(&b"k29"[..]));
    assert_eq!(cmd.args().count(), 50);
    // Inline commands walk the same way.
    let inline = Command::parse(b"mget a b c d e f g h i j\r\n").unwrap();
    assert_eq!(inline.keys().count(), 10);
    assert_eq!(inline.arg(10), Some(&b"j"[..]));
}

#[test]
fn decode_bytes_fast_path_and_fallback() {
    use bytes::Bytes;
    let full = Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n:1\r\n");
    let mut decoder = Decoder::default();
    // Every prefix: need more, nothing consumed (the scanner keeps progress).
    for end in 0..20 {
        let mut part = full.slice(..end);
        assert_eq!(decoder.decode_bytes(&mut part), Ok(None), "prefix {end}");
        assert_eq!(part.len(), end);
    }
    let mut all = full.clone();
    assert_eq!(
        decoder.decode_bytes(&mut all),
        Ok(Some(Frame::Array(vec![
            Frame::Bulk("GET".into()),
            Frame::Bulk("k".into())
        ])))
    );
    assert_eq!(decoder.decode_bytes(&mut all), Ok(Some(Frame::Integer(1))));
    assert!(all.is_empty());

    // The one-pass path enforces the same limits and framing as the scanner.
    let limits = Limits {
        max_bulk_len: 2,
        max_elements: 2,
        max_depth: 1,
        max_inline_len: 3,
    };
    let one =
        |input: &'static [u8]| Decoder::new(limits).decode_bytes(&mut Bytes::from_static(input));
    assert_eq!(
        one(b"$3\r\nabc\r\n"),
        Err(Error::BulkTooLong { len: 3, max: 2 })
    );
    assert_eq!(
        one(b"*1\r\n$3\r\nabc\r\n"),
        Err(Error::BulkTooLong { len: 3, max: 2 })
    );
    assert_eq!(
        one(b"*3\r\n:1\r\n:2\r\n:3\r\n"),
        Err(Error::TooManyElements { len: 3, max: 2 })
    );
    assert_eq!(one(b"*1\r\n*1\r\n:1\r\n"), Err(Error::TooDeep { max: 1 }));
    assert_eq!(
        one(b"*1\r\n*0\r\n"),
        Ok(Some(Frame::Array(vec![Frame::Array(vec![])])))
    );
    assert_eq!(one(b"+abcd\r\n"), Err(Error::LineTooLong { max: 3 }));
    assert_eq!(one(b"+ab\rx"), Err(Error::MissingCrlf));
    assert_eq!(
        one(b"=3\r\nabc\r\n"),
        Err(Error::BulkTooLong { len: 3, max: 2 })
    );
    assert_eq!(one(b":x\r\n"), Err(Error::InvalidInteger));
    assert_eq!(one(b"+ab\r"), Ok(None));
    // After a skipped empty inline line the next frame also takes the
    // one-pass path (found by fuzzing the view decoder against this one).
    let mut rest = Bytes::from_static(b"\n*2\r\n:x\r\n");
    assert_eq!(
        Decoder::default().decode_bytes(&mut rest),
        Err(Error::InvalidInteger)
    );
    let mut rest = Bytes::from_static(b"\n*2\r\n:x\r\n");
    assert_eq!(
        Decoder::default()
            .decode_view_bytes(&mut rest)
            .map(|v| v.is_some()),
        Err(Error::InvalidInteger)
    );
}

#[test]
fn views_read_every_kind() {
    use crate::Kind;
    let input = b"*9\r\n+s\r\n-e\r\n:-3\r\n$2\r\nbb\r\n$-1\r\n#t\r\n,2.5\r\n=6\r\nmkd:hi\r\n%1\r\n(12\r\n~0\r\n";
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(&input[..]);
    let view = decoder.decode_view(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&view.bytes()[..], &input[..]);
    let root = view.root();
    assert_eq!(root.kind(), Kind::Array);
    assert_eq!(root.len(), 9);
    let items: Vec<_> = root.iter().collect();
    assert_eq!(items.len(), 9);
    assert_eq!(
        (items[0].kind(), items[0].as_slice()),
        (Kind::Simple, Some(&b"s"[..]))
    );
    assert_eq!(
        (items[1].kind(), items[1].as_slice()),
        (Kind::Error, Some(&b"e"[..]))
    );
    assert_eq!(items[2].as_integer(), Some(-3));
    assert_eq!(items[2].as_slice(), None);
    assert_eq!(items[3].to_bytes(), Some("bb".into()));
    assert!(items[4].is_null());
    assert_eq!(items[4].kind(), Kind::NullBulk);
    assert_eq!(items[5].as_bool(), Some(true));
    assert_eq!(items[6].as_double(), Some(2.5));
    assert_eq!(items[7].verbatim_format(), Some(*b"mkd"));
    assert_eq!(items[7].as_slice(), Some(&b"hi"[..]));
    // A map of one pair yields key then value; the set after it is still
    // reached (subtrees are skipped correctly).
    assert_eq!(items[8].kind(), Kind::Map);
    let pair: Vec<_> = items[8].iter().collect();
    assert_eq!(pair[0].as_slice(), Some(&b"12"[..]));
    assert_eq!(pair[0].kind(), Kind::BigNumber);
    assert_eq!(pair[1].kind(), Kind::Set);
    assert!(pair[1].is_empty());
    // Leaves have no elements.
    assert_eq!(items[0].iter().count(), 0);
    let frame = view.to_frame();
    assert_eq!(Some(frame), decode(input).unwrap());
}

#[test]
fn views_stream_reuse_and_skip() {
    use bytes::Bytes;
    let stream =
        b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nSET a \"b c\"\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n";
    let expected = [
        Frame::Array(vec![Frame::Bulk("GET".into()), Frame::Bulk("k".into())]),
        Frame::Array(vec![
            Frame::Bulk("SET".into()),
            Frame::Bulk("a".into()),
            Frame::Bulk("b c".into()),
        ]),
        Frame::Attribute {
            attributes: vec![(Frame::Simple("ttl".into()), Frame::Integer(3))],
            frame: Box::new(Frame::Bulk("v".into())),
        },
    ];
    // Byte by byte into a BytesMut.
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for &b in &stream[..] {
        buf.extend_from_slice(&[b]);
        while let Some(view) = decoder.decode_view(&mut buf).unwrap() {
            frames.push(view.to_frame());
        }
    }
    assert!(buf.is_empty());
    assert_eq!(frames, expected);
    // Every prefix of a `Bytes`: need more, nothing consumed but the empty
    // inline line; then the whole stream.
    let full = Bytes::from_static(stream);
    let mut decoder = Decoder::default();
    for end in 2..22 {
        let mut part = full.slice(2..end);
        assert_eq!(
            decoder
                .decode_view_bytes(&mut part)
                .unwrap()
                .map(|v| v.to_frame()),
            None
        );
        assert_eq!(part.len(), end - 2);
    }
    // The same buffer, grown (the decoder kept its progress on the frame).
    let mut all = full.slice(2..);
    let mut frames = Vec::new();
    while let Some(view) = decoder.decode_view_bytes(&mut all).unwrap() {
        // Payloads point into the input: nothing was copied.
        let bytes = view.root().iter().last().and_then(|f| f.to_bytes());
        if let Some(b) = bytes {
            let off = b.as_ptr() as usize - full.as_ptr() as usize;
            assert!(off + b.len() <= full.len());
        }
        frames.push(view.to_frame());
    }
    assert!(all.is_empty());
    assert_eq!(frames, expected[..]);
    // The attribute view: pairs then the frame.
    let at = stream.iter().position(|&b| b == b'|').unwrap();
    let mut attr = full.slice(at..);
    let view = decoder.decode_view_bytes(&mut attr).unwrap().unwrap();
    assert_eq!(view.root().len(), 3);
    assert_eq!(
        view.root().iter().nth(2).unwrap().as_slice(),
        Some(&b"v"[..])
    );
    drop(view);
    decoder.shrink();
    assert_eq!(
        decoder
            .decode_view_bytes(&mut Bytes::from_static(b":1\r\n"))
            .unwrap()
            .unwrap()
            .root()
            .as_integer(),
        Some(1)
    );
}

#[test]
fn views_enforce_limits() {
    use bytes::Bytes;
    let limits = Limits {
        max_bulk_len: 2,
        max_elements: 2,
        max_depth: 1,
        max_inline_len: 3,
    };
    let one = |input: &'static [u8]| {
        let mut d = Decoder::new(limits);
        let r = d.decode_view_bytes(&mut Bytes::from_static(input));
        r.map(|v| v.map(|v| v.to_frame()))
    };
    assert_eq!(
        one(b"*1\r\n$3\r\nabc\r\n"),
        Err(Error::BulkTooLong { len: 3, max: 2 })
    );
    assert_eq!(
        one(b"*3\r\n:1\r\n:2\r\n:3\r\n"),
        Err(Error::TooManyElements { len: 3, max: 2 })
    );
    assert_eq!(one(b"*1\r\n*1\r\n:1\r\n"), Err(Error::TooDeep { max: 1 }));
    assert_eq!(one(b"+abcd\r\n"), Err(Error::LineTooLong { max: 3 }));
    assert_eq!(one(b"GET abcd\r\n"), Err(Error::LineTooLong { max: 3 }));
    assert_eq!(one(b"$2\r\nabXY"), Err(Error::MissingCrlf));
    assert_eq!(
        one(b"=3\r\nabc\r\n"),
        Err(Error::BulkTooLong { len: 3, max: 2 })
    );
    assert_eq!(one(b"+ab\r"), Ok(None));
    // Inline commands can be refused, as with `decode`.
    let mut d = Decoder::default().inline(false);
    assert_eq!(
        d.decode_view(&mut BytesMut::from(&b"PING\r\n"[..]))
            .map(|v| v.is_some()),
        Err(Error::InvalidTypeByte(b'P'))
    );
}
