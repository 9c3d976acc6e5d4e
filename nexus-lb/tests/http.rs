//! End to end over real TCP: testkit HTTP upstreams behind
//! `retry -> Lb -> timeout -> hyper client`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nexus_lb::discover::watch_services_file;
use nexus_lb::health::{HealthConfig, HttpProbe, spawn_health_checks};
use nexus_lb::retry::{RetryConfig, RetryPolicy};
use nexus_lb::{Balancer, BoxError, EndpointSpec, LbError, LbLayer, Strategy, TrackedBody};
use nexus_testkit::HttpUpstream;
use tokio::time::{Instant, timeout};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

type Stack =
    BoxCloneService<Request<Full<Bytes>>, Response<TrackedBody<hyper::body::Incoming>>, BoxError>;

const LIMIT: Duration = Duration::from_secs(20);

fn stack(lb: &Balancer) -> Stack {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let policy = RetryPolicy::new(RetryConfig {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        seed: Some(1),
        ..RetryConfig::default()
    })
    .unwrap();
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(policy.layer())
            .layer(LbLayer::new(lb.clone()))
            .timeout(Duration::from_secs(2))
            .service(client),
    )
}

fn balancer(strategy: Strategy, ups: &[(&HttpUpstream, u32)]) -> Balancer {
    let lb = Balancer::builder()
        .strategy(strategy)
        .seed(11)
        .build()
        .unwrap();
    let specs: Vec<_> = ups
        .iter()
        .map(|(u, w)| EndpointSpec::new(&u.url(), *w).unwrap())
        .collect();
    lb.set_endpoints(&specs).unwrap();
    lb
}

