//! Fuzzes the decoder (`decode`, `decode_bytes`, and the view decoders
//! `decode_view` and `decode_view_bytes`), the scanner and the command
//! parser on arbitrary bytes.
//!
//! The first input byte chooses the chunk size the stream is fed in and the
//! limits; the rest is the stream. Checks: no panic, no hang, the decoder
//! never consumes more than it was given, incremental and one-shot scanning
//! agree, and every decoded frame re-encodes to bytes that decode to an
//! equal frame.
//!
//! ```text
//! cd nexus-resp/fuzz && cargo +nightly fuzz run decoder -- -max_total_time=600
//! ```
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nexus_resp::{Command, Decoder, Frame, Limits, Scanner};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(mode & 0x0f) + 1;
    let limits = if mode & 0x10 != 0 {
        Limits { max_bulk_len: 64, max_elements: 8, max_depth: 4, max_inline_len: 32 }
    } else {
        Limits::default()
    };
    let inline = mode & 0x20 != 0;

    // Chunked decoding.
    let mut decoder = Decoder::new(limits).inline(inline);
    let mut buf = BytesMut::new();
    let mut frames: Vec<Frame> = Vec::new();
    'feed: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before);
                    frames.push(frame);
                }
                Ok(None) => {
                    // Only skipped empty inline lines may be removed.
                    if inline {
                        assert!(buf.len() <= before);
                    } else {
                        assert_eq!(buf.len(), before);
                    }
                    break;
                }
                Err(_) => break 'feed,
            }
        }
    }

    // Decoding the whole stream from `Bytes` (one-pass fast path) yields
    // the same frames as the chunked `BytesMut` decoding.
    let mut whole = bytes::Bytes::copy_from_slice(stream);
    let mut decoder = Decoder::new(limits).inline(inline);
    let mut from_bytes = Vec::new();
    while let Ok(Some(frame)) = decoder.decode_bytes(&mut whole) {
        from_bytes.push(frame);
    }
    let n = from_bytes.len().min(frames.len());
    if !format!("{frames:?}").contains("NaN") {
        assert_eq!(from_bytes[..n], frames[..n]);
    }

    // Views: chunked `decode_view` yields the same frames as chunked
    // `decode`, and `decode_view_bytes` over the whole stream agrees exactly
    // (frames, errors and what is left) with `decode_bytes`.
    let mut decoder = Decoder::new(limits).inline(inline);
    let mut buf = BytesMut::new();
    let mut views: Vec<Frame> = Vec::new();
    'feed_views: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode_view(&mut buf) {
                Ok(Some(view)) => {
                    assert!(!view.bytes().is_empty());
                    views.push(view.to_frame());
                }
                Ok(None) => break,
                Err(_) => break 'feed_views,
            }
        }
    }
    let n = views.len().min(frames.len());
    if !format!("{frames:?}").contains("NaN") {
        assert_eq!(views[..n], frames[..n]);
    }
    let mut whole = bytes::Bytes::copy_from_slice(stream);
    let mut whole_views = bytes::Bytes::copy_from_slice(stream);
    let mut frame_decoder = Decoder::new(limits).inline(inline);
    let mut view_decoder = Decoder::new(limits).inline(inline);
    loop {
        let a = frame_decoder.decode_bytes(&mut whole);
        let b = view_decoder.decode_view_bytes(&mut whole_views).map(|v| v.map(|v| v.to_frame()));
        if !format!("{a:?}").contains("NaN") {
            assert_eq!(a, b);
        }
        assert_eq!(whole, whole_views);
        if !matches!(a, Ok(Some(_))) {
            break;
        }
    }

    // Re-encoding a decoded frame round-trips (NaN doubles aside).
    for frame in &frames {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        let again = Decoder::new(Limits::default()).inline(false).decode(&mut out);
        if !format!("{frame:?}").contains("NaN") {
            assert_eq!(again.as_ref().ok().and_then(Option::as_ref), Some(frame));
        }
    }

    // One-shot versus byte-at-a-time scanning of the first frame.
    let one_shot = Scanner::new(limits).inline(inline).scan(stream);
    let mut scanner = Scanner::new(limits).inline(inline);
    let mut incremental = Ok(None);
    for end in (0..=stream.len()).step_by(chunk) {
        incremental = scanner.scan(&stream[..end]);
        if !matches!(incremental, Ok(None)) {
            break;
        }
    }
    if let (Ok(Some(n)), Ok(Some(m))) = (&one_shot, &incremental) {
        assert_eq!(n, m);
    }
    if let Ok(Some(n)) = one_shot {
        let _ = Command::parse(&stream[..n]);
    }
    let _ = Command::parse(stream);
});
