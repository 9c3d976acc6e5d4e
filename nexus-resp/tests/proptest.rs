//! Property tests: encode/decode round trips, arbitrary splits of valid
//! streams, and arbitrary (or mutated) bytes never panic.
//!
//! `PROPTEST_CASES` raises the case count (the fuzz substitute run recorded
//! in docs/benchmarks/resp.md used 1,000,000 for the no-panic properties).
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use nexus_resp::{Command, Decoder, Frame, Limits, Scanner};
use proptest::prelude::*;

fn line_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        // Mapped, not filtered: filters hit proptest's reject limit at high case counts.
        any::<u8>().prop_map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        0..12,
    )
    .prop_map(Bytes::from)
}

fn any_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn leaf() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_bytes().prop_map(Frame::Simple),
        line_bytes().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        any_bytes().prop_map(Frame::Bulk),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(Frame::Double),
        "[+-]?[0-9]{1,40}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
        any_bytes().prop_map(Frame::BulkError),
        ("[a-z]{3}", any_bytes()).prop_map(|(f, text)| Frame::Verbatim {
            format: f.as_bytes().try_into().unwrap(),
            text,
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let pairs = proptest::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            pairs.clone().prop_map(Frame::Map),
            (pairs, inner).prop_map(|(attributes, frame)| Frame::Attribute {
                attributes,
                frame: Box::new(frame),
            }),
        ]
    })
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

