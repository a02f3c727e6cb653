"""Capacity planner: from a target throughput to pollers, batches, shards and function size.

`make plan PLAN_ARGS="--mb-per-s 20 --record-bytes 2000 --partitions 24 --key-skew 0.02"`, or
`python -m infra.plan --help`. Pure (no AWS call): `plan(Workload)` returns a `Plan`, and
`deployment_warnings(SinkConfig)` says which deployed settings can't help. docs/scaling.md
explains every limit, with its number and the AWS page it comes from; the model is:

- N = target bytes/s / record bytes; each record is E bytes in the invocation event (base64 and
  JSON) and K bytes in Kinesis (data + partition key; an envelope is base64 and JSON too).
- Batch: as many records as a 6 MB invocation holds (at most 10,000), fewer if writing them
  would take more than `utilization` of the function's timeout.
- Function: a batch costs B x CPU µs/record (measured by `make bench`, scaled by memory: 1,769 MB
  is one vCPU) plus its round trips: the requests (500 records / 5 MiB each, MAX_CONCURRENCY in
  flight), or the hottest key's records when they need more (one per round trip without
  aggregation; a same-key run per round trip with it).
- Ordering: one batch of a partition in flight at a time, so a partition carries at most
  B records per batch duration; the hottest partition carries max(1/partitions, skew) of it all.
- Pollers: 5 MB/s and 5 concurrent invocations each, never more than the partitions.
- Shards: 1 MiB/s and 1,000 records/s each; aggregation packs the hot key's run into one record
  per round trip, so only its bytes count; the hottest key lives on one shard.
Each stage is planned to at most `utilization` (80 %) of its limit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from infra.config import SinkConfig, StreamMode
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_BATCH_SIZE,
    MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS,
    MAX_MAX_POLLERS,
    MAX_MIN_POLLERS,
    MAX_RECORD_BYTES_CEILING,
    MAX_RECORDS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    MIB,
    ON_DEMAND_START_BYTES_PER_S,
    ON_DEMAND_START_SHARDS,
    POLLER_BYTES_PER_S,
    POLLER_INVOCATIONS,
    SHARD_WRITE_BYTES_PER_S,
    SHARD_WRITE_RECORDS_PER_S,
)
from msk_kinesis_sink.settings import Aggregation, RecordFormat

MB: Final = 1_000_000  # AWS states poller, invocation and on-demand figures in MB
# Lambda's quota page states the invocation payload limit as "6 MB": the planner fills an
# invocation to 6,000,000 bytes, a margin below the 6 MiB Invoke enforces (MAX_INVOCATION_BYTES).
PLANNED_INVOCATION_BYTES: Final = 6 * MB
# An aggregated record is one Kinesis record: at most 1 MiB on a stream of the default size.
MAX_AGGREGATE_BYTES: Final = DEFAULT_MAX_RECORD_BYTES
# "Configure Lambda function memory": at 1,769 MB a function has the equivalent of one vCPU.
MB_PER_VCPU: Final = 1_769
MEMORY_CHOICES: Final = (512, 1_024, 1_769)
# The function's cost per record at one vCPU: bench/results/latest.json measures 14-23 µs per
# 1 KiB record (W1-W3 against a local stub and kinesalite); planned near the top of that range.
CPU_US_PER_RECORD: Final = 20.0
# Bytes a record adds to the invocation event beyond its base64 key and value (topic,
# partition, offset, timestamps, field names), and an envelope beyond its base64 value.
EVENT_RECORD_OVERHEAD: Final = 200
ENVELOPE_OVERHEAD: Final = 150
# Below this many seconds to fill a batch, waiting for one buys nothing: the next batch of a
# partition gathers while the current one is written.
FILL_WITHOUT_WINDOW_S: Final = 1.0


# The example `make help`, the README and docs/scaling.md show (a reachable target).
EXAMPLE_ARGS: Final = "--mb-per-s 20 --record-bytes 2000 --partitions 24 --key-skew 0.02"


class PlanError(ValueError):
    """A planner input outside what the model (or AWS) allows; the message is one line."""


@dataclass(frozen=True, slots=True)
class Workload:
    """What the sink must carry, and how it is set up to carry it."""

    mb_per_s: float  # Kafka record bytes (key + value) per second, in MB (10^6 bytes)
    record_bytes: int  # average key + value bytes of a record
    partitions: int  # the topic's partition count
    key_skew: float = 0.0  # share of the traffic on the hottest key (0: no key stands out)
    record_format: RecordFormat = RecordFormat.RAW
    aggregation: bool = True
    rtt_ms: float = 20.0  # one PutRecords round trip
    max_concurrency: int = 8  # the function's MAX_CONCURRENCY
    partition_key_bytes: int = 16
    utilization: float = 0.8  # plan each stage to at most this share of its limit
    cpu_us_per_record: float = CPU_US_PER_RECORD
    timeout_s: int = 120  # the function's timeout (functionTimeoutSeconds)

    def __post_init__(self) -> None:
        checks = (
            (0 < self.mb_per_s <= 100_000, "--mb-per-s must be above 0 and at most 100,000"),
            (
                1 <= self.record_bytes <= MAX_RECORD_BYTES_CEILING,
                f"--record-bytes must be 1-{MAX_RECORD_BYTES_CEILING:,}",
            ),
            (1 <= self.partitions <= 100_000, "--partitions must be 1-100,000"),
            (0 <= self.key_skew <= 1, "--key-skew is a share of the traffic: 0-1"),
            (0 < self.rtt_ms <= 10_000, "--rtt-ms must be above 0 and at most 10,000"),
            (1 <= self.max_concurrency <= 64, "--max-concurrency must be 1-64 (MAX_CONCURRENCY)"),
            (1 <= self.partition_key_bytes <= 256, "--partition-key-bytes must be 1-256"),
            (0.1 <= self.utilization <= 1, "--utilization must be 0.1-1"),
            (0 < self.cpu_us_per_record <= 100_000, "--cpu-us-per-record must be above 0"),
            (
                1 <= self.timeout_s <= MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS,
                f"--timeout-s must be 1-{MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS} (Kafka event source"
                " mappings take functions of at most 14 minutes)",
            ),
        )
        for ok, message in checks:
            # `not ok` is also true for NaN, which compares false with everything.
            if not ok:
                raise PlanError(message)
        if self.event_bytes_per_record > PLANNED_INVOCATION_BYTES:
            raise PlanError(
                f"--record-bytes {self.record_bytes:,} does not fit a 6 MB invocation once"
                " base64-encoded"
            )

    @property
    def bytes_per_s(self) -> float:
        return self.mb_per_s * MB

    @property
    def records_per_s(self) -> float:
        return self.bytes_per_s / self.record_bytes

    @property
    def event_bytes_per_record(self) -> int:
        return _base64_bytes(self.record_bytes) + EVENT_RECORD_OVERHEAD

    @property
    def kinesis_bytes_per_record(self) -> int:
        """Data + partition key, as Kinesis counts a record."""
        data = self.record_bytes
        if self.record_format is RecordFormat.ENVELOPE:
            data = _base64_bytes(self.record_bytes) + ENVELOPE_OVERHEAD
        return data + self.partition_key_bytes

    @property
    def hot_partition_share(self) -> float:
        """Share of all traffic on the busiest partition: its even share, or the hot key's."""
        return max(1 / self.partitions, self.key_skew)


