"""One invocation in numbers: the summary log line and the metrics, both read off `InvocationStats`.

Each field is logged under its name, in declaration order; a field whose metadata is `metric(...)`
or `samples(...)` is also an EMF metric. Adding a metric is one field, and the code that counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Final, assert_never

# EMF holds at most 100 values per metric per document; a sample keeps the distribution.
MAX_METRIC_VALUES: Final = 100


class Unit(StrEnum):
    """CloudWatch units, as EMF names them."""

    COUNT = "Count"
    BYTES = "Bytes"
    MILLISECONDS = "Milliseconds"


class Statistic(StrEnum):
    """What the log line shows of a field's samples."""

    P50 = "p50"
    MAX = "max"


@dataclass(frozen=True, slots=True)
class Metric:
    """An InvocationStats field as an EMF metric; a list of samples logs as `logged_as`."""

    name: str
    unit: Unit
    logged_as: tuple[tuple[str, Statistic], ...] = ()


_METRIC: Final = "metric"


def metric(name: str, unit: Unit = Unit.COUNT) -> dict[str, Metric]:
    """Field metadata: the field is also the metric `name`."""
    return {_METRIC: Metric(name, unit)}


def samples(name: str, unit: Unit, **logged_as: Statistic) -> dict[str, Metric]:
    """Field metadata: the field's values are the metric `name` (the first 100 go out); the log
    line shows `logged_as` in its place."""
    return {_METRIC: Metric(name, unit, tuple(logged_as.items()))}


def milliseconds(name: str, *, logged_as: str) -> dict[str, Metric]:
    """Field metadata: samples in ms, the metric `name`, logged as `<logged_as>_p50_ms` and
    `<logged_as>_max_ms`."""
    statistics = {f"{logged_as}_p50_ms": Statistic.P50, f"{logged_as}_max_ms": Statistic.MAX}
    return samples(name, Unit.MILLISECONDS, **statistics)


@dataclass(slots=True)
class InvocationStats:
    """What one invocation did. The publisher counts; the runtime adds the answer and duration."""

    records_received: int = field(default=0, metadata=metric("RecordsReceived"))
    records_published: int = field(default=0, metadata=metric("RecordsPublished"))
    # Redelivered records the container had written already (not sent again).
    records_already_delivered: int = field(default=0, metadata=metric("RecordsAlreadyDelivered"))
    kinesis_records_published: int = 0
    # Records and partitions reported back to the ESM (set by the runtime from the answer).
    records_failed: int = field(default=0, metadata=metric("RecordsFailed"))
    records_dead_lettered: int = field(default=0, metadata=metric("RecordsDeadLettered"))
    # Oversize records whose objects went to S3 (OVERSIZE_RECORDS=claim_check); their pointers
    # count as published once written.
    records_claim_checked: int = field(default=0, metadata=metric("RecordsClaimChecked"))
    # Records whose content is malformed (each ends its partition's delivery there, reported).
    records_malformed: int = field(default=0, metadata=metric("RecordsMalformed"))
    records_throttled: int = field(default=0, metadata=metric("RecordsThrottled"))
    records_internal_failure: int = 0
    request_failures: int = 0
    requests_abandoned: int = 0
    retry_attempts: int = field(default=0, metadata=metric("RetryAttempts"))
    put_records_calls: int = field(default=0, metadata=metric("PutRecordsCalls"))
    dead_letter_writes: int = 0
    claim_check_writes: int = 0
    bytes_published: int = field(default=0, metadata=metric("BytesPublished", Unit.BYTES))
    partitions: int = 0
    partitions_failed: int = 0
    # Partitions not sent to their stream because the stream guard held it (the stream is AUTO,
    # or its record distribution strategy could not be learned); each is reported.
    partitions_held_by_stream_guard: int = field(
        default=0, metadata=metric("PartitionsHeldByStreamGuard")
    )
    stopped_by_deadline: bool = False
    # Records left unread at the stop (or after a malformed one): reported, never read.
    records_unread: int = 0
    put_latencies_ms: list[float] = field(
        default_factory=list, metadata=milliseconds("PublishLatency", logged_as="put_latency")
    )
    # Per record written: its Kafka timestamp to Kinesis's acknowledgement (docs/guarantee.md).
    delivery_delays_ms: list[float] = field(
        default_factory=list, metadata=milliseconds("DeliveryDelay", logged_as="delivery_delay")
    )
    # Written records without a timestamp (-1): not in delivery_delays_ms.
    records_without_timestamp: int = 0
    # Written records stamped after their acknowledgement (the producer's clock ahead of
    # Lambda's): in delivery_delays_ms as 0.
    records_timestamp_ahead: int = 0
    duration_ms: float = 0.0


_FIELDS: Final = tuple((spec.name, spec.metadata.get(_METRIC)) for spec in fields(InvocationStats))
# The function's metrics, in the order it emits them (the stack's dashboard reads these names).
METRICS: Final = tuple(spec for _, spec in _FIELDS if spec is not None)


@dataclass(frozen=True, slots=True)
class InvocationReport:
    """One finished invocation: what the summary log line and the metrics are made of."""

    stats: InvocationStats

    def log_fields(self) -> dict[str, object]:
        line: dict[str, object] = {}
        for name, spec in _FIELDS:
            value = getattr(self.stats, name)
            if isinstance(value, list):
                assert spec is not None  # only metrics are lists of samples
                ordered = sorted(value)
                for logged_name, statistic in spec.logged_as:
                    line[logged_name] = _statistic(ordered, statistic)
            else:
                line[name] = round(value, 1) if isinstance(value, float) else value
        return line

    def metric_values(self) -> Iterator[tuple[str, Unit, float]]:
        """(name, unit, value) for each metric value, in the order the function emits them."""
        for name, spec in _FIELDS:
            if spec is None:
                continue
            value = getattr(self.stats, name)
            if isinstance(value, list):
                for sample in _sample(value):
                    yield spec.name, spec.unit, sample
            else:
                yield spec.name, spec.unit, value


def _sample(values: list[float]) -> list[float]:
    """All the values, or, past what EMF takes, as many at evenly spaced ranks from the smallest
    to the largest: the maximum is always sent, and the percentiles stay close."""
    if len(values) <= MAX_METRIC_VALUES:
        return values
    ordered = sorted(values)
    last = len(ordered) - 1
    return [ordered[i * last // (MAX_METRIC_VALUES - 1)] for i in range(MAX_METRIC_VALUES)]


def _statistic(ordered: list[float], statistic: Statistic) -> float | None:
    if not ordered:
        return None
    match statistic:
        case Statistic.P50:
            return round(ordered[len(ordered) // 2], 1)
        case Statistic.MAX:
            return round(ordered[-1], 1)
        case _:
            assert_never(statistic)
