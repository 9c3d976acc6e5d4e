//! `docs/grafana/nexus-dashboard.json` parses and queries the documented
//! metric names; `docs/prometheus.yml` (and every dashboard query, as PromQL)
//! passes `promtool` when it is installed (Debian package `prometheus`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn exprs() -> Vec<String> {
    let text = std::fs::read_to_string(docs().join("grafana/nexus-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dashboard_has_the_seed_panels_and_cache_panels() {
    let exprs = exprs();
    let has = |needle: &str| exprs.iter().any(|e| e.contains(needle));
    assert!(has("rate(nexus_http_requests_total[1m])"));
    assert!(has("histogram_quantile(0.99") && has("nexus_http_request_duration_ms_bucket[1m]"));
    assert!(has("increase(nexus_rate_limit_hits_total[5m])"));
    assert!(has("histogram_quantile(0.95") && has("nexus_upstream_request_duration_ms_bucket"));
    for m in [
        "nexus_cache_hits_total",
        "nexus_cache_collapsed_total",
        "nexus_cache_hot_key_hits_per_second",
        "nexus_cache_near_cache_bytes",
    ] {
        assert!(has(m), "no panel queries {m}");
    }
    // Every metric a panel names is documented.
    let doc = std::fs::read_to_string(docs().join("observability.md")).unwrap();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(base) = word.strip_prefix("nexus_") {
                let base = base.trim_end_matches("_bucket");
                assert!(
                    doc.contains(&format!("nexus_{base}")),
                    "nexus_{base} undocumented"
                );
            }
        }
    }
}

#[test]
fn promtool_accepts_config_and_queries() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("promtool not installed (apt-get install prometheus): skipping");
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(docs().join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile_dir();
    let rules = dir.join("dashboard-rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs().iter().enumerate() {
        text.push_str(&format!(
            "      - record: nexus:dashboard_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    std::fs::write(&rules, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nexus-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