@dataclass(frozen=True, slots=True)
class StageLimit:
    """The most one stage can carry for this workload, and why."""

    stage: str
    max_mb_per_s: float
    why: str
    source: str


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload
    min_pollers: int
    max_pollers: int
    batch_size: int
    batching_window_s: int
    stream_mode: StreamMode
    shards: int  # provisioned shards for the target (also the size an on-demand stream needs)
    memory_mb: int
    concurrency: int  # function invocations in flight at the target
    batch_seconds: float  # one batch's estimated duration
    limits: tuple[StageLimit, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def bound(self) -> StageLimit:
        """The stage that limits this setup: the lowest ceiling."""
        return min(self.limits, key=lambda limit: limit.max_mb_per_s)

    @property
    def reachable(self) -> bool:
        return self.bound.max_mb_per_s >= self.workload.mb_per_s


def _base64_bytes(size: int) -> int:
    return 4 * math.ceil(size / 3)


def records_per_invocation(workload: Workload) -> int:
    """As many records as one invocation holds: 6 MB of event, at most 10,000 records."""
    return max(1, min(MAX_BATCH_SIZE, PLANNED_INVOCATION_BYTES // workload.event_bytes_per_record))


def batch_size_for(workload: Workload, memory_mb: int) -> int:
    """What an invocation holds, or fewer: the most records written in `utilization` of the
    function's timeout."""
    budget = workload.timeout_s * workload.utilization
    most = records_per_invocation(workload)
    if batch_seconds(workload, most, memory_mb) <= budget:
        return most
    low, high = 1, most  # batch_seconds grows with the batch: the largest one within budget
    while low < high:
        middle = (low + high + 1) // 2
        if batch_seconds(workload, middle, memory_mb) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def batch_seconds(workload: Workload, batch_size: int, memory_mb: int) -> float:
    """One batch's duration: its CPU time plus its round trips."""
    vcpu = min(1.0, memory_mb / MB_PER_VCPU)
    cpu_s = batch_size * workload.cpu_us_per_record / 1e6 / vcpu
    requests = max(
        math.ceil(batch_size / MAX_RECORDS_PER_REQUEST),
        math.ceil(batch_size * workload.kinesis_bytes_per_record / MAX_REQUEST_BYTES),
    )
    # The hottest key's records in a batch of its partition, in order: one per round trip, or
    # with aggregation a run of up to 1 MiB per round trip.
    hot_records = batch_size * min(1.0, workload.key_skew * workload.partitions)
    if workload.aggregation:
        hot_rounds = math.ceil(
            hot_records * workload.kinesis_bytes_per_record / MAX_AGGREGATE_BYTES
        )
    else:
        hot_rounds = math.ceil(hot_records)
    rounds = max(math.ceil(requests / workload.max_concurrency), hot_rounds, 1)
    return cpu_s + rounds * workload.rtt_ms / 1e3


def plan(workload: Workload) -> Plan:
    """The settings that carry `workload`, and what bounds them."""
    memory = _memory_for(workload)
    batch = batch_size_for(workload, memory)
    duration = batch_seconds(workload, batch, memory)
    concurrency = min(
        workload.partitions, max(1, math.ceil(workload.records_per_s * duration / batch))
    )
    needed = _pollers_needed(workload, concurrency)
    min_pollers = max(1, min(workload.partitions, MAX_MIN_POLLERS, needed))
    max_pollers = min(workload.partitions, MAX_MAX_POLLERS, max(2 * min_pollers, needed))
    # The ceilings are this plan's: its pollers, its batch.
    limits = _limits(workload, batch, duration, max_pollers)
    shards = shards_for(workload)
    kinesis_bytes = workload.records_per_s * workload.kinesis_bytes_per_record
    mode = StreamMode.ON_DEMAND if fits_on_demand_start(workload) else StreamMode.PROVISIONED
    fill_s = batch * workload.partitions / workload.records_per_s
    window = 0 if fill_s <= FILL_WITHOUT_WINDOW_S else 1
    notes = _notes(workload, batch, mode, kinesis_bytes, fill_s, window)
    return Plan(
        workload=workload,
        min_pollers=min_pollers,
        max_pollers=max_pollers,
        batch_size=batch,
        batching_window_s=window,
        stream_mode=mode,
        shards=shards,
        memory_mb=memory,
        concurrency=concurrency,
        batch_seconds=duration,
        limits=limits,
        notes=notes,
    )


def _pollers_needed(workload: Workload, concurrency: int) -> int:
    """Pollers for the target's bytes (at `utilization` of 5 MB/s) and its invocations in
    flight (5 each), before AWS's and the partitions' caps."""
    by_bytes = math.ceil(workload.bytes_per_s / (POLLER_BYTES_PER_S * workload.utilization))
    by_invocations = math.ceil(concurrency / POLLER_INVOCATIONS)
    return max(by_bytes, by_invocations)


def shards_for(workload: Workload) -> int:
    """Provisioned shards for the target at `utilization` of 1 MiB/s and 1,000 records/s."""
    usable = workload.utilization
    kinesis_bytes = workload.records_per_s * workload.kinesis_bytes_per_record
    by_bytes = math.ceil(kinesis_bytes / (SHARD_WRITE_BYTES_PER_S * usable))
    by_records = math.ceil(kinesis_records_per_s(workload) / (SHARD_WRITE_RECORDS_PER_S * usable))
    return max(1, by_bytes, by_records)


def fits_on_demand_start(workload: Workload) -> bool:
    """Whether a new on-demand stream carries the target without scaling first."""
    kinesis_bytes = workload.records_per_s * workload.kinesis_bytes_per_record
    return (
        kinesis_bytes <= ON_DEMAND_START_BYTES_PER_S * workload.utilization
        and shards_for(workload) <= ON_DEMAND_START_SHARDS
    )


def kinesis_records_per_s(workload: Workload) -> float:
    """Kinesis records per second: one per Kafka record, except that with aggregation the hot
    key's run leaves as one record per round trip (other keys are taken as distinct: runs of
    them pack too, so this errs high)."""
    hot = workload.key_skew * workload.records_per_s
    if workload.aggregation:
        hot = min(hot, 1e3 / workload.rtt_ms)
    return (1 - workload.key_skew) * workload.records_per_s + hot


def _memory_for(workload: Workload) -> int:
    """The smallest memory whose batches leave the stages above the target; else the largest
    (CPU beyond one vCPU barely helps one Python thread)."""
    for memory in MEMORY_CHOICES:
        batch = batch_size_for(workload, memory)
        duration = batch_seconds(workload, batch, memory)
        # Pollers don't depend on memory: as many as may help (one per partition).
        pollers = min(workload.partitions, MAX_MAX_POLLERS)
        if min(limit.max_mb_per_s for limit in _limits(workload, batch, duration, pollers)) >= (
            workload.mb_per_s
        ):
            return memory
    return MEMORY_CHOICES[-1]


def _limits(
    workload: Workload, batch: int, duration: float, pollers: int
) -> tuple[StageLimit, ...]:
    """Each stage's ceiling with `pollers` pollers (maxPollers) and batches of `batch`."""
    to_mb = workload.record_bytes / workload.kinesis_bytes_per_record / MB  # Kinesis -> Kafka MB
    skew = workload.key_skew
    hot_share = workload.hot_partition_share
    limits = [
        StageLimit(
            "pollers",
            min(pollers * POLLER_BYTES_PER_S, POLLER_BYTES_PER_S / hot_share) / MB,
            f"maxPollers={pollers:,} x 5 MB/s (at most one poller per partition); the busiest"
            f" partition ({hot_share:.0%} of the traffic) has one poller",
            "Lambda: Low latency processing for Kafka event sources; Event poller scaling modes",
        ),
        StageLimit(
            "partition order",
            batch * workload.record_bytes / duration / hot_share / MB,
            f"one batch per partition in flight: {batch:,} records per {duration * 1e3:,.0f} ms,"
            f" the busiest partition carrying {hot_share:.0%}",
            "this function's batch model (CPU from bench/results/latest.json)",
        ),
    ]
    if skew > 0:
        limits.append(
            StageLimit(
                "hottest key's shard, bytes",
                SHARD_WRITE_BYTES_PER_S * to_mb / skew,
                f"one key lives on one shard: 1 MiB/s for {skew:.0%} of the traffic",
                "Kinesis: Quotas and limits; PutRecords",
            )
        )
        if workload.aggregation:
            limits.append(
                StageLimit(
                    "hottest key's round trips",
                    MAX_AGGREGATE_BYTES / (workload.rtt_ms / 1e3) * to_mb / skew,
                    f"one aggregated record (at most 1 MiB) per {workload.rtt_ms:g} ms round trip",
                    "this function's ordering rule (planning.py)",
                )
            )
        else:
            limits.append(
                StageLimit(
                    "hottest key's shard, records",
                    SHARD_WRITE_RECORDS_PER_S * workload.record_bytes / MB / skew,
                    "1,000 records/s per shard without aggregation",
                    "Kinesis: Quotas and limits; PutRecords",
                )
            )
            limits.append(
                StageLimit(
                    "hottest key's round trips",
                    1e3 / workload.rtt_ms * workload.record_bytes / MB / skew,
                    f"without aggregation one record of a key per {workload.rtt_ms:g} ms round"
                    " trip (a request never holds two records of one key)",
                    "this function's ordering rule (planning.py)",
                )
            )
    return tuple(limits)


def _notes(
    workload: Workload,
    batch: int,
    mode: StreamMode,
    kinesis_bytes: float,
    fill_s: float,
    window: int,
) -> tuple[str, ...]:
    notes = []
    if mode is StreamMode.PROVISIONED:
        notes.append(
            "on-demand instead: it starts at 4 MB/s (four shards) of writes; warm it (warm"
            f" throughput) to {math.ceil(kinesis_bytes / MIB):,} MiB/s before the load, or it"
            " throttles while it scales"
        )
    if batch < records_per_invocation(workload):
        notes.append(
            f"batches are cut to {batch:,} records to be written within {workload.utilization:.0%}"
            f" of the {workload.timeout_s} s timeout"
        )
    if window:
        notes.append(
            f"a partition fills a batch in {fill_s:,.1f} s: a 1 s window makes fuller batches"
            " (fewer invocations); 0 lowers latency"
        )
    if workload.key_skew > 0 and not workload.aggregation:
        notes.append("aggregation on turns the hot key's records/s limit into a bytes/s limit")
    return tuple(notes)


def config_warnings(
    *,
    max_pollers: int,
    min_pollers: int = 1,
    partitions: int | None = None,
    stream_mode: StreamMode | str = StreamMode.ON_DEMAND,
    shard_count: int | None = None,
    batch_size: int | None = None,
    target: Workload | None = None,
) -> list[str]:
    """Settings that can't help, one line each: for synth to show beside what it built.

    `partitions`: the topic's partition count when known; `target`: the workload the
    deployment is meant for, when known (its own `partitions` is used if none is given).
    """
    if partitions is None and target is not None:
        partitions = target.partitions
    warnings = _poller_warnings(max_pollers, min_pollers, partitions)
    if target is not None:
        warnings += _target_warnings(
            target, max_pollers, partitions, StreamMode(stream_mode), shard_count, batch_size
        )
    return warnings


def _poller_warnings(max_pollers: int, min_pollers: int, partitions: int | None) -> list[str]:
    warnings = []
    if partitions and max_pollers > partitions:
        warnings.append(
            f"maxPollers={max_pollers} is above the topic's {partitions} partitions: Lambda"
            " caps pollers at the partition count, so the extra can't help"
        )
    if partitions and min_pollers > partitions:
        warnings.append(
            f"minPollers={min_pollers} is above the topic's {partitions} partitions: the"
            " pollers beyond one per partition have nothing to read"
        )
    return warnings


def _target_warnings(
    target: Workload,
    max_pollers: int,
    partitions: int | None,
    mode: StreamMode,
    shard_count: int | None,
    batch_size: int | None,
) -> list[str]:
    warnings = []
    planned = plan(target)
    need = f"{target.mb_per_s:g} MB/s of {target.record_bytes:,}-byte records"
    if mode is StreamMode.PROVISIONED and shard_count is not None and shard_count < planned.shards:
        warnings.append(
            f"a provisioned stream of {shard_count} shard{'s' if shard_count != 1 else ''}"
            f" ({shard_count} MiB/s, {shard_count * SHARD_WRITE_RECORDS_PER_S:,} records/s) is too"
            f" small for {need}: it needs {planned.shards}"
        )
    if mode is StreamMode.ON_DEMAND and not fits_on_demand_start(target):
        warnings.append(
            f"an on-demand stream starts at 4 MB/s of writes: {need} throttles until it scales;"
            " warm it (warm throughput) or use a provisioned stream"
        )
    pollers_mb = min(max_pollers, partitions or max_pollers) * POLLER_BYTES_PER_S / MB
    if pollers_mb < target.mb_per_s:
        warnings.append(
            f"maxPollers={max_pollers} carries at most {pollers_mb:g} MB/s (5 MB/s a poller),"
            f" below the target {target.mb_per_s:g} MB/s"
        )
    if batch_size is not None and batch_size > records_per_invocation(target):
        warnings.append(
            f"batchSize={batch_size:,} can't be reached: a 6 MB invocation holds about"
            f" {records_per_invocation(target):,} records of {target.record_bytes:,} bytes"
        )
    if not planned.reachable:
        bound = planned.bound
        warnings.append(
            f"{need} is out of reach: {bound.stage} carries at most {bound.max_mb_per_s:.1f} MB/s"
        )
    return warnings


def deployment_warnings(config: SinkConfig) -> list[str]:
    """`config_warnings` for a deployment: the target is known only when the capacity keys
    name it (docs/scaling.md)."""
    source, function, capacity = config.source, config.function, config.capacity
    mb_per_s, record_bytes = capacity.target_mb_per_second, capacity.average_record_bytes
    partitions = capacity.topic_partitions
    target = None
    if mb_per_s is not None and record_bytes is not None and partitions is not None:
        target = Workload(
            mb_per_s=mb_per_s,
            record_bytes=record_bytes,
            partitions=partitions,
            key_skew=capacity.hot_key_share,
            record_format=function.settings.record_format,
            aggregation=function.settings.aggregation is Aggregation.ON,
            max_concurrency=function.settings.max_concurrency,
            timeout_s=function.timeout_seconds,
        )
    return config_warnings(
        max_pollers=source.max_pollers,
        min_pollers=source.min_pollers,
        partitions=partitions,
        stream_mode=config.stream.mode,
        shard_count=config.stream.shard_count,
        batch_size=source.batch_size,
        target=target,
    )


def render(result: Plan) -> str:
    """The plan as a person reads it."""
    w = result.workload
    kinesis_bytes = w.records_per_s * w.kinesis_bytes_per_record
    lines = [
        f"Plan for {w.mb_per_s:g} MB/s of {w.record_bytes:,}-byte records"
        f" ({w.records_per_s:,.0f} records/s) over {w.partitions:,} partitions, hottest key"
        f" {w.key_skew:.0%}; {w.record_format.value}, aggregation"
        f" {'on' if w.aggregation else 'off'}, {w.rtt_ms:g} ms round trips, stages at"
        f" <= {w.utilization:.0%}",
        "",
        f"  pollers   minPollers={result.min_pollers}, maxPollers={result.max_pollers}"
        f"  (5 MB/s and 5 invocations each; never above the {w.partitions} partitions)",
        f"  batch     batchSize={result.batch_size:,}, batching window {result.batching_window_s} s"
        f"  (a 6 MB invocation holds {records_per_invocation(w):,} records)",
        f"  stream    {result.stream_mode.value}, {result.shards:,} shard"
        f"{'s' if result.shards != 1 else ''} of writes needed"
        f"  ({kinesis_bytes / MIB:,.1f} MiB/s, {kinesis_records_per_s(w):,.0f} records/s into"
        " Kinesis)",
        f"  function  {result.memory_mb:,} MB, {result.concurrency:,} invocation"
        f"{'s' if result.concurrency != 1 else ''} in flight at the target"
        f"  (a batch takes ~{result.batch_seconds * 1e3:,.0f} ms)",
        "",
        "  ceilings (MB/s this setup can carry):",
    ]
    for limit in sorted(result.limits, key=lambda limit: limit.max_mb_per_s):
        lines.append(
            f"    {limit.stage:<28} {limit.max_mb_per_s:>10,.1f}  {limit.why} [{limit.source}]"
        )
    bound = result.bound
    verdict = "reachable" if result.reachable else "OUT OF REACH"
    lines += [
        "",
        f"  bound: {bound.stage} at {bound.max_mb_per_s:,.1f} MB/s: the target is {verdict}",
    ]
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formatter_class=_DefaultsHelp, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage block: the message names the option.
        raise PlanError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="make plan PLAN_ARGS=...",
        description="Plan pollers, batches, shards and function size for a target throughput"
        " (docs/scaling.md). Exit status 0: the target is reachable; 1: it is out of reach (the"
        " plan says which stage bounds it); 2: a bad option.",
        epilog=f'example: make plan PLAN_ARGS="{EXAMPLE_ARGS}"',
    )
    required = parser.add_argument_group("the target (required)")
    required.add_argument(
        "--mb-per-s", type=float, required=True, help="MB/s of Kafka records (key + value)"
    )
    required.add_argument(
        "--record-bytes", type=int, required=True, help="average record size, key + value"
    )
    required.add_argument("--partitions", type=int, required=True, help="the topic's partitions")
    option = parser.add_argument
    option("--key-skew", type=float, default=0.0, help="hottest key's share of the traffic, 0-1")
    option(
        "--format",
        choices=[f.value for f in RecordFormat],
        default="raw",
        help="the function's RECORD_FORMAT",
    )
    option("--aggregation", choices=["on", "off"], default="on", help="the function's AGGREGATION")
    option("--rtt-ms", type=float, default=20.0, help="one PutRecords round trip, ms")
    option("--max-concurrency", type=int, default=8, help="the function's MAX_CONCURRENCY")
    option("--partition-key-bytes", type=int, default=16, help="average partition key length")
    option("--utilization", type=float, default=0.8, help="share of each stage's limit to plan to")
    option(
        "--cpu-us-per-record",
        type=float,
        default=CPU_US_PER_RECORD,
        help="the function's CPU per record at one vCPU (make bench measures it)",
    )
    option(
        "--timeout-s", type=int, default=120, help="the function's timeout (functionTimeoutSeconds)"
    )
    option("--json", action="store_true", help="print the plan as JSON")
    return parser


class _DefaultsHelp(argparse.HelpFormatter):
    """Every option's help ends with its default (required ones have none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if action.required or default in (None, argparse.SUPPRESS) or isinstance(default, bool):
            return text
        return f"{text} (default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    """0: the plan reaches the target; 1: it is out of reach; 2: bad input (one line)."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # `make plan` alone: what it takes, rather than a one-line complaint
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        workload = Workload(
            mb_per_s=args.mb_per_s,
            record_bytes=args.record_bytes,
            partitions=args.partitions,
            key_skew=args.key_skew,
            record_format=RecordFormat(args.format),
            aggregation=args.aggregation == "on",
            rtt_ms=args.rtt_ms,
            max_concurrency=args.max_concurrency,
            partition_key_bytes=args.partition_key_bytes,
            utilization=args.utilization,
            cpu_us_per_record=args.cpu_us_per_record,
            timeout_s=args.timeout_s,
        )
    except PlanError as error:
        print(f"plan: {error}", file=sys.stderr)
        return 2
    result = plan(workload)
    if args.json:
        document = asdict(result)
        document["bound"] = asdict(result.bound)
        document["reachable"] = result.reachable
        print(json.dumps(document, indent=2))
    else:
        print(render(result))
    return 0 if result.reachable else 1


if __name__ == "__main__":
    sys.exit(main())
