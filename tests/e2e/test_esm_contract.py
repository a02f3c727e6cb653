"""The ESM emulator's contract with the function: event shape, partial responses, retries,
bisect and record age, observed with recording fake functions on the real broker."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from localloop.context import LambdaContext
from localloop.destination import FolderDestination
from localloop.workload import PlannedRecord, produce_records
from tests.e2e.conftest import LaneFactory

# A hang (a broken loop never reaching its end offsets) fails the test instead of the run.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


class Recorder:
    """A fake function: remembers every event and answers from a script (default: success)."""

    def __init__(self, answer: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.remaining_ms: list[int] = []
        self._answer = answer

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        self.events.append(event)
        self.remaining_ms.append(context.get_remaining_time_in_millis())
        if callable(self._answer):
            return self._answer(len(self.events), event)
        return self._answer

    def offsets(self, call: int, partition_id: str) -> list[int]:
        return [r["offset"] for r in self.events[call]["records"].get(partition_id, [])]


def test_esm_builds_events_in_aws_msk_shape(lane_factory: LaneFactory) -> None:
    # GIVEN records with a null key, a binary key, a tombstone and duplicate header names
    lane = lane_factory(partitions=2)
    planned = [
        PlannedRecord(0, None, b"no key", ()),
        PlannedRecord(0, b"\xff\x00bin", None, (("h", b"\x01\x02"), ("h", b""))),
        PlannedRecord(1, b"text", b"hello", ()),
    ]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    function = Recorder()

    # WHEN the emulator invokes the function
    stats = lane.deliver(source, lambda: function)

    # THEN the event has AWS's MSK shape
    records = [r for event in function.events for group in event["records"].values() for r in group]
    event = function.events[0]
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"].startswith("arn:aws:kafka:")
    assert event["bootstrapServers"] == lane.bootstrap
    assert set().union(*(e["records"] for e in function.events)) == {
        f"{lane.topic}-0",
        f"{lane.topic}-1",
    }
    no_key, tombstone, text = sorted(records, key=lambda r: (r["partition"], r["offset"]))
    assert "key" not in no_key
    assert base64.b64decode(no_key["value"]) == b"no key"
    assert base64.b64decode(tombstone["key"]) == b"\xff\x00bin"
    assert tombstone["value"] is None
    assert tombstone["headers"] == [{"h": [1, 2]}, {"h": []}]
    assert text["timestampType"] == "CREATE_TIME"
    assert isinstance(text["timestamp"], int) and text["partition"] == 1
    assert stats.records_committed == 3
    assert 0 < function.remaining_ms[0] <= 60_000


def test_esm_resumes_each_partition_from_lowest_reported_offset(lane_factory: LaneFactory) -> None:
    # GIVEN 10 records in one partition and a function that reports offsets 6 and 4 once
    lane = lane_factory(partitions=1)
    source = produce_records(
        lane.bootstrap, lane.topic, [PlannedRecord(0, b"k", b"v", ()) for _ in range(10)]
    )
    pid = f"{lane.topic}-0"

    def answer(call: int, event: dict[str, Any]) -> object:
        if call == 1:
            failures = [{"itemIdentifier": {"partition": pid, "offset": o}} for o in (6, 4)]
            return {"batchItemFailures": failures}
        return {"batchItemFailures": []}

    function = Recorder(answer)

    # WHEN the emulator runs
    stats = lane.deliver(source, lambda: function, config=lane.config(batch_size=10))

    # THEN the second invocation starts at offset 4 (below it was committed)
    assert function.offsets(0, pid) == list(range(10))
    assert function.offsets(1, pid) == list(range(4, 10))
    assert stats.partial_failures == 1
    assert stats.retries == 1


def test_esm_retries_whole_batch_on_identifier_not_in_batch(lane_factory: LaneFactory) -> None:
    # GIVEN a function whose first answer names an offset that was not in the batch
    lane = lane_factory(partitions=1)
    source = produce_records(
        lane.bootstrap, lane.topic, [PlannedRecord(0, b"k", b"v", ()) for _ in range(5)]
    )
    pid = f"{lane.topic}-0"

    def answer(call: int, event: dict[str, Any]) -> object:
        if call == 1:
            return {"batchItemFailures": [{"itemIdentifier": {"partition": pid, "offset": 999}}]}
        return None

    function = Recorder(answer)

    # WHEN the emulator runs
    stats = lane.deliver(source, lambda: function, config=lane.config(batch_size=5))

    # THEN the whole batch came again
    assert function.offsets(1, pid) == function.offsets(0, pid) == list(range(5))
    assert stats.invalid_responses == 1


def test_esm_bisects_a_failing_batch_down_to_the_bad_record(lane_factory: LaneFactory) -> None:
    # GIVEN a function that raises whenever offset 5 is in its batch
    lane = lane_factory(partitions=1)
    source = produce_records(
        lane.bootstrap, lane.topic, [PlannedRecord(0, b"k", b"v", ()) for _ in range(8)]
    )
    pid = f"{lane.topic}-0"

    def answer(call: int, event: dict[str, Any]) -> object:
        if any(r["offset"] == 5 for r in event["records"].get(pid, [])):
            raise RuntimeError("bad record")
        return None

    function = Recorder(answer)
    destination = FolderDestination(lane.workdir / "on-failure", mapping_uuid="u")

    # WHEN bisect-on-error is on, with 3 retries
    stats = lane.deliver(
        source,
        lambda: function,
        config=lane.config(
            batch_size=8, bisect_batch_on_function_error=True, maximum_retry_attempts=3
        ),
        destination=destination,
    )

    # THEN batches halve after each error until only the bad record is discarded
    sizes = [len(function.offsets(i, pid)) for i in range(len(function.events))]
    assert sizes[:2] == [8, 4]
    (document,) = destination.documents()
    info = document["KafkaBatchInfo"]["recordsInfo"][pid]
    assert (info["firstRecordOffset"], info["lastRecordOffset"]) == ("5", "5")
    assert document["responseContext"]["functionError"] == "Unhandled"
    assert stats.records_discarded == 1
    assert stats.records_committed == 7


def test_esm_discards_records_older_than_maximum_record_age(lane_factory: LaneFactory) -> None:
    # GIVEN three records created an hour ago, then two fresh ones
    lane = lane_factory(partitions=1)
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    planned = [PlannedRecord(0, b"k", b"old", (), an_hour_ago) for _ in range(3)]
    planned += [PlannedRecord(0, b"k", b"new", ()) for _ in range(2)]
    source = produce_records(lane.bootstrap, lane.topic, planned)
    function = Recorder()
    destination = FolderDestination(lane.workdir / "on-failure", mapping_uuid="u")

    # WHEN the emulator runs with a maximum record age of 60 s (AWS's minimum)
    stats = lane.deliver(
        source,
        lambda: function,
        config=lane.config(maximum_record_age_s=60),
        destination=destination,
    )

    # THEN the old ones were never invoked but described to the destination; the new ones were
    assert [function.offsets(i, f"{lane.topic}-0") for i in range(len(function.events))] == [[3, 4]]
    (document,) = destination.documents()
    assert document["requestContext"]["condition"] == "RecordAgeExceeded"
    info = document["KafkaBatchInfo"]["recordsInfo"][f"{lane.topic}-0"]
    assert (info["firstRecordOffset"], info["lastRecordOffset"]) == ("0", "2")
    assert stats.records_discarded == 3
