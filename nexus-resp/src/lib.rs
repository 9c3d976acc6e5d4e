//! Streaming, zero-copy RESP2/RESP3 codec: decoder, scan-only framer, encoder and tokio codec.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
