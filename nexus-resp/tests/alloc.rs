//! Proves that the scan path never allocates, and counts the allocations of
//! the decoder.
//!
//! This is its own test binary so that the counting global allocator only
//! applies here. Allocations are counted per thread, so the test harness's
//! own threads do not disturb the counts.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use nexus_resp::{Command, Decoder, Limits, Scanner, encode};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter
// is a const-initialised thread-local `Cell` that needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn pipeline() -> Vec<u8> {
    let mut buf = Vec::new();
    for i in 0..64 {
        let key = format!("key:{i}");
        if i % 2 == 0 {
            encode::command(&mut buf, &[b"SET", key.as_bytes(), b"value"]);
        } else {
            encode::command(&mut buf, &[b"GET", key.as_bytes()]);
        }
    }
    buf.extend_from_slice(b"PING\r\n");
    buf.extend_from_slice(b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n");
    buf
}

#[test]
fn scan_path_and_decoder_allocations() {
    // --- Scanner + Command: zero allocations per command. ---
    let input = pipeline();
    let mut scanner = Scanner::new(Limits::default());
    let mut seen_keys = 0;
    let before = allocs();
    let mut rest = &input[..];
    let mut commands = 0;
    while let Some(n) = scanner.scan(rest).unwrap() {
        let cmd = Command::parse(&rest[..n]).unwrap();
        assert!(cmd.is(b"SET") || cmd.is(b"GET") || cmd.is(b"PING") || cmd.is(b"MGET"));
        seen_keys += cmd.keys().count();
        rest = &rest[n..];
        commands += 1;
    }
    // Resuming a frame split in two is allocation-free as well.
    let big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
    assert_eq!(scanner.scan(&big[..15]).unwrap(), None);
    assert_eq!(scanner.scan(big).unwrap(), Some(big.len()));
    let scan_allocs = allocs() - before;
    assert_eq!(commands, 66);
    assert_eq!(seen_keys, 64 + 2);
    assert_eq!(scan_allocs, 0, "the scan path allocated");

    // --- Decoder: non-aggregate replies cost no allocation once the read
    // buffer is shared; each aggregate costs exactly its element vector. ---
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = Decoder::new(Limits::default()).inline(false);
    buf.extend_from_slice(b"+OK\r\n");
    decoder.decode(&mut buf).unwrap().unwrap(); // promotes the buffer to shared once
    let mut frames = Vec::with_capacity(8);
    let before = allocs();
    buf.extend_from_slice(b"+OK\r\n$5\r\nvalue\r\n:42\r\n$-1\r\n");
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert_eq!(frames.len(), 4);
    assert_eq!(
        allocs() - before,
        0,
        "decoding non-aggregate replies allocated"
    );
    drop(frames);

    buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$7\r\nkey:123\r\n");
    let before = allocs();
    let frame = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(allocs() - before, 1, "a command array costs one Vec");
    drop(frame);

    // --- Views: once the decoder's index has grown, no allocation per
    // frame, whatever its number of elements. ---
    let input = pipeline();
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(2 * input.len());
    buf.extend_from_slice(&input);
    // Warm up: the index grows to the largest command (and the buffer is
    // promoted to shared).
    while decoder.decode_view(&mut buf).unwrap().is_some() {}
    buf.extend_from_slice(&input);
    let before = allocs();
    let mut args = 0;
    while let Some(view) = decoder.decode_view(&mut buf).unwrap() {
        args += view
            .root()
            .iter()
            .filter(|a| a.as_slice().is_some())
            .count();
    }
    assert_eq!(args, 32 * 3 + 32 * 2 + 1 + 3);
    assert_eq!(allocs() - before, 0, "decoding views allocated");
    let mut bytes = bytes::Bytes::from(input);
    let before = allocs();
    let mut frames = 0;
    while decoder.decode_view_bytes(&mut bytes).unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 66);
    assert_eq!(allocs() - before, 0, "decoding views from Bytes allocated");
}
