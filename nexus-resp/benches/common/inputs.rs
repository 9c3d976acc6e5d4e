//! The benchmark inputs, shared by the decode and encode benches.
#![allow(dead_code)]

use nexus_resp::encode;

/// One named input stream and how many frames it holds.
pub(crate) struct Input {
    pub(crate) name: &'static str,
    pub(crate) bytes: Vec<u8>,
    /// Frames in `bytes`.
    pub(crate) frames: usize,
    /// Elements reported as criterion throughput (frames, or array elements).
    pub(crate) elements: u64,
}

pub(crate) fn set_command() -> Vec<u8> {
    let mut out = Vec::new();
    encode::command(&mut out, &[b"SET", b"key:123", b"value"]);
    out
}

pub(crate) fn get_command() -> Vec<u8> {
    let mut out = Vec::new();
    encode::command(&mut out, &[b"GET", b"key:123"]);
    out
}

pub(crate) fn bulk_reply(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::new();
    encode::bulk(&mut out, &payload);
    out
}

/// The values of the 1,000-element reply (`value:0000` ... `value:0999`).
pub(crate) fn array_values() -> Vec<Vec<u8>> {
    (0..1000)
        .map(|i| format!("value:{i:04}").into_bytes())
        .collect()
}

pub(crate) fn array_reply() -> Vec<u8> {
    let values = array_values();
    let mut out = Vec::new();
    encode::header(&mut out, b'*', values.len() as u64);
    for v in &values {
        encode::bulk(&mut out, v);
    }
    out
}

/// The keys of the 64-command pipeline: alternating SET and GET.
pub(crate) fn pipeline_args() -> Vec<Vec<Vec<u8>>> {
    (0..64)
        .map(|i| {
            let key = format!("key:{i}").into_bytes();
            if i % 2 == 0 {
                vec![b"SET".to_vec(), key, b"value".to_vec()]
            } else {
                vec![b"GET".to_vec(), key]
            }
        })
        .collect()
}

pub(crate) fn pipeline() -> Vec<u8> {
    let mut out = Vec::new();
    for args in pipeline_args() {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        encode::command(&mut out, &args);
    }
    out
}

pub(crate) fn all() -> Vec<Input> {
    vec![
        Input {
            name: "a_set_command",
            bytes: set_command(),
            frames: 1,
            elements: 1,
        },
        Input {
            name: "a_get_command",
            bytes: get_command(),
            frames: 1,
            elements: 1,
        },
        Input {
            name: "b_bulk_16KiB",
            bytes: bulk_reply(16 * 1024),
            frames: 1,
            elements: 1,
        },
        Input {
            name: "b_bulk_1MiB",
            bytes: bulk_reply(1024 * 1024),
            frames: 1,
            elements: 1,
        },
        Input {
            name: "c_array_1000",
            bytes: array_reply(),
            frames: 1,
            elements: 1000,
        },
        Input {
            name: "d_pipeline_64",
            bytes: pipeline(),
            frames: 64,
            elements: 64,
        },
    ]
}
