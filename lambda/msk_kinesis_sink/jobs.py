"""What a run has in flight: PutRecords requests, dead-letter and claim-check writes, and the
partitions they serve."""

from __future__ import annotations

from dataclasses import dataclass

from msk_kinesis_sink.encoding import ClaimCheckRecord, UnwritableRecord
from msk_kinesis_sink.planning import Entry, PartitionQueue


@dataclass(slots=True)
class Partition:
    """One topic-partition of the invocation."""

    batch_name: str  # "<topic>-<partition>", the ESM's name for it
    queue: PartitionQueue
    stream: str  # where its records go (a stream name or ARN); a request serves one stream


@dataclass(frozen=True, slots=True)
class PutJob:
    """One PutRecords request; it may carry entries of several partitions."""

    items: list[tuple[Partition, Entry]]
    started: float

    @property
    def partitions(self) -> list[Partition]:
        return list({id(partition): partition for partition, _ in self.items}.values())


@dataclass(frozen=True, slots=True)
class DeadLetterJob:
    """One record Kinesis can never accept, on its way to the dead-letter bucket."""

    partition: Partition
    record: UnwritableRecord


@dataclass(frozen=True, slots=True)
class ClaimCheckJob:
    """One claim-checked record's object on its way to S3; its pointer goes once it is written."""

    partition: Partition
    record: ClaimCheckRecord


Job = PutJob | DeadLetterJob | ClaimCheckJob
