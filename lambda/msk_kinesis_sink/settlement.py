"""What each finished job does to its partitions and to the invocation's numbers.

The run decides what to send and when; settlement turns each answer into acknowledgements,
backoffs, blocks and stops (as Powertools' batch processor keeps its success and failure
handlers apart from the loop that calls them). Nothing here sends or waits.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, assert_never

from msk_kinesis_sink.backoff import full_jitter_seconds
from msk_kinesis_sink.budget import RoundTripEstimate
from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.errors import (
    ClaimCheckWriteError,
    DeadLetterError,
    KinesisPublishError,
    StreamHeldError,
)
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.jobs import ClaimCheckJob, DeadLetterJob, Job, Partition, PutJob
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.report import InvocationStats
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.writers import RecordResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """Settles one run's jobs: written, throttled, failed, or unknown (the request failed)."""

    settings: Settings
    stats: InvocationStats  # this invocation's
    round_trips: RoundTripEstimate  # the container's: each answered request refines it
    has_dead_letter_bucket: bool
    clock: Callable[[], float]
    # Seconds since the epoch, as Kafka's record timestamps count (in ms): how late records are.
    wall_clock: Callable[[], float]
    rng: random.Random

    def settle(self, job: Job, future: Future[Any]) -> int:
        """Apply a finished job's result; returns the bytes that go back to be sent again."""
        match job:
            case PutJob():
                return self._put_settled(job, future)
            case DeadLetterJob():
                self._dead_letter_settled(job, future)
                return 0
            case ClaimCheckJob():
                return self._claim_check_settled(job, future)
            case _:
                assert_never(job)

    def dead_letter_or_block(self, partition: Partition, record: UnwritableRecord) -> bool:
        """An unwritable record's turn has come: True when it goes to the dead-letter bucket;
        otherwise its key is blocked, and its partition is reported from it."""
        if self.has_dead_letter_bucket:
            return True
        logger.error(
            "record can not be written and no dead-letter bucket is configured; its"
            " partition is reported from this offset so the ESM retries or sends it to its"
            " on-failure destination",
            extra=record_fields(record.source, reason=record.reason),
        )
        reason = f"unwritable record and no DEAD_LETTER_BUCKET: {record.reason}"
        partition.queue.block(record.partition_key, reason)
        return False

    def _put_settled(self, job: PutJob, future: Future[Any]) -> int:
        stats = self.stats
        elapsed = self.clock() - job.started
        stats.put_latencies_ms.append(elapsed * 1000)
        try:
            results = future.result()
        except KinesisPublishError as error:
            return self._put_failed(job, error)
        self.round_trips.observe(elapsed)
        acknowledged_ms = self.wall_clock() * 1000
        requeued = 0
        for (partition, entry), result in zip(job.items, results, strict=True):
            match result:
                case RecordResult.WRITTEN:
                    partition.queue.acknowledge(entry)
                    stats.records_published += len(entry.records)
                    stats.kinesis_records_published += 1
                    stats.bytes_published += entry.size
                    self._delivered(entry, acknowledged_ms)
                    continue
                case RecordResult.THROTTLED:
                    stats.records_throttled += len(entry.records)
                case RecordResult.FAILED:
                    stats.records_internal_failure += len(entry.records)
                case _:
                    assert_never(result)
            stats.retry_attempts += len(entry.records)
            requeued += self._retry_later(partition, entry)
        return requeued

    def _delivered(self, entry: Entry, acknowledged_ms: float) -> None:
        """How late each of the entry's records reached the stream: from its Kafka timestamp
        (the producer's clock, or the broker's with LOG_APPEND_TIME) to the acknowledgement."""
        stats = self.stats
        for record in entry.records:
            timestamp = record.source.timestamp
            if timestamp < 0:  # Kafka's -1: the record has none
                stats.records_without_timestamp += 1
            elif timestamp > acknowledged_ms:
                stats.records_timestamp_ahead += 1
                stats.delivery_delays_ms.append(0.0)
            else:
                stats.delivery_delays_ms.append(acknowledged_ms - timestamp)

    def _put_failed(self, job: PutJob, error: KinesisPublishError) -> int:
        """The request failed as a whole: its records' fate is unknown (retryable) or known
        to be refused (not retryable: their partitions stop)."""
        stats = self.stats
        stats.request_failures += 1
        if isinstance(error, StreamHeldError):  # nothing was sent; each partition stops below
            stats.partitions_held_by_stream_guard += len(job.partitions)
        requeued = 0
        for partition, entry in job.items:
            if error.retryable:
                stats.retry_attempts += len(entry.records)
                if error.throttled:
                    stats.records_throttled += len(entry.records)
                requeued += self._retry_later(partition, entry)
            else:
                partition.queue.release(entry.partition_key)
        if error.retryable:
            return requeued
        for partition in job.partitions:
            logger.error(
                "PutRecords failed with a non-retryable error (%s); partition %s stops and is"
                " reported for redelivery",
                error,
                partition.batch_name,
                extra={
                    "topic_partition": partition.batch_name,
                    "error_code": error.code,
                    "records_pending": partition.queue.pending_count(),
                },
            )
            partition.queue.stop(f"non-retryable error {error.code}")
        return requeued

    def _retry_later(self, partition: Partition, entry: Entry) -> int:
        """Back the entry's key off (and only that key: others of the partition go on); returns
        the bytes to send again."""
        queue, key = partition.queue, entry.partition_key
        delay_s = full_jitter_seconds(
            queue.failed_attempts(key) + 1,
            base_ms=self.settings.retry_base_ms,
            max_ms=self.settings.retry_max_ms,
            rng=self.rng,
        )
        queue.release(key, self.clock() + delay_s)
        return entry.size

    def _dead_letter_settled(self, job: DeadLetterJob, future: Future[Any]) -> None:
        record, queue = job.record, job.partition.queue
        if _s3_write_failed(
            job,
            future,
            "could not write an unwritable record to the dead-letter bucket",
            "dead-letter write failed",
            reason=record.reason,
        ):
            return
        self.stats.records_dead_lettered += 1
        logger.warning(
            "record dead-lettered", extra=record_fields(record.source, reason=record.reason)
        )
        queue.acknowledge_dead_letter(record)

    def _claim_check_settled(self, job: ClaimCheckJob, future: Future[Any]) -> int:
        """The object is written: the pointer goes next for its key (returns its bytes, now to be
        sent). Not written: the key waits, and the partition is reported from the record, as for
        a dead letter that could not be written."""
        record = job.record
        if _s3_write_failed(
            job,
            future,
            "could not write a claim-checked record to S3",
            "claim-check write failed",
            bytes=record.claim_check.bytes,
        ):
            return 0
        self.stats.records_claim_checked += 1
        job.partition.queue.claim_check_stored(record)
        return record.pointer.size


def _s3_write_failed(
    job: DeadLetterJob | ClaimCheckJob, future: Future[Any], failed: str, why: str, **more: object
) -> bool:
    """Whether the job's write to S3 failed. Then its key waits, and its partition is reported
    from the record (logged by place, never by content), as for a record Kinesis refused."""
    record = job.record
    try:
        future.result()
    except (DeadLetterError, ClaimCheckWriteError) as error:
        logger.error(
            "%s; its partition is reported from this offset",
            failed,
            extra=record_fields(record.source, **more, error=str(error)),
        )
        job.partition.queue.block(record.partition_key, f"{why}: {error}")
        return True
    return False


def record_fields(record: KafkaRecord, **more: object) -> dict[str, object]:
    """Log fields that identify a record, and its size, without revealing its key or value."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "size": _decoded_size(record.key_b64) + _decoded_size(record.value_b64),
        **more,
    }


def _decoded_size(text: str | None) -> int:
    """Bytes a base64 text decodes to, from its length (nothing is decoded)."""
    if not text:
        return 0
    return len(text) * 3 // 4 - text.count("=", len(text) - 2)
