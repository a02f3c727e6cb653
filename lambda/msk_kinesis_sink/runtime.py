"""One container's sink: settings, clients and worker pool built once, used by every invocation."""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Protocol, assert_never

from msk_kinesis_sink.budget import TimeBudget
from msk_kinesis_sink.claim_checks import ClaimCheckTarget
from msk_kinesis_sink.encoding import EncodedPartition, encode_partition
from msk_kinesis_sink.errors import RoutingError
from msk_kinesis_sink.events import EventOutline, PartitionBatch, outline_event
from msk_kinesis_sink.planning import Packer
from msk_kinesis_sink.publisher import Publisher
from msk_kinesis_sink.reading import Encoder, EventReader
from msk_kinesis_sink.redelivery import RedeliveryMemory
from msk_kinesis_sink.report import InvocationReport, InvocationStats
from msk_kinesis_sink.response import PartialBatchResponse, partial_batch_response
from msk_kinesis_sink.run import PublishOutcome
from msk_kinesis_sink.settings import Aggregation, Settings
from msk_kinesis_sink.stream_guard import StreamGuard
from msk_kinesis_sink.writers import ClaimCheckWriter, DeadLetterWriter, RecordWriter

logger = logging.getLogger(__name__)

# Below this, an invocation still publishes what fits, but says that its budget is short.
LOW_BUDGET_S: Final = 1.0


class LambdaContextLike(Protocol):
    """The part of the Lambda context the sink uses."""

    def get_remaining_time_in_millis(self) -> int: ...


class ReportSink(Protocol):
    """Where invocation reports go (the handler wires Powertools metrics here)."""

    def __call__(self, report: InvocationReport) -> None: ...


