//! Fuzzes the decoder, the scanner and the command parser on arbitrary bytes.
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
