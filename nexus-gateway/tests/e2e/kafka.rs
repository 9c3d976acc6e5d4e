//! `events.kafka_bootstrap`: events reach a real Kafka-protocol broker (Tansu),
//! read back with an independent client (confluent-kafka).

use std::time::Duration;

use anyhow::Result;
use http::StatusCode;
use nexus_events::{Event, EventKind, TOPIC_REQUEST_COMPLETED};
use nexus_testkit::{HttpUpstream, KafkaBroker, KafkaClient};

use crate::harness::{CLIENT_ID, PROXY, TestGateway};

#[tokio::test]
async fn request_completed_events_reach_kafka() -> Result<()> {
    let broker = KafkaBroker::start().await?;
    let client = KafkaClient::new(broker.bootstrap());
    client.create_topic(TOPIC_REQUEST_COMPLETED, 1).await?;
    let up = HttpUpstream::start().await?;
    let extra = format!(
        "{PROXY}events:\n  kafka_bootstrap: \"{}\"\n",
        broker.bootstrap()
    );
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK);
    let rid = r.header("x-request-id").unwrap().to_owned();

    let got = client
        .consume(TOPIC_REQUEST_COMPLETED, 1, Duration::from_secs(20))
        .await?;
    let event = Event::from_json(got[0].value.as_deref().unwrap_or_default().as_bytes())?;
    let EventKind::RequestCompleted(c) = event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(
        (c.url.as_str(), c.status_code, c.client_id.as_str()),
        ("/api/products", 200, CLIENT_ID)
    );
    assert_eq!(event.correlation_id.as_deref(), Some(rid.as_str()));
    Ok(())
}
