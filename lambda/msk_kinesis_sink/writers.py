"""What the publisher needs from AWS: a record writer, dead-letter and claim-check writers, a
stream summary reader, and the classified results they answer with.

The `msk_kinesis_sink.aws` package implements these over boto3 and classifies every AWS answer
into the values below, so no AWS error string reaches the publisher; tests replace them with
fakes (`tests/fakes.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


class RecordDistribution(Enum):
    """How a stream places records on its shards (RecordDistributionStrategy)."""

    # By partition key: same key, same shard, in order. Also what a summary without the field
    # means: AWS returns it only for on-demand streams, and before it existed every stream did so.
    USER_PARTITION_KEY = "USER_PARTITION_KEY"
    # Kinesis "ignores any partition key and ExplicitHashKey that a producer provides": no order.
    AUTO = "AUTO"
    # A value this function does not know: no order is promised, so it counts as not ordering.
    UNRECOGNIZED = "unrecognized"


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What the sink needs of a stream's summary."""

    distribution: RecordDistribution
    # MaxRecordSizeInKiB, in bytes; None when the answer does not say (kinesalite, moto).
    max_record_bytes: int | None = None

    @property
    def keeps_key_order(self) -> bool:
        return self.distribution is RecordDistribution.USER_PARTITION_KEY


class StreamSummaryReader(Protocol):
    """Reads one stream's summary (DescribeStreamSummary); the stream guard's seam to Kinesis."""

    def describe(self, stream: str, deadline: float) -> StreamSummary:
        """The stream's summary; the exchange ends by `deadline` (time.monotonic()).

        Raises StreamSummaryError (`transient` when asking again later can help).
        """
        ...
