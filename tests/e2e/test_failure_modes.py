"""failureMode in the local loop: a Kinesis outage longer than divert's 10 retries, against the
real sink, broker and kinesalite. block waits and then delivers every record in order; divert
gives the batch up to its on-failure destination, and later records of its keys overtake it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from localloop.audit import AuditReport
from localloop.context import LambdaContext
from localloop.destination import FolderDestination
from localloop.esm import EsmStats, ExecutionEnvironment, Function, answer_stamp
from localloop.failure_mode import cdk_context, with_failure_mode
from localloop.faults import FaultSpec
from localloop.proxy import FaultProxy
from localloop.workload import PlannedRecord, SourceLog, produce_records
from msk_kinesis_sink.limits import INFINITE_RETRIES_CAP
from tests.e2e.conftest import Lane, LaneFactory
from tests.factories import b64

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The outage lasts more invocations than divert's first attempt and its 10 retries.
OUTAGE_INVOCATIONS = INFINITE_RETRIES_CAP + 2
RECORDS = 60
KEYS = 5


class KinesisOutage:
    """The function under an outage: for its first `invocations` invocations every PutRecords
    fails (5xx, through a proxy that fails them all), then Kinesis is back. Two containers of
    the real sink, one per side of the outage, each initialised before the first invocation (an
    init is not an invocation's time) and each in a process of its own: an invocation under the
    outage runs until its time is up, and is judged by its own answer, as Lambda judges it."""

    def __init__(
        self, down: Callable[[], Function], up: Callable[[], Function], invocations: int
    ) -> None:
        self._containers = (ExecutionEnvironment(down), ExecutionEnvironment(up))
        for container in self._containers:
            container.initialise()
        self._invocations = invocations
        self.calls = 0
        self.answered_at: float | None = None

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        self.calls += 1
        container = self._containers[self.calls > self._invocations]
        self.answered_at = None
        response = container(event, context)
        self.answered_at = answer_stamp(container)
        return response

    def close(self) -> None:
        for container in self._containers:
            container.close()


def _through_an_outage(
    lane: Lane, mode: str
) -> tuple[EsmStats, FolderDestination | None, AuditReport, SourceLog]:
    """Produce RECORDS records (KEYS keys, one partition) and deliver them through an
    outage, with the mapping the stack builds for `mode`: the ESM's stats, its destination,
    the audit and the source."""
    planned = [PlannedRecord(0, f"key-{i % KEYS}".encode(), b"v%d" % i, ()) for i in range(RECORDS)]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    config, diverts = with_failure_mode(
        lane.config(batch_size=20, function_timeout_s=0.8), {**cdk_context(), "failureMode": mode}
    )
    destination = FolderDestination(lane.workdir / mode, mapping_uuid=mode) if diverts else None
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(request5xx=1.0)) as failing:
        outage = KinesisOutage(
            lane.process_sink(failing.endpoint, KINESIS_TIMEOUT_SECONDS="0.2"),
            lane.process_sink(lane.kinesis_endpoint),
            OUTAGE_INVOCATIONS,
        )
        stats = lane.deliver(source, lambda: outage, config=config, destination=destination)
        assert failing.stats.requests_5xx > 0  # the outage was real: every request failed
    assert outage.calls > OUTAGE_INVOCATIONS  # and it ended
    return stats, destination, lane.audit(source), source


def test_failure_mode_block_waits_out_a_kinesis_outage_and_delivers_in_order(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN failureMode=block (no destination, unlimited retries) and an outage of 12 invocations
    lane = lane_factory(partitions=1)
    # WHEN the emulator delivers through it
    stats, destination, report, _ = _through_an_outage(lane, "block")
    # THEN nothing was given up: the partitions waited, then every record arrived in key order
    assert destination is None
    assert stats.records_discarded == 0
    assert stats.retries >= INFINITE_RETRIES_CAP + 1
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert report.delivered == RECORDS


def test_failure_mode_divert_gives_the_batch_up_and_later_records_overtake_it(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN failureMode=divert (the default: the S3 destination, 10 retries) and the same outage
    lane = lane_factory(partitions=1)
    # WHEN the emulator delivers through it
    stats, destination, report, source = _through_an_outage(lane, "divert")
    assert destination is not None
    # THEN the first batch was tried 1 + 10 times and sent to the destination...
    documents = list(destination.documents())
    assert [d["requestContext"]["condition"] for d in documents] == ["RetryAttemptsExhausted"]
    assert documents[0]["requestContext"]["approximateInvokeCount"] == INFINITE_RETRIES_CAP + 1
    discarded = {
        (record["partition"], record["offset"], record["key"])
        for records in documents[0]["payload"]["records"].values()
        for record in records
    }
    assert stats.records_discarded == len(discarded) > 0
    # ...it is missing from the stream, and everything after it was delivered...
    in_stream = {(p, o) for (_, p), offsets in lane.stream_offsets().items() for o in offsets}
    assert not {(p, o) for p, o, _ in discarded} & in_stream
    assert report.lost == len(discarded) and report.delivered == RECORDS - len(discarded)
    # ...so later records of the discarded records' keys reached consumers first: replaying
    # the batch can only put them back out of order (docs/replay.md, the ordering caveat)
    overtaken = {
        record.key
        for partition, offset, key in discarded
        for record in source.by_tp[(lane.topic, partition)]
        if record.offset > offset
        and b64(record.key) == key
        and (partition, record.offset) in in_stream
    }
    assert len(overtaken) == KEYS
