//! # Nexus
//!
//! Nexus keeps hot cache data warm and backends standing when traffic spikes.
//! This package is a facade: each mechanism lives in its own crate, re-exported
//! here behind a feature of the same name so that you compile only what you use.
//!
//! | feature     | crate              | what it is                                              |
//! |-------------|--------------------|---------------------------------------------------------|
//! | `resp`      | [`nexus-resp`]     | streaming, zero-copy RESP2/RESP3 codec                  |
//! | `cache`     | [`nexus-cache`]    | Redis cache proxy: singleflight, hot keys, near cache   |
//! | `ratelimit` | [`nexus-ratelimit`]| keyed token-bucket rate limiting as a tower layer       |
//! | `lb`        | [`nexus-lb`]       | load balancing, discovery, health and retry             |
//! | `breaker`   | [`nexus-breaker`]  | per-endpoint circuit breaker as a tower layer           |
//! | `events`    | [`nexus-events`]   | versioned events, non-blocking emitter, Kafka client    |
//! | `gateway`   | [`nexus-gateway`]  | the HTTP API gateway                                    |
//! | `consumer`  | [`nexus-consumer`] | the event consumer service                              |
//! | `telemetry` | [`nexus-telemetry`]| traces, OTLP export, W3C propagation, JSON logs         |
//! | `admin`     | [`nexus-admin`]    | admin HTTP server: `/metrics`, `/stats`, `/healthz`     |
//! | `full`      | all of the above   |                                                         |
//!
//! With no feature enabled the facade is empty; enable what you need, e.g.
//! `nexus = { version = "0.1", features = ["resp"] }`, and use the crate
//! through its module:
//!
//! ```
//! # #[cfg(feature = "resp")]
//! # {
//! let mut buf = Vec::new();
//! nexus::resp::encode::command(&mut buf, &[b"GET", b"product:1"]);
//! assert_eq!(buf, b"*2\r\n$3\r\nGET\r\n$9\r\nproduct:1\r\n");
//! # }
//! ```
//!
//! [`nexus-resp`]: https://docs.rs/nexus-resp
//! [`nexus-cache`]: https://docs.rs/nexus-cache
//! [`nexus-ratelimit`]: https://docs.rs/nexus-ratelimit
//! [`nexus-lb`]: https://docs.rs/nexus-lb
//! [`nexus-breaker`]: https://docs.rs/nexus-breaker
//! [`nexus-events`]: https://docs.rs/nexus-events
//! [`nexus-gateway`]: https://docs.rs/nexus-gateway
//! [`nexus-consumer`]: https://docs.rs/nexus-consumer
//! [`nexus-telemetry`]: https://docs.rs/nexus-telemetry
//! [`nexus-admin`]: https://docs.rs/nexus-admin

#[cfg(feature = "resp")]
#[doc(inline)]
pub use nexus_resp as resp;

#[cfg(feature = "cache")]
#[doc(inline)]
pub use nexus_cache as cache;

#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use nexus_ratelimit as ratelimit;

#[cfg(feature = "lb")]
#[doc(inline)]
pub use nexus_lb as lb;

#[cfg(feature = "breaker")]
#[doc(inline)]
pub use nexus_breaker as breaker;

#[cfg(feature = "events")]
#[doc(inline)]
pub use nexus_events as events;

#[cfg(feature = "gateway")]
#[doc(inline)]
pub use nexus_gateway as gateway;

#[cfg(feature = "consumer")]
#[doc(inline)]
pub use nexus_consumer as consumer;

#[cfg(feature = "telemetry")]
#[doc(inline)]
pub use nexus_telemetry as telemetry;

#[cfg(feature = "admin")]
#[doc(inline)]
pub use nexus_admin as admin;
