"""The records a rehearsal sends, the same in the function's process and in the audit: the local
loop's seeded workload (hot, null, binary and over-long keys, headers, tombstones, sizes up to
hundreds of KB) per topic, and, where a variant asks, records larger than the stream takes."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from localloop.events import KafkaRecord, TopicPartition
from localloop.workload import SourceLog, SourceRecord, WorkloadSpec, content_digest, generate


@dataclass(frozen=True, slots=True)
class TopicWorkload:
    """One topic's records: how many, over how many partitions, from which seed."""

    topic: str
    records: int
    partitions: int
    seed: int
    oversize: int = 0  # of them, with a value of `oversize_bytes` (too large for the stream)
    oversize_bytes: int = 0

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> TopicWorkload:
        return cls(**document)  # type: ignore[arg-type]


def kafka_records(workload: TopicWorkload) -> list[KafkaRecord]:
    """The topic's records in production order, offsets counted per partition from 0."""
    spec = WorkloadSpec(
        records=workload.records, partitions=workload.partitions, seed=workload.seed
    )
    planned = list(generate(spec))
    oversized = {
        (i + 1) * len(planned) // (workload.oversize + 1) for i in range(workload.oversize)
    }
    rng = random.Random(workload.seed)
    next_offset = dict.fromkeys(range(workload.partitions), 0)
    records = []
    for index, plan in enumerate(planned):
        value = rng.randbytes(workload.oversize_bytes) if index in oversized else plan.value
        offset = next_offset[plan.partition]
        next_offset[plan.partition] += 1
        records.append(
            KafkaRecord(
                topic=workload.topic,
                partition=plan.partition,
                offset=offset,
                timestamp_ms=plan.timestamp_ms or 0,
                key=plan.key,
                value=value,
                headers=tuple(plan.headers),
            )
        )
    return records


def source_log(records: Sequence[KafkaRecord]) -> SourceLog:
    """What the auditor checks a stream against."""
    log = SourceLog()
    for record in records:
        log.value_bytes += len(record.value or b"")
        digest = content_digest(record.value, record.headers)
        log.add(SourceRecord(record.topic, record.partition, record.offset, record.key, digest))
    log.sort()
    return log


def by_partition(records: Sequence[KafkaRecord]) -> dict[TopicPartition, list[KafkaRecord]]:
    out: dict[TopicPartition, list[KafkaRecord]] = {}
    for record in records:
        out.setdefault(record.tp, []).append(record)
    return out
