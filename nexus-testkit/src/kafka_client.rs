//! [`KafkaClient`]: drives `scripts/kafka_client.py` (confluent-kafka, i.e.
//! librdkafka), a Kafka client that is not ours, for interop checks.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use serde::Deserialize;

use crate::{Error, Result, binary::PYTHON};

/// Default path of the interop script, inside this repository.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka_client.py");

/// Environment variable that overrides the script path.
const SCRIPT_ENV: &str = "NEXUS_KAFKA_CLIENT";

/// Bound on a produce or a topic creation.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra time the child gets beyond its own timeout before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// `(key, value, headers)` for [`KafkaClient::produce_with_headers`].
pub type MessageWithHeaders<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A message delivered by [`KafkaClient::produce`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Delivered {
    /// Topic written to.
    pub topic: String,
    /// Partition the broker put it in.
    pub partition: i32,
    /// Offset the broker gave it.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<String>,
}

/// A message read by [`KafkaClient::consume`] (key, value and header values
/// decoded as lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Consumed {
    /// Topic read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<String>,
    /// Value, if any (`None` for a tombstone).
    pub value: Option<String>,
    /// Headers as name → value.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, Option<String>>,
}

/// Produces and consumes through confluent-kafka, an independent client.
///
/// Works against any broker, not only [`KafkaBroker`](crate::KafkaBroker).
/// Needs `python3` (or `$NEXUS_PYTHON`) with `confluent-kafka` installed
/// (`bash scripts/setup.sh`); when it is missing, calls fail with the install
/// command in the error.
#[derive(Debug, Clone)]
pub struct KafkaClient {
    bootstrap: String,
}

impl KafkaClient {
    /// A client for `bootstrap` (`host:port[,host:port]`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
        }
    }

    /// The bootstrap servers it talks to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Produces `(key, value)` messages with `acks=all` and returns where each landed.
    pub async fn produce(&self, topic: &str, messages: &[(&str, &str)]) -> Result<Vec<Delivered>> {
        let lines: Vec<String> = messages
            .iter()
            .map(|(key, value)| serde_json::json!({ "key": key, "value": value }).to_string())
            .collect();
        self.produce_lines(topic, lines).await
    }

    /// Produces `(key, value, headers)` messages.
    pub async fn produce_with_headers(
        &self,
        topic: &str,
        messages: &[MessageWithHeaders<'_>],
    ) -> Result<Vec<Delivered>> {
        let lines: Vec<String> = messages
            .iter()
            .map(|(key, value, headers)| {
                let headers: serde_json::Map<_, _> = headers
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).into()))
                    .collect();
                serde_json::json!({ "key": key, "value": value, "headers": headers }).to_string()
            })
            .collect();
        self.produce_lines(topic, lines).await
    }

    async fn produce_lines(&self, topic: &str, lines: Vec<String>) -> Result<Vec<Delivered>> {
        let mut command = self.command("produce", topic, PRODUCE_TIMEOUT)?;
        command.arg("--stdin");
        let mut input = lines.join("\n");
        input.push('\n');
        let out = run_with_stdin(command, input, PRODUCE_TIMEOUT + GRACE).await?;
        parse_lines(&out)
    }

    /// Reads `count` messages from the **earliest** offset in a fresh consumer
    /// group (session timeout 6 s), waiting at most `timeout`; fewer is an error.
    pub async fn consume(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Consumed>> {
        let mut command = self.command("consume", topic, timeout)?;
        command.arg("--count").arg(count.to_string());
        let out = crate::client::run(command, timeout + GRACE).await?;
        parse_lines(&out)
    }

    /// Creates `topic` with `partitions` partitions (an existing topic is fine).
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        let mut command = self.command("create", topic, PRODUCE_TIMEOUT)?;
        command.arg("--partitions").arg(partitions.to_string());
        crate::client::run(command, PRODUCE_TIMEOUT + GRACE).await?;
        Ok(())
    }

    fn command(&self, action: &str, topic: &str, timeout: Duration) -> Result<Command> {
        let python = PYTHON.locate()?;
        let script =
            std::env::var_os(SCRIPT_ENV).map_or_else(|| PathBuf::from(SCRIPT), PathBuf::from);
        let mut command = Command::new(python);
        command
            .arg(script)
            .arg(action)
            .arg("--bootstrap")
            .arg(&self.bootstrap)
            .arg("--topic")
            .arg(topic)
            .arg("--timeout")
            .arg(timeout.as_secs_f64().to_string());
        Ok(command)
    }
}

fn parse_lines<T: for<'de> Deserialize<'de>>(out: &str) -> Result<Vec<T>> {
    out.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|err| Error::Client {
                command: "kafka_client.py".into(),
                status: "unparsable output".into(),
                stderr: format!("{err}: {line}"),
            })
        })
        .collect()
}

/// Runs the script with `input` as its standard input.
async fn run_with_stdin(command: Command, input: String, timeout: Duration) -> Result<String> {
    // Write the input to a temporary file and hand it over as stdin: no
    // writer thread, and the child can never block on a full pipe.
    let mut file = tempfile::tempfile()?;
    file.write_all(input.as_bytes())?;
    std::io::Seek::rewind(&mut file)?;
    crate::client::run_with_stdin(command, Stdio::from(file), timeout).await
}
