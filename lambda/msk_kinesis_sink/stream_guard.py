"""The stream guard: what the container knows of each target stream, and whether records may go
to it now.

An on-demand stream can be switched to RecordDistributionStrategy AUTO at any time, with
immediate effect; Kinesis then "ignores any partition key", and per-key order is gone for every
record written after the switch. The guard learns each stream's summary (DescribeStreamSummary)
when the function first sends to it, and again once what it knows is STREAM_CHECK_SECONDS old.
While a stream is AUTO, or its strategy can't be known, nothing is sent to it: its partitions
are reported and the ESM redelivers them, until it is USER_PARTITION_KEY again. The summary's
MaxRecordSizeInKiB caps that stream's records.

When DescribeStreamSummary fails:
- nothing known yet (first send): up to FIRST_LEARN_ATTEMPTS attempts within the check, then the
  stream is held; the next check (the ESM's retry) asks again;
- a known summary due for its refresh, and a failure that may pass (throttling: the API allows
  20 calls per second per account; a service fault; a timeout; an answer that isn't one): the
  known summary serves until it is STALE_INTERVALS check intervals old while retries back off,
  then the stream is held;
- a refusal (AccessDenied: the role lacks kinesis:DescribeStreamSummary; no such stream): the
  stream is held at once, known summary or not, and the error names what to fix.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, assert_never

from msk_kinesis_sink.backoff import full_jitter_seconds
from msk_kinesis_sink.errors import StreamHeldError, StreamSummaryError
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.writers import (
    RecordDistribution,
    RecordResult,
    RecordWriter,
    StreamSummary,
    StreamSummaryReader,
)

logger = logging.getLogger(__name__)

# A known summary is used until it is this many check intervals old when refreshing it fails
# for a reason that may pass: one more interval, no longer. Holding every stream on the first
# throttled refresh would turn a control-plane hiccup into an outage (and ESM retries that
# count toward its cap); knowledge twice the accepted age is the bounded price.
STALE_INTERVALS: Final = 2

# Nothing is known of a stream yet: a few quick attempts before its partitions are reported,
# so that a brief throttle of the account-wide API does not cost the ESM a retry; after they
# fail, no check asks again for a full-jitter backoff of up to 1 s, so that the partitions and
# requests of an invocation (and its quick redeliveries) do not ask once each.
FIRST_LEARN_ATTEMPTS: Final = 3
FIRST_LEARN_BACKOFF_BASE_MS: Final = 100
FIRST_LEARN_BACKOFF_MAX_MS: Final = 1_000
# After a failed refresh of a known summary the next attempt waits full-jitter backoff from
# this base, doubling up to the check interval: a throttled account is not asked harder.
REFRESH_BACKOFF_BASE_MS: Final = 1_000

# Why a stream is held (the code of the StreamHeldError its requests raise).
HELD_AUTO: Final = "RecordDistributionAuto"
HELD_UNRECOGNIZED: Final = "RecordDistributionUnrecognized"
HELD_UNKNOWN: Final = "RecordDistributionUnknown"


@dataclass(frozen=True, slots=True)
class StreamCheck:
    """Whether records may go to a stream now, and the largest record the stream takes."""

    stream: str
    max_record_bytes: int
    held: str | None = None  # why not (HELD_*), or None: they may
    reason: str = ""

    @property
    def message(self) -> str:
        return (
            f"{self.held}: stream {self.stream} {self.reason}; nothing was sent to it, and its"
            " partitions are reported for redelivery"
        )


@dataclass(slots=True)
class _Known:
    """What the container knows of one stream (read and written under the guard's lock)."""

    summary: StreamSummary | None = None
    learned_at: float = 0.0
    failure: StreamSummaryError | None = None  # the latest attempt's, until one succeeds
    failures: int = 0  # failed attempts in a row
    retry_at: float = 0.0  # no attempt before this, after a failed one
    asking: bool = False  # a thread is asking Kinesis now
    # The verdict while `summary` is fresh and no attempt failed since: what every request's
    # check returns between two reads, found under one lock and one clock read.
    fresh: StreamCheck | None = None


class StreamGuard:
    """Learns each target stream's summary and holds the streams records may not go to.

    Container-lived and thread-safe: the invocation's thread checks a stream before encoding
    its partitions (for its record limit), each worker before sending. At most one
    DescribeStreamSummary per stream is in flight; the others use what is known meanwhile, or,
    when nothing is, wait for it until their deadline.
    """

    def __init__(
        self,
        reader: StreamSummaryReader,
        *,
        check_interval_s: float,
        max_record_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._reader = reader
        self._interval_s = check_interval_s
        self._max_record_bytes = max_record_bytes
        # Time and chance are the caller's, so tests can run the guard on a clock they move.
        self._clock, self._sleep, self._rng = clock, sleep, rng or random.Random()
        self._condition = threading.Condition(threading.Lock())
        self._known: dict[str, _Known] = {}

    def check(self, stream: str, deadline: float) -> StreamCheck:
        """Whether records may go to `stream` now; asks Kinesis first when what is known is due
        for a refresh (the exchange ends by `deadline`). A failure holds, never raises."""
        with self._condition:
            known = self._known.get(stream)
            if (
                known is not None
                and known.fresh is not None
                and self._clock() - known.learned_at < self._interval_s
            ):
                return known.fresh
        if self._claim(stream, deadline):
            self._ask(stream, deadline)
        return self._verdict(stream)

    def max_record_bytes(self, stream: str) -> int:
        """The largest record `stream` takes, as far as known: MAX_RECORD_BYTES, or the
        stream's own MaxRecordSizeInKiB when that is smaller."""
        with self._condition:
            known = self._known.get(stream)
            return self._limit(known.summary if known is not None else None)

    def guarded(self, writer_for: Callable[[str], RecordWriter]) -> Callable[[str], RecordWriter]:
        """Each stream's writer, sending only what its check lets through."""
        writers: dict[str, RecordWriter] = {}

        def writer(stream: str) -> RecordWriter:
            guarded = writers.get(stream)
            if guarded is None:
                guarded = writers[stream] = _GuardedWriter(self, stream, writer_for(stream))
            return guarded

        return writer

    # -- asking -----------------------------------------------------------------------------

    def _claim(self, stream: str, deadline: float) -> bool:
        """True when this thread is to ask Kinesis now."""
        with self._condition:
            known = self._known.setdefault(stream, _Known())
            while True:
                now = self._clock()
                fresh = known.summary is not None and now - known.learned_at < self._interval_s
                if fresh or now < known.retry_at:
                    return False  # fresh, or backing off after a failed attempt
                if not known.asking:
                    known.asking = True
                    return True
                if known.summary is not None or now >= deadline:
                    return False  # another thread refreshes it; what is known serves meanwhile
                self._condition.wait(deadline - now)

    def _ask(self, stream: str, deadline: float) -> None:
        with self._condition:
            attempts = FIRST_LEARN_ATTEMPTS if self._known[stream].summary is None else 1
        outcome: StreamSummary | StreamSummaryError | None = None
        previous: StreamSummary | None = None
        try:
            outcome = self._describe(stream, deadline, attempts)
        finally:
            with self._condition:
                previous = self._record(stream, outcome)
                self._condition.notify_all()
        if outcome is not None:
            self._report(stream, previous, outcome)

    def _describe(
        self, stream: str, deadline: float, attempts: int
    ) -> StreamSummary | StreamSummaryError:
        for attempt in range(1, attempts + 1):
            try:
                return self._reader.describe(stream, deadline)
            except StreamSummaryError as error:
                failure = error
            if not failure.transient or attempt == attempts:
                break
            delay = full_jitter_seconds(
                attempt,
                base_ms=FIRST_LEARN_BACKOFF_BASE_MS,
                max_ms=FIRST_LEARN_BACKOFF_MAX_MS,
                rng=self._rng,
            )
            if self._clock() + delay >= deadline:
                break
            self._sleep(delay)
        return failure

    def _record(
        self, stream: str, outcome: StreamSummary | StreamSummaryError | None
    ) -> StreamSummary | None:
        """Keep what the attempt found (under the lock); returns the summary known before."""
        known = self._known[stream]
        previous, now = known.summary, self._clock()
        known.asking = False
        if isinstance(outcome, StreamSummary):
            known.summary, known.learned_at = outcome, now
            known.failure, known.failures = None, 0
            known.fresh = self._summary_verdict(stream, outcome, self._limit(outcome))
        elif outcome is not None:
            known.failure, known.fresh = outcome, None
            known.failures += 1
            base_ms, max_ms = (
                (FIRST_LEARN_BACKOFF_BASE_MS, FIRST_LEARN_BACKOFF_MAX_MS)
                if previous is None
                else (REFRESH_BACKOFF_BASE_MS, int(self._interval_s * 1000))
            )
            known.retry_at = now + full_jitter_seconds(
                known.failures, base_ms=base_ms, max_ms=max(base_ms, max_ms), rng=self._rng
            )
        return previous

    # -- deciding ---------------------------------------------------------------------------

    def _limit(self, summary: StreamSummary | None) -> int:
        stream_limit = summary.max_record_bytes if summary is not None else None
        return min(self._max_record_bytes, stream_limit or self._max_record_bytes)

    def _verdict(self, stream: str) -> StreamCheck:
        with self._condition:
            known = self._known[stream]
            summary, failure, age = known.summary, known.failure, self._clock() - known.learned_at
        limit = self._limit(summary)
        if failure is not None and not failure.transient:
            return StreamCheck(stream, limit, HELD_UNKNOWN, f"can not be described ({failure})")
        if summary is None or age >= STALE_INTERVALS * self._interval_s:
            why = f"the last attempt failed: {failure}" if failure else "not learned in time"
            return StreamCheck(
                stream, limit, HELD_UNKNOWN, f"has a record distribution strategy unknown ({why})"
            )
        return self._summary_verdict(stream, summary, limit)

    @staticmethod
    def _summary_verdict(stream: str, summary: StreamSummary, limit: int) -> StreamCheck:
        """What a summary recent enough to trust says of its stream."""
        distribution = summary.distribution
        match distribution:
            case RecordDistribution.USER_PARTITION_KEY:
                return StreamCheck(stream, limit)
            case RecordDistribution.AUTO:
                return StreamCheck(
                    stream, limit, HELD_AUTO, "has RecordDistributionStrategy AUTO (keys ignored)"
                )
            case RecordDistribution.UNRECOGNIZED:
                return StreamCheck(
                    stream,
                    limit,
                    HELD_UNRECOGNIZED,
                    "has a RecordDistributionStrategy this function does not know",
                )
            case _:
                assert_never(distribution)

    def _report(
        self,
        stream: str,
        previous: StreamSummary | None,
        outcome: StreamSummary | StreamSummaryError,
    ) -> None:
        """One log line for what changed: the stream names itself, never records."""
        fields: dict[str, object] = {"stream": stream}
        if isinstance(outcome, StreamSummaryError):
            fields["error_code"] = outcome.code
            if outcome.transient:
                logger.warning(
                    "DescribeStreamSummary on stream %s failed (%s); the stream is held once"
                    " nothing recent is known of it",
                    stream,
                    outcome,
                    extra=fields,
                )
            else:
                logger.error(
                    "DescribeStreamSummary on stream %s was refused (%s); nothing is written to"
                    " the stream until it succeeds",
                    stream,
                    outcome,
                    extra=fields,
                )
            return
        fields["record_distribution"] = outcome.distribution.value
        if not outcome.keeps_key_order:
            logger.error(
                "stream %s does not place records by partition key (RecordDistributionStrategy"
                " %s): nothing is written to it, and its partitions are reported for"
                " redelivery, until it is USER_PARTITION_KEY again",
                stream,
                outcome.distribution.value,
                extra=fields,
            )
        elif previous is not None and not previous.keeps_key_order:
            logger.warning(
                "stream %s places records by partition key again: writing resumes",
                stream,
                extra=fields,
            )
        limit = self._limit(outcome)
        if limit < self._max_record_bytes and (
            previous is None or previous.max_record_bytes != outcome.max_record_bytes
        ):
            logger.warning(
                "stream %s takes records of at most %d bytes (MaxRecordSizeInKiB), less than"
                " MAX_RECORD_BYTES=%d: larger records of its topics are dead letters",
                stream,
                limit,
                self._max_record_bytes,
                extra={**fields, "max_record_bytes": limit},
            )


class _GuardedWriter:
    """A stream's writer behind its guard: a held stream's requests are refused unsent."""

    def __init__(self, guard: StreamGuard, stream: str, inner: RecordWriter) -> None:
        self._guard = guard
        self._stream = stream
        self._inner = inner

    def put_records(self, entries: Sequence[Entry], deadline: float) -> Sequence[RecordResult]:
        check = self._guard.check(self._stream, deadline)
        if check.held is not None:
            raise StreamHeldError(check.message, code=check.held, retryable=False)
        return self._inner.put_records(entries, deadline)
