//! Versioned gateway events, a non-blocking emitter, and a Kafka producer and group consumer.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
