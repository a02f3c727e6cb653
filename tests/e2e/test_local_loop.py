"""The real sink, driven by the ESM emulator, against tansu + kinesalite behind the fault proxy."""

from __future__ import annotations

from typing import Any

import pytest

from localloop.context import LambdaContext
from localloop.destination import FolderDestination
from localloop.esm import Function
from localloop.events import EVENT_SOURCE_SELF_MANAGED
from localloop.faults import FaultSpec
from localloop.proxy import FaultProxy
from localloop.workload import PlannedRecord, WorkloadSpec, produce, produce_records
from tests.e2e.conftest import LaneFactory

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HEAVY_FAULTS = "throttle=0.1,internal=0.03,request_throttle=0.05,request5xx=0.05,lost=0.05,seed=11"


def test_local_loop_delivers_every_record_in_key_order_under_faults(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN a realistic workload on 4 partitions and heavy Kinesis faults
    lane = lane_factory(partitions=4, shards=3)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=3000, partitions=4, seed=5))
    with FaultProxy(lane.kinesis_endpoint, FaultSpec.parse(HEAVY_FAULTS)) as proxy:
        # WHEN the emulator invokes the real sink until everything is committed
        stats = lane.deliver(
            source,
            lane.sink(proxy.endpoint),
            config=lane.config(batch_size=250),
            concurrency=2,
        )
        faults = proxy.stats

    # THEN nothing is lost, nothing is out of order, nothing corrupted, nothing given up on
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert report.delivered == source.total == 3000
    assert stats.records_discarded == 0
    assert stats.records_committed == 3000
    # AND the faults really happened (decided by a hash of each record's first attempt)
    assert faults.records_throttled > 0
    assert faults.records_internal_failure > 0
    assert faults.limit_violations == 0


class RaisesAfterWriting:
    """Runs the real sink, then raises on every other invocation: the writes stay, the response
    is lost, and the ESM must retry the whole batch."""

    def __init__(self, inner: Function) -> None:
        self._inner = inner
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        self.calls += 1
        response = self._inner(event, context)
        if self.calls % 2 == 1:
            raise RuntimeError("crashed after publishing")
        return response

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


def test_local_loop_retries_whole_batch_when_function_raises(lane_factory: LaneFactory) -> None:
    # GIVEN a function that raises after publishing on every other invocation
    lane = lane_factory(partitions=2)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=600, partitions=2, seed=2))
    sink = lane.sink(lane.kinesis_endpoint)

    # WHEN the emulator runs it
    stats = lane.deliver(
        source, lambda: RaisesAfterWriting(sink()), config=lane.config(batch_size=100)
    )

    # THEN the failed batches were retried whole, which duplicated records...
    report = lane.audit(source)
    assert stats.function_errors > 0
    assert stats.retries > 0
    assert report.duplicates > 0
    # ...and the consumer rule still yields every record once, in order
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert report.delivered == 600


def test_local_loop_sends_exhausted_batch_to_on_failure_destination(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN partition 0 holds a record Kinesis always rejects (at offset 3 of 6)
    lane = lane_factory(partitions=2)
    planned = [
        PlannedRecord(0, b"poison" if i == 3 else f"k{i}".encode(), b"v%d" % i, ())
        for i in range(6)
    ] + [PlannedRecord(1, f"other{i}".encode(), b"w%d" % i, ()) for i in range(6)]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    destination = FolderDestination(lane.workdir / "on-failure", mapping_uuid="esm-uuid")
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(poison=("poison",))) as proxy:
        # WHEN the emulator runs with 2 retries and an on-failure destination (each invocation
        # retries the poison record until its time is up: the function in its own process)
        stats = lane.deliver(
            source,
            lane.process_sink(proxy.endpoint, KINESIS_TIMEOUT_SECONDS="0.2"),
            config=lane.config(maximum_retry_attempts=2, function_timeout_s=1.5),
            destination=destination,
        )

    # THEN the tail of partition 0 from the poison record on was given up after 1 + 2 attempts
    documents = list(destination.documents())
    assert len(documents) == 1
    document = documents[0]
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 3
    info = document["KafkaBatchInfo"]["recordsInfo"][f"{lane.topic}-0"]
    assert (info["firstRecordOffset"], info["lastRecordOffset"]) == ("3", "5")
    payload_offsets = [r["offset"] for r in document["payload"]["records"][f"{lane.topic}-0"]]
    assert payload_offsets == [3, 4, 5]
    assert stats.records_discarded == 3
    # AND the poison record never reached the stream, everything else did
    in_stream = lane.stream_offsets()
    assert 3 not in in_stream[(lane.topic, 0)]
    assert {0, 1, 2} <= set(in_stream[(lane.topic, 0)])
    assert sorted(set(in_stream[(lane.topic, 1)])) == list(range(6))


