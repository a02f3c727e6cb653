"""What reading an event costs the function, and the smallest time budget that makes progress.

python -m bench.reading                      # parse and encode cost per record (part of make bench)
python -m bench.reading --budgets [--out F]  # also the budget table of docs/guarantee.md (minutes)

Reading is what the function does before a record can be sent: outlining the event (every
record's position), parsing the rest of each record, and encoding it (`raw` or `envelope`).
All of it runs on the function's one coordinating thread, so it is measured in process, on the
same records with and without headers: the least CPU time of `--repeat` runs, the cycle collector
paused as the handler pauses it.

The budget table invokes the Sink itself, on the real clock, against an in-process stream that
answers every request after ROUND_TRIP_S: for each event shape, the smallest budget whose
invocations all publish something and answer before their deadline, and the smallest that
delivers the whole event in one invocation (bisection, TRIALS invocations a step).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from bench.workloads import SourceRecord, Workload, msk_event, w8
from msk_kinesis_sink.encoding import encode_partition
from msk_kinesis_sink.events import KafkaRecord, PartitionBatch, outline_event, read_records
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Aggregation, RecordFormat, Settings
from msk_kinesis_sink.writers import RecordResult

# Cases of the cost table: (headers per record, format); the records are W8's, their headers
# cut to the count (None: as they are, 32-40 a record, 36 on average).
COST_CASES: Final = (
    (0, RecordFormat.RAW),
    (0, RecordFormat.ENVELOPE),
    (3, RecordFormat.ENVELOPE),
    (None, RecordFormat.RAW),
    (None, RecordFormat.ENVELOPE),
)
# Cases of the budget table: (records, headers per record, format).
BUDGET_CASES: Final = tuple(
    (records, headers, record_format)
    for records in (1_000, 10_000)
    for headers in (0, None)
    for record_format in (RecordFormat.RAW, RecordFormat.ENVELOPE)
)
ROUND_TRIP_S: Final = 0.02
TRIALS: Final = 3
# Budgets searched, in seconds: below the first nothing can be done; above the last, not asked.
BUDGET_RANGE: Final = (0.02, 8.0)
BUDGET_RESOLUTION_S: Final = 0.01


@dataclass(frozen=True, slots=True)
class ReadingCost:
    """Microseconds per record of each step, for one shape of record."""

    headers: int  # a record, on average
    record_format: str
    records: int
    event_mb: float
    outline_us: float
    parse_us: float  # the fast path
    parse_checked_us: float  # every record checked field by field (the fast path's reference)
    encode_us: float

    @property
    def total_us(self) -> float:
        return self.outline_us + self.parse_us + self.encode_us


def records_with_headers(workload: Workload, headers: int | None) -> tuple[SourceRecord, ...]:
    """The workload's records with `headers` headers each (None: as they are)."""
    if headers is None:
        return workload.records
    return tuple(replace(record, headers=record.headers[:headers]) for record in workload.records)


def _mean_headers(records: Sequence[SourceRecord]) -> int:
    return round(sum(len(record.headers) for record in records) / len(records))


@contextmanager
def _collector_paused() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _best_of(repeat: int, step: Callable[[], object]) -> float:
    """The least CPU time `step` took on this thread: on a shared machine, the time spent
    waiting for a core is not what reading costs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        step()
        best = min(best, time.thread_time() - started)
    return best


def reading_cost(
    records: Sequence[SourceRecord], record_format: RecordFormat, repeat: int
) -> ReadingCost:
    event = msk_event(records)
    outline = outline_event(event)

    def parse(fast_path: bool) -> list[list[KafkaRecord]]:
        out = []
        for partition in outline.partitions:
            read: list[KafkaRecord] = []
            read_records(partition, 0, len(partition), into=read, fast_path=fast_path)
            out.append(read)
        return out

    parsed = parse(True)
    batches = [
        (partition.topic, partition.partition, tuple(read))
        for partition, read in zip(outline.partitions, parsed, strict=True)
    ]
    settings = Settings(stream_name="bench", stream_arn=None, record_format=record_format)

    def encode() -> None:
        for topic, partition, read in batches:
            encode_partition(
                PartitionBatch(topic, partition, read),
                record_format=settings.record_format,
                partition_key_mode=settings.partition_key,
                max_record_bytes=settings.max_record_bytes,
            )

    per_record = 1e6 / len(records)
    with _collector_paused():
        outline_s = _best_of(repeat, lambda: outline_event(event))
        parse_s = _best_of(repeat, lambda: parse(True))
        checked_s = _best_of(repeat, lambda: parse(False))
        encode_s = _best_of(repeat, encode)
    return ReadingCost(
        headers=_mean_headers(records),
        record_format=record_format.value,
        records=len(records),
        event_mb=round(len(json.dumps(event, separators=(",", ":"))) / 1e6, 2),
        outline_us=round(outline_s * per_record, 2),
        parse_us=round(parse_s * per_record, 2),
        parse_checked_us=round(checked_s * per_record, 2),
        encode_us=round(encode_s * per_record, 2),
    )


def reading_costs(repeat: int = 5) -> list[ReadingCost]:
    """The cost table: W8's records with 0, 3 and 36 headers, `raw` and `envelope`."""
    workload = w8()
    return [
        reading_cost(records_with_headers(workload, headers), record_format, repeat)
        for headers, record_format in COST_CASES
    ]


