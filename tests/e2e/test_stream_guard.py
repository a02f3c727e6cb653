"""When the cloud changes underneath: a stream switched to AUTO, answers stalled after the status
line. The real sink, driven by the ESM emulator, against tansu + kinesalite behind the fault
proxy, which makes DescribeStreamSummary say what kinesalite does not know."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from localloop.esm import EsmStats
from localloop.faults import FaultSpec
from localloop.proxy import FaultProxy, SummaryRewrite
from localloop.workload import WorkloadSpec, produce
from tests.e2e.conftest import LaneFactory

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# How long the test waits for the function to do what it must do at once (never reached when
# the loop works; a generous bound on a busy 2-core machine when it does not).
PATIENCE_S = 120.0


def test_stream_guard_writes_nothing_while_auto_then_everything_in_order(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN a stream whose summary says AUTO, and a function that re-reads it every second
    lane = lane_factory(partitions=2)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=400, partitions=2, seed=9))
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(), summary=SummaryRewrite("AUTO")) as proxy:
        outcome: dict[str, Any] = {}
        sink = lane.sink(proxy.endpoint, STREAM_CHECK_SECONDS="1")
        delivering = threading.Thread(
            target=lambda: outcome.update(stats=lane.deliver(source, sink)), daemon=True
        )
        # WHEN the emulator invokes it until the function has read the summary three times
        delivering.start()
        assert proxy.wait_for_summaries(3, PATIENCE_S)
        put_while_auto = proxy.stats.put_records_requests
        # AND the stream is switched back to USER_PARTITION_KEY
        proxy.summary = SummaryRewrite("USER_PARTITION_KEY")
        delivering.join(timeout=PATIENCE_S * 2)
        assert not delivering.is_alive()
        written = proxy.stats.records_written

    # THEN not one PutRecords reached the stream while it was AUTO...
    assert put_while_auto == 0
    # ...and once switched back every record arrived, in key order, nothing given up on
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert report.delivered == source.total == 400
    stats: EsmStats = outcome["stats"]
    assert stats.records_discarded == 0
    assert stats.function_errors == 0
    assert stats.partial_failures > 0  # the held batches were reported, then redelivered
    assert written > 0  # all of it after the switch (aggregates: fewer Kinesis records)


def test_stalled_answers_are_lost_answers_never_invocation_errors(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN a proxy that writes, then stalls a fifth of the answers after their status line
    lane = lane_factory(partitions=2)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=600, partitions=2, seed=4))
    spec = FaultSpec(stall=0.2, seed=5)
    with FaultProxy(lane.kinesis_endpoint, spec) as proxy:
        # WHEN the emulator invokes the real sink (each request cut after half a second) with
        # batches of 10: some 60 first attempts, so that stalling a fifth of them stalls some
        # whatever the batches hold (the stalled requests are picked by their records)
        stats = lane.deliver(
            source,
            lane.sink(proxy.endpoint, KINESIS_TIMEOUT_SECONDS="0.5"),
            config=lane.config(batch_size=10),
            concurrency=2,
        )
        stalled = proxy.stats.responses_stalled

    # THEN no invocation raised: each stalled request was retried as a lost answer, and the
    # stream holds every record in key order (duplicates only, which the consumer rule drops)
    assert stalled > 0
    assert stats.function_errors == 0
    assert stats.records_discarded == 0
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert report.delivered == source.total == 600
