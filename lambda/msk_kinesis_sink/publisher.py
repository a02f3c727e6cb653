"""Publish one invocation's partitions concurrently, each in order per key, within its time budget.

`Publisher` lives as long as the container: writers, worker pool, what it learned of round trips.
Each invocation gets its own `_Run`, which owns every piece of per-invocation state. The calling
thread coordinates the run; a bounded pool of workers only carries requests to AWS and back. A
key's next record leaves as soon as its previous one is acknowledged: no rounds, no idle waits;
only throttling and failures back off.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Final

from msk_kinesis_sink.backoff import full_jitter_seconds
from msk_kinesis_sink.budget import TimeBudget
from msk_kinesis_sink.encoding import EncodedPartition, UnwritableRecord
from msk_kinesis_sink.errors import DeadLetterError, KinesisPublishError
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, max_request_bytes
from msk_kinesis_sink.planning import (
    Entry,
    Packer,
    PartitionQueue,
    RequestLimits,
    SingleRecordPacker,
)
from msk_kinesis_sink.report import InvocationStats
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.writers import DeadLetterWriter, RecordResult, RecordWriter

logger = logging.getLogger(__name__)

# A request is not made smaller than this (nor than one record's limit) to spread the work over
# idle workers: below it, the per-request cost (signing, a round trip) outweighs the gain.
MIN_SPREAD_REQUEST_BYTES: Final = 256 * 1024

# Weight of the newest round trip in the running estimate the run uses to decide whether a
# request still has time to complete.
_ROUND_TRIP_SMOOTHING: Final = 0.2


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """Per topic-partition, the first offset the ESM must redeliver (absent: all delivered), and
    the records at or after it that were settled anyway (the redelivery memory keeps them)."""

    resume_offsets: dict[str, int]
    stats: InvocationStats
    settled_after_resume: dict[str, list[KafkaRecord]] = field(default_factory=dict)


@dataclass(slots=True)
class _Partition:
    batch_name: str  # "<topic>-<partition>", the ESM's name for it
    queue: PartitionQueue
    stream: str  # where its records go (a stream name or ARN); a request serves one stream


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
    """Drives each invocation's partitions to Kinesis under the strict per-key ordering rule."""

    def __init__(
        self,
        *,
        settings: Settings,
        writer_for: Callable[[str], RecordWriter],
        dead_letters: DeadLetterWriter | None,
        packer: Packer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.writer_for = writer_for
        self.dead_letters = dead_letters
        self.packer = packer or SingleRecordPacker()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limits = RequestLimits(
            max_records=MAX_RECORDS_PER_REQUEST,
            max_request_bytes=max_request_bytes(settings.max_record_bytes),
            max_record_bytes=settings.max_record_bytes,
        )
        self.typical_round_trip_s = 0.0
        # Created once per container: threads (and their connections) are reused.
        self.executor = self._new_executor()
        self.cursor = 0  # where the next request starts filling (fairness across partitions)

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            max_workers=self.settings.max_concurrency, thread_name_prefix="kinesis-put"
        )

    def publish(
        self,
        partitions: Iterable[tuple[str, EncodedPartition]],
        *,
        record_count: int,
        event_source_arn: str | None,
        budget: TimeBudget,
    ) -> PublishOutcome:
        stats = InvocationStats(records_received=record_count)
        run = _Run(self, budget, event_source_arn, stats)
        outcome = run.execute(partitions)
        if run.abandoned:
            # Requests outside the bounded transport still hold workers: give the next
            # invocation a fresh pool; the old threads end on their own.
            stale, self.executor = self.executor, self._new_executor()
            stale.shutdown(wait=False, cancel_futures=True)
        return outcome

    def observe_round_trip(self, seconds: float) -> None:
        previous = self.typical_round_trip_s
        self.typical_round_trip_s = (
            seconds if previous == 0.0 else previous + _ROUND_TRIP_SMOOTHING * (seconds - previous)
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True)