async fn upstream(name: &str) -> HttpUpstream {
    HttpUpstream::builder().name(name).start().await.unwrap()
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://placeholder/api/products")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Sends `req`, reads the whole body; returns (status, served-by name).
async fn send(s: &Stack, req: Request<Full<Bytes>>) -> Result<(StatusCode, String), BoxError> {
    send_owned(s.clone(), req).await
}

async fn send_owned(s: Stack, req: Request<Full<Bytes>>) -> Result<(StatusCode, String), BoxError> {
    let resp = timeout(LIMIT, s.oneshot(req)).await??;
    let status = resp.status();
    let name = resp
        .headers()
        .get(nexus_testkit::UPSTREAM_HEADER)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    resp.into_body().collect().await?;
    Ok((status, name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_is_retried_on_the_healthy_one() {
    let bad = upstream("bad").await;
    bad.set_status(503);
    let good = upstream("good").await;
    let lb = balancer(Strategy::RoundRobin, &[(&bad, 1), (&good, 1)]);
    let s = stack(&lb);
    for _ in 0..20 {
        let (status, name) = send(&s, get()).await.unwrap();
        assert_eq!((status, name.as_str()), (StatusCode::OK, "good"));
    }
    assert!(
        bad.requests() >= 5,
        "round robin sent first attempts to bad"
    );
    assert_eq!(good.requests(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_avoid_the_endpoint_that_just_failed() {
    // Smooth WRR would send most retries back to the heavy, failing endpoint;
    // the exclusion set sends each retry to the other one.
    let bad = upstream("bad").await;
    bad.set_status(502);
    let good = upstream("good").await;
    let lb = balancer(Strategy::WeightedRoundRobin, &[(&bad, 10), (&good, 1)]);
    let s = stack(&lb);
    for _ in 0..10 {
        let (status, name) = send(&s, get()).await.unwrap();
        assert_eq!((status, name.as_str()), (StatusCode::OK, "good"));
    }
    assert_eq!(good.requests(), 10);
    assert!(bad.requests() >= 9, "first attempts mostly go to bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_capped_and_posts_are_not_retried() {
    let bad = upstream("bad").await;
    bad.set_status(503);
    let lb = balancer(Strategy::RoundRobin, &[(&bad, 1)]);
    let s = stack(&lb);

    let (status, _) = send(&s, get()).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bad.requests(), 3, "max_attempts = 3");

    let post = Request::post("http://placeholder/api/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, _) = send(&s, post).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bad.requests(), 4, "a POST is sent once");

    let mut marked = Request::post("http://placeholder/api/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    marked.extensions_mut().insert(nexus_lb::retry::Retryable);
    send(&s, marked).await.unwrap();
    assert_eq!(bad.requests(), 7, "a POST marked retryable is retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upstream_mid_request_is_invisible_to_the_client() {
    let victim = HttpUpstream::builder()
        .name("victim")
        .latency(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let survivor = upstream("survivor").await;
    let lb = balancer(Strategy::RoundRobin, &[(&victim, 1), (&survivor, 1)]);
    let s = stack(&lb);

    // Round robin starts with the victim: kill it while it holds the request.
    let in_flight = tokio::spawn({
        let s = s.clone();
        async move { send_owned(s, get()).await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while victim.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the victim"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.stop().await;
    let (status, name) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, name.as_str()), (StatusCode::OK, "survivor"));

    // Later requests: refused connections to the victim are retried too.
    for _ in 0..10 {
        let (status, name) = send(&s, get()).await.unwrap();
        assert_eq!((status, name.as_str()), (StatusCode::OK, "survivor"));
    }
    assert_eq!(victim.requests(), 1);
    let stats = lb.stats();
    assert!(stats.endpoints[0].failed >= 1, "{stats:?}");
    assert!(
        stats.endpoints.iter().all(|e| e.in_flight == 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_steers_away_from_the_slow_upstream() {
    let slow = HttpUpstream::builder()
        .name("slow")
        .latency(Duration::from_millis(150))
        .start()
        .await
        .unwrap();
    let fast = upstream("fast").await;
    let lb = balancer(Strategy::P2cPeakEwma, &[(&slow, 1), (&fast, 1)]);
    let s = stack(&lb);
    for _ in 0..30 {
        assert_eq!(send(&s, get()).await.unwrap().0, StatusCode::OK);
    }
    // One request to the slow one teaches the EWMA; decay brings it back at
    // most rarely within this short run.
    assert!(slow.requests() <= 3, "slow got {}", slow.requests());
    assert!(fast.requests() >= 27);
    let stats = lb.stats();
    assert!(
        stats.endpoints[0].ewma_ms > stats.endpoints[1].ewma_ms,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_steers_away_from_the_slow_upstream() {
    let slow = HttpUpstream::builder()
        .name("slow")
        .latency(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let fast = upstream("fast").await;
    let lb = balancer(Strategy::LeastOutstanding, &[(&slow, 1), (&fast, 1)]);
    let s = stack(&lb);
    // Four concurrent clients for one second.
    let end = Instant::now() + Duration::from_secs(1);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                while Instant::now() < end {
                    assert_eq!(
                        send_owned(s.clone(), get()).await.unwrap().0,
                        StatusCode::OK
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (slow_n, fast_n) = (slow.requests(), fast.requests());
    assert!(fast_n > 5 * slow_n, "slow {slow_n}, fast {fast_n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_lasts_until_the_body_is_read() {
    let up = upstream("up").await;
    let lb = balancer(Strategy::RoundRobin, &[(&up, 1)]);
    let s = stack(&lb);
    let resp = timeout(LIMIT, s.clone().oneshot(get()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lb.stats().endpoints[0].in_flight, 1);
    resp.into_body().collect().await.unwrap();
    let e = &lb.stats().endpoints[0];
    assert_eq!((e.in_flight, e.handled), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_is_a_typed_error() {
    let lb = Balancer::new(Strategy::RoundRobin);
    let err = send(&stack(&lb), get()).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref(), Some(LbError::NoAvailableEndpoint)),
        "{err}"
    );
}

fn write_services(path: &Path, body: &str) {
    // Write-then-rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn services(entries: &[(&HttpUpstream, u32)]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|(u, w)| format!(r#"{{"url":"{}","weight":{w}}}"#, u.url()))
        .collect();
    format!(r#"{{"services":[{}]}}"#, list.join(","))
}

/// Waits until `cond` holds; returns how long it took. Bounded.
async fn until(cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition not met in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn urls(lb: &Balancer) -> Vec<(String, u32)> {
    lb.endpoints()
        .iter()
        .map(|e| (e.url().to_owned(), e.weight()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_json_edits_apply_within_a_second() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    write_services(&path, &services(&[(&a, 2)]));

    let lb = Balancer::new(Strategy::WeightedRoundRobin);
    let _task = lb.spawn_discovery(watch_services_file(&path, Duration::from_millis(250)));
    until(|| lb.endpoints().len() == 1).await;
    let s = stack(&lb);

    // Addition: b joins with weight 1.
    let before = b.requests();
    write_services(&path, &services(&[(&a, 2), (&b, 1)]));
    let took = until(|| lb.endpoints().len() == 2).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    for _ in 0..6 {
        send(&s, get()).await.unwrap();
    }
    assert_eq!(b.requests() - before, 2, "weights 2:1 over six requests");

    // Weight change, keeping a's counters.
    let handled_a = lb.stats().endpoints[0].handled;
    write_services(&path, &services(&[(&a, 2), (&b, 5)]));
    let took = until(|| urls(&lb).iter().any(|(_, w)| *w == 5)).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    assert_eq!(lb.stats().endpoints[0].handled, handled_a);

    // Removal: a leaves; every request goes to b.
    write_services(&path, &services(&[(&b, 5)]));
    let took = until(|| lb.endpoints().len() == 1).await;
    assert!(took < Duration::from_secs(1), "applied after {took:?}");
    let a_before = a.requests();
    for _ in 0..5 {
        assert_eq!(send(&s, get()).await.unwrap().1, "b");
    }
    assert_eq!(a.requests(), a_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_services_json_is_ignored() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    write_services(&path, &services(&[(&a, 1)]));
    let lb = Balancer::new(Strategy::RoundRobin);
    let _task = lb.spawn_discovery(watch_services_file(&path, Duration::from_millis(50)));
    until(|| lb.endpoints().len() == 1).await;
    let expected = urls(&lb);

    for broken in [
        r#"{"services":[{"url":"#.to_owned(),
        r#"{"services":[{"url":"not a url","weight":1}]}"#.to_owned(),
        format!(r#"{{"services":[{{"url":"{}","weight":0}}]}}"#, b.url()),
        format!(
            r#"{{"services":[{{"url":"{}","weight":1,"extra":true}}]}}"#,
            b.url()
        ),
    ] {
        write_services(&path, &broken);
        // Several polling periods pass; the previous set stays.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(urls(&lb), expected, "after {broken}");
        assert_eq!(lb.pick().unwrap().url(), a.url());
    }
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(urls(&lb), expected, "a missing file keeps the set");

    // A valid file is picked up again.
    write_services(&path, &services(&[(&b, 1)]));
    until(|| lb.endpoints().first().is_some_and(|e| e.url() == b.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_follow_the_upstream() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let lb = balancer(Strategy::RoundRobin, &[(&a, 1), (&b, 1)]);
    let cfg = HealthConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(50),
        ..HealthConfig::default()
    };
    let _task = spawn_health_checks(&lb, cfg, HttpProbe::new("/health").unwrap()).unwrap();
    a.set_status(503);
    until(|| lb.available() == 1).await;
    let s = stack(&lb);
    for _ in 0..4 {
        assert_eq!(send(&s, get()).await.unwrap().1, "b");
    }
    let last = a.last_request().unwrap();
    assert_eq!(last.uri.path(), "/health");

    a.set_status(200);
    until(|| lb.available() == 2).await;
    // Killing b: refused probes take it out.
    b.stop().await;
    until(|| lb.available() == 1 && lb.pick().unwrap().url() == a.url()).await;
}
