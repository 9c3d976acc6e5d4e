//! The Nexus event consumer: auto-blocks abusive IPs, alerts on opened circuits, flags latency spikes.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
