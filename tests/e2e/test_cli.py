"""The command lines users point at their own Kafka and stream: the emulator, then the auditor."""

from __future__ import annotations

import pytest

from localloop import audit, cli
from localloop.workload import PlannedRecord, WorkloadSpec, produce, produce_records
from tests.e2e.conftest import LaneFactory, LocalBucket

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


def test_audit_cli_resolves_claim_check_pointers_when_asked(
    lane_factory: LaneFactory, local_bucket: LocalBucket, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN key "k" with offsets 0, 1, 2, of which 1 is too large for the function's limit and
    # is claim-checked into a local S3, a pointer in its place
    lane = lane_factory(partitions=1)
    planned = [PlannedRecord(0, b"k", b"x" * 3000 if i == 1 else b"v%d" % i, ()) for i in range(3)]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    claim_checks = {"MAX_RECORD_BYTES": "2048", "OVERSIZE_RECORDS": "claim_check"}
    lane.deliver(source, lane.sink(lane.kinesis_endpoint, **claim_checks, **local_bucket.storage()))

    # WHEN the stream is audited with --claim-checks (the operator's S3), then without
    resolved, resolved_out = lane.run_audit(capsys, "--claim-checks")
    unresolved, unresolved_out = lane.run_audit(capsys)

    # THEN, resolving, the pointer delivers its record in its key's turn, and the audit passes
    assert resolved == 0, resolved_out
    assert "lost=0 out_of_order=0 " in resolved_out
    assert "claim_checks=1 unresolved_claim_checks=0" in resolved_out
    # AND, not, the record behind the pointer is lost, not delivered
    assert unresolved == 1
    assert "delivered=2 lost=1 " in unresolved_out
    assert "claim_checks=0 unresolved_claim_checks=1" in unresolved_out
