//! The parts of `nexus-resp` the proxy uses, in one place.

pub(crate) use nexus_resp::{Command, Limits, Scanner, encode};
