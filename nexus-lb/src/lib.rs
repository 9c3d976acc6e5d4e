//! Load balancing for tower services: strategies, live discovery from services.json, health and retry.
//!
//! **Status: skeleton.** This crate is reserved in the workspace and has no
//! functionality yet; see the project's issue tracker for the work that fills it.
