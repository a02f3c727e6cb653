"""The event source mapping's side of a run: batches of BatchSize records, and redelivery.

As Lambda's Kafka ESM does with ReportBatchItemFailures: each invocation takes up to BatchSize
records, partitions taking turns and each in offset order; a partition the function reports
resumes from the lowest offset it reported (that record and every later one come again), the
others move past their batch. A run ends when every record has been delivered.

Batches are index ranges into each partition's records, so the bookkeeping costs microseconds
per invocation whatever its size and the measured time is the function's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bench.workloads import SourceRecord

# Far more invocations than any run needs; hitting it means the function stopped making progress.
MAX_INVOCATIONS_PER_BATCH: Final = 50

# Sends one batch: per partition, the range of indices (into that partition's records, in offset
# order) it holds. Returns, per partition the function reported, the lowest offset it reported.
Invoke = Callable[[Mapping[int, range]], Mapping[int, int]]


class NoProgressError(RuntimeError):
    """The function kept reporting records for redelivery without ever finishing the workload."""


def by_partition(records: Sequence[SourceRecord]) -> dict[int, list[SourceRecord]]:
    """Each partition's records in offset order; offsets must be consecutive (no gaps)."""
    out: dict[int, list[SourceRecord]] = {}
    for record in records:
        out.setdefault(record.partition, []).append(record)
    for partition, partition_records in out.items():
        partition_records.sort(key=lambda r: r.offset)
        first = partition_records[0].offset
        if partition_records[-1].offset - first != len(partition_records) - 1:
            raise ValueError(f"partition {partition}: offsets are not consecutive")
    return dict(sorted(out.items()))


def batch_counts(remaining: Mapping[int, int], batch_size: int | None) -> dict[int, int]:
    """How many records each partition gives to the next batch of `batch_size` (None: all).

    The same as taking one record per partition in turn (in partition order) until the batch is
    full, computed by whole turns.
    """
    counts = dict.fromkeys(remaining, 0)
    left = sum(remaining.values()) if batch_size is None else batch_size
    active = sorted(p for p, n in remaining.items() if n > 0)
    while left and active:
        turns = min(min(remaining[p] - counts[p] for p in active), left // len(active))
        if turns == 0:  # a last, partial turn: the first `left` partitions take one more
            for partition in active[:left]:
                counts[partition] += 1
            break
        for partition in active:
            counts[partition] += turns
        left -= turns * len(active)
        active = [p for p in active if counts[p] < remaining[p]]
    return counts


def deliver(
    partitions: Mapping[int, Sequence[SourceRecord]], batch_size: int | None, invoke: Invoke
) -> int:
    """Invoke until every record (`by_partition`'s output) is delivered; returns the number of
    invocations."""
    first_offset = {p: rs[0].offset for p, rs in partitions.items()}
    cursors = dict.fromkeys(partitions, 0)  # index of each partition's next undelivered record
    total = sum(len(rs) for rs in partitions.values())
    batches = -(-total // batch_size) if batch_size else 1
    limit = MAX_INVOCATIONS_PER_BATCH * max(batches, 1)
    for invocation in range(limit + 1):
        remaining = {p: len(rs) - cursors[p] for p, rs in partitions.items()}
        counts = batch_counts(remaining, batch_size)
        batch = {p: range(cursors[p], cursors[p] + n) for p, n in counts.items() if n}
        if not batch:
            return invocation
        if invocation == limit:
            break
        reported = invoke(batch)
        for partition, sent in batch.items():
            resume = reported.get(partition)
            if resume is None:
                cursors[partition] = sent.stop
                continue
            index = resume - first_offset[partition]
            if index not in sent:
                raise ValueError(
                    f"partition {partition}: reported offset {resume} was not in the batch"
                )
            cursors[partition] = index
    raise NoProgressError(f"records still undelivered after {limit} invocations")


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
