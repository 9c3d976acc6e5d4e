//! Tag invalidation: group keys under tags and delete a tag's keys at once.
//!
//! A tag is a Redis set (`<prefix><tag>`, default prefix `tag:`) holding the
//! names of its keys. Three Lua scripts keep it atomic inside Redis:
//!
//! - [`script::TAG`]: add keys to a tag set;
//! - [`script::INVALIDATE`]: delete every member key and the set itself in
//!   one step, returning how many keys existed; no write can interleave, so
//!   every key tagged before the invalidation is gone after it;
//! - [`script::WRITE_AND_TAG`]: run a write command and add its key to tag
//!   sets in one step, so a key is never written without being tagged.
//!
//! Scripts are loaded once (`SCRIPT LOAD`) and called by SHA (`EVALSHA`);
//! after a `NOSCRIPT` reply (Redis restarted, `SCRIPT FLUSH`, failover) the
//! script is loaded again and the call retried once.
//!
//! [`Tagger`] does this over the `redis` crate for applications that talk to
//! Redis directly; the proxy sends the same scripts over its own connections.
//!
//! # Cost and limits
//!
//! Invalidation reads the whole set and deletes in batches of 1,000 keys
//! inside one script: Redis is blocked for the duration (about 1 µs per key),
//! so keep tags to at most tens of thousands of keys. Expired keys stay in
//! their tag sets until the tag is invalidated (deleting a missing key is
//! free); give tag sets their own lifetime if tags are never invalidated.
//!
//! # Redis Cluster
//!
//! A script may only touch keys of one hash slot. Two ways to keep tags
//! working on a cluster:
//!
//! 1. **One slot per tag.** Put a hash tag in the tag set's name and in every
//!    key of that tag, e.g. prefix `tag:` with tag `{products}` and keys
//!    `{products}:1`, `{products}:2`: the set `tag:{products}` and its keys
//!    hash to one slot, and every script here runs unchanged. The cost is that
//!    a hot tag concentrates its keys on one shard.
//! 2. **One tag set per slot.** Leave keys where they are; tag each key into
//!    a set that carries the key's own slot as a hash tag, e.g.
//!    `tag:products:{<slot>}` (so the set lives with the key), and invalidate
//!    by running [`script::INVALIDATE`] on every such set of the tag, each on
//!    its slot's owner. Each slot is atomic on its own; the tag as a whole is
//!    not (a reader may see some slots invalidated before others).
//!
//! The scripts name the member keys they delete (`INVALIDATE`) without
//! declaring them in `KEYS`, which Redis allows on a single node and, for
//! keys of the script's own slot, on a cluster.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use nexus_cache::tags::{Expiry, Tagger};
//!
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let mut con = client.get_multiplexed_async_connection().await?;
//! let tagger = Tagger::new();
//! tagger.set_tagged(&mut con, "product:1", "{..}", Some(Expiry::Seconds(60)), &["products"]).await?;
//! tagger.tag(&mut con, "products", &["product:2"]).await?;
//! let deleted = tagger.invalidate(&mut con, "products").await?;
//! # let _ = deleted;
//! # Ok(()) }
//! ```

mod client;
pub mod script;

pub use client::{Expiry, TagError, Tagger};