/// Decodes `stream` fed in chunks ending at `cuts`, returning every frame.
fn decode_chunked(stream: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut decoder = Decoder::new(Limits::default()).inline(false);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    for cut in cuts {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        while let Some(f) = decoder.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    frames
}

/// Like [`decode_chunked`], through `Decoder::decode_view`.
fn decode_chunked_view(stream: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut decoder = Decoder::new(Limits::default()).inline(false);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    for cut in cuts {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        while let Some(view) = decoder.decode_view(&mut buf).unwrap() {
            frames.push(view.to_frame());
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    frames
}

proptest! {
    #[test]
    fn round_trip(f in frame()) {
        let bytes = encode_all(std::slice::from_ref(&f));
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = Decoder::new(Limits::default()).inline(false).decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(f));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(Scanner::new(Limits::default()).scan(&bytes).unwrap(), Some(bytes.len()));
    }

    #[test]
    fn any_split_decodes_the_same(frames in proptest::collection::vec(frame(), 1..6),
                                  cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let stream = encode_all(&frames);
        prop_assert_eq!(&decode_chunked(&stream, &cuts), &frames);
        // The whole stream as one `Bytes`.
        let mut whole = Bytes::from(stream.clone());
        let mut decoder = Decoder::new(Limits::default()).inline(false);
        let mut from_bytes = Vec::new();
        while let Some(f) = decoder.decode_bytes(&mut whole).unwrap() {
            from_bytes.push(f);
        }
        prop_assert!(whole.is_empty());
        prop_assert_eq!(&from_bytes, &frames);
        // Views, chunked and whole.
        prop_assert_eq!(&decode_chunked_view(&stream, &cuts), &frames);
        let mut whole = Bytes::from(stream.clone());
        let mut views = Vec::new();
        while let Some(view) = decoder.decode_view_bytes(&mut whole).unwrap() {
            prop_assert_eq!(view.bytes(), &encode_all(&[view.to_frame()])[..]);
            views.push(view.to_frame());
        }
        prop_assert!(whole.is_empty());
        prop_assert_eq!(&views, &frames);
        // Scanner over the same chunks reports each frame's length.
        let mut scanner = Scanner::new(Limits::default()).inline(false);
        let mut lens = Vec::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        for cut in cuts {
            while start < cut {
                match scanner.scan(&stream[start..cut]).unwrap() {
                    Some(n) => { lens.push(n); start += n; }
                    None => break,
                }
            }
        }
        let expected: Vec<usize> = frames.iter().map(|f| encode_all(std::slice::from_ref(f)).len()).collect();
        prop_assert_eq!(lens, expected);
    }

    #[test]
    fn byte_by_byte(frames in proptest::collection::vec(frame(), 1..3)) {
        let stream = encode_all(&frames);
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&decode_chunked(&stream, &cuts), &frames);
        prop_assert_eq!(decode_chunked_view(&stream, &cuts), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_no_panic(&bytes);
    }

    #[test]
    fn mutated_streams_never_panic(frames in proptest::collection::vec(frame(), 1..4),
                                   edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut bytes = encode_all(&frames);
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        check_no_panic(&bytes);
    }
}

/// Runs every entry point on `bytes` and checks the answers agree.
fn check_no_panic(bytes: &[u8]) {
    let tight = Limits {
        max_bulk_len: 16,
        max_elements: 4,
        max_depth: 3,
        max_inline_len: 16,
    };
    for limits in [Limits::default(), tight] {
        for inline in [true, false] {
            let scanned = Scanner::new(limits).inline(inline).scan(bytes);
            if let Ok(Some(n)) = scanned {
                assert!(n > 0 && n <= bytes.len());
                // Command::parse on exactly the frame never panics.
                let _ = Command::parse(&bytes[..n]);
            }
            let mut buf = BytesMut::from(bytes);
            let decoded = Decoder::new(limits).inline(inline).decode(&mut buf);
            // Decoding from `Bytes` (which builds in one pass before any
            // scan) gives the same frame and leaves the same rest; on invalid
            // input it may report a value error before the scanner's framing
            // error, or before the rest of the frame has arrived.
            let mut whole = Bytes::copy_from_slice(bytes);
            let from_bytes = Decoder::new(limits).inline(inline).decode_bytes(&mut whole);
            match &decoded {
                Ok(Some(_)) => {
                    assert_eq!(from_bytes, decoded);
                    assert_eq!(&whole[..], &buf[..]);
                }
                Ok(None) => assert!(matches!(from_bytes, Ok(None) | Err(_)), "{from_bytes:?}"),
                Err(_) => assert!(from_bytes.is_err(), "{decoded:?} vs {from_bytes:?}"),
            }
            // The view decoders validate like `decode_bytes` (one pass first,
            // then the scanner), so they agree with it exactly.
            let mut whole_view = Bytes::copy_from_slice(bytes);
            let mut decoder = Decoder::new(limits).inline(inline);
            let agree =
                |view: &Result<Option<Frame>, nexus_resp::Error>| assert_eq!(view, &from_bytes);
            let view = decoder
                .decode_view_bytes(&mut whole_view)
                .map(|v| v.map(|v| v.to_frame()));
            agree(&view);
            if let Ok(Some(_)) = view {
                assert_eq!(whole_view, whole);
            }
            let mut buf_view = BytesMut::from(bytes);
            let mut decoder = Decoder::new(limits).inline(inline);
            let view_mut = decoder
                .decode_view(&mut buf_view)
                .map(|v| v.map(|v| v.to_frame()));
            agree(&view_mut);
            if let Ok(Some(_)) = view_mut {
                assert_eq!(&buf_view[..], &whole[..]);
            }
            match (&scanned, &decoded) {
                // The decoder only sees frames the scanner accepts.
                (Ok(None), r) => assert_eq!(r, &Ok(None)),
                (Err(e), r) => assert_eq!(r, &Err(e.clone())),
                // At least the scanned frame is consumed (more when it was an
                // empty inline line, which the decoder skips).
                (Ok(Some(n)), Ok(Some(_))) => assert!(buf.len() <= bytes.len() - n),
                // Empty inline lines are skipped; value errors come from the decoder.
                (Ok(Some(_)), _) => {}
            }
            // Byte-by-byte feeding agrees with the one-shot scan.
            let mut scanner = Scanner::new(limits).inline(inline);
            let mut result = Ok(None);
            for end in 0..=bytes.len() {
                result = scanner.scan(&bytes[..end]);
                if !matches!(result, Ok(None)) {
                    break;
                }
            }
            match (&scanned, &result) {
                (Ok(Some(n)), Ok(Some(m))) => assert_eq!(n, m),
                (Ok(None), r) => assert_eq!(r, &Ok(None)),
                // An error may be detected on a shorter prefix, but it is the
                // same kind of answer.
                (Err(_), r) => assert!(r.is_err(), "{scanned:?} vs {r:?}"),
                (Ok(Some(_)), r) => panic!("one-shot found a frame, incremental said {r:?}"),
            }
        }
    }
    let _ = Command::parse(bytes);
}
