"""The partial-batch response the ESM reads: the wire format as types, built in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from msk_kinesis_sink.events import KafkaEvent


class ItemIdentifier(TypedDict):
    partition: str
    offset: int


class BatchItemFailure(TypedDict):
    itemIdentifier: ItemIdentifier


class PartialBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


def partial_batch_response(
    event: KafkaEvent, resume_offsets: Mapping[str, int]
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
        failures.extend(
            {"itemIdentifier": {"partition": batch.topic_partition, "offset": record.offset}}
            for record in batch.records
            if record.offset >= resume_at
        )
    return {"batchItemFailures": failures}