class _Run:
    """One invocation: its partitions, requests in flight, dead letters waiting for a worker."""

    def __init__(
        self,
        publisher: Publisher,
        budget: TimeBudget,
        event_source_arn: str | None,
        stats: InvocationStats,
    ) -> None:
        self.publisher = publisher
        self.settings = publisher.settings
        self.budget = budget
        self.event_source_arn = event_source_arn
        self.stats = stats
        self.clock = publisher.clock
        self.partitions: list[_Partition] = []
        self.in_flight: dict[Future[Any], _Job] = {}
        self.dead_letter_backlog: deque[tuple[_Partition, UnwritableRecord]] = deque()
        self.stopping = False
        self.abandoned = False
        # Bytes of records neither acknowledged nor in flight (an estimate for spreading the
        # work over the workers: aggregates add a little framing).
        self.unsent_bytes = 0

    def execute(self, partitions: Iterable[tuple[str, EncodedPartition]]) -> PublishOutcome:
        try:
            self._prepare_all(partitions)
            self._drive()
        except BaseException:
            # A bug (an exception no adapter raises on purpose): let it reach the ESM, which
            # retries the whole batch, but first make sure this run's requests are not still
            # writing while the next invocation sends the same records.
            self._drain()
            raise
        return self._outcome()

    # -- preparation ------------------------------------------------------------------------

    def _prepare_all(self, partitions: Iterable[tuple[str, EncodedPartition]]) -> None:
        """Take partitions as they are encoded, starting every full request as soon as it
        exists, so encoding the rest of the batch overlaps with the first round trips."""
        backlog_records = 0
        limits = self.publisher.limits
        for stream, encoded in partitions:
            queue = PartitionQueue(
                encoded.batch.topic_partition, encoded.units, encoded.delivered_before
            )
            self.stats.records_already_delivered += queue.delivered_before_count
            self.partitions.append(_Partition(encoded.batch.topic_partition, queue, stream))
            self.stats.partitions += 1
            backlog_records += queue.pending_count()
            self.unsent_bytes += encoded.encoded_bytes
            full_requests = max(
                backlog_records // limits.max_records,
                self.unsent_bytes // limits.max_request_bytes,
            )
            if full_requests and self._may_start():
                started = self._fill(max_requests=full_requests)
                backlog_records -= sum(len(entry.records) for _, entry in started)
                for future in [future for future in self.in_flight if future.done()]:
                    self._settle(self.in_flight.pop(future), future)

    # -- the loop ---------------------------------------------------------------------------

    def _may_start(self) -> bool:
        return self.clock() < self.budget.last_start(self.publisher.typical_round_trip_s)

    def _drive(self) -> None:
        budget = self.budget
        while True:
            if not self.stopping and not self._may_start():
                self._stop_all()
            if not self.stopping:
                self._fill()
            now = self.clock()
            if not self.in_flight:
                wake_at = self._next_wake()
                if self.stopping or wake_at is None:
                    return
                # Every partition with work is backing off: wait for the first, unless it may
                # only send after the last start, in which case waiting would only delay the answer.
                if wake_at >= budget.last_start(self.publisher.typical_round_trip_s):
                    self._stop_all()
                    return
                self.publisher.sleep(max(0.0, wake_at - now))
                continue
            timeout = self._wait_timeout(now)
            done, _ = wait(self.in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                self._settle(self.in_flight.pop(future), future)
            if not done and self.stopping and self.clock() >= budget.give_up_at:
                self._abandon()
                return

    def _wait_timeout(self, now: float) -> float:
        """Until a request may finish, a backing-off partition may send, or time is up."""
        if self.stopping:
            return max(0.0, self.budget.give_up_at - now)
        until = self.budget.last_start(self.publisher.typical_round_trip_s)
        # With a free worker, also wake when a backing-off partition may send again; with
        # none, only a finished request (or the end of the time to start any) changes anything.
        if len(self.in_flight) < self.settings.max_concurrency:
            wake_at = self._next_wake()
            if wake_at is not None:
                until = min(until, wake_at)
        return max(0.0, until - now)

    def _fill(self, max_requests: int | None = None) -> list[tuple[_Partition, Entry]]:
        """Start jobs until the pool is full or nothing is eligible; returns the entries sent."""
        for partition in self.partitions:
            for record in partition.queue.take_dead_letters():
                self._queue_dead_letter(partition, record)
        capacity = self.settings.max_concurrency
        # Dead letters first: each holds its key (and the partition's resume point) until written.
        while self.dead_letter_backlog and len(self.in_flight) < capacity:
            self._start_dead_letter(*self.dead_letter_backlog.popleft())
        started: list[tuple[_Partition, Entry]] = []
        requests = 0
        while len(self.in_flight) < capacity and (max_requests is None or requests < max_requests):
            items = self._plan_request(self._request_bytes(capacity - len(self.in_flight)))
            if not items:
                break
            self.unsent_bytes -= sum(entry.size for _, entry in items)
            now = self.clock()
            deadline = self.budget.request_deadline(now, self.settings.request_timeout_seconds)
            writer = self.publisher.writer_for(items[0][0].stream)
            future = self.publisher.executor.submit(
                writer.put_records, [entry for _, entry in items], deadline
            )
            self.in_flight[future] = _PutJob(items, now)
            self.stats.put_records_calls += 1
            started.extend(items)
            requests += 1
        return started

    def _request_bytes(self, free_workers: int) -> int:
        """How big the next request may be: the limit, or the unsent work shared over the free
        workers when that is smaller. A lone 5 MiB request takes longer than several smaller
        ones side by side, and a failed small one resends less."""
        limits = self.publisher.limits
        share = -(-max(self.unsent_bytes, 0) // max(free_workers, 1))
        # Never below one record's limit: the largest record (or aggregate) must still fit.
        floor = max(MIN_SPREAD_REQUEST_BYTES, limits.max_record_bytes)
        return min(limits.max_request_bytes, max(floor, share))

    def _plan_request(self, request_bytes: int) -> list[tuple[_Partition, Entry]]:
        """Fill one request from every partition that may send, starting where the last stopped.

        Mixing partitions is safe (the ordering rule is per partition and key) and lets many
        small partitions share a round trip instead of each paying for one. A request goes to
        one stream: the first partition that may send chooses it.
        """
        limits, partitions, publisher = self.publisher.limits, self.partitions, self.publisher
        records_left, bytes_left = limits.max_records, request_bytes
        items: list[tuple[_Partition, Entry]] = []
        stream: str | None = None
        now = self.clock()
        count = len(partitions)
        for step in range(count):
            partition = partitions[(publisher.cursor + step) % count]
            queue = partition.queue
            if (stream is not None and partition.stream != stream) or not queue.can_send_at(now):
                continue
            stream = partition.stream
            entries = queue.next_request(
                RequestLimits(records_left, bytes_left, limits.max_record_bytes), publisher.packer
            )
            items.extend((partition, entry) for entry in entries)
            records_left -= len(entries)
            bytes_left -= sum(entry.size for entry in entries)
            if queue.can_send:  # this partition filled the request; it leads the next one
                publisher.cursor = (publisher.cursor + step) % count
                break
        else:
            publisher.cursor = (publisher.cursor + 1) % max(count, 1)
        return items

    def _queue_dead_letter(self, partition: _Partition, record: UnwritableRecord) -> None:
        if self.publisher.dead_letters is None:
            logger.error(
                "record can not be written and no dead-letter bucket is configured; its"
                " partition is reported from this offset so the ESM retries or sends it to its"
                " on-failure destination",
                extra=_record_fields(record.source, reason=record.reason),
            )
            reason = f"unwritable record and no DEAD_LETTER_BUCKET: {record.reason}"
            partition.queue.block(record.partition_key, reason)
            return
        self.dead_letter_backlog.append((partition, record))

    def _start_dead_letter(self, partition: _Partition, record: UnwritableRecord) -> None:
        writer = self.publisher.dead_letters
        assert writer is not None  # only queued with a writer
        deadline = self.budget.request_deadline(self.clock(), self.settings.request_timeout_seconds)
        future = self.publisher.executor.submit(
            writer.write, record, self.event_source_arn, deadline
        )
        self.in_flight[future] = _DeadLetterJob(partition, record)
        self.stats.dead_letter_writes += 1

    def _next_wake(self) -> float | None:
        """When the earliest key backing off may go again (None: none is)."""
        waits = [
            retry_at
            for partition in self.partitions
            if (retry_at := partition.queue.next_retry_at()) is not None
        ]
        return min(waits) if waits else None

    def _stop_all(self) -> None:
        self.stopping = True
        for partition in self.partitions:
            if not partition.queue.is_done and not partition.queue.stopped:
                self.stats.stopped_by_deadline = True
                partition.queue.stop("invocation deadline")
        # Dead letters not yet started stay unwritten: their partitions are reported from them.
        self.dead_letter_backlog.clear()

    def _abandon(self) -> None:
        """Answer without the requests still running (only possible outside the bounded
        transport): their records count as not written, so their partitions are reported."""
        self.abandoned = True
        self.stats.requests_abandoned += len(self.in_flight)
        logger.warning(
            "requests still running at the invocation's stop are abandoned; their records are"
            " reported for redelivery",
            extra={"requests_abandoned": len(self.in_flight)},
        )
        for future in self.in_flight:
            future.cancel()
        self.in_flight.clear()

    def _drain(self) -> None:
        """Cancel what has not started; wait (within the budget) for what has."""
        running = [future for future in self.in_flight if not future.cancel()]
        if running:
            wait(running, timeout=max(0.0, self.budget.give_up_at - self.clock()))
        self.in_flight.clear()

    # -- results ----------------------------------------------------------------------------

    def _settle(self, job: _Job, future: Future[Any]) -> None:
        if isinstance(job, _DeadLetterJob):
            self._settle_dead_letter(job, future)
            return
        stats = self.stats
        elapsed = self.clock() - job.started
        stats.put_latencies_ms.append(elapsed * 1000)
        try:
            results = future.result()
        except KinesisPublishError as error:
            self._request_failed(job, error)
            return
        self.publisher.observe_round_trip(elapsed)
        for (partition, entry), result in zip(job.items, results, strict=True):
            if result is RecordResult.WRITTEN:
                partition.queue.acknowledge(entry)
                stats.records_published += len(entry.records)
                stats.kinesis_records_published += 1
                stats.bytes_published += entry.size
                continue
            if result is RecordResult.THROTTLED:
                stats.records_throttled += len(entry.records)
            else:
                stats.records_internal_failure += len(entry.records)
            stats.retry_attempts += len(entry.records)
            self._retry_later(partition, entry)

    def _request_failed(self, job: _PutJob, error: KinesisPublishError) -> None:
        stats = self.stats
        stats.request_failures += 1
        for partition, entry in job.items:
            if error.retryable:
                stats.retry_attempts += len(entry.records)
                if error.throttled:
                    stats.records_throttled += len(entry.records)
                self._retry_later(partition, entry)
            else:
                partition.queue.release(entry.partition_key)
        if error.retryable:
            return
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

    def _retry_later(self, partition: _Partition, entry: Entry) -> None:
        """Back the entry's key off (and only that key: others of the partition go on)."""
        self.unsent_bytes += entry.size
        queue, key = partition.queue, entry.partition_key
        delay_s = full_jitter_seconds(
            queue.failed_attempts(key) + 1,
            base_ms=self.settings.retry_base_ms,
            max_ms=self.settings.retry_max_ms,
            rng=self.publisher.rng,
        )
        queue.release(key, self.clock() + delay_s)

    def _settle_dead_letter(self, job: _DeadLetterJob, future: Future[Any]) -> None:
        record, queue = job.record, job.partition.queue
        try:
            future.result()
        except DeadLetterError as error:
            logger.error(
                "could not write an unwritable record to the dead-letter bucket; its partition is"
                " reported from this offset",
                extra=_record_fields(record.source, reason=record.reason, error=str(error)),
            )
            queue.block(record.partition_key, f"dead-letter write failed: {error}")
            return
        self.stats.records_dead_lettered += 1
        logger.warning(
            "record dead-lettered", extra=_record_fields(record.source, reason=record.reason)
        )
        queue.acknowledge_dead_letter(record)

    # -- the answer -------------------------------------------------------------------------

    def _outcome(self) -> PublishOutcome:
        resume: dict[str, int] = {}
        settled: dict[str, list[KafkaRecord]] = {}
        for partition in self.partitions:
            offset = partition.queue.first_unacknowledged_offset()
            if offset is not None:
                resume[partition.batch_name] = offset
                settled[partition.batch_name] = partition.queue.settled_from(offset)
        return PublishOutcome(resume_offsets=resume, stats=self.stats, settled_after_resume=settled)


def _record_fields(record: KafkaRecord, **more: object) -> dict[str, object]:
    """Log fields that identify a record without revealing its key or value."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        **more,
    }
