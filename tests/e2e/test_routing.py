"""Topic -> stream routing (STREAM_ROUTES) through the real loop: tansu, the ESM emulator, the real
sink and two kinesalite streams, each audited against the topics routed to it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from localloop import audit, cli
from localloop.audit import read_stream
from localloop.broker import TansuBroker, create_topic
from localloop.destination import FolderDestination
from localloop.esm import EsmConfig
from localloop.function import SinkFunction, sink_env
from localloop.kinesis_local import Kinesalite, create_stream, kinesis_client
from localloop.mapping import EventSourceMapping
from localloop.workload import PlannedRecord, WorkloadSpec, produce, produce_records

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RECORDS_PER_TOPIC = 200


def fast_config(bootstrap: str, **overrides: object) -> EsmConfig:
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "batch_size": 100,
        "batching_window_s": 0.05,
        "retry_backoff_s": 0.0,
    }
    return EsmConfig(**(values | overrides))  # type: ignore[arg-type]


def test_routing_two_streams_each_holds_exactly_its_topics_in_key_order(
    broker: TansuBroker, kinesalite: Kinesalite, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three topics and two streams: orders by name, and a glob that would also match
    # orders but comes after it, for payments and refunds; no default stream
    run = uuid.uuid4().hex[:8]
    orders, payments, refunds = (f"e2e.{name}-{run}" for name in ("orders", "payments", "refunds"))
    orders_stream, money_stream = f"e2e-orders-{run}", f"e2e-money-{run}"
    client = kinesis_client(kinesalite.endpoint)
    create_stream(client, orders_stream, 2)
    create_stream(client, money_stream, 2)
    sources = {}
    for seed, topic in enumerate((orders, payments, refunds), start=20):
        create_topic(broker.bootstrap, topic, 2)
        spec = WorkloadSpec(records=RECORDS_PER_TOPIC, partitions=2, seed=seed)
        sources[topic] = produce(broker.bootstrap, topic, spec)
    env = sink_env(
        stream=None,
        endpoint=kinesalite.endpoint,
        extra={
            "RECORD_FORMAT": "envelope",
            "STREAM_ROUTES": f"{orders}={orders_stream},e2e.*-{run}={money_stream}",
            "RETRY_BASE_MS": "5",
            "RETRY_MAX_MS": "100",
        },
    )

    # WHEN one mapping reads all three topics, so one invocation writes to both streams
    mapping = EventSourceMapping(
        fast_config(broker.bootstrap),
        topics=[orders, payments, refunds],
        function_factory=lambda: SinkFunction(env),
        concurrency=2,
    )
    stats = mapping.run(
        end_offsets={tp: end for s in sources.values() for tp, end in s.end_offsets().items()}
    )

    # THEN the orders stream holds every orders record, in key order, and nothing else...
    records, shards = read_stream(client, orders_stream)
    report = audit.audit(sources[orders], records, shards)
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert (report.unexpected, report.undecodable) == (0, 0)
    assert report.delivered == RECORDS_PER_TOPIC
    assert stats.function_errors == 0
    assert stats.records_committed == 3 * RECORDS_PER_TOPIC
    # ...and the audit command finds the other stream to be exactly payments and refunds
    exit_code = audit.main(
        [
            *("--bootstrap", broker.bootstrap, "--topic", payments, "--topic", refunds),
            *("--stream", money_stream, "--endpoint", kinesalite.endpoint),
        ]
    )
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert exit_code == 0
    assert f"records={2 * RECORDS_PER_TOPIC} " in summary
    assert f"delivered={2 * RECORDS_PER_TOPIC} " in summary
    assert "lost=0 out_of_order=0" in summary
    assert "unexpected=0 " in summary


def test_routing_unrouted_topic_fails_its_batch_to_the_on_failure_destination(
    broker: TansuBroker, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    # GIVEN a topic that no route matches, and no default stream
    run = uuid.uuid4().hex[:8]
    topic, stream = f"e2e.audit-{run}", f"e2e-orders-{run}"
    create_topic(broker.bootstrap, topic, 1)
    create_stream(kinesis_client(kinesalite.endpoint), stream, 1)
    planned = [PlannedRecord(0, b"k%d" % i, b"v%d" % i, ()) for i in range(5)]
    source = produce_records(broker.bootstrap, topic, planned)
    env = sink_env(
        stream=None,
        endpoint=kinesalite.endpoint,
        extra={"RECORD_FORMAT": "envelope", "STREAM_ROUTES": f"e2e.orders-{run}={stream}"},
    )
    destination = FolderDestination(tmp_path / "on-failure", mapping_uuid="esm-uuid")

    # WHEN its mapping invokes the sink, with one retry and an on-failure destination
    stats = EventSourceMapping(
        fast_config(broker.bootstrap, maximum_retry_attempts=1),
        topics=[topic],
        function_factory=lambda: SinkFunction(env),
        destination=destination,
    ).run(end_offsets=source.end_offsets())

    # THEN every invocation failed as a whole (RoutingError), the batch went to the
    # destination after its retry, and nothing reached the stream
    assert stats.function_errors == 2
    assert stats.records_discarded == 5
    [document] = destination.documents()
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["responseContext"]["functionError"] == "Unhandled"
    assert read_stream(kinesis_client(kinesalite.endpoint), stream)[0] == []


def test_routing_cli_refuses_a_function_without_any_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN neither --stream nor STREAM_ROUTES
    # WHEN the emulator's command line starts
    exit_code = cli.main(["--bootstrap", "127.0.0.1:1", "--topic", "orders"])
    # THEN it stops before polling, with the function's own message
    assert exit_code == 2
    assert "STREAM_NAME is required (unless STREAM_ROUTES" in capsys.readouterr().err
