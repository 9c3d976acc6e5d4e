//! The breaker state machine through the plain handle API, on tokio's paused clock.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_breaker::{Breaker, BreakerConfig, Error, Outcome, State, Transition};

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap()
}

type Log = Arc<Mutex<Vec<(State, State)>>>;

fn breaker(config: BreakerConfig) -> (Breaker, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let b = Breaker::with_listener(
        "up",
        config,
        Arc::new(move |t: &Transition| sink.lock().unwrap().push((t.from, t.to))),
    )
    .unwrap();
    (b, log)
}

fn call(b: &Breaker, outcome: Outcome) -> Result<(), Error> {
    b.acquire()?.record(outcome);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn opens_above_threshold_once_volume_reached() {
    let (b, log) = breaker(BreakerConfig::default());
    call(&b, Outcome::Failure).unwrap();
    call(&b, Outcome::Failure).unwrap();
    assert_eq!(b.state(), State::Closed, "2 calls < volume 3");
    call(&b, Outcome::Success).unwrap();
    // 2 of 3 failed = 66% > 50%, but only a failure can trip the breaker.
    assert_eq!(b.state(), State::Closed);
    call(&b, Outcome::Failure).unwrap();
    assert_eq!(b.state(), State::Open, "3 of 4 failed");
    let err = b.acquire().unwrap_err();
    match err {
        Error::Open {
            retry_after,
            endpoint,
        } => {
            assert_eq!(retry_after, Duration::from_secs(10));
            assert_eq!(&*endpoint, "up");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(*log.lock().unwrap(), vec![(State::Closed, State::Open)]);
    let snap = b.snapshot();
    assert_eq!((snap.failures, snap.successes, snap.rejected), (3, 1, 1));
    assert_eq!(snap.window.failures, 3);
    assert!(snap.opened_at.is_some());
    assert_eq!(snap.retry_after_ms, Some(10_000));
}

#[tokio::test(start_paused = true)]
async fn exactly_at_threshold_stays_closed() {
    let (b, _) = breaker(BreakerConfig::default());
    for o in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Failure,
    ] {
        call(&b, o).unwrap();
    }
    assert_eq!(b.state(), State::Closed, "50% is not above 50%");
}

#[tokio::test(start_paused = true)]
async fn old_failures_leave_the_window() {
    let (b, _) = breaker(BreakerConfig::default());
    call(&b, Outcome::Failure).unwrap();
    call(&b, Outcome::Failure).unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    call(&b, Outcome::Failure).unwrap();
    assert_eq!(b.state(), State::Closed, "only 1 call in the last 10 s");
    assert_eq!(b.snapshot().window.total(), 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_after_reset_then_closes_on_success() {
    let (b, log) = breaker(BreakerConfig::default());
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    assert!(!b.is_available());
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(b.acquire().is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(b.is_available());
    let probe = b.acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    // One probe only: the next call is refused while it is in flight.
    assert!(matches!(b.acquire(), Err(Error::Open { .. })));
    assert!(!b.is_available());
    probe.success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().window.total(), 0, "window cleared on close");
    assert!(b.snapshot().opened_at.is_none());
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_for_a_full_reset_timeout() {
    let (b, log) = breaker(BreakerConfig::default());
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    b.acquire().unwrap().failure();
    assert_eq!(b.state(), State::Open);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(b.acquire().is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(b.acquire().is_ok());
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn configurable_probes_and_successes_to_close() {
    let mut cfg = BreakerConfig::default();
    cfg.half_open_probes = nz(2);
    cfg.successes_to_close = nz(3);
    let (b, _) = breaker(cfg);
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let p1 = b.acquire().unwrap();
    let p2 = b.acquire().unwrap();
    assert!(b.acquire().is_err(), "two probe slots");
    p1.success();
    p2.success();
    assert_eq!(b.state(), State::HalfOpen, "2 of 3 successes");
    b.acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_frees_its_slot() {
    let (b, _) = breaker(BreakerConfig::default());
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = b.acquire().unwrap();
    drop(probe); // cancelled call
    assert_eq!(b.state(), State::HalfOpen);
    b.acquire().unwrap().success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn stale_outcomes_do_not_decide_half_open() {
    let (b, _) = breaker(BreakerConfig::default());
    let slow = b.acquire().unwrap(); // admitted while closed
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = b.acquire().unwrap();
    slow.success(); // finishes late: must not close the breaker
    assert_eq!(b.state(), State::HalfOpen);
    probe.failure();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn invalid_config_is_rejected_with_the_field_named() {
    let mut cfg = BreakerConfig::default();
    cfg.error_threshold_percent = 101;
    let err = Breaker::new("x", cfg).unwrap_err();
    assert!(err.to_string().contains("error_threshold_percent"), "{err}");
    let mut cfg = BreakerConfig::default();
    cfg.window = Duration::from_millis(5);
    assert!(
        Breaker::new("x", cfg)
            .unwrap_err()
            .to_string()
            .contains("window")
    );
    let mut cfg = BreakerConfig::default();
    cfg.reset_timeout = Duration::ZERO;
    assert!(
        Breaker::new("x", cfg)
            .unwrap_err()
            .to_string()
            .contains("reset_timeout")
    );
}

#[test]
fn gauge_values_match_the_seed() {
    assert_eq!(State::Closed.as_gauge(), 0);
    assert_eq!(State::Open.as_gauge(), 1);
    assert_eq!(State::HalfOpen.as_gauge(), 2);
}

#[tokio::test(start_paused = true)]
async fn registry_is_bounded_and_lists_snapshots() {
    let reg = nexus_breaker::BreakerRegistry::new(BreakerConfig::default(), None, 2).unwrap();
    let a = reg.get_or_insert("http://b").unwrap();
    let a2 = reg.get_or_insert("http://b").unwrap();
    reg.get_or_insert("http://a").unwrap();
    assert!(reg.get_or_insert("http://c").is_err());
    for _ in 0..3 {
        a.acquire().unwrap().failure();
    }
    assert_eq!(a2.state(), State::Open, "same breaker");
    let snaps = reg.snapshots();
    let names: Vec<&str> = snaps.iter().map(|s| &*s.endpoint).collect();
    assert_eq!(names, ["http://a", "http://b"]);
    let json = serde_json::to_value(&snaps[1]).unwrap();
    assert_eq!(json["state"], "open");
    assert_eq!(json["endpoint"], "http://b");
    assert!(reg.remove("http://a").is_some());
    assert!(reg.get_or_insert("http://c").is_ok());
}

/// Threads racing for probes on a half-open breaker get exactly
/// `half_open_probes` of them, and exactly one listener call per transition.
#[test]
fn concurrent_acquires_get_exactly_the_probe_slots() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cfg = BreakerConfig::default();
    cfg.half_open_probes = nz(3);
    let (b, log) = breaker(cfg);
    for _ in 0..3 {
        call(&b, Outcome::Failure).unwrap();
    }
    rt.block_on(tokio::time::advance(Duration::from_secs(10)));
    let granted = std::sync::Mutex::new(Vec::new());
    let handle = rt.handle().clone();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                // Read the runtime's paused clock from this thread too.
                let _rt = handle.enter();
                for _ in 0..100 {
                    if let Ok(p) = b.acquire() {
                        granted.lock().unwrap().push(p);
                    }
                }
            });
        }
    });
    let granted = granted.into_inner().unwrap();
    assert_eq!(granted.len(), 3);
    assert!(granted.iter().all(|p| p.is_probe()));
    assert_eq!(
        *log.lock().unwrap(),
        vec![(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
    for p in granted {
        p.success();
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(log.lock().unwrap().len(), 3, "closed once, not three times");
}