def test_local_loop_sink_answers_before_its_deadline_when_kinesis_is_slow(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN one hot key per partition, without aggregation (one record per request round),
    # and 150 ms per request: 20 rounds a partition, 3 s, more than one invocation has
    lane = lane_factory(partitions=2)
    planned = [PlannedRecord(i % 2, b"hot-%d" % (i % 2), b"x" * 100, ()) for i in range(40)]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(latency_ms=150)) as proxy:
        # WHEN each invocation may run 2 s, the function in its own process as in Lambda (and a
        # batch that makes no progress in 3 attempts is given up on: a function that ran past
        # its deadline is killed each time)
        stats = lane.deliver(
            source,
            lane.process_sink(proxy.endpoint, KINESIS_TIMEOUT_SECONDS="0.3", AGGREGATION="off"),
            config=lane.config(function_timeout_s=2.0, batch_size=100, maximum_retry_attempts=2),
        )

    # THEN no invocation timed out: the sink stopped early and reported the rest...
    assert stats.timeouts == 0
    assert stats.partial_failures > 0
    assert stats.least_time_left_ms is not None and stats.least_time_left_ms > 0
    # ...and the ESM's retries delivered everything, in order
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.delivered) == (0, 0, 40)


def test_local_loop_delivers_self_managed_kafka_events(lane_factory: LaneFactory) -> None:
    # GIVEN a mapping that builds self-managed Kafka events (no eventSourceArn)
    lane = lane_factory(partitions=2)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=200, partitions=2, seed=3))
    config = lane.config(event_source=EVENT_SOURCE_SELF_MANAGED, event_source_arn=None)

    # WHEN the real sink is invoked with them
    stats = lane.deliver(source, lane.sink(lane.kinesis_endpoint), config=config)

    # THEN everything arrives, in order
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.delivered) == (0, 0, 200)
    assert stats.function_errors == 0


def test_local_loop_retries_then_discards_when_the_function_never_initialises(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN records on two partitions and a function setting the sink refuses at cold start
    lane = lane_factory(partitions=2)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=40, partitions=2, seed=3))
    destination = FolderDestination(lane.workdir / "on-failure", mapping_uuid="esm-uuid")

    # WHEN the emulator runs two pollers with one retry and an on-failure destination
    stats = lane.deliver(
        source,
        lane.sink(lane.kinesis_endpoint, AGGREGATION="yes"),
        config=lane.config(maximum_retry_attempts=1),
        destination=destination,
        concurrency=2,
    )

    # THEN every invocation failed at init, as a function error, and the mapping carried on:
    # each batch was tried 1 + 1 times and then discarded, never silently dropped
    documents = list(destination.documents())
    assert stats.invocations == stats.init_errors == stats.function_errors == 2 * len(documents)
    assert {d["responseContext"]["functionError"] for d in documents} == {"Unhandled"}
    assert stats.records_discarded == 40
    assert stats.records_committed == 0
    # AND nothing reached the stream
    assert lane.stream_offsets() == {}
