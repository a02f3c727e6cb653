"""One invocation's publishing: which requests go out when, until every partition is settled or
the time budget ends.

The calling thread coordinates; the container's pool of workers only carries requests to AWS and
back. A key's next record leaves as soon as its previous one is acknowledged: no rounds, no idle
waits; only throttling and failures back off.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Final

from msk_kinesis_sink.budget import RoundTripEstimate, TimeBudget
from msk_kinesis_sink.encoding import ClaimCheckRecord, UnwritableRecord
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.jobs import ClaimCheckJob, DeadLetterJob, Job, Partition, PutJob
from msk_kinesis_sink.planning import Entry, Packer, PartitionQueue, RequestLimits
from msk_kinesis_sink.reading import EventReader, Piece, ReadCostEstimate
from msk_kinesis_sink.report import InvocationStats
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.settlement import Settlement
from msk_kinesis_sink.writers import ClaimCheckWriter, DeadLetterWriter, RecordWriter

logger = logging.getLogger(__name__)

# A request is not made smaller than this (nor than one record's limit) to spread the work over
# idle workers: below it, the per-request cost (signing, a round trip) outweighs the gain.
MIN_SPREAD_REQUEST_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Resources:
    """What the container lends each run. The run only reads them; the round-trip estimate
    alone learns from its answers, for the invocations that follow."""

    settings: Settings
    limits: RequestLimits
    writer_for: Callable[[str], RecordWriter]
    dead_letters: DeadLetterWriter | None
    packer: Packer
    pool: ThreadPoolExecutor
    round_trips: RoundTripEstimate
    read_costs: ReadCostEstimate
    clock: Callable[[], float]
    wall_clock: Callable[[], float]  # seconds since the epoch (time.time)
    sleep: Callable[[float], None]
    rng: random.Random
    # With OVERSIZE_RECORDS=claim_check (the sink makes sure it has one then).
    claim_checks: ClaimCheckWriter | None = None
    # The largest record (or aggregate) each stream takes: MAX_RECORD_BYTES, or less where the
    # stream guard learned that the stream's MaxRecordSizeInKiB is smaller.
    record_bytes_for: Callable[[str], int] | None = None


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """Per topic-partition, the first offset the ESM must redeliver (absent: all delivered), and
    the records at or after it that were settled anyway (the redelivery memory keeps them)."""

    resume_offsets: dict[str, int]
    stats: InvocationStats
    settled_after_resume: dict[str, list[KafkaRecord]] = field(default_factory=dict)


class Run:
    """One invocation: its partitions, requests in flight, dead letters waiting for a worker."""

    def __init__(
        self,
        resources: Resources,
        budget: TimeBudget,
        event_source_arn: str | None,
        stats: InvocationStats,
    ) -> None:
        self._resources = resources
        self._settings = resources.settings
        self._clock = resources.clock
        self._budget = budget
        self._event_source_arn = event_source_arn
        self._stats = stats
        self._settlement = Settlement(
            settings=resources.settings,
            stats=stats,
            round_trips=resources.round_trips,
            has_dead_letter_bucket=resources.dead_letters is not None,
            clock=resources.clock,
            wall_clock=resources.wall_clock,
            rng=resources.rng,
        )
        self._partitions: list[Partition] = []
        self._by_name: dict[str, Partition] = {}
        # Records read but not yet in a request (an estimate, while reading: when it makes a
        # full request, one is started).
        self._backlog_records = 0
        self._in_flight: dict[Future[Any], Job] = {}
        # Writes to S3 waiting for a worker: dead letters and claim-checked records.
        self._dead_letter_backlog: deque[tuple[Partition, UnwritableRecord | ClaimCheckRecord]] = (
            deque()
        )
        self._stopping = False
        # Bytes of records neither acknowledged nor in flight (an estimate for spreading the
        # work over the workers: aggregates add a little framing).
        self._unsent_bytes = 0
        # Where the next request starts filling: fairness across this invocation's partitions.
        self._cursor = 0
        # Requests were left running at the answer: the container's pool must be replaced.
        self.abandoned = False

    def execute(self, reader: EventReader) -> PublishOutcome:
        try:
            self._read_all(reader)
            self._drive()
        except BaseException:
            # A bug (an exception no adapter raises on purpose): let it reach the ESM, which
            # retries the whole batch, but first make sure this run's requests are not still
            # writing while the next invocation sends the same records.
            self._drain()
            raise
        return _outcome(self._partitions, reader, self._stats)

    # -- reading ----------------------------------------------------------------------------

    def _read_all(self, reader: EventReader) -> None:
        """Read the event a piece at a time, each taken as soon as it is read; from where
        reading had to stop (budget.last_read), the event is reported."""
        self._stats.partitions = reader.partition_count
        round_trips = self._resources.round_trips
        read_whole = reader.read_in_time(
            self._resources.read_costs,
            clock=self._clock,
            until=lambda: self._budget.last_read(round_trips.typical_s),
            take=self._take,
        )
        self._stats.stopped_by_deadline = not read_whole

    def _take(self, piece: Piece) -> None:
        """Queue a piece behind its partition's earlier records, start every full request
        there is (so reading the rest overlaps the first round trips), and settle the
        requests that finished meanwhile."""
        if piece.malformed is not None:
            self._stats.records_malformed += 1
            _log_malformed(piece)
        encoded = piece.encoded
        if encoded.units:
            partition = self._by_name.get(piece.topic_partition)
            if partition is None:
                queue = PartitionQueue(piece.topic_partition)
                partition = Partition(piece.topic_partition, queue, piece.stream)
                self._partitions.append(partition)
                self._by_name[piece.topic_partition] = partition
            pending = partition.queue.pending_count()
            partition.queue.extend(encoded.units, encoded.delivered_before)
            self._backlog_records += partition.queue.pending_count() - pending
            self._unsent_bytes += encoded.encoded_bytes
        limits = self._resources.limits
        full_requests = max(
            self._backlog_records // limits.max_records,
            self._unsent_bytes // limits.max_request_bytes,
        )
        if full_requests and self._may_start():
            started = self._fill(max_requests=full_requests)
            self._backlog_records -= sum(len(entry.records) for _, entry in started)
        self._settle([future for future in self._in_flight if future.done()])

    # -- the loop ---------------------------------------------------------------------------

    def _last_start(self) -> float:
        return self._budget.last_start(self._resources.round_trips.typical_s)

    def _may_start(self) -> bool:
        return self._clock() < self._last_start()

    def _drive(self) -> None:
        while True:
            if not self._stopping and not self._may_start():
                self._stop_all()
            if not self._stopping:
                self._fill()
            now = self._clock()
            if not self._in_flight:
                wake_at = self._next_wake()
                if self._stopping or wake_at is None:
                    return
                # Every partition with work is backing off: wait for the first, unless it may
                # only send after the last start, in which case waiting would only delay the answer.
                if wake_at >= self._last_start():
                    self._stop_all()
                    return
                self._resources.sleep(max(0.0, wake_at - now))
                continue
            timeout = self._wait_timeout(now)
            done, _ = wait(self._in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            self._settle(done)
            if not done and self._stopping and self._clock() >= self._budget.give_up_at:
                self._abandon()
                return

    def _settle(self, finished: Iterable[Future[Any]]) -> None:
        for future in finished:
            self._unsent_bytes += self._settlement.settle(self._in_flight.pop(future), future)

    def _wait_timeout(self, now: float) -> float:
        """Until a request may finish, a backing-off partition may send, or time is up."""
        if self._stopping:
            return max(0.0, self._budget.give_up_at - now)
        until = self._last_start()
        # With a free worker, also wake when a backing-off partition may send again; with
        # none, only a finished request (or the end of the time to start any) changes anything.
        if len(self._in_flight) < self._settings.max_concurrency:
            wake_at = self._next_wake()
            if wake_at is not None:
                until = min(until, wake_at)
        return max(0.0, until - now)

    def _fill(self, max_requests: int | None = None) -> list[tuple[Partition, Entry]]:
        """Start jobs until the pool is full or nothing is eligible; returns the entries sent."""
        for partition in self._partitions:
            for record in partition.queue.take_dead_letters():
                if self._settlement.dead_letter_or_block(partition, record):
                    self._dead_letter_backlog.append((partition, record))
            self._dead_letter_backlog.extend(
                (partition, claim) for claim in partition.queue.take_claim_checks()
            )
        capacity = self._settings.max_concurrency
        # Dead letters (and claim checks) first: each holds its key (and the partition's resume
        # point) until written.
        while self._dead_letter_backlog and len(self._in_flight) < capacity:
            partition, unit = self._dead_letter_backlog.popleft()
            if isinstance(unit, ClaimCheckRecord):
                self._start_claim_check(partition, unit)
            else:
                self._start_dead_letter(partition, unit)
        started: list[tuple[Partition, Entry]] = []
        requests = 0
        while len(self._in_flight) < capacity and (max_requests is None or requests < max_requests):
            items = self._plan_request(self._request_bytes(capacity - len(self._in_flight)))
            if not items:
                break
            self._start_put(items)
            started.extend(items)
            requests += 1
        return started

    def _request_bytes(self, free_workers: int) -> int:
        """How big the next request may be: the limit, or the unsent work shared over the free
        workers when that is smaller. A lone 5 MiB request takes longer than several smaller
        ones side by side, and a failed small one resends less."""
        limits = self._resources.limits
        share = -(-max(self._unsent_bytes, 0) // max(free_workers, 1))
        # Never below one record's limit: the largest record (or aggregate) must still fit.
        floor = max(MIN_SPREAD_REQUEST_BYTES, limits.max_record_bytes)
        return min(limits.max_request_bytes, max(floor, share))

    def _plan_request(self, request_bytes: int) -> list[tuple[Partition, Entry]]:
        """Fill one request from every partition that may send, starting where the last stopped.

        Mixing partitions is safe (the ordering rule is per partition and key) and lets many
        small partitions share a round trip instead of each paying for one. A request goes to
        one stream: the first partition that may send chooses it.
        """
        limits, partitions, packer = (
            self._resources.limits,
            self._partitions,
            self._resources.packer,
        )
        records_left, bytes_left = limits.max_records, request_bytes
        items: list[tuple[Partition, Entry]] = []
        stream: str | None = None
        now = self._clock()
        count = len(partitions)
        for step in range(count):
            partition = partitions[(self._cursor + step) % count]
            queue = partition.queue
            if (stream is not None and partition.stream != stream) or not queue.can_send_at(now):
                continue
            stream = partition.stream
            record_bytes = limits.max_record_bytes
            if self._resources.record_bytes_for is not None:
                record_bytes = min(record_bytes, self._resources.record_bytes_for(stream))
            entries = queue.next_request(
                RequestLimits(records_left, bytes_left, record_bytes), packer
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

    def _start_put(self, items: list[tuple[Partition, Entry]]) -> None:
        self._unsent_bytes -= sum(entry.size for _, entry in items)
        now = self._clock()
        deadline = self._budget.request_deadline(now, self._settings.request_timeout_seconds)
        writer = self._resources.writer_for(items[0][0].stream)
        future = self._resources.pool.submit(
            writer.put_records, [entry for _, entry in items], deadline
        )
        self._in_flight[future] = PutJob(items, now)
        self._stats.put_records_calls += 1

    def _start_dead_letter(self, partition: Partition, record: UnwritableRecord) -> None:
        writer = self._resources.dead_letters
        assert writer is not None  # only queued with a writer
        deadline = self._budget.request_deadline(
            self._clock(), self._settings.request_timeout_seconds
        )
        future = self._resources.pool.submit(writer.write, record, self._event_source_arn, deadline)
        self._in_flight[future] = DeadLetterJob(partition, record)
        self._stats.dead_letter_writes += 1

    def _start_claim_check(self, partition: Partition, record: ClaimCheckRecord) -> None:
        writer = self._resources.claim_checks
        assert writer is not None  # a sink with claim checks has a writer for them
        deadline = self._budget.request_deadline(
            self._clock(), self._settings.request_timeout_seconds
        )
        future = self._resources.pool.submit(writer.write, record, deadline)
        self._in_flight[future] = ClaimCheckJob(partition, record)
        self._stats.claim_check_writes += 1

    def _next_wake(self) -> float | None:
        """When the earliest key backing off may go again (None: none is)."""
        waits = [
            retry_at
            for partition in self._partitions
            if (retry_at := partition.queue.next_retry_at()) is not None
        ]
        return min(waits) if waits else None

    # -- the end ----------------------------------------------------------------------------

    def _stop_all(self) -> None:
        self._stopping = True
        for partition in self._partitions:
            if not partition.queue.is_done and not partition.queue.stopped:
                self._stats.stopped_by_deadline = True
                partition.queue.stop("invocation deadline")
        # Dead letters not yet started stay unwritten: their partitions are reported from them.
        self._dead_letter_backlog.clear()

    def _abandon(self) -> None:
        """Answer without the requests still running (only possible outside the bounded
        transport): their records count as not written, so their partitions are reported."""
        self.abandoned = True
        self._stats.requests_abandoned += len(self._in_flight)
        logger.warning(
            "requests still running at the invocation's stop are abandoned; their records are"
            " reported for redelivery",
            extra={"requests_abandoned": len(self._in_flight)},
        )
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()

    def _drain(self) -> None:
        """Cancel what has not started; wait (within the budget) for what has."""
        running = [future for future in self._in_flight if not future.cancel()]
        if running:
            wait(running, timeout=max(0.0, self._budget.give_up_at - self._clock()))
        self._in_flight.clear()


def _outcome(
    partitions: list[Partition], reader: EventReader, stats: InvocationStats
) -> PublishOutcome:
    """Where each partition resumes: its first record not delivered, read or not."""
    resume: dict[str, int] = {}
    for partition in partitions:
        offset = partition.queue.first_unacknowledged_offset()
        if offset is not None:
            resume[partition.batch_name] = offset
    # Records not read (or from a malformed one on) come after those read: a partition whose
    # records read were all delivered is reported from its first unread one.
    for name, offset in reader.unread().items():
        resume.setdefault(name, offset)
    settled = {
        partition.batch_name: partition.queue.settled_from(resume[partition.batch_name])
        for partition in partitions
        if partition.batch_name in resume
    }
    # Records written before are skipped in their key's turn, which may come at any time of
    # the run: counted once it is over.
    stats.records_already_delivered = sum(
        partition.queue.delivered_before_count for partition in partitions
    )
    stats.records_unread = reader.unread_count()
    return PublishOutcome(resume_offsets=resume, stats=stats, settled_after_resume=settled)


def _log_malformed(piece: Piece) -> None:
    logger.error(
        "a record is malformed (%s); its partition is published up to it and reported from it,"
        " so the ESM retries it and, when its retries run out, sends it to the on-failure"
        " destination",
        piece.malformed,
        extra={"topic_partition": piece.topic_partition, "offset": piece.malformed_offset},
    )
