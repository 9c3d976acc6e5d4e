//! `init` installs the global subscriber once; a second call is an error.
#![allow(clippy::unwrap_used)]

use nexus_telemetry::{Error, TelemetryConfig, init};

#[test]
fn second_init_is_an_error_not_a_panic() {
    // No endpoint: no runtime needed.
    let guard = init(TelemetryConfig::new("once")).unwrap();
    assert!(matches!(
        init(TelemetryConfig::new("twice")),
        Err(Error::AlreadyInitialized)
    ));
    // Invalid config after a successful init still reports AlreadyInitialized first.
    assert!(init(TelemetryConfig::new("x").sampling_ratio(2.0)).is_err());
    drop(guard);
}

#[test]
fn exporter_outside_a_runtime_is_a_typed_error() {
    let cfg = TelemetryConfig::new("s").otlp_endpoint(Some("http://127.0.0.1:4318".into()));
    let res = nexus_telemetry::build_dispatch(cfg, std::io::sink);
    assert!(matches!(res, Err(Error::NoRuntime)));
}
