"""Crashes as a fault: the emulator SIGKILLs the function's process mid-invocation and
redelivers the batch to a fresh process (no memory); nothing is lost or reordered, and no
process is left behind."""

from __future__ import annotations

import os

import pytest

from localloop.faults import FaultSpec
from localloop.function_process import CrashFault, FunctionProcess
from localloop.proxy import FaultProxy
from localloop.workload import WorkloadSpec, produce
from tests.e2e.conftest import LaneFactory
from tests.process_functions import function_processes_of

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_crashes_lose_nothing_reorder_nothing_and_leave_no_process(
    lane_factory: LaneFactory,
) -> None:
    # GIVEN a workload, Kinesis faults, and a crash in a third of the invocations
    lane = lane_factory(partitions=3)
    source = produce(lane.bootstrap, lane.topic, WorkloadSpec(records=1200, partitions=3, seed=4))
    spec = FaultSpec.parse("throttle=0.05,lost=0.02,crash=0.3,seed=6")
    crash = CrashFault(spec.crash, seed=spec.seed)
    started: list[int] = []

    with FaultProxy(lane.kinesis_endpoint, spec) as proxy:
        env = lane.sink_env(proxy.endpoint)

        def environment() -> FunctionProcess:
            function = FunctionProcess(env, crash=crash, log_level="WARNING")
            started.append(function.pid)
            return function

        # WHEN the emulator runs the real sink, each poller in processes of its own
        stats = lane.deliver(
            source,
            environment,
            config=lane.config(batch_size=100, function_timeout_s=10.0),
            concurrency=2,
        )

    # THEN crashes happened, each batch they hit was redelivered to a fresh process...
    assert stats.crashes > 0
    assert stats.function_errors >= stats.crashes
    assert len(started) >= stats.crashes + 1
    # ...nothing is lost, out of order or given up on...
    report = lane.audit(source)
    assert (report.lost, report.out_of_order, report.corrupted) == (0, 0, 0)
    assert (stats.records_discarded, stats.records_committed) == (0, source.total)
    # ...and every function process the run started is gone
    assert function_processes_of(os.getpid()) == []
