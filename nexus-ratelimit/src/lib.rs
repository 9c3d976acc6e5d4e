//! Keyed token-bucket rate limiting as a tower layer, with bounded memory and an optional Redis-backed global mode.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
