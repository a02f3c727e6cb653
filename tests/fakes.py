"""Fakes for the sink's seams: an in-memory Kinesis with fault injection, and a Lambda context.

moto never returns per-record failures, so fault paths are exercised against these instead.
"""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from msk_kinesis_sink.encoding import ClaimCheckRecord, UnwritableRecord
from msk_kinesis_sink.errors import (
    ClaimCheckWriteError,
    DeadLetterError,
    KinesisPublishError,
    StreamSummaryError,
)
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.writers import RecordDistribution, RecordResult, StreamSummary

THROTTLED = RecordResult.THROTTLED
INTERNAL = RecordResult.FAILED


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What the fake stream holds: exactly what a consumer would read back."""

    partition_key: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Faults:
    """Probabilities of each fault, drawn per request (request_*) or per entry (record_*).

    `slow_response`: the answer trickles in and would arrive after the request's deadline; the
    request is cut there (the records may or may not have been written, by a fair coin).
    """

    record_throttle: float = 0.0
    record_internal: float = 0.0
    request_throttle: float = 0.0
    request_fatal: float = 0.0
    response_lost: float = 0.0
    slow_response: float = 0.0


class LongestJitter(random.Random):
    """Backoff that always waits its whole ceiling (full jitter's worst case): deterministic."""

    def uniform(self, a: float, b: float) -> float:
        return b


class FakeClock:
    """Virtual time for the publisher: fake requests and backoff sleeps advance it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def advance_to(self, moment: float) -> None:
        with self._lock:
            self._now = max(self._now, moment)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def context(self, budget_ms: int) -> FakeContext:
        """A Lambda context whose deadline is `budget_ms` from now, in this clock."""
        deadline = self._now + budget_ms / 1000
        return FakeContext(lambda: max(0, int((deadline - self._now) * 1000)))


class FakeKinesis:
    """A RecordWriter that stores accepted entries in one ordered log and injects faults.

    Like Kinesis, a failed entry does not stop later entries of the same request. It also
    watches the planner's contract: never the same partition key of one topic-partition twice
    in one request.
    """

    def __init__(
        self,
        faults: Faults = Faults(),
        *,
        seed: int = 0,
        fail_entry: Callable[[int, Entry], RecordResult | None] | None = None,
        fatal_code: str = "AccessDeniedException",
        clock: FakeClock | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.faults = faults
        # With a clock, every request takes `latency_s` of its time, and one that would end
        # after its deadline is cut there, as the bounded transport cuts it.
        self._clock = clock
        self._latency_s = latency_s
        self.cut_requests = 0
        self.records: list[StoredRecord] = []
        self.written_at: list[float] = []  # per stored record: the clock when it was written
        self.request_bytes: list[int] = []  # per call: the bytes Kinesis would count
        self.calls = 0
        self.violations: list[str] = []
        self._fail_entry = fail_entry
        self._fatal_code = fatal_code
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def put_records(self, entries: Sequence[Entry], deadline: float = 0.0) -> list[RecordResult]:
        # The rule is per topic-partition: the same key from two partitions may share a request.
        keys = [(entry.records[0].source.topic_partition, entry.partition_key) for entry in entries]
        with self._lock:
            call = self.calls
            self.calls += 1
            self.request_bytes.append(sum(entry.size for entry in entries))
            if len(set(keys)) != len(keys):
                self.violations.append(f"call {call}: a partition key twice in one request")
            return self._put_locked(call, entries, deadline)

    def _store(self, entry: Entry) -> None:
        self.records.append(StoredRecord(entry.partition_key, entry.data))
        self.written_at.append(self._clock() if self._clock is not None else 0.0)

    def _elapse(self, deadline: float, slow: bool) -> bool:
        """Let the request's time pass; True when it is cut at its deadline."""
        clock = self._clock
        if clock is None:
            return slow
        if slow or clock() + self._latency_s > deadline:
            clock.advance_to(deadline)
            return True
        clock.advance(self._latency_s)
        return False

    def _put_locked(
        self, call: int, entries: Sequence[Entry], deadline: float
    ) -> list[RecordResult]:
        faults, draw = self.faults, self._rng.random
        if self._clock is not None and self._clock() >= deadline:
            raise KinesisPublishError(
                "injected: started past its deadline", code="Late", retryable=True
            )
        slow = draw() < faults.slow_response
        if self._elapse(deadline, slow):
            self.cut_requests += 1
            if draw() < 0.5:  # the server had it before the answer was cut
                for entry in entries:
                    self._store(entry)
            raise KinesisPublishError(
                "injected: cut at its deadline", code="RequestDeadlineExceeded", retryable=True
            )
        if draw() < faults.request_fatal:
            raise KinesisPublishError(
                f"{self._fatal_code}: injected", code=self._fatal_code, retryable=False
            )
        if draw() < faults.request_throttle:
            raise KinesisPublishError(
                "injected", code="ThrottlingException", retryable=True, throttled=True
            )
        codes: list[RecordResult] = []
        for entry in entries:
            code = self._fail_entry(call, entry) if self._fail_entry else None
            if code is None and draw() < faults.record_throttle:
                code = THROTTLED
            if code is None and draw() < faults.record_internal:
                code = INTERNAL
            if code is None:
                code = RecordResult.WRITTEN
                self._store(entry)
            codes.append(code)
        if draw() < faults.response_lost:
            # The write happened; only the answer is gone (a timeout or connection reset).
            raise KinesisPublishError(
                "injected lost response", code="ReadTimeoutError", retryable=True
            )
        return codes


@dataclass
class FakeDeadLetters:
    """A DeadLetterWriter that keeps records in memory, or fails every write when `broken`."""

    broken: bool = False
    written: list[UnwritableRecord] = field(default_factory=list)

    def write(
        self, record: UnwritableRecord, event_source_arn: str | None, deadline: float = 0.0
    ) -> None:
        if self.broken:
            raise DeadLetterError("injected: bucket unavailable")
        self.written.append(record)


class FakeS3Error(Exception):
    """An S3 client error as botocore shapes one: the code under response["Error"]."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code, "Message": "injected"}}


class FakeClaimChecks:
    """A ClaimCheckWriter over an in-memory bucket, and an S3 reader of it (get_object), so a
    consumer can resolve the pointers the sink wrote. `fail_write(record)` True: that write
    fails (nothing is stored). `stream` (a FakeKinesis): each write notes how many records the
    stream held when the object was stored."""

    def __init__(
        self,
        *,
        fail_write: Callable[[ClaimCheckRecord], bool] | None = None,
        stream: FakeKinesis | None = None,
    ) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes = 0
        self.failures = 0
        self.stored_after: dict[tuple[str, str], int] = {}
        self._fail_write = fail_write
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, record: ClaimCheckRecord, deadline: float = 0.0) -> None:
        with self._lock:
            self.writes += 1
            if self._fail_write is not None and self._fail_write(record):
                self.failures += 1
                raise ClaimCheckWriteError("injected: bucket unavailable")
            where = (record.claim_check.bucket, record.claim_check.key)
            self.objects[where] = record.document
            if self._stream is not None:
                self.stored_after.setdefault(where, len(self._stream.records))

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        data = self.objects.get((Bucket, Key))
        if data is None:
            raise FakeS3Error("NoSuchKey")
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


KEYED = StreamSummary(RecordDistribution.USER_PARTITION_KEY)
AUTO = StreamSummary(RecordDistribution.AUTO)


@dataclass
class FakeSummaries:
    """A StreamSummaryReader: each stream's summary is `summaries[stream]` (else `summary`),
    unless `failure` is set; `calls` lists the streams asked about, in order."""

    summary: StreamSummary = KEYED
    summaries: dict[str, StreamSummary] = field(default_factory=dict)
    failure: StreamSummaryError | None = None
    calls: list[str] = field(default_factory=list)

    def describe(self, stream: str, deadline: float) -> StreamSummary:
        self.calls.append(stream)
        if self.failure is not None:
            raise self.failure
        return self.summaries.get(stream, self.summary)


class FakeContext:
    """A Lambda context whose remaining time comes from a callable (a budget or a real clock)."""

    aws_request_id = "00000000-0000-0000-0000-000000000000"
    function_name = "msk-kinesis-sink"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:msk-kinesis-sink"
    log_group_name = "/aws/lambda/msk-kinesis-sink"
    log_stream_name = "local"

    def __init__(self, remaining_ms: Callable[[], int] = lambda: 300_000) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms()
