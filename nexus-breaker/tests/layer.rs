//! The layer through `oneshot`: fail fast, timeouts, classification.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use nexus_breaker::{Breaker, BreakerConfig, BreakerLayer, Classify, Error, Outcome, State};
use tower::{Layer, ServiceExt, service_fn};

type Res = Response<()>;

fn upstream(
    calls: Arc<AtomicUsize>,
    status: StatusCode,
    delay: Duration,
) -> impl tower::Service<Request<()>, Response = Res, Error = std::io::Error, Future = impl Send> + Clone
{
    service_fn(move |_req: Request<()>| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            let mut res = Response::new(());
            *res.status_mut() = status;
            Ok::<_, std::io::Error>(res)
        }
    })
}

fn req() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn five_hundreds_open_the_circuit_and_it_fails_fast() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = Breaker::new("api", BreakerConfig::default()).unwrap();
    let svc = BreakerLayer::new(breaker.clone()).layer(upstream(
        Arc::clone(&calls),
        StatusCode::BAD_GATEWAY,
        Duration::ZERO,
    ));
    for _ in 0..3 {
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    }
    let err = svc.clone().oneshot(req()).await.unwrap_err();
    assert!(err.is_open(), "{err}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no upstream attempt while open"
    );
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn four_hundreds_are_successes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = Breaker::new("api", BreakerConfig::default()).unwrap();
    let svc = BreakerLayer::new(breaker.clone()).layer(upstream(
        Arc::clone(&calls),
        StatusCode::NOT_FOUND,
        Duration::ZERO,
    ));
    for _ in 0..5 {
        svc.clone().oneshot(req()).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().successes, 5);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_time_out_and_count_as_failures() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Sequential 5 s timeouts span 15 s: use a window that holds them all.
    let mut cfg = BreakerConfig::default();
    cfg.window = Duration::from_secs(60);
    let breaker = Breaker::new("slow", cfg).unwrap();
    let svc = BreakerLayer::new(breaker.clone()).layer(upstream(
        Arc::clone(&calls),
        StatusCode::OK,
        Duration::from_secs(6),
    ));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        match svc.clone().oneshot(req()).await.unwrap_err() {
            Error::Timeout { after, endpoint } => {
                assert_eq!(after, Duration::from_secs(5));
                assert_eq!(&*endpoint, "slow");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.snapshot().failures, 3);
}

#[tokio::test(start_paused = true)]
async fn transport_errors_are_failures_and_recovery_closes() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&fail);
    let inner = service_fn(move |_req: Request<()>| {
        let failing = flag.load(Ordering::SeqCst);
        async move {
            if failing {
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "refused",
                ))
            } else {
                Ok(Response::new(()))
            }
        }
    });
    let breaker = Breaker::new("flaky", BreakerConfig::default()).unwrap();
    let svc = BreakerLayer::new(breaker.clone()).layer(inner);
    for _ in 0..3 {
        let err = svc.clone().oneshot(req()).await.unwrap_err();
        assert!(matches!(err, Error::Inner(_)), "{err}");
        assert!(err.to_string().contains("refused"));
    }
    assert!(svc.clone().oneshot(req()).await.unwrap_err().is_open());
    fail.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

#[derive(Clone)]
struct OnlyTeapots;

impl<E> Classify<Res, E> for OnlyTeapots {
    fn classify(&self, result: Result<&Res, &E>) -> Outcome {
        match result {
            Ok(r) if r.status() == StatusCode::IM_A_TEAPOT => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignore,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn custom_classifier_decides() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = Breaker::new("tea", BreakerConfig::default()).unwrap();
    let layer = BreakerLayer::new(breaker.clone()).with_classifier(OnlyTeapots);
    let svc = layer.layer(upstream(
        Arc::clone(&calls),
        StatusCode::INTERNAL_SERVER_ERROR,
        Duration::ZERO,
    ));
    svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(
        breaker.state(),
        State::Closed,
        "500 is fine for this classifier"
    );
    assert_eq!(breaker.snapshot().successes, 1);
    let svc = layer.layer(upstream(
        Arc::clone(&calls),
        StatusCode::IM_A_TEAPOT,
        Duration::ZERO,
    ));
    for _ in 0..2 {
        svc.clone().oneshot(req()).await.unwrap();
    }
    // 2 failures of 3 calls = 66% > 50%.
    assert_eq!(breaker.state(), State::Open);
}
