//! Redis cache proxy: transparent pipelined proxy, policy, singleflight, hot
//! keys, near cache, stampede guard, tag invalidation.
//!
//! The cache mechanisms are standalone modules, each usable without the
//! proxy:
//!
//! - [`singleflight`]: a cancellation-safe [`singleflight::Group`] that
//!   collapses concurrent calls for one key into one execution;
//! - [`hotkeys`]: a bounded-memory, decaying heavy-hitter detector and the TTL
//!   extension decision for hot keys;
//! - [`policy`]: the YAML policy (rules by command and key glob), compiled
//!   once into a matcher, with a file reloader;
//! - [`tags`]: tag invalidation in Redis through Lua scripts, with a small
//!   client API over the `redis` crate;
//! - [`policy::metrics`]: the counters of all of the above ([`MechanismMetrics`]).
//!
//! # Example
//!
//! ```
//! use nexus_cache::policy::Policy;
//! use nexus_cache::singleflight::Group;
//!
//! let policy = Policy::from_yaml_str(
//!     "rules:\n  - commands: [GET]\n    keys: 'product:*'\n    singleflight: true\n",
//! ).unwrap();
//! let rule = policy.match_command(b"get", b"product:1").unwrap();
//! assert!(rule.singleflight);
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let group: Group<Vec<u8>, Option<String>> = Group::new();
//! let out = group.run(b"product:1".to_vec(), || async { Some("v".to_owned()) }).await.unwrap();
//! assert_eq!(out.value.as_deref(), Some("v"));
//! # });
//! ```

pub mod hotkeys;
pub mod policy;
pub mod singleflight;
pub mod tags;

pub use policy::metrics::{MechanismMetrics, MechanismSnapshot};
