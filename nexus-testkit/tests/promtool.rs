//! `check_metrics` passes a well-formed exposition and reports promtool's
//! complaints about a broken one.

use nexus_testkit::promtool::check_metrics;

const GOOD: &str = "# HELP nexus_demo_requests_total Requests served.\n\
# TYPE nexus_demo_requests_total counter\n\
nexus_demo_requests_total{route=\"/a\"} 3\n";

#[tokio::test]
async fn accepts_a_valid_exposition() {
    check_metrics(GOOD).await.expect("valid exposition");
}

#[tokio::test]
async fn reports_a_counter_without_total_suffix_and_bad_syntax() {
    let lint = "# HELP nexus_demo_requests Requests.\n# TYPE nexus_demo_requests counter\nnexus_demo_requests 1\n";
    let err = check_metrics(lint).await.expect_err("lint failure");
    assert!(err.to_string().contains("_total"), "{err}");

    let broken = "nexus_demo{route=\"/a\" 1\n";
    assert!(check_metrics(broken).await.is_err());
}
