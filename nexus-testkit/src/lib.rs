//! Test kit for Nexus: starts real redis-server, Kafka-protocol broker and HTTP upstreams on free loopback ports.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
