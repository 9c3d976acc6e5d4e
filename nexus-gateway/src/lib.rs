//! The Nexus HTTP API gateway: auth, limits, balancing, breakers, retries, transforms, discovery, admin.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
