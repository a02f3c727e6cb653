"""Lambda's MSK event source mapping, emulated: ordered polling, batching, invocation, retries.

What it does, as Lambda documents it for Kafka event sources (provisioned mode, with
`ReportBatchItemFailures`):
- each partition is read in offset order; an invocation holds up to `batch_size` records and at most
  6 MB of event payload, mixing partitions, after waiting up to the batching window;
- with a partial-batch response, offsets are committed only below the lowest reported offset of each
  partition, which is where that partition resumes; an identifier that is not in the batch, or any
  malformed response, fails the whole batch; a raised exception, a timeout or a function that
  fails to initialise (Lambda's init error) retries the batch;
- `maximum_retry_attempts`, `maximum_record_age_s`, bisect-on-error and an on-failure destination
  decide when records are given up on (never silently: they go to the destination or are counted).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from localloop.context import DEFAULT_MEMORY_MB, LambdaContext
from localloop.events import (
    EVENT_OVERHEAD_BYTES,
    EVENT_SOURCE_MSK,
    KafkaRecord,
    TopicPartition,
    build_event,
    event_record,
    json_size,
    partition_id,
)
from msk_kinesis_sink.limits import (
    INFINITE_RETRIES_CAP,
    MAX_BATCH_SIZE,
    MAX_BATCHING_WINDOW_SECONDS,
    MAX_INVOCATION_BYTES,
    MAX_RETRY_ATTEMPTS,
)

log = logging.getLogger("localloop.esm")

# Kafka ESM BatchSize default: 100 (at most MAX_BATCH_SIZE).
DEFAULT_BATCH_SIZE: Final = 100
# MaximumBatchingWindowInSeconds default for Kafka sources: 500 ms (at most 300 s).
DEFAULT_BATCHING_WINDOW_S: Final = 0.5
_POLL_SLICE_S: Final = 0.1
# The eventSourceArn the local "MSK cluster" reports.
LOCAL_CLUSTER_ARN: Final = (
    "arn:aws:kafka:us-east-1:000000000000:cluster/local/00000000-0000-0000-0000-000000000000-1"
)


class Function(Protocol):
    """The function under test: `handler(event, context)`, returning the partial-batch response."""

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object: ...


class FunctionInitError(Exception):
    """The function could not be initialised: Lambda reports an init error for the invocation."""


class FunctionRaisedError(Exception):
    """The function raised in a process of its own (its traceback is in that process's log)."""


class FunctionKilledError(Exception):
    """The function's process was killed before it answered: a crash, or its timeout."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "Crash" or "Timeout"


class ExecutionEnvironment:
    """One Lambda execution environment: the function is built at its first invocation (the init
    phase). If that raises, the invocation fails with an init error, a function error like any
    other, and the next invocation initialises afresh, as Lambda starts a new environment."""

    def __init__(self, factory: Callable[[], Function]) -> None:
        self._factory = factory
        self._function: Function | None = None

    def initialise(self) -> Function:
        """The init phase (once per environment); raises FunctionInitError when it fails."""
        if self._function is None:
            try:
                self._function = self._factory()
            except FunctionInitError:
                raise
            except Exception as exc:
                raise FunctionInitError(f"{type(exc).__name__}: {exc}") from exc
        return self._function

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> object:
        try:
            return self.initialise()(event, context)
        except FunctionKilledError:
            # Lambda replaces a killed environment: nothing of this one (its memory) survives.
            self.close()
            raise

    @property
    def answered_at(self) -> float | None:
        """When its function's last answer left it, if the function stamps it (`answer_stamp`)."""
        return answer_stamp(self._function)

    def close(self) -> None:
        close: Any = getattr(self._function, "close", None)
        if callable(close):
            close()
        self._function = None


def answer_stamp(function: object) -> float | None:
    """When `function`'s last answer left it, by its own stamp (`answered_at`, time.monotonic()).

    A function in a process of its own stamps its answers there, so that the emulator's own pauses
    between that moment and reading the answer (a collection of its heap, a busy core) do not
    count as the function's time. None for a function in the emulator's process: its answer is
    timed as it returns.
    """
    stamp = getattr(function, "answered_at", None)
    return stamp if isinstance(stamp, float) else None


class RecordSource(Protocol):
    """A poller's view of its partitions (Kafka in practice; a list in tests)."""

    def poll(self, max_records: int, timeout_s: float) -> list[KafkaRecord]: ...

    def commit(self, next_offsets: Mapping[TopicPartition, int]) -> None: ...

    def caught_up(self) -> bool: ...

    def close(self) -> None: ...


class OnFailureDestination(Protocol):
    """Where discarded batches are described (S3 in AWS; a folder locally)."""

    def send(self, document: Mapping[str, Any], partition: str) -> None: ...


@dataclass(frozen=True, slots=True)
class EsmConfig:
    """The event source mapping's settings, named after their AWS counterparts."""

    bootstrap_servers: str
    batch_size: int = DEFAULT_BATCH_SIZE
    batching_window_s: float = DEFAULT_BATCHING_WINDOW_S
    max_payload_bytes: int = MAX_INVOCATION_BYTES
    maximum_retry_attempts: int = -1  # -1 = infinite (Kafka default)
    maximum_record_age_s: float = -1  # -1 = infinite; AWS requires >= 60 otherwise
    bisect_batch_on_function_error: bool = False
    function_name: str = "msk-kinesis-sink"
    function_timeout_s: float = 60.0
    memory_mb: int = DEFAULT_MEMORY_MB
    region: str = "us-east-1"
    event_source: str = EVENT_SOURCE_MSK
    event_source_arn: str | None = LOCAL_CLUSTER_ARN  # None for self-managed Kafka
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Pause before retrying after an invocation that made no progress (doubles, capped).
    retry_backoff_s: float = 0.05
    retry_backoff_max_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if not -1 <= self.maximum_retry_attempts <= MAX_RETRY_ATTEMPTS:
            raise ValueError(
                f"maximum_retry_attempts must be -1 (infinite) or 0..{MAX_RETRY_ATTEMPTS}"
            )
        if not 0 <= self.batching_window_s <= MAX_BATCHING_WINDOW_SECONDS:
            raise ValueError(f"batching_window_s must be 0..{MAX_BATCHING_WINDOW_SECONDS}")
        if self.maximum_record_age_s < 0 and self.maximum_record_age_s != -1:
            raise ValueError("maximum_record_age_s must be -1 (off) or >= 0")
        if self.function_timeout_s <= 0:
            raise ValueError("function_timeout_s must be positive")

    def retry_limit(self, has_destination: bool) -> int | None:
        """Retries before a batch is discarded; None = forever."""
        if self.maximum_retry_attempts >= 0:
            return self.maximum_retry_attempts
        return INFINITE_RETRIES_CAP if has_destination else None


@dataclass(frozen=True, slots=True)
class EsmStats:
    """What the mapping did (a snapshot)."""

    invocations: int = 0
    records_invoked: int = 0  # records sent to the function, counting retries
    records_committed: int = 0
    records_discarded: int = 0
    function_errors: int = 0  # the function raised, failed to initialise or crashed
    init_errors: int = 0  # of which: the function failed to initialise
    timeouts: int = 0  # the function returned after its deadline, or was killed at it
    crashes: int = 0  # the function's process was killed mid-invocation (FAULTS crash=p)
    invalid_responses: int = 0  # malformed, or an identifier not in the batch
    partial_failures: int = 0  # invocations that reported some records as failed
    retries: int = 0  # invocations that re-sent records already sent before
    max_batch_records: int = 0
    max_payload_bytes: int = 0
    function_seconds: float = 0.0
    longest_invocation_s: float = 0.0
    least_time_left_ms: int | None = None  # smallest remaining time seen when a call returned

    def plus(self, other: EsmStats) -> EsmStats:
        left = [v for v in (self.least_time_left_ms, other.least_time_left_ms) if v is not None]
        return EsmStats(
            invocations=self.invocations + other.invocations,
            records_invoked=self.records_invoked + other.records_invoked,
            records_committed=self.records_committed + other.records_committed,
            records_discarded=self.records_discarded + other.records_discarded,
            function_errors=self.function_errors + other.function_errors,
            init_errors=self.init_errors + other.init_errors,
            timeouts=self.timeouts + other.timeouts,
            crashes=self.crashes + other.crashes,
            invalid_responses=self.invalid_responses + other.invalid_responses,
            partial_failures=self.partial_failures + other.partial_failures,
            retries=self.retries + other.retries,
            max_batch_records=max(self.max_batch_records, other.max_batch_records),
            max_payload_bytes=max(self.max_payload_bytes, other.max_payload_bytes),
            function_seconds=self.function_seconds + other.function_seconds,
            longest_invocation_s=max(self.longest_invocation_s, other.longest_invocation_s),
            least_time_left_ms=min(left) if left else None,
        )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """Per partition in the batch: the first offset that must be retried (None = all done)."""

    failed_from: dict[TopicPartition, int | None]
    whole_batch: bool
    # "Unhandled" / "InitError" / "Timeout" / "Crash" / "InvalidResponse" / None
    function_error: str | None


class Poller:
    """Polls some partitions and invokes the function, one invocation at a time (in order)."""

    def __init__(
        self,
        config: EsmConfig,
        source: RecordSource,
        function: Function,
        destination: OnFailureDestination | None = None,
        *,
        on_progress: Callable[[int], object] | None = None,
    ) -> None:
        self.config = config
        self._source = source
        self._function = function
        self._destination = destination
        self._on_progress = on_progress
        self._retry_limit = config.retry_limit(destination is not None)
        self._buffers: dict[TopicPartition, deque[KafkaRecord]] = {}
        self._sizes: dict[tuple[TopicPartition, int], int] = {}
        self._buffered_bytes = 0
        self._order: list[TopicPartition] = []
        self._rotation = 0
        self._attempts: dict[TopicPartition, int] = {}
        self._retry_cap: dict[TopicPartition, int] = {}  # records the next retry may carry
        self._sent_before: dict[TopicPartition, int] = {}  # highest offset ever invoked
        self.committed: dict[TopicPartition, int] = {}  # next offset to read after a commit
        self._backoff_s = 0.0
        self._stats = EsmStats()
        self._lock = threading.Lock()

    @property
    def stats(self) -> EsmStats:
        with self._lock:
            return self._stats

    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def idle(self) -> bool:
        """Nothing buffered and the source has nothing more right now."""
        return self.buffered() == 0 and self._source.caught_up()

    # -- one step -----------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Collect a batch (waiting up to the batching window) and invoke; False if none."""
        self._fill()
        self._discard_expired()
        batch = self._select()
        if not batch:
            return False
        outcome, elapsed_s, payload_bytes = self._invoke(batch)
        self._apply(batch, outcome, elapsed_s, payload_bytes)
        return True

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.run_once()

    # -- polling and batching -----------------------------------------------------------------

    def _add(self, records: Iterable[KafkaRecord]) -> None:
        for record in records:
            tp = record.tp
            if tp not in self._buffers:
                self._buffers[tp] = deque()
                self._order.append(tp)
            buffer = self._buffers[tp]
            if buffer and record.offset <= buffer[-1].offset:
                continue  # a re-delivery of something already buffered
            buffer.append(record)
            size = json_size(event_record(record)) + 1
            self._sizes[(tp, record.offset)] = size
            self._buffered_bytes += size

    def _pop_head(self, tp: TopicPartition) -> KafkaRecord:
        record = self._buffers[tp].popleft()
        self._buffered_bytes -= self._sizes.pop((tp, record.offset), 0)
        return record

    def _fill(self) -> None:
        """Poll until a full batch is buffered or the batching window has passed."""
        window_end = time.monotonic() + self.config.batching_window_s
        while True:
            if (
                self.buffered() >= self.config.batch_size
                or self._buffered_bytes >= self.config.max_payload_bytes
            ):
                self._top_up()
                return
            remaining = window_end - time.monotonic()
            want = self.config.batch_size - self.buffered()
            if remaining <= 0:
                if self.buffered():
                    return
                # Nothing yet: keep polling in short slices so a stop request is seen promptly.
                self._add(self._source.poll(want, _POLL_SLICE_S))
                return
            self._add(self._source.poll(want, min(remaining, _POLL_SLICE_S)))

    def _top_up(self) -> None:
        """Take what the client already holds (no waiting), up to a second batch: a fetch brings
        several partitions at once, and Lambda's batches mix them."""
        room = 2 * self.config.batch_size - self.buffered()
        if room > 0 and self._buffered_bytes < 2 * self.config.max_payload_bytes:
            self._add(self._source.poll(room, 0.0))

    def _select(self) -> list[KafkaRecord]:
        """Up to batch_size records and max_payload bytes: a contiguous head of each partition."""
        tps = [tp for tp in self._order if self._buffers.get(tp)]
        if not tps:
            return []
        self._rotation = (self._rotation + 1) % len(tps)
        tps = tps[self._rotation :] + tps[: self._rotation]
        budget_records = self.config.batch_size
        budget_bytes = self.config.max_payload_bytes - EVENT_OVERHEAD_BYTES
        taken: dict[TopicPartition, int] = dict.fromkeys(tps, 0)
        # Two passes: a fair share per partition first, then whatever room is left.
        fair = max(1, math.ceil(budget_records / len(tps)))
        chosen: list[KafkaRecord] = []
        for share in (fair, budget_records):
            for tp in tps:
                buffer = self._buffers[tp]
                cap = min(share, self._retry_cap.get(tp, budget_records))
                while taken[tp] < min(cap, len(buffer)) and budget_records > 0:
                    record = buffer[taken[tp]]
                    size = self._sizes[(tp, record.offset)] + len(partition_id(*tp)) + 8
                    if size > budget_bytes and chosen:
                        break  # full; a single oversized record still goes alone
                    chosen.append(record)
                    taken[tp] += 1
                    budget_records -= 1
                    budget_bytes -= size
        # Group per partition, each in offset order (the event's shape).
        chosen.sort(key=lambda r: (tps.index(r.tp), r.offset))
        return chosen

    def _discard_expired(self) -> None:
        max_age = self.config.maximum_record_age_s
        if max_age < 0:
            return
        oldest_allowed_ms = (time.time() - max_age) * 1000
        expired: list[KafkaRecord] = []
        for tp, buffer in self._buffers.items():
            if buffer and buffer[0].timestamp_ms < oldest_allowed_ms:
                # The partition's head moves past whatever was being retried: start afresh.
                self._attempts.pop(tp, None)
                self._retry_cap.pop(tp, None)
            while buffer and buffer[0].timestamp_ms < oldest_allowed_ms:
                expired.append(self._pop_head(tp))
        if expired:
            self._discard(expired, condition="RecordAgeExceeded", outcome=None, invoke_count=0)

    # -- invoking -----------------------------------------------------------------------------

    def _invoke(self, batch: list[KafkaRecord]) -> tuple[_Outcome, float, int]:
        config = self.config
        event = build_event(
            batch,
            event_source=config.event_source,
            event_source_arn=config.event_source_arn,
            bootstrap_servers=config.bootstrap_servers,
        )
        payload_bytes = json_size(event)
        response: object = None
        error: str | None = None
        started = time.monotonic()
        context = self._context()
        try:
            # Lambda's init phase comes before the invocation's clock starts.
            if isinstance(self._function, ExecutionEnvironment):
                self._function.initialise()
                started, context = time.monotonic(), self._context()
            response = self._function(event, context)
        except FunctionInitError as exc:
            log.warning("function failed to initialise (%s): the whole batch will be retried", exc)
            error = "InitError"
        except FunctionKilledError as exc:
            log.warning("%s: the whole batch will be retried", exc)
            error = exc.kind
        except FunctionRaisedError as exc:
            log.warning("function raised (%s): the whole batch will be retried", exc)
            error = "Unhandled"
        except Exception:
            log.exception("function raised: the whole batch will be retried")
            error = "Unhandled"
        stamp = answer_stamp(self._function) if error is None else None
        answered = time.monotonic() if stamp is None else stamp
        elapsed_s = answered - started
        left_ms = max(0, int((context.deadline_monotonic - answered) * 1000))
        firsts = _first_offsets(batch)
        if error is None and elapsed_s > config.function_timeout_s:
            # Lambda would have stopped the function: its response never arrives.
            log.warning("function ran past its %.2f s timeout", config.function_timeout_s)
            error = "Timeout"
        if error is None:
            failed_from = _parse_response(response, batch)
            if failed_from is None:
                log.warning("invalid partial-batch response: the whole batch will be retried")
                error = "InvalidResponse"
            else:
                with self._lock:
                    self._stats = _bump(self._stats, least_time_left_ms=left_ms)
                return (
                    _Outcome(
                        {tp: failed_from.get(tp) for tp in firsts},
                        whole_batch=False,
                        function_error=None,
                    ),
                    elapsed_s,
                    payload_bytes,
                )
        return (
            _Outcome(dict(firsts), whole_batch=True, function_error=error),
            elapsed_s,
            payload_bytes,
        )

    def _context(self) -> LambdaContext:
        """A context for an invocation starting now, with the function's timeout."""
        config = self.config
        return LambdaContext.start(
            function_name=config.function_name,
            timeout_s=config.function_timeout_s,
            memory_mb=config.memory_mb,
            region=config.region,
        )

    def _apply(
        self, batch: list[KafkaRecord], outcome: _Outcome, elapsed_s: float, payload_bytes: int
    ) -> None:
        by_tp: dict[TopicPartition, list[KafkaRecord]] = {}
        for record in batch:
            by_tp.setdefault(record.tp, []).append(record)
        resent = any(
            records[0].offset <= self._sent_before.get(tp, -1) for tp, records in by_tp.items()
        )
        for tp, records in by_tp.items():
            self._sent_before[tp] = max(self._sent_before.get(tp, -1), records[-1].offset)

        committed_total = 0
        to_commit: dict[TopicPartition, int] = {}
        exhausted: list[KafkaRecord] = []
        for tp, records in by_tp.items():
            failed_from = outcome.failed_from.get(tp)
            done = [r for r in records if failed_from is None or r.offset < failed_from]
            failed = records[len(done) :]
            for _ in done:
                self._pop_head(tp)
            if done:
                to_commit[tp] = done[-1].offset + 1
                committed_total += len(done)
            if not failed:
                self._attempts.pop(tp, None)
                self._retry_cap.pop(tp, None)
                continue
            self._attempts[tp] = 1 if done else self._attempts.get(tp, 0) + 1
            # A retry carries the records that failed and nothing newer, so a record given up on
            # has been in every one of the attempts counted; bisecting halves that retry batch.
            self._retry_cap[tp] = len(failed)
            if outcome.whole_batch and self.config.bisect_batch_on_function_error:
                self._retry_cap[tp] = max(1, len(failed) // 2)
            if self._retry_limit is not None and self._attempts[tp] > self._retry_limit:
                for _ in failed:
                    self._pop_head(tp)
                to_commit[tp] = failed[-1].offset + 1
                exhausted.extend(failed)
                self._attempts.pop(tp, None)
                self._retry_cap.pop(tp, None)
        if exhausted:
            self._discard(
                exhausted,
                condition="RetryAttemptsExhausted",
                outcome=outcome,
                invoke_count=(self._retry_limit or 0) + 1,
            )
        if to_commit:
            self._source.commit(to_commit)
            self.committed.update(to_commit)
        if committed_total and self._on_progress is not None:
            self._on_progress(committed_total)

        partial = not outcome.whole_batch and any(
            v is not None for v in outcome.failed_from.values()
        )
        with self._lock:
            s = self._stats
            self._stats = _bump(
                s,
                invocations=s.invocations + 1,
                records_invoked=s.records_invoked + len(batch),
                records_committed=s.records_committed + committed_total,
                function_errors=s.function_errors
                + (outcome.function_error in ("Unhandled", "InitError", "Crash")),
                init_errors=s.init_errors + (outcome.function_error == "InitError"),
                timeouts=s.timeouts + (outcome.function_error == "Timeout"),
                crashes=s.crashes + (outcome.function_error == "Crash"),
                invalid_responses=s.invalid_responses
                + (outcome.function_error == "InvalidResponse"),
                partial_failures=s.partial_failures + partial,
                retries=s.retries + resent,
                max_batch_records=max(s.max_batch_records, len(batch)),
                max_payload_bytes=max(s.max_payload_bytes, payload_bytes),
                function_seconds=s.function_seconds + elapsed_s,
                longest_invocation_s=max(s.longest_invocation_s, elapsed_s),
            )

        failed_any = any(v is not None for v in outcome.failed_from.values())
        if failed_any and not committed_total and not exhausted:
            self._backoff_s = min(
                self.config.retry_backoff_max_s,
                max(self.config.retry_backoff_s, self._backoff_s * 2),
            )
            if self._backoff_s > 0:
                time.sleep(self._backoff_s)  # paces retries like the ESM does; not a sync point
        else:
            self._backoff_s = 0.0

    def _discard(
        self,
        records: list[KafkaRecord],
        *,
        condition: str,
        outcome: _Outcome | None,
        invoke_count: int,
    ) -> None:
        """Give up on `records`: describe them to the on-failure destination (or just count)."""
        if condition == "RecordAgeExceeded":
            by_tp: dict[TopicPartition, int] = {}
            for record in records:
                by_tp[record.tp] = max(by_tp.get(record.tp, -1), record.offset + 1)
            self._source.commit(by_tp)
            self.committed.update(by_tp)
        with self._lock:
            self._stats = _bump(
                self._stats, records_discarded=self._stats.records_discarded + len(records)
            )
        if self._on_progress is not None:
            self._on_progress(len(records))  # done with, though not delivered
        by_partition: dict[TopicPartition, list[KafkaRecord]] = {}
        for record in records:
            by_partition.setdefault(record.tp, []).append(record)
        for (topic, partition), discarded in by_partition.items():
            log.warning(
                "discarding records%s",
                "" if self._destination else ": no on-failure destination configured",
                extra={
                    "topic": topic,
                    "partition": partition,
                    "offsets": f"{discarded[0].offset}..{discarded[-1].offset}",
                    "records": len(discarded),
                    "size": sum(len(r.key or b"") + len(r.value or b"") for r in discarded),
                    "reason": condition,
                },
            )
        if self._destination is None:
            return
        document = on_failure_document(
            records,
            config=self.config,
            condition=condition,
            function_error=None if outcome is None else outcome.function_error,
            invoke_count=invoke_count,
        )
        first = records[0]
        self._destination.send(document, partition_id(first.topic, first.partition))


def _first_offsets(batch: list[KafkaRecord]) -> dict[TopicPartition, int | None]:
    firsts: dict[TopicPartition, int | None] = {}
    for record in batch:
        firsts.setdefault(record.tp, record.offset)
    return firsts


def _parse_response(response: object, batch: list[KafkaRecord]) -> dict[TopicPartition, int] | None:
    """Lowest reported offset per partition; None if the response fails the whole batch."""
    if response is None:
        return {}
    if not isinstance(response, Mapping):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return {}
    if not isinstance(items, list):
        return None
    in_batch = {(partition_id(r.topic, r.partition), r.offset): r.tp for r in batch}
    lowest: dict[TopicPartition, int] = {}
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(identifier, Mapping):
            return None
        partition, offset = identifier.get("partition"), identifier.get("offset")
        if not isinstance(partition, str) or isinstance(offset, bool):
            return None
        if isinstance(offset, str) and offset.isdigit():
            offset = int(offset)
        if not isinstance(offset, int):
            return None
        tp = in_batch.get((partition, offset))
        if tp is None:
            return None  # not in this batch: Lambda fails the whole batch
        lowest[tp] = min(lowest.get(tp, offset), offset)
    return lowest


def _bump(stats: EsmStats, **changes: Any) -> EsmStats:
    values = {name: getattr(stats, name) for name in EsmStats.__dataclass_fields__}
    if "least_time_left_ms" in changes and values["least_time_left_ms"] is not None:
        changes["least_time_left_ms"] = min(
            values["least_time_left_ms"], changes["least_time_left_ms"]
        )
    values.update(changes)
    return EsmStats(**values)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def on_failure_document(
    records: list[KafkaRecord],
    *,
    config: EsmConfig,
    condition: str,
    function_error: str | None,
    invoke_count: int,
) -> dict[str, Any]:
    """The JSON Lambda writes to an S3 on-failure destination for a discarded Kafka batch."""
    event = build_event(
        records,
        event_source=config.event_source,
        event_source_arn=config.event_source_arn,
        bootstrap_servers=config.bootstrap_servers,
    )
    records_info: dict[str, dict[str, str]] = {}
    for key, group in event["records"].items():
        records_info[key] = {
            "firstRecordOffset": str(group[0]["offset"]),
            "lastRecordOffset": str(group[-1]["offset"]),
            "firstRecordTimestamp": _iso(group[0]["timestamp"]),
            "lastRecordTimestamp": _iso(group[-1]["timestamp"]),
        }
    batch_info: dict[str, Any] = {"batchSize": len(records)}
    if config.event_source_arn is not None:
        batch_info["eventSourceArn"] = config.event_source_arn
    batch_info["bootstrapServers"] = config.bootstrap_servers
    batch_info["payloadSize"] = json_size(event)
    batch_info["recordsInfo"] = records_info
    function_arn = f"arn:aws:lambda:{config.region}:000000000000:function:{config.function_name}"
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error in ("Unhandled", "InitError", "Timeout", "Crash"):
        # Lambda reports exceptions, init errors, timeouts and a runtime that exited alike as an
        # unhandled function error.
        response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": _iso(time.time() * 1000),
        "KafkaBatchInfo": batch_info,
        "payload": event,  # S3 destinations carry the whole invocation event
    }
