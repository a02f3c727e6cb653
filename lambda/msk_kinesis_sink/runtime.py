"""One container's sink: settings, clients and worker pool built once, used by every invocation."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from msk_kinesis_sink.events import parse_event
from msk_kinesis_sink.planning import Packer
from msk_kinesis_sink.publisher import (
    DeadLetterWriter,
    Publisher,
    PublishOutcome,
    PublishStats,
    RecordWriter,
)
from msk_kinesis_sink.response import PartialBatchResponse, partial_batch_response
from msk_kinesis_sink.settings import Aggregation, Settings

logger = logging.getLogger(__name__)


class LambdaContextLike(Protocol):
    """The part of the Lambda context the sink uses."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True, slots=True)
class InvocationReport:
    """One invocation in numbers: what the summary log line and the metrics are made of."""

    stats: PublishStats
    records_failed: int
    partitions_failed: int
    duration_ms: float

    def log_fields(self) -> dict[str, object]:
        stats = self.stats
        latencies = sorted(stats.put_latencies_ms)
        return {
            "records_received": stats.records_received,
            "records_published": stats.records_published,
            "kinesis_records_published": stats.kinesis_records_published,
            "records_failed": self.records_failed,
            "records_dead_lettered": stats.records_dead_lettered,
            "records_throttled": stats.records_throttled,
            "records_internal_failure": stats.records_internal_failure,
            "request_failures": stats.request_failures,
            "retry_attempts": stats.retry_attempts,
            "put_records_calls": stats.put_records_calls,
            "bytes_published": stats.bytes_published,
            "partitions": stats.partitions,
            "partitions_failed": self.partitions_failed,
            "stopped_by_deadline": stats.stopped_by_deadline,
            "put_latency_p50_ms": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "put_latency_max_ms": round(latencies[-1], 1) if latencies else None,
            "duration_ms": round(self.duration_ms, 1),
        }


class ReportSink(Protocol):
    """Where invocation reports go (the handler wires Powertools metrics here)."""

    def __call__(self, report: InvocationReport) -> None: ...


class Sink:
    """Parses an invocation, publishes it, and answers with the partial-batch response."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: RecordWriter,
        dead_letters: DeadLetterWriter | None = None,
        packer: Packer | None = None,
        on_report: ReportSink | None = None,
    ) -> None:
        self.settings = settings
        # Created once per container: threads and the client's connection pool are reused.
        self._executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrency, thread_name_prefix="kinesis-put"
        )
        self._publisher = Publisher(
            settings=settings,
            writer=writer,
            dead_letters=dead_letters,
            executor=self._executor,
            packer=packer or _packer_for(settings),
        )
        self._on_report = on_report
        self.last_report: InvocationReport | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, on_report: ReportSink | None = None) -> Sink:
        """Build from environment variables; raises ConfigurationError naming a bad variable."""
        settings = Settings.from_env(env)
        from msk_kinesis_sink import aws  # boto3 is imported only once settings are valid

        shared_session = aws.session(env)
        dead_letters = None
        if settings.dead_letter_bucket:
            dead_letters = aws.S3DeadLetterWriter(
                aws.s3_client(settings, env, shared_session),
                settings.dead_letter_bucket,
                settings.dead_letter_prefix,
            )
        return cls(
            settings,
            writer=aws.KinesisRecordWriter(
                aws.kinesis_client(settings, env, shared_session), settings
            ),
            dead_letters=dead_letters,
            on_report=on_report,
        )

    def handle(self, event: Any, context: LambdaContextLike) -> PartialBatchResponse:
        started = time.monotonic()
        with _cyclic_gc_paused():
            parsed = parse_event(event)
            if parsed.partitions:
                outcome = self._publisher.publish(parsed, context.get_remaining_time_in_millis)
            else:  # nothing to publish, no AWS call; still one summary line and zero metrics
                outcome = PublishOutcome(resume_offsets={}, stats=PublishStats())
        response = partial_batch_response(parsed, outcome.resume_offsets)
        report = InvocationReport(
            stats=outcome.stats,
            records_failed=len(response["batchItemFailures"]),
            partitions_failed=len(outcome.resume_offsets),
            duration_ms=(time.monotonic() - started) * 1000,
        )
        self.last_report = report
        if report.records_failed:
            logger.warning(
                "partitions reported for redelivery",
                extra={"resume_offsets": outcome.resume_offsets},
            )
        logger.info("invocation summary", extra=report.log_fields())
        if self._on_report is not None:
            self._on_report(report)
        return response

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cycle collector for one invocation.

    An invocation allocates a few objects per record and frees them by reference counting; the
    cycle collector would only rescan the event (tens of thousands of dicts) again and again:
    about 2.5 us of CPU per record, ~18 % of the whole, measured on 10,000-record batches.
    Cycles made meanwhile (rare: tracebacks) are collected once it runs again.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _packer_for(settings: Settings) -> Packer | None:
    if settings.aggregation is Aggregation.ON:
        from msk_kinesis_sink.aggregation import AggregatingPacker

        return AggregatingPacker()
    return None
