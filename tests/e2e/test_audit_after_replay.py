"""`make audit` after a replay: told what the replay put back and when it began, it counts the
replayed records, tells the documented ordering caveat apart and passes; not told, it fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from localloop.workload import PlannedRecord, produce_records
from tests.e2e.conftest import LaneFactory, LocalBucket
from tests.replay_runs import run_replay

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_audit_cli_tells_the_replay_caveat_from_reordering(
    lane_factory: LaneFactory, local_bucket: LocalBucket, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN key "k" with offsets 0, 1, 2, of which 1 is too large for the function's limit
    lane = lane_factory(partitions=1)
    planned = [
        PlannedRecord(0, b"k", b"v0", ()),
        PlannedRecord(0, b"k", b"x" * 3000, ()),
        PlannedRecord(0, b"k", b"v2", ()),
    ]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    storage = local_bucket.storage()
    # WHEN the loop dead-letters offset 1, and the replay puts it back with the limit raised
    lane.deliver(source, lane.sink(lane.kinesis_endpoint, MAX_RECORD_BYTES="2048", **storage))
    started = datetime.now(UTC).isoformat()
    replayed = run_replay(["--apply"], {**lane.sink_env(lane.kinesis_endpoint), **storage})
    assert (replayed.status, replayed.summary["published"]) == (0, "1")

    # AND the stream is audited, told of the replay, then not
    told, told_out = lane.run_audit(
        capsys, "--replayed", local_bucket.name, "--replay-started", started
    )
    untold, untold_out = lane.run_audit(capsys)

    # THEN, told, it counts the replayed record as the caveat, links it, and passes
    assert told == 0, told_out
    assert "replayed=1 out_of_order_replayed=1" in told_out
    assert "out_of_order=0 " in told_out
    assert "docs/replay.md#the-ordering-caveat" in told_out
    # AND, not told, the same stream fails: nothing is explained by default
    assert untold == 1
    assert "out_of_order=1 " in untold_out
