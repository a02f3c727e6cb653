"""What the publisher needs from AWS: a record writer, dead-letter and claim-check writers,
classified results.

The `msk_kinesis_sink.aws` package implements these over boto3 and classifies every AWS answer
into the values below, so no AWS error string reaches the publisher; tests replace them with
fakes (`tests/fakes.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from msk_kinesis_sink.encoding import ClaimCheckRecord, UnwritableRecord
from msk_kinesis_sink.planning import Entry


class RecordResult(Enum):
    """What became of one Kinesis record of a PutRecords request."""

    WRITTEN = "written"  # acknowledged: the answer holds its sequence number and shard
    THROTTLED = "throttled"  # not written: the shard's throughput was exceeded; back off
    FAILED = "failed"  # not written (internal failure, or an answer that proves nothing)


class RecordWriter(Protocol):
    """Sends one PutRecords request; the only seam to Kinesis."""

    def put_records(self, entries: Sequence[Entry], deadline: float) -> Sequence[RecordResult]:
        """One result per entry, in order; the exchange ends by `deadline` (time.monotonic()).

        Raises KinesisPublishError when the request failed as a whole (or ran out of time).
        """
        ...


class DeadLetterWriter(Protocol):
    """Keeps a record Kinesis can never accept; raises DeadLetterError when it can not."""

    def write(
        self, record: UnwritableRecord, event_source_arn: str | None, deadline: float
    ) -> None: ...


class ClaimCheckWriter(Protocol):
    """Keeps a claim-checked record's object (the same key for the same record, so a retry
    overwrites it); raises ClaimCheckWriteError when it can not, by `deadline`."""

    def write(self, record: ClaimCheckRecord, deadline: float) -> None: ...
