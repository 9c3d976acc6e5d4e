//! Redis cache proxy: transparent pipelined proxy, policy, singleflight, hot keys, near cache, stampede guard, tag invalidation.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
