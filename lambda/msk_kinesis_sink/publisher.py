"""Publish one invocation's partitions concurrently, each in order per key, within its time budget.

`Publisher` lives as long as the container: writers, worker pool, what it learned of round trips.
It lends them to one `Run` per invocation (run.py), which owns every piece of per-invocation state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from msk_kinesis_sink.budget import RoundTripEstimate, TimeBudget
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, max_request_bytes
from msk_kinesis_sink.planning import Packer, RequestLimits, SingleRecordPacker
from msk_kinesis_sink.reading import EventReader, ReadCostEstimate
from msk_kinesis_sink.report import InvocationStats
from msk_kinesis_sink.run import PublishOutcome, Resources, Run
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.writers import ClaimCheckWriter, DeadLetterWriter, RecordWriter


class Publisher:
    """Drives each invocation's partitions to Kinesis under the strict per-key ordering rule."""

    def __init__(
        self,
        *,
        settings: Settings,
        writer_for: Callable[[str], RecordWriter],
        dead_letters: DeadLetterWriter | None,
        packer: Packer | None = None,
        claim_checks: ClaimCheckWriter | None = None,
        record_bytes_for: Callable[[str], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._resources = Resources(
            settings=settings,
            limits=RequestLimits(
                max_records=MAX_RECORDS_PER_REQUEST,
                max_request_bytes=max_request_bytes(settings.max_record_bytes),
                max_record_bytes=settings.max_record_bytes,
            ),
            writer_for=writer_for,
            dead_letters=dead_letters,
            packer=packer or SingleRecordPacker(),
            # Created once per container: threads (and their connections) are reused.
            pool=_new_pool(settings),
            round_trips=RoundTripEstimate(),
            read_costs=ReadCostEstimate(),
            clock=clock,
            wall_clock=wall_clock,
            sleep=sleep,
            rng=rng or random.Random(),
            claim_checks=claim_checks,
            record_bytes_for=record_bytes_for,
        )

    def publish(
        self,
        reader: EventReader,
        *,
        record_count: int,
        event_source_arn: str | None,
        budget: TimeBudget,
    ) -> PublishOutcome:
        stats = InvocationStats(records_received=record_count)
        run = Run(self._resources, budget, event_source_arn, stats)
        outcome = run.execute(reader)
        if run.abandoned:
            # Requests outside the bounded transport still hold workers: give the next
            # invocation a fresh pool; the old threads end on their own.
            stale = self._resources.pool
            self._resources = replace(self._resources, pool=_new_pool(self._resources.settings))
            stale.shutdown(wait=False, cancel_futures=True)
        return outcome

    def close(self) -> None:
        self._resources.pool.shutdown(wait=True)


def _new_pool(settings: Settings) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=settings.max_concurrency, thread_name_prefix="kinesis-put"
    )
