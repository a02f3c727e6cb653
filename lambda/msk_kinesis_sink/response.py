"""The partial-batch response the ESM reads: the wire format as types, built in one place."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Protocol, TypedDict


class ReportablePartition(Protocol):
    """A partition of the event, read or not: its name and its offsets, ascending."""

    @property
    def topic_partition(self) -> str: ...

    @property
    def offsets(self) -> Sequence[int]: ...


class ReportableEvent(Protocol):
    """An event (events.KafkaEvent, or events.EventOutline before its records are read)."""

    @property
    def partitions(self) -> Sequence[ReportablePartition]: ...


class ItemIdentifier(TypedDict):
    partition: str
    offset: int


class BatchItemFailure(TypedDict):
    itemIdentifier: ItemIdentifier


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


def partial_batch_response(
    event: ReportableEvent, resume_offsets: Mapping[str, int]
) -> PartialBatchResponse:
    """Report, per partition, the first undelivered record and every later record of the batch.

    A contiguous tail is right both when Lambda resumes from the lowest reported offset and when
    it retries only the listed records; every identifier is one the ESM sent us.
    """
    failures: list[BatchItemFailure] = []
    for batch in event.partitions:
        resume_at = resume_offsets.get(batch.topic_partition)
        if resume_at is None:
            continue
        offsets = batch.offsets
        failures.extend(
            {"itemIdentifier": {"partition": batch.topic_partition, "offset": offset}}
            for offset in offsets[bisect.bisect_left(offsets, resume_at) :]
        )
    return {"batchItemFailures": failures}
