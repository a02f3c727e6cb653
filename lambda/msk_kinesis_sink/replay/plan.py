"""The replay set: every selected record once, in the order it is sent, and the dry run's plan."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

from msk_kinesis_sink.encoding import EncodedRecord, UnwritableRecord, encode_record
from msk_kinesis_sink.errors import UnreadableObjectError
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.limits import MAX_BATCH_SIZE
from msk_kinesis_sink.replay.objects import FailedObject, PartitionId, RecordId
from msk_kinesis_sink.replay.refusals import Unreadable
from msk_kinesis_sink.replay.terminal import shown
from msk_kinesis_sink.settings import Settings

# The Sink is never handed more records at once than Lambda would hand the function.
MAX_RECORDS_PER_INVOCATION: Final = MAX_BATCH_SIZE


@dataclass(frozen=True, slots=True)
class Batch:
    """One invocation's records: one source, each topic-partition's in offset order."""

    source: str
    records: tuple[KafkaRecord, ...]


class ReplaySet:
    """Every selected record once, wherever it was kept, and which objects hold it."""

    def __init__(self) -> None:
        self.objects: list[FailedObject] = []
        self.records: dict[RecordId, KafkaRecord] = {}
        self.holders: dict[RecordId, list[str]] = {}
        self.duplicates = 0

    def add(self, failed: FailedObject) -> None:
        """Raises UnreadableObjectError, adding nothing, when the object holds a record under
        an offset another object holds with other content (a re-created topic, say)."""
        for record_id, record in zip(failed.record_ids(), failed.records, strict=True):
            known = self.records.get(record_id)
            if known is not None and known != record:
                raise UnreadableObjectError(
                    f"it holds {shown(record.topic_partition)} offset {record.offset} with"
                    f" other content than {shown(self.holders[record_id][0])}",
                    kind=Unreadable.CONFLICT,
                )
        self.objects.append(failed)
        for record_id, record in zip(failed.record_ids(), failed.records, strict=True):
            holders = self.holders.setdefault(record_id, [])
            if failed.key in holders:
                continue  # the same offset twice in one object: parse_event refuses it
            if holders:
                self.duplicates += 1
            else:
                self.records[record_id] = record
            holders.append(failed.key)

    def ordered(self) -> list[tuple[RecordId, KafkaRecord]]:
        """By source, topic, partition, then offset: each key's records in Kafka order."""
        return sorted(self.records.items(), key=lambda item: item[0])

    def batches(self, max_records: int = MAX_RECORDS_PER_INVOCATION) -> list[Batch]:
        """Consecutive runs of the order, at most `max_records` each, one source each: a
        partition's later batch holds only offsets above its earlier one's."""
        batches: list[Batch] = []
        current: list[KafkaRecord] = []
        source = ""
        for (record_source, *_), record in self.ordered():
            if current and (record_source != source or len(current) >= max_records):
                batches.append(Batch(source, tuple(current)))
                current = []
            source = record_source
            current.append(record)
        if current:
            batches.append(Batch(source, tuple(current)))
        return batches


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One topic-partition of the replay set, as the dry run shows it."""

    topic: str
    partition: int
    records: int
    first_offset: int
    last_offset: int
    encoded_bytes: int  # of the records that can be written (data + partition key), as encoded
    stream: str | None
    unwritable: int  # records the settings can not write
    unwritable_bytes: int  # their size as encoded without the limit (0 when undecodable)
    blocked: int  # records after the first unwritable one: they wait behind it
    reason: str | None  # why the first unwritable one can not be written


def plan_partitions(replay_set: ReplaySet, settings: Settings) -> list[PartitionPlan]:
    """Encode every record as the Sink will (no AWS call): sizes, streams, what can not go."""
    by_partition: dict[PartitionId, list[KafkaRecord]] = {}
    for (source, topic, partition, _), record in replay_set.ordered():
        by_partition.setdefault((source, topic, partition), []).append(record)
    plans: list[PartitionPlan] = []
    for (_, topic, partition), records in by_partition.items():
        encoded_bytes = unwritable = unwritable_bytes = blocked = 0
        reason: str | None = None
        for record in records:
            unit = encoded(record, settings)
            if isinstance(unit, UnwritableRecord):
                unwritable += 1
                unwritable_bytes += _unlimited_size(record, settings)
                reason = reason or unit.reason
                continue
            encoded_bytes += unit.size
            if reason is not None:
                blocked += 1
        plans.append(
            PartitionPlan(
                topic,
                partition,
                len(records),
                records[0].offset,
                records[-1].offset,
                encoded_bytes,
                settings.stream_for(topic),
                unwritable,
                unwritable_bytes,
                blocked,
                reason,
            )
        )
    return plans


def encoded(
    record: KafkaRecord, settings: Settings, max_record_bytes: int | None = None
) -> EncodedRecord | UnwritableRecord:
    """`record` as the Sink encodes it with `settings` (with another record limit if given)."""
    return encode_record(
        record,
        record_format=settings.record_format,
        partition_key_mode=settings.partition_key,
        max_record_bytes=settings.max_record_bytes
        if max_record_bytes is None
        else max_record_bytes,
        partition_key_header=settings.partition_key_header,
        aggregation=settings.aggregation,
    )


def _unlimited_size(record: KafkaRecord, settings: Settings) -> int:
    """An unwritable record's size as encoded (data + partition key) under no record limit: what
    the stream's limit must reach. 0 when it can not be encoded at all (its base64 is bad)."""
    unit = encoded(record, settings, sys.maxsize)
    return unit.size if isinstance(unit, EncodedRecord) else 0
