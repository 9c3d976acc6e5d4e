#!/usr/bin/env python3
"""Independent Kafka client for Nexus interop tests (confluent-kafka / librdkafka).

Not our code: tests use it to check that what Nexus produces can be read by a
standard client, and that what a standard client produces can be read by Nexus.
Every run is bounded by --timeout and prints JSON lines on stdout.

  produce:  kafka_client.py produce --bootstrap 127.0.0.1:PORT --topic T --count N [--key-prefix k] [--value-prefix v]
            kafka_client.py produce --bootstrap ... --topic T --stdin   (JSON lines {"key":..,"value":..,"headers":{..}})
            prints one {"topic","partition","offset","key"} line per delivered message.
  consume:  kafka_client.py consume --bootstrap ... --topic T --count N [--group G] [--timeout S]
            reads from the earliest offset, prints one
            {"topic","partition","offset","key","value","headers"} line per message;
            exits 1 if fewer than N arrive before the timeout.
  create:   kafka_client.py create --bootstrap ... --topic T [--partitions P]

Install: pip install confluent-kafka   (or: bash scripts/setup.sh)
"""

import argparse
import json
import sys
import time
import uuid

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - the message is the point
    sys.stderr.write(
        "confluent-kafka is not installed; install it with:\n"
        "    bash scripts/setup.sh   (or: pip install confluent-kafka)\n"
    )
    sys.exit(3)


def text(raw):
    return None if raw is None else raw.decode("utf-8", errors="replace")


def produce(args):
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "message.timeout.ms": int(args.timeout * 1000),
        }
    )
    if args.stdin:
        messages = [json.loads(line) for line in sys.stdin if line.strip()]
    else:
        messages = [
            {"key": f"{args.key_prefix}{i}", "value": f"{args.value_prefix}{i}"}
            for i in range(args.count)
        ]
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        print(
            json.dumps(
                {
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": text(msg.key()),
                }
            ),
            flush=True,
        )

    for m in messages:
        headers = list((m.get("headers") or {}).items())
        producer.produce(
            args.topic,
            key=m.get("key"),
            value=m.get("value"),
            headers=headers or None,
            on_delivery=delivered,
        )
        producer.poll(0)
    remaining = producer.flush(args.timeout)
    if remaining or errors:
        sys.stderr.write(f"undelivered: {remaining}, errors: {errors[:5]}\n")
        return 1
    return 0


def consume(args):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group or f"nexus-interop-{uuid.uuid4()}",
            # Tansu's memory storage reports a wrong high watermark, so always
            # start from the earliest offset.
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # Group joins take about half the session timeout on Tansu.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    consumer.subscribe([args.topic])
    got = 0
    deadline = time.monotonic() + args.timeout
    try:
        while got < args.count and time.monotonic() < deadline:
            msg = consumer.poll(min(0.5, max(0.0, deadline - time.monotonic())))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() in (
                    KafkaError._PARTITION_EOF,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                ):
                    continue
                raise KafkaException(msg.error())
            headers = {k: text(v) for k, v in (msg.headers() or [])}
            print(
                json.dumps(
                    {
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "key": text(msg.key()),
                        "value": text(msg.value()),
                        "headers": headers,
                    }
                ),
                flush=True,
            )
            got += 1
    finally:
        consumer.close()
    if got < args.count:
        sys.stderr.write(f"consumed {got} of {args.count} before the {args.timeout}s timeout\n")
        return 1
    return 0


def create(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)],
        operation_timeout=args.timeout,
        request_timeout=args.timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=args.timeout)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        print(json.dumps({"topic": topic, "partitions": args.partitions}), flush=True)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("produce", "consume", "create"):
        p = sub.add_parser(name)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--topic", required=True)
        p.add_argument("--timeout", type=float, default=30.0)
        if name == "produce":
            p.add_argument("--count", type=int, default=1)
            p.add_argument("--key-prefix", default="key-")
            p.add_argument("--value-prefix", default="value-")
            p.add_argument("--stdin", action="store_true")
        if name == "consume":
            p.add_argument("--count", type=int, default=1)
            p.add_argument("--group")
        if name == "create":
            p.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args()
    return {"produce": produce, "consume": consume, "create": create}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