class Sink:
    """Parses an invocation, publishes it, and answers with the partial-batch response."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: RecordWriter | None = None,
        writers: Callable[[str], RecordWriter] | None = None,
        dead_letters: DeadLetterWriter | None = None,
        claim_checks: ClaimCheckWriter | None = None,
        packer: Packer | None = None,
        on_report: ReportSink | None = None,
        memory: RedeliveryMemory | None = None,
        stream_guard: StreamGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        read_cost: Callable[[int], None] | None = None,
    ) -> None:
        """`writer` serves every stream; or `writers` gives each stream (name or ARN) its own.
        With OVERSIZE_RECORDS=claim_check, `claim_checks` keeps the records it claim-checks.
        With `stream_guard`, a stream is written to only while its guard lets records through.
        `clock` times the invocation; `wall_clock` (epoch seconds) dates acknowledgements.

        `read_cost`: for tests on a virtual `clock`, told the work units of each piece of an
        event read, advances the clock by what reading them costs.
        """
        self.settings = settings
        self._claim_check_target = ClaimCheckTarget.of(settings)
        if self._claim_check_target is not None and claim_checks is None:
            raise TypeError("Sink with OVERSIZE_RECORDS=claim_check needs claim_checks (a writer)")
        if writers is None:
            if writer is None:
                raise TypeError("Sink needs a writer (every stream) or writers (per stream)")
            writers = _same_writer(writer)
        self._guard = stream_guard
        self._publisher = Publisher(
            settings=settings,
            writer_for=writers if stream_guard is None else stream_guard.guarded(writers),
            dead_letters=dead_letters,
            packer=packer or _packer_for(settings),
            claim_checks=claim_checks,
            record_bytes_for=None if stream_guard is None else stream_guard.max_record_bytes,
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
            rng=rng,
        )
        self._clock = clock
        self._read_cost = read_cost
        self.memory = memory if memory is not None else RedeliveryMemory()
        self._on_report = on_report
        self.last_report: InvocationReport | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        settings: Settings | None = None,
        on_report: ReportSink | None = None,
    ) -> Sink:
        """Build from environment variables (parsed into `settings` unless given); raises
        ConfigurationError naming a bad variable."""
        settings = settings or Settings.from_env(env)
        # boto3 is imported only once settings are valid.
        from msk_kinesis_sink.aws.claim_checks import S3ClaimCheckWriter
        from msk_kinesis_sink.aws.clients import kinesis_client, s3_client, session
        from msk_kinesis_sink.aws.kinesis import KinesisSummaryReader, KinesisWriters
        from msk_kinesis_sink.aws.s3 import S3DeadLetterWriter

        shared_session = session(env)
        # One S3 client for dead letters and claim checks alike.
        s3 = None
        if settings.dead_letter_bucket or settings.claim_check_bucket_name:
            s3 = s3_client(settings, env, shared_session)
        dead_letters = None
        if s3 is not None and settings.dead_letter_bucket:
            dead_letters = S3DeadLetterWriter(
                s3, settings.dead_letter_bucket, settings.dead_letter_prefix
            )
        kinesis = kinesis_client(settings, env, shared_session)
        guard = StreamGuard(
            KinesisSummaryReader(kinesis),
            check_interval_s=settings.stream_check_seconds,
            max_record_bytes=settings.max_record_bytes,
        )
        return cls(
            settings,
            writers=KinesisWriters(kinesis),
            dead_letters=dead_letters,
            claim_checks=None if s3 is None else S3ClaimCheckWriter(s3),
            on_report=on_report,
            stream_guard=guard,
        )

    def handle(self, event: Any, context: LambdaContextLike) -> PartialBatchResponse:
        started = self._clock()
        remaining_s = context.get_remaining_time_in_millis() / 1000
        with _cyclic_gc_paused():
            # Where every record is, checked: a malformed event is refused here, before anything
            # is sent. Records are read (and the rest checked) while publishing.
            outline = outline_event(event)
            streams = self._route(outline)
            budget = TimeBudget.start(started, remaining_s, outline.record_count)
            if remaining_s < LOW_BUDGET_S:
                logger.warning(
                    "the invocation started with %d ms left: it publishes what fits and reports"
                    " the rest; a longer function timeout (or a smaller batch) wastes less work",
                    int(remaining_s * 1000),
                )
            if outline.partitions:
                # Each stream's record limit is learned before reading starts: a round trip to
                # Kinesis inside a piece would count as reading cost.
                record_limits = {
                    stream: self._record_limit(stream, budget)
                    for stream in dict.fromkeys(streams.values())  # `_route`: the event's topics
                }
                encoder = self._encoder(outline.source_id, streams, record_limits)
                reader = EventReader(outline, streams, encoder, self._read_cost)
                outcome = self._publisher.publish(
                    reader,
                    record_count=outline.record_count,
                    event_source_arn=outline.event_source_arn,
                    budget=budget,
                )
                # Remembering is worth the time left once the run is over, not the answer's.
                remember_until = (budget.stop_at + budget.deadline) / 2
                self._remember(outline, outcome, lambda: self._clock() < remember_until)
            else:  # nothing to publish, no AWS call; still one summary line and zero metrics
                outcome = PublishOutcome(resume_offsets={}, stats=InvocationStats())
            response = partial_batch_response(outline, outcome.resume_offsets)
        stats = outcome.stats
        stats.records_failed = len(response["batchItemFailures"])
        stats.partitions_failed = len(outcome.resume_offsets)
        stats.duration_ms = (self._clock() - started) * 1000
        report = self.last_report = InvocationReport(stats)
        if stats.records_failed:
            logger.warning(
                "partitions reported for redelivery",
                extra={"resume_offsets": outcome.resume_offsets},
            )
        logger.info("invocation summary", extra=report.log_fields())
        if self._on_report is not None:
            self._on_report(report)
        return response

    def _route(self, event: EventOutline) -> dict[str, str]:
        """Each topic's stream; raises RoutingError, before anything is sent, for a topic that
        matches no route when there is no default stream."""
        streams: dict[str, str] = {}
        for batch in event.partitions:
            if batch.topic in streams:
                continue
            stream = self.settings.stream_for(batch.topic)
            if stream is None:
                raise RoutingError(
                    f"topic {batch.topic!r} matches no STREAM_ROUTES pattern and STREAM_NAME is"
                    " not set: add a route for it, or set STREAM_NAME as the default stream"
                )
            streams[batch.topic] = stream
        return streams

    def _encoder(
        self, source: str, streams: Mapping[str, str], record_limits: Mapping[str, int]
    ) -> Encoder:
        """Encodes a piece of a partition for its stream, with what the container wrote of it
        before."""
        settings, memory, claim_checks = self.settings, self.memory, self._claim_check_target

        def encode(batch: PartitionBatch, stands_at: int) -> EncodedPartition:
            return encode_partition(
                batch,
                record_format=settings.record_format,
                partition_key_mode=settings.partition_key,
                partition_key_header=settings.partition_key_header,
                max_record_bytes=record_limits[streams[batch.topic]],
                delivered_before=memory.recall(source, batch, stands_at=stands_at),
                aggregation=settings.aggregation,
                claim_checks=claim_checks,
            )

        return encode

    def _record_limit(self, stream: str, budget: TimeBudget) -> int:
        """The largest record `stream` takes; with a guard, checked (learned, the first time)
        before the event is read, so a record that fits MAX_RECORD_BYTES but not
        the stream becomes a dead letter instead of failing a whole request."""
        if self._guard is None:
            return self.settings.max_record_bytes
        now = self._clock()
        # Asking Kinesis here holds up reading: with at most half the time left, so that a
        # DescribeStreamSummary that hangs still leaves time to read, report and answer.
        deadline = min(
            budget.request_deadline(now, self.settings.request_timeout_seconds),
            now + (budget.stop_at - now) / 2,
        )
        return self._guard.check(stream, deadline).max_record_bytes

    def _remember(
        self, event: EventOutline, outcome: PublishOutcome, in_time: Callable[[], bool]
    ) -> None:
        """Keep what the ESM will send again (while `in_time()`); forget partitions it moves
        past."""
        source = event.source_id
        for batch in event.partitions:
            resume_at = outcome.resume_offsets.get(batch.topic_partition)
            if resume_at is None:
                self.memory.forget(source, batch)
            else:
                settled = outcome.settled_after_resume.get(batch.topic_partition, [])
                self.memory.keep(source, batch, resume_at, settled, in_time=in_time)

    def close(self) -> None:
        self._publisher.close()


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector for one invocation, then collect its youngest generation once.

    An invocation allocates a few objects per record and frees them by reference counting; the
    cycle collector would only rescan the event (tens of thousands of dicts) again and again:
    about 2.5 us of CPU per record, ~18 % of the whole, measured on 10,000-record batches.
    The collector still counts what is allocated meanwhile: re-enabled as it is, it would fall
    due at the next allocation, in the middle of answering, and could rescan the whole event
    (0.3 s measured on a 6 MB event). Collecting the youngest generation at the end costs what
    the invocation still holds (milliseconds) and resets that count. Cycles made meanwhile
    (rare: tracebacks) are collected as the collector runs again.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.collect(0)
            gc.enable()


def _same_writer(writer: RecordWriter) -> Callable[[str], RecordWriter]:
    return lambda _stream: writer


def _packer_for(settings: Settings) -> Packer | None:
    aggregation = settings.aggregation
    match aggregation:
        case Aggregation.ON:
            from msk_kinesis_sink.aggregation import AggregatingPacker

            return AggregatingPacker()
        case Aggregation.OFF:
            return None  # the publisher's default: one Kinesis record per Kafka record
        case _:
            assert_never(aggregation)
