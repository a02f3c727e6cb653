"""Replay on a real path: the local loop dead-letters and discards records, the replay puts them
back, and the auditor finds every record of the topic in the stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from localloop.destination import FolderDestination
from localloop.faults import FaultSpec
from localloop.function import sink_env
from localloop.kinesis_local import DEFAULT_REGION, DUMMY_CREDENTIALS
from localloop.procs import LOOPBACK
from localloop.proxy import FaultProxy
from localloop.workload import PlannedRecord, produce_records
from msk_kinesis_sink.replay.objects import REPLAYED_PREFIX
from tests.e2e.conftest import LaneFactory
from tests.replay_runs import run_replay

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# Small enough that a 3,000-byte value (4 KB as an envelope) is refused; the replay raises it.
FUNCTION_MAX_RECORD_BYTES = "2048"
RAISED_MAX_RECORD_BYTES = str(1024 * 1024)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's server on a free loopback port, standing in for the dead-letter bucket's S3."""
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _upload(s3: S3Client, bucket: str, root: Path) -> int:
    """Put the emulator's on-failure documents where Lambda puts them: the same keys."""
    files = sorted(path for path in root.rglob("*") if path.is_file())
    for path in files:
        s3.put_object(Bucket=bucket, Key=path.relative_to(root).as_posix(), Body=path.read_bytes())
    return len(files)


def test_replay_puts_back_what_was_dead_lettered_and_discarded(
    lane_factory: LaneFactory, moto_s3: str
) -> None:
    # GIVEN partition 0 with two records too large for the function's MAX_RECORD_BYTES (one
    # of a key that has a newer record), and partition 1 with a record Kinesis always rejects
    lane = lane_factory(partitions=2)
    planned = [
        PlannedRecord(0, b"a0", b"v0", ()),
        PlannedRecord(0, b"big", b"x" * 3000, ()),  # offset 1: dead-lettered
        PlannedRecord(0, b"a2", b"v2", ()),
        PlannedRecord(0, b"shared", b"y" * 3000, ()),  # offset 3: dead-lettered
        PlannedRecord(0, b"shared", b"v4", ()),  # offset 4: reaches the stream first
        *(PlannedRecord(1, b"poison" if i == 2 else b"p%d" % i, b"w%d" % i, ()) for i in range(5)),
    ]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    bucket = f"dead-letters-{lane.stream}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        region_name=DEFAULT_REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=bucket)
    destination = FolderDestination(lane.workdir / "on-failure", mapping_uuid="esm-uuid")
    with FaultProxy(lane.kinesis_endpoint, FaultSpec(poison=("poison",))) as proxy:
        # WHEN the loop runs with a dead-letter bucket, no retries and an on-failure destination
        # (the poisoned batch's invocation runs until its time is up: the function in its own
        # process, timed as Lambda times it)
        stats = lane.deliver(
            source,
            lane.process_sink(
                proxy.endpoint,
                MAX_RECORD_BYTES=FUNCTION_MAX_RECORD_BYTES,
                DEAD_LETTER_BUCKET=bucket,
                AWS_ENDPOINT_URL_S3=moto_s3,
                KINESIS_TIMEOUT_SECONDS="0.2",
            ),
            config=lane.config(maximum_retry_attempts=0, function_timeout_s=1.5),
            destination=destination,
        )
    batches = _upload(s3, bucket, destination.root)
    dead_letters = len(s3.list_objects_v2(Bucket=bucket, Prefix="records/").get("Contents", []))
    # THEN three records are missing from the stream: two dead letters, one discarded batch
    assert (dead_letters, batches, stats.records_discarded >= 1) == (2, 1, True)
    assert lane.audit(source).lost == 3

    # WHEN the limit is raised and the replay runs, dry first, then with --apply
    env = {
        **sink_env(stream=lane.stream, endpoint=lane.kinesis_endpoint),
        "RECORD_FORMAT": "envelope",
        "MAX_RECORD_BYTES": RAISED_MAX_RECORD_BYTES,
        "DEAD_LETTER_BUCKET": bucket,
        "AWS_ENDPOINT_URL_S3": moto_s3,
    }
    dry = run_replay([], env)
    applied = run_replay(["--apply"], env)

    # THEN the dry run sent nothing and foresaw no failure...
    assert dry.status == 0, dry.err
    assert (dry.summary["objects"], dry.summary["published"], dry.summary["failed"]) == (
        "3",
        "0",
        "0",
    )
    # ...the replay delivered every record it read and marked every object...
    assert applied.status == 0, applied.err
    assert applied.summary["failed"] == "0"
    assert applied.summary["published"] == applied.summary["records"]
    assert applied.summary["marked"] == "3"
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert all(key.startswith(REPLAYED_PREFIX) for key in remaining) and len(remaining) == 3
    # ...and the auditor finds every record of the topic in the stream, uncorrupted
    report = lane.audit(source)
    assert (report.lost, report.corrupted, report.delivered) == (0, 0, source.total)
    # AND, as docs/replay.md says, the offset rule drops the one replayed record whose key had
    # a newer record in the stream already: it counts as out of order
    assert report.out_of_order == 1

    # WHEN the replay runs again
    again = run_replay(["--apply"], env)
    # THEN it finds nothing and sends nothing
    assert again.status == 0
    assert (again.summary["objects"], again.summary["published"]) == ("0", "0")
    assert lane.audit(source).stream_records == report.stream_records
