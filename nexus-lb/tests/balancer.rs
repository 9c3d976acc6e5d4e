//! Picking behaviour of every strategy, reloads and passive health.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;

use nexus_lb::{Balancer, CircuitState, EndpointSpec, Exclude, Strategy};

fn specs(list: &[(&str, u32)]) -> Vec<EndpointSpec> {
    list.iter()
        .map(|(u, w)| EndpointSpec::new(u, *w).unwrap())
        .collect()
}

fn lb(strategy: Strategy, list: &[(&str, u32)]) -> Balancer {
    let lb = Balancer::builder()
        .strategy(strategy)
        .seed(3)
        .build()
        .unwrap();
    lb.set_endpoints(&specs(list)).unwrap();
    lb
}

fn counts(lb: &Balancer, picks: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..picks {
        *m.entry(lb.pick().unwrap().url().to_owned()).or_default() += 1;
    }
    m
}

const A: &str = "http://a:1";
const B: &str = "http://b:1";
const C: &str = "http://c:1";

#[test]
fn empty_balancer_picks_nothing() {
    for s in [
        Strategy::RoundRobin,
        Strategy::LeastOutstanding,
        Strategy::WeightedRoundRobin,
        Strategy::P2cPeakEwma,
    ] {
        assert!(Balancer::new(s).pick().is_none(), "{s:?}");
    }
}

#[test]
fn round_robin_cycles_in_order() {
    let lb = lb(Strategy::RoundRobin, &[(A, 5), (B, 1), (C, 1)]);
    let urls: Vec<_> = (0..6)
        .map(|_| lb.pick().unwrap().url().to_owned())
        .collect();
    assert_eq!(urls, [A, B, C, A, B, C]);
}

#[test]
fn smooth_wrr_interleaves_by_weight() {
    let lb = lb(Strategy::WeightedRoundRobin, &[(A, 5), (B, 1), (C, 1)]);
    let urls: Vec<_> = (0..7)
        .map(|_| lb.pick().unwrap().url().to_owned())
        .collect();
    assert_eq!(urls, [A, A, B, A, C, A, A]);
}

#[test]
fn least_outstanding_avoids_busy_endpoints() {
    let lb = lb(Strategy::LeastOutstanding, &[(A, 1), (B, 1), (C, 1)]);
    let a = lb.endpoints().into_iter().find(|e| e.url() == A).unwrap();
    let _busy: Vec<_> = (0..3).map(|_| a.start()).collect();
    let c = counts(&lb, 100);
    assert_eq!(c.get(A), None, "{c:?}");
    // Ties between the idle two are broken at random (seeded).
    assert!((30..=70).contains(&c[B]), "{c:?}");
    assert_eq!(c[B] + c[C], 100);
}

#[test]
fn least_outstanding_spreads_concurrent_requests() {
    let lb = lb(Strategy::LeastOutstanding, &[(A, 1), (B, 1)]);
    let guards: Vec<_> = (0..10).map(|_| lb.pick().unwrap().start()).collect();
    let inflight: Vec<_> = lb.endpoints().iter().map(|e| e.in_flight()).collect();
    assert_eq!(inflight, [5, 5]);
    drop(guards);
    assert!(lb.endpoints().iter().all(|e| e.in_flight() == 0));
    assert_eq!(lb.stats().endpoints[0].handled, 5);
}

#[test]
fn p2c_prefers_the_endpoint_with_less_load() {
    let lb = lb(Strategy::P2cPeakEwma, &[(A, 1), (B, 1)]);
    let a = lb.endpoints().into_iter().find(|e| e.url() == A).unwrap();
    let _busy: Vec<_> = (0..4).map(|_| a.start()).collect();
    // With two endpoints both are always the candidates: B wins every time.
    let c = counts(&lb, 200);
    assert_eq!(c[B], 200, "{c:?}");
}

#[test]
fn p2c_is_reproducible_with_a_seed() {
    let list = [(A, 1), (B, 1), (C, 1), ("http://d:1", 1)];
    let seq = |lb: &Balancer| -> Vec<String> {
        (0..50)
            .map(|_| lb.pick().unwrap().url().to_owned())
            .collect()
    };
    let x = seq(&lb(Strategy::P2cPeakEwma, &list));
    let y = seq(&lb(Strategy::P2cPeakEwma, &list));
    assert_eq!(x, y);
    // And it does use more than one endpoint.
    assert!(x.iter().any(|u| u != &x[0]));
}

#[test]
fn exclusion_steers_every_strategy_elsewhere() {
    for s in [
        Strategy::RoundRobin,
        Strategy::LeastOutstanding,
        Strategy::WeightedRoundRobin,
        Strategy::P2cPeakEwma,
    ] {
        let lb = lb(s, &[(A, 3), (B, 1)]);
        let a = lb.endpoints().into_iter().find(|e| e.url() == A).unwrap();
        let mut ex = Exclude::new();
        ex.insert(a.id());
        for _ in 0..20 {
            assert_eq!(lb.pick_excluding(&ex).unwrap().url(), B, "{s:?}");
        }
        // Everything excluded: still pick rather than fail.
        let b = lb.endpoints().into_iter().find(|e| e.url() == B).unwrap();
        ex.insert(b.id());
        assert!(lb.pick_excluding(&ex).is_some(), "{s:?}");
    }
}