def reading_costs_of(documents: Sequence[Mapping[str, Any]]) -> list[ReadingCost]:
    """The cost table back from its JSON form (bench/results/latest.json's "reading")."""
    return [ReadingCost(**document) for document in documents]


def cost_lines(costs: Sequence[ReadingCost]) -> list[str]:
    """The cost table as text, and the ratios make bench prints."""
    lines = [
        "headers  format    event MB  outline  parse  parse checked  encode  total (CPU us/record)",
    ]
    for cost in costs:
        lines.append(
            f"{cost.headers:>7}  {cost.record_format:<8}  {cost.event_mb:>8.2f}"
            f"  {cost.outline_us:>7.2f}  {cost.parse_us:>5.2f}  {cost.parse_checked_us:>13.2f}"
            f"  {cost.encode_us:>6.2f}  {cost.total_us:>15.2f}"
        )
    return lines


class _Stream:
    """A stream that accepts every record, answering each request after ROUND_TRIP_S."""

    def put_records(self, entries: Sequence[Entry], deadline: float) -> list[RecordResult]:
        time.sleep(max(0.0, min(ROUND_TRIP_S, deadline - time.monotonic())))
        return [RecordResult.WRITTEN] * len(entries)


class _Context:
    def __init__(self, budget_s: float) -> None:
        self._deadline = time.monotonic() + budget_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke(sink: Sink, event: dict[str, Any], budget_s: float) -> tuple[int, bool]:
    """(records published, answered before the deadline)."""
    started = time.monotonic()
    sink.handle(event, _Context(budget_s))
    in_time = time.monotonic() - started < budget_s
    report = sink.last_report
    return (report.stats.records_published if report is not None else 0), in_time


def _smallest(passes: Callable[[float], bool]) -> float | None:
    """The smallest budget in BUDGET_RANGE that passes (to BUDGET_RESOLUTION_S), assuming
    larger budgets pass too; None when even the largest fails."""
    low, high = BUDGET_RANGE
    if not passes(high):
        return None
    while high - low > BUDGET_RESOLUTION_S:
        middle = (low + high) / 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return round(high, 2)


@dataclass(frozen=True, slots=True)
class BudgetRow:
    records: int
    headers: int
    record_format: str
    event_mb: float
    reading_s: float  # CPU time to outline, parse and encode the whole event
    progress_s: float | None  # every invocation publishes something, before its deadline
    whole_s: float | None  # every invocation publishes everything, before its deadline


def budget_row(records: int, headers: int | None, record_format: RecordFormat) -> BudgetRow:
    source = records_with_headers(w8(), headers)[:records]
    event = msk_event(source)
    settings = Settings(
        stream_name="bench",
        stream_arn=None,
        record_format=record_format,
        aggregation=Aggregation.OFF,
    )
    sink = Sink(settings, writer=_Stream())
    sink.handle(event, _Context(60.0))  # warm: the container's estimates, the pool's threads

    def passes(need: int) -> Callable[[float], bool]:
        def check(budget_s: float) -> bool:
            for _ in range(TRIALS):
                sink.memory = type(sink.memory)()  # each trial as the first delivery
                published, in_time = _invoke(sink, event, budget_s)
                if not in_time or published < need:
                    return False
            return True

        return check

    try:
        progress = _smallest(passes(1))
        whole = _smallest(passes(len(source)))
    finally:
        sink.close()
    cost = reading_cost(source, record_format, repeat=3)
    return BudgetRow(
        records=records,
        headers=_mean_headers(source),
        record_format=record_format.value,
        event_mb=cost.event_mb,
        reading_s=round(cost.total_us * records / 1e6, 3),
        progress_s=progress,
        whole_s=whole,
    )


def budget_lines(rows: Sequence[BudgetRow]) -> list[str]:
    lines = [
        "| Records | Headers a record | Format | Event | Reading it (CPU)"
        " | Smallest budget that makes progress | Budget that delivers it in one invocation |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        progress = "—" if row.progress_s is None else f"{row.progress_s:.2f} s"
        whole = "—" if row.whole_s is None else f"{row.whole_s:.2f} s"
        lines.append(
            f"| {row.records:,} | {row.headers} | `{row.record_format}` | {row.event_mb:.2f} MB"
            f" | {row.reading_s * 1000:,.0f} ms | {progress} | {whole} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budgets", action="store_true", help="also the budget table (minutes)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the Sink's warnings about short budgets are expected
    load_before = os.getloadavg()[0]
    costs = reading_costs(args.repeat)
    print("\n".join(cost_lines(costs)))
    document: dict[str, Any] = {"costs": [asdict(cost) for cost in costs]}
    if args.budgets:
        rows = [budget_row(*case) for case in BUDGET_CASES]
        print()
        print("\n".join(budget_lines(rows)))
        document["budgets"] = [asdict(row) for row in rows]
    document["load_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(
        f"\nload average (1 min) {document['load_1m'][0]} at start, {document['load_1m'][1]} at end"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
