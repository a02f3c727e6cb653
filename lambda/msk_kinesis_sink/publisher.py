"""Publish an invocation's partitions concurrently, each in order, until done or out of time.

One coordinator thread owns all state; a bounded pool of workers only carries requests to
Kinesis (or S3) and back. A key's next record leaves as soon as its previous one is
acknowledged: no rounds, no idle waits; only throttling backs off (exponential, full jitter).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from msk_kinesis_sink.encoding import EncodedRecord, UnwritableRecord, encode_record
from msk_kinesis_sink.errors import KinesisPublishError
from msk_kinesis_sink.events import KafkaEvent, KafkaRecord, PartitionBatch
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, max_request_bytes
from msk_kinesis_sink.planning import (
    Entry,
    Packer,
    PartitionQueue,
    RequestLimits,
    SingleRecordPacker,
)
from msk_kinesis_sink.settings import Settings

logger = logging.getLogger(__name__)

THROTTLED = "ProvisionedThroughputExceededException"
THROTTLING_CODES = frozenset({THROTTLED, "ThrottlingException", "KMSThrottlingException"})


class RecordWriter(Protocol):
    """Sends one PutRecords request; the only seam to Kinesis."""

    def put_records(self, entries: Sequence[Entry]) -> Sequence[str | None]:
        """Per entry, None when accepted or the per-record ErrorCode.

        Raises KinesisPublishError when the request failed as a whole.
        """
        ...


class DeadLetterWriter(Protocol):
    """Keeps a record Kinesis can never accept; raises (DeadLetterError) when it can not."""

    def write(self, record: UnwritableRecord, event_source_arn: str | None) -> None: ...


@dataclass(slots=True)
class PublishStats:
    """What one invocation did; the handler turns it into a log line and metrics."""

    records_received: int = 0
    records_published: int = 0
    kinesis_records_published: int = 0
    records_dead_lettered: int = 0
    records_throttled: int = 0
    records_internal_failure: int = 0
    request_failures: int = 0
    retry_attempts: int = 0
    put_records_calls: int = 0
    bytes_published: int = 0
    put_latencies_ms: list[float] = field(default_factory=list)
    partitions: int = 0
    stopped_by_deadline: bool = False


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """Per topic-partition, the first offset the ESM must redeliver (absent: all delivered)."""

    resume_offsets: dict[str, int]
    stats: PublishStats


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    max_concurrency: int
    retry_base_ms: int
    retry_max_ms: int
    deadline_margin_ms: int
    limits: RequestLimits

    @classmethod
    def from_settings(cls, settings: Settings) -> PublisherOptions:
        return cls(
            max_concurrency=settings.max_concurrency,
            retry_base_ms=settings.retry_base_ms,
            retry_max_ms=settings.retry_max_ms,
            deadline_margin_ms=settings.deadline_margin_ms,
            limits=RequestLimits(
                max_records=MAX_RECORDS_PER_REQUEST,
                max_request_bytes=max_request_bytes(settings.max_record_bytes),
                max_record_bytes=settings.max_record_bytes,
            ),
        )


@dataclass(slots=True)
class _Partition:
    batch: PartitionBatch
    queue: PartitionQueue
    encoded_bytes: int
    not_before: float = 0.0
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class _PutJob:
    """One PutRecords request; it may carry entries of several partitions."""

    items: list[tuple[_Partition, Entry]]
    started: float

    @property
    def partitions(self) -> list[_Partition]:
        return list({id(partition): partition for partition, _ in self.items}.values())


@dataclass(frozen=True, slots=True)
class _DeadLetterJob:
    partition: _Partition
    record: UnwritableRecord


_Job = _PutJob | _DeadLetterJob


class Publisher:
    """Drives one invocation's partitions to Kinesis under the strict per-key ordering rule."""

    def __init__(
        self,
        *,
        settings: Settings,
        writer: RecordWriter,
        dead_letters: DeadLetterWriter | None,
        executor: Executor,
        packer: Packer | None = None,
        options: PublisherOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._writer = writer
        self._dead_letters = dead_letters
        self._executor = executor
        self._packer = packer or SingleRecordPacker()
        self._options = options or PublisherOptions.from_settings(settings)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cursor = 0

    def publish(self, event: KafkaEvent, remaining_ms: Callable[[], int]) -> PublishOutcome:
        stats = PublishStats(records_received=event.record_count, partitions=len(event.partitions))
        partitions: list[_Partition] = []
        in_flight: dict[Future[Any], _Job] = {}
        at_start = remaining_ms()
        if at_start < self._options.deadline_margin_ms:
            logger.error(
                "the invocation started with %d ms left, less than the %d ms kept free for one"
                " slow request: raise the function timeout or lower KINESIS_TIMEOUT_SECONDS",
                at_start,
                self._options.deadline_margin_ms,
            )

        self._prepare_all(event, partitions, in_flight, remaining_ms, stats)
        while True:
            out_of_time = remaining_ms() < self._options.deadline_margin_ms
            if out_of_time:
                self._stop_all(partitions, stats)
            else:
                self._fill(partitions, in_flight, event.event_source_arn, stats)
            if not in_flight:
                wake_at = self._next_wake(partitions)
                if out_of_time or wake_at is None:
                    break
                # Every partition with work is backing off after throttling: wait, within time.
                allowed_s = (remaining_ms() - self._options.deadline_margin_ms) / 1000
                self._sleep(max(0.0, min(wake_at - self._clock(), allowed_s)))
                continue
            # With a free worker, also wake when a backing-off partition may send again; with
            # none, only a finished request can change anything.
            timeout = None
            if len(in_flight) < self._options.max_concurrency:
                wake_at = self._next_wake(partitions)
                timeout = None if wake_at is None else max(0.0, wake_at - self._clock())
            done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._settle(in_flight.pop(future), future, stats)

        resume = {}
        for partition in partitions:
            offset = partition.queue.first_unacknowledged_offset()
            if offset is not None:
                resume[partition.batch.topic_partition] = offset
        return PublishOutcome(resume_offsets=resume, stats=stats)

    # -- preparation ------------------------------------------------------------------------

    def _prepare_all(
        self,
        event: KafkaEvent,
        partitions: list[_Partition],
        in_flight: dict[Future[Any], _Job],
        remaining_ms: Callable[[], int],
        stats: PublishStats,
    ) -> None:
        """Encode partition by partition, starting every full request as soon as it exists, so
        encoding the rest of the batch overlaps with the first round trips."""
        backlog_records = backlog_bytes = 0
        limits = self._options.limits
        for batch in event.partitions:
            partition = self._prepare(batch)
            partitions.append(partition)
            backlog_records += partition.queue.pending_count()
            backlog_bytes += partition.encoded_bytes
            full_requests = max(
                backlog_records // limits.max_records,
                backlog_bytes // limits.max_request_bytes,
            )
            if full_requests and remaining_ms() >= self._options.deadline_margin_ms:
                started = self._fill(
                    partitions, in_flight, event.event_source_arn, stats, max_requests=full_requests
                )
                backlog_records -= sum(len(entry.records) for _, entry in started)
                backlog_bytes -= sum(entry.size for _, entry in started)
                for future in [future for future in in_flight if future.done()]:
                    self._settle(in_flight.pop(future), future, stats)

    def _prepare(self, batch: PartitionBatch) -> _Partition:
        settings = self._settings
        units = [
            encode_record(
                record,
                record_format=settings.record_format,
                partition_key_mode=settings.partition_key,
                max_record_bytes=settings.max_record_bytes,
            )
            for record in batch.records
        ]
        encoded_bytes = sum(unit.size for unit in units if isinstance(unit, EncodedRecord))
        return _Partition(batch, PartitionQueue(batch.topic_partition, units), encoded_bytes)

    # -- scheduling -------------------------------------------------------------------------

    def _fill(
        self,
        partitions: list[_Partition],
        in_flight: dict[Future[Any], _Job],
        event_source_arn: str | None,
        stats: PublishStats,
        max_requests: int | None = None,
    ) -> list[tuple[_Partition, Entry]]:
        """Start requests until the pool is full or nothing is eligible; returns what started."""
        for partition in partitions:
            for record in partition.queue.take_dead_letters():
                self._start_dead_letter(partition, record, event_source_arn, in_flight)
        started: list[tuple[_Partition, Entry]] = []
        requests = 0
        while len(in_flight) < self._options.max_concurrency and (
            max_requests is None or requests < max_requests
        ):
            items = self._plan_request(partitions)
            if not items:
                break
            future = self._executor.submit(self._writer.put_records, [entry for _, entry in items])
            in_flight[future] = _PutJob(items, self._clock())
            stats.put_records_calls += 1
            started.extend(items)
            requests += 1
        return started

    def _plan_request(self, partitions: list[_Partition]) -> list[tuple[_Partition, Entry]]:
        """Fill one request from every partition that may send, starting where the last stopped.

        Mixing partitions is safe (the ordering rule is per partition and key) and lets many
        small partitions share a round trip instead of each paying for one.
        """
        limits = self._options.limits
        records_left, bytes_left = limits.max_records, limits.max_request_bytes
        items: list[tuple[_Partition, Entry]] = []
        now = self._clock()
        count = len(partitions)
        for step in range(count):
            partition = partitions[(self._cursor + step) % count]
            queue = partition.queue
            if now < partition.not_before or not queue.can_send:
                continue
            entries = queue.next_request(
                RequestLimits(records_left, bytes_left, limits.max_record_bytes), self._packer
            )
            items.extend((partition, entry) for entry in entries)
            records_left -= len(entries)
            bytes_left -= sum(entry.size for entry in entries)
            if queue.can_send:  # this partition filled the request; it leads the next one
                self._cursor = (self._cursor + step) % count
                break
        else:
            self._cursor = (self._cursor + 1) % max(count, 1)
        return items

    def _start_dead_letter(
        self,
        partition: _Partition,
        record: UnwritableRecord,
        event_source_arn: str | None,
        in_flight: dict[Future[Any], _Job],
    ) -> None:
        writer = self._dead_letters
        if writer is None:
            reason = f"unwritable record and no DEAD_LETTER_BUCKET: {record.reason}"
            logger.error(
                "record can not be written and no dead-letter bucket is configured; its"
                " partition is reported from this offset so the ESM retries or sends it to its"
                " on-failure destination",
                extra=_record_fields(record.source, reason=record.reason),
            )
            partition.queue.block(record.partition_key, reason)
            return
        future = self._executor.submit(writer.write, record, event_source_arn)
        in_flight[future] = _DeadLetterJob(partition, record)

    def _next_wake(self, partitions: list[_Partition]) -> float | None:
        """When the earliest backing-off partition may send again (None: nobody is waiting)."""
        waits = [p.not_before for p in partitions if p.queue.can_send and not p.queue.stopped]
        return min(waits) if waits else None

    def _stop_all(self, partitions: list[_Partition], stats: PublishStats) -> None:
        for partition in partitions:
            if not partition.queue.is_done and not partition.queue.stopped:
                stats.stopped_by_deadline = True
                partition.queue.stop("invocation deadline")

    # -- results ----------------------------------------------------------------------------

    def _settle(self, job: _Job, future: Future[Any], stats: PublishStats) -> None:
        if isinstance(job, _DeadLetterJob):
            self._settle_dead_letter(job, future, stats)
            return
        stats.put_latencies_ms.append((self._clock() - job.started) * 1000)
        try:
            codes = future.result()
        except KinesisPublishError as error:
            self._request_failed(job, error, stats)
            return
        except Exception as error:
            self._request_failed(
                job,
                KinesisPublishError(repr(error), code=type(error).__name__, retryable=True),
                stats,
            )
            return
        assert isinstance(codes, Sequence)
        failed: dict[int, int] = {}
        for (partition, entry), code in zip(job.items, codes, strict=True):
            if code is None:
                partition.queue.acknowledge(entry)
                stats.records_published += len(entry.records)
                stats.kinesis_records_published += 1
                stats.bytes_published += entry.size
                continue
            failed[id(partition)] = failed.get(id(partition), 0) + 1
            if code == THROTTLED:
                stats.records_throttled += len(entry.records)
            else:
                stats.records_internal_failure += len(entry.records)
            stats.retry_attempts += len(entry.records)
            partition.queue.release(entry.partition_key)
        for partition in job.partitions:
            self._after_attempt(partition, failed.get(id(partition), 0))

    def _request_failed(
        self, job: _PutJob, error: KinesisPublishError, stats: PublishStats
    ) -> None:
        stats.request_failures += 1
        for partition, entry in job.items:
            partition.queue.release(entry.partition_key)
            if error.retryable:
                stats.retry_attempts += len(entry.records)
                if error.code in THROTTLING_CODES:
                    stats.records_throttled += len(entry.records)
        for partition in job.partitions:
            if error.retryable:
                self._after_attempt(partition, failed=1)
                continue
            logger.error(
                "PutRecords failed with a non-retryable error (%s); partition %s stops and is"
                " reported for redelivery",
                error,
                partition.batch.topic_partition,
                extra={
                    "topic_partition": partition.batch.topic_partition,
                    "error_code": error.code,
                    "records_pending": partition.queue.pending_count(),
                },
            )
            partition.queue.stop(f"non-retryable error {error.code}")

    def _after_attempt(self, partition: _Partition, failed: int) -> None:
        if failed == 0:
            partition.consecutive_failures = 0
            return
        partition.consecutive_failures += 1
        # Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), capped.
        ceiling_ms = min(
            self._options.retry_max_ms,
            self._options.retry_base_ms * 2 ** min(partition.consecutive_failures - 1, 30),
        )
        delay_s = self._rng.uniform(0, ceiling_ms) / 1000
        partition.not_before = max(partition.not_before, self._clock() + delay_s)

    def _settle_dead_letter(
        self, job: _DeadLetterJob, future: Future[Any], stats: PublishStats
    ) -> None:
        record, queue = job.record, job.partition.queue
        try:
            future.result()
        except Exception as error:
            reason = f"dead-letter write failed: {error}"
            logger.error(
                "could not write an unwritable record to the dead-letter bucket; its partition is"
                " reported from this offset",
                extra=_record_fields(
                    record.source,
                    reason=record.reason,
                    error=str(error),
                    error_type=type(error).__name__,
                ),
            )
            queue.block(record.partition_key, reason)
            return
        stats.records_dead_lettered += 1
        logger.warning(
            "record dead-lettered", extra=_record_fields(record.source, reason=record.reason)
        )
        queue.acknowledge_dead_letter(record)


def _record_fields(record: KafkaRecord, **more: object) -> dict[str, object]:
    """Log fields that identify a record without revealing its key or value."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        **more,
    }
