"""`make audit` after a replay: told what the replay put back and when it began, it counts the
replayed records, tells the documented ordering caveat apart and passes; not told, it fails."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from localloop import audit
from localloop.kinesis_local import DUMMY_CREDENTIALS
from localloop.local_s3 import MotoServer, s3_client
from localloop.workload import PlannedRecord, produce_records
from tests.e2e.conftest import LaneFactory
from tests.replay_runs import run_replay

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_audit_cli_tells_the_replay_caveat_from_reordering(
    lane_factory: LaneFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN key "k" with offsets 0, 1, 2, of which 1 is too large for the function's limit
    lane = lane_factory(partitions=1)
    planned = [
        PlannedRecord(0, b"k", b"v0", ()),
        PlannedRecord(0, b"k", b"x" * 3000, ()),
        PlannedRecord(0, b"k", b"v2", ()),
    ]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    with MotoServer(log_path=tmp_path / "moto.log") as s3:
        bucket = f"dead-letters-{lane.stream}"
        s3_client(s3.endpoint).create_bucket(Bucket=bucket)
        storage = {"DEAD_LETTER_BUCKET": bucket, "AWS_ENDPOINT_URL_S3": s3.endpoint}
        # WHEN the loop dead-letters offset 1, and the replay puts it back with the limit raised
        lane.deliver(source, lane.sink(lane.kinesis_endpoint, MAX_RECORD_BYTES="2048", **storage))
        started = datetime.now(UTC).isoformat()
        replayed = run_replay(["--apply"], {**lane.sink_env(lane.kinesis_endpoint), **storage})
        assert (replayed.status, replayed.summary["published"]) == (0, "1")

        # AND the stream is audited, told of the replay, then not
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
        for name, value in DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        common = ["--bootstrap", lane.bootstrap, "--topic", lane.topic, "--stream", lane.stream]
        common += ["--endpoint", lane.kinesis_endpoint]
        told = audit.main([*common, "--replayed", bucket, "--replay-started", started])
        told_out = capsys.readouterr().out
        untold = audit.main(common)
        untold_out = capsys.readouterr().out

    # THEN, told, it counts the replayed record as the caveat, links it, and passes
    assert told == 0, told_out
    assert "replayed=1 out_of_order_replayed=1" in told_out
    assert "out_of_order=0 " in told_out
    assert "docs/replay.md#the-ordering-caveat" in told_out
    # AND, not told, the same stream fails: nothing is explained by default
    assert untold == 1
    assert "out_of_order=1 " in untold_out
