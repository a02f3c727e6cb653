"""The event source mapping's side of a run: batches of BatchSize records, and redelivery.

As Lambda's Kafka ESM does with ReportBatchItemFailures: each invocation takes up to BatchSize
records, partitions interleaved and each in offset order; a partition the function reports resumes
from the lowest offset it reported (that record and every later one come again), the others move
past their batch. A run ends when every record has been delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bench.workloads import SourceRecord

# Far more invocations than any run needs; hitting it means the function stopped making progress.
MAX_INVOCATIONS_PER_BATCH: Final = 50

# Sends one batch (records grouped as the event will hold them); returns, per partition it
# reported, the lowest offset it reported.
Invoke = Callable[[Sequence[SourceRecord]], Mapping[int, int]]


class NoProgressError(RuntimeError):
    """The function kept reporting records for redelivery without ever finishing the workload."""


def next_batch(
    by_partition: Mapping[int, Sequence[SourceRecord]],
    cursors: Mapping[int, int],
    batch_size: int | None,
) -> list[SourceRecord]:
    """Up to `batch_size` records from each partition's cursor on, partitions taking turns."""
    queues = {p: by_partition[p][cursors[p] :] for p in sorted(by_partition)}
    limit = batch_size if batch_size is not None else sum(len(q) for q in queues.values())
    batch: list[SourceRecord] = []
    index = 0
    while len(batch) < limit and any(index < len(queue) for queue in queues.values()):
        for queue in queues.values():
            if index < len(queue) and len(batch) < limit:
                batch.append(queue[index])
        index += 1
    return batch


def deliver(records: Sequence[SourceRecord], batch_size: int | None, invoke: Invoke) -> int:
    """Invoke until every record is delivered; returns the number of invocations."""
    by_partition: dict[int, list[SourceRecord]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    for partition_records in by_partition.values():
        partition_records.sort(key=lambda r: r.offset)
    # Index of each partition's next undelivered record.
    cursors = dict.fromkeys(by_partition, 0)
    # Generous for any batch size: ceil(records / batch) batches, each retried many times.
    batches = -(-len(records) // batch_size) if batch_size else 1
    for invocation in range(1, MAX_INVOCATIONS_PER_BATCH * max(batches, 1) + 1):
        batch = next_batch(by_partition, cursors, batch_size)
        if not batch:
            return invocation - 1
        reported = invoke(batch)
        sent: dict[int, list[int]] = {}
        for record in batch:
            sent.setdefault(record.partition, []).append(record.offset)
        for partition, offsets in sent.items():
            resume = reported.get(partition)
            if resume is None:
                cursors[partition] += len(offsets)
                continue
            if resume not in offsets:
                raise ValueError(
                    f"partition {partition}: reported offset {resume} was not in the batch"
                )
            cursors[partition] += offsets.index(resume)
    raise NoProgressError(f"records still undelivered after {invocation} invocations")


def reported_offsets(response: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Per partition, the lowest offset a partial-batch response reports (where it resumes)."""
    lowest: dict[int, int] = {}
    prefix = f"{topic}-"
    for failure in response["batchItemFailures"]:
        identifier = failure["itemIdentifier"]
        name: str = identifier["partition"]
        if not name.startswith(prefix):
            raise ValueError(f"reported partition {name!r} is not of topic {topic}")
        partition, offset = int(name[len(prefix) :]), int(identifier["offset"])
        lowest[partition] = min(offset, lowest.get(partition, offset))
    return lowest