#[test]
fn reload_keeps_state_of_endpoints_that_stay() {
    let lb = lb(Strategy::WeightedRoundRobin, &[(A, 1), (B, 1)]);
    let a = lb.endpoints().into_iter().find(|e| e.url() == A).unwrap();
    let guard = a.start();
    lb.set_circuit_state(A, CircuitState::Closed);

    let change = lb.set_endpoints(&specs(&[(A, 3), (C, 1)])).unwrap();
    assert_eq!((change.added, change.removed, change.reweighted), (1, 1, 1));
    let a2 = lb.endpoints().into_iter().find(|e| e.url() == A).unwrap();
    assert_eq!(a2.id(), a.id(), "same endpoint object");
    assert_eq!(a2.in_flight(), 1);
    assert_eq!(a2.weight(), 3);
    let c = counts(&lb, 400);
    assert_eq!((c[A], c[C]), (300, 100));
    assert_eq!(c.get(B), None);
    drop(guard);
    assert_eq!(a2.in_flight(), 0);

    // Same set again: nothing changes.
    assert!(
        lb.set_endpoints(&specs(&[(A, 3), (C, 1)]))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn invalid_sets_leave_the_previous_one() {
    let lb = lb(Strategy::RoundRobin, &[(A, 1)]);
    let dup = specs(&[(B, 1), (B, 2)]);
    assert!(lb.set_endpoints(&dup).is_err());
    assert_eq!(lb.endpoints().len(), 1);
    assert_eq!(lb.pick().unwrap().url(), A);
}

#[test]
fn open_circuits_leave_the_rotation_until_half_open() {
    for s in [
        Strategy::RoundRobin,
        Strategy::LeastOutstanding,
        Strategy::WeightedRoundRobin,
        Strategy::P2cPeakEwma,
    ] {
        let lb = lb(s, &[(A, 1), (B, 1)]);
        // By authority or by URL.
        assert!(lb.set_circuit_state("a:1", CircuitState::Open));
        assert!(!lb.set_circuit_state("nope:1", CircuitState::Open));
        assert_eq!(lb.available(), 1);
        let c = counts(&lb, 50);
        assert_eq!(c[B], 50, "{s:?}");
        let stats = lb.stats();
        assert!(stats.endpoints[0].circuit_open && !stats.endpoints[0].healthy);

        lb.set_circuit_state(A, CircuitState::HalfOpen);
        assert_eq!(lb.available(), 2);
        assert!(counts(&lb, 50).contains_key(A), "{s:?}");

        lb.set_circuit_state(A, CircuitState::Open);
        lb.set_circuit_state(B, CircuitState::Open);
        assert!(lb.pick().is_none());
    }
}

#[test]
fn stats_serialise_for_lb_stats() {
    let lb = lb(Strategy::P2cPeakEwma, &[(A, 2)]);
    let json = serde_json::to_value(lb.stats()).unwrap();
    assert_eq!(json["strategy"], "p2c_peak_ewma");
    let e = &json["endpoints"][0];
    assert_eq!(e["url"], A);
    assert_eq!(e["weight"], 2);
    assert_eq!(e["in_flight"], 0);
    assert_eq!(e["healthy"], true);
    assert!(e["ewma_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test(start_paused = true)]
async fn lazily_half_opening_breakers_get_their_endpoint_back_after_the_reset() {
    use std::time::Duration;
    let lb = lb(Strategy::RoundRobin, &[(A, 1), (B, 1)]);
    assert!(lb.set_circuit_open_for(A, Duration::from_secs(10)));
    assert_eq!(lb.available(), 1);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(lb.available(), 1);
    // Opened again before the timer fired: the newer report wins.
    lb.set_circuit_open_for(A, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lb.available(), 1, "the stale timer must not readmit");
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(lb.available(), 2);
    assert!(!lb.stats().endpoints[0].circuit_open);
    // An explicit report cancels a pending readmission.
    lb.set_circuit_open_for(B, Duration::from_secs(1));
    lb.set_circuit_state(B, CircuitState::Open);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lb.available(), 1);
}

#[test]
fn strategy_names_parse_with_aliases() {
    for (name, s) in [
        ("round_robin", Strategy::RoundRobin),
        ("RR", Strategy::RoundRobin),
        ("least-connections", Strategy::LeastOutstanding),
        ("wrr", Strategy::WeightedRoundRobin),
        ("p2c", Strategy::P2cPeakEwma),
    ] {
        assert_eq!(name.parse::<Strategy>().unwrap(), s, "{name}");
        assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
    }
    assert!("fastest".parse::<Strategy>().is_err());
    let s: Strategy = serde_json::from_str(r#""least_connections""#).unwrap();
    assert_eq!(s, Strategy::LeastOutstanding);
}

#[test]
fn a_failure_after_the_response_counts_without_the_streams_age() {
    use std::time::Duration;
    let build = || {
        let lb = Balancer::builder()
            .strategy(Strategy::P2cPeakEwma)
            .failure_penalty(Duration::from_millis(5))
            .build()
            .unwrap();
        lb.set_endpoints(&specs(&[(A, 1)])).unwrap();
        lb
    };
    // The same long-lived request (400 ms, a stream) failing mid-body, recorded
    // both ways: as a plain failure its age enters the latency estimate; after
    // the response head only the penalty does. Both count one failure.
    let (plain, after) = (build(), build());
    let (p, a) = (plain.pick().unwrap().start(), after.pick().unwrap().start());
    std::thread::sleep(Duration::from_millis(400));
    p.record_failure();
    a.record_failure_after_response();
    let (sp, sa) = (plain.stats(), after.stats());
    assert_eq!(sp.endpoints[0].failed, 1);
    assert_eq!(sa.endpoints[0].failed, 1);
    assert!(sp.endpoints[0].ewma_ms >= 300.0, "{sp:?}");
    assert!(sa.endpoints[0].ewma_ms < 100.0, "{sa:?}");
}
