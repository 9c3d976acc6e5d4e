//! An invalid services file is reported with a clear `warn` log line.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_lb::discover::watch_services_file;
use nexus_lb::{Balancer, Strategy};

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// current_thread: the discovery task runs on this thread, under this
// thread's default subscriber.
#[tokio::test]
async fn invalid_file_is_logged_once_and_ignored() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.json");
    std::fs::write(
        &path,
        r#"{"services":[{"url":"http://127.0.0.1:3001","weight":2}]}"#,
    )
    .unwrap();
    let lb = Balancer::new(Strategy::RoundRobin);
    let _task = lb.spawn_discovery(watch_services_file(&path, Duration::from_millis(20)));
    tokio::time::timeout(Duration::from_secs(5), async {
        while lb.endpoints().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();

    std::fs::write(
        &path,
        r#"{"services":[{"url":"http://127.0.0.1:3001","weight":0}]}"#,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lb.endpoints()[0].weight(), 2, "previous set kept");

    let text = logs.text();
    let warnings: Vec<_> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("ignoring invalid services file"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one line per bad version, not per poll:\n{text}"
    );
    assert!(
        warnings[0].contains("weight 0 is out of range"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("services.json"), "{}", warnings[0]);
}
