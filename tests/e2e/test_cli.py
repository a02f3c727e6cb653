"""The command lines users point at their own Kafka and stream: the emulator, then the auditor."""

from __future__ import annotations

import pytest

from localloop import audit, cli
from localloop.workload import WorkloadSpec, produce
from tests.e2e.conftest import LaneFactory

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_cli_runs_the_sink_and_audit_cli_verifies_the_stream(
    lane_factory: LaneFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a topic with a workload
    lane = lane_factory(partitions=3)
    produce(lane.bootstrap, lane.topic, WorkloadSpec(records=400, partitions=3, seed=9))
    common = ["--bootstrap", lane.bootstrap, "--topic", lane.topic, "--stream", lane.stream]

    # WHEN the emulator runs until idle, through the fault proxy, with envelope records
    exit_code = cli.main(
        [
            *common,
            "--endpoint",
            lane.kinesis_endpoint,
            "--faults",
            "throttle=0.1,lost=0.05,seed=4",
            "--env",
            "RECORD_FORMAT=envelope",
            "--batch-size",
            "100",
            "--batching-window",
            "0.05",
            "--concurrency",
            "2",
            "--until-idle",
            "0.5",
        ]
    )
    assert exit_code == 0
    assert "records_committed=400" in capsys.readouterr().out

    # THEN the audit command reads the stream back and finds it complete and in order
    assert audit.main([*common, "--endpoint", lane.kinesis_endpoint]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "records=400" in summary
    assert "lost=0" in summary
    assert "out_of_order=0" in summary
