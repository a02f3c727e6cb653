"""Unit tests for the invocation report: the summary line's fields and the metrics' values."""

from __future__ import annotations

from dataclasses import fields

from msk_kinesis_sink.report import (
    MAX_METRIC_VALUES,
    METRICS,
    InvocationReport,
    InvocationStats,
    Unit,
)


def test_report_log_fields_summarise_samples_and_round_floats() -> None:
    # GIVEN an invocation with three PutRecords latencies and an unrounded duration
    stats = InvocationStats(records_received=3, put_latencies_ms=[5.04, 1.26, 3.01])
    stats.duration_ms = 12.345
    # WHEN its summary line is made
    line = InvocationReport(stats).log_fields()
    # THEN the samples appear as their median and maximum, floats to one decimal, counts as is
    assert (line["put_latency_p50_ms"], line["put_latency_max_ms"]) == (3.0, 5.0)
    assert line["duration_ms"] == 12.3
    assert line["records_received"] == 3 and line["stopped_by_deadline"] is False
    assert "put_latencies_ms" not in line


def test_report_log_fields_without_samples_are_null() -> None:
    # GIVEN an invocation that made no request
    line = InvocationReport(InvocationStats()).log_fields()
    # THEN its latency statistics are null, not zero
    assert line["put_latency_p50_ms"] is None and line["put_latency_max_ms"] is None


def test_report_metric_values_send_at_most_100_samples_per_metric() -> None:
    # GIVEN an invocation with more PutRecords latencies than EMF takes in one document
    stats = InvocationStats(put_latencies_ms=[float(n) for n in range(150)], bytes_published=7)
    # WHEN its metric values are listed
    values = list(InvocationReport(stats).metric_values())
    # THEN the first 100 latencies go out, and every other metric once with its unit
    latencies = [value for name, _, value in values if name == "PublishLatency"]
    assert latencies == [float(n) for n in range(MAX_METRIC_VALUES)]
    assert ("BytesPublished", Unit.BYTES, 7) in values
    assert len(values) == MAX_METRIC_VALUES + len(METRICS) - 1


def test_report_every_count_reaches_the_summary_line() -> None:
    # GIVEN every count of the stats set to a value of its own
    names = [spec.name for spec in fields(InvocationStats) if spec.type == "int"]
    counts = {name: number for number, name in enumerate(names, start=1)}
    stats = InvocationStats(**counts)
    # WHEN the summary line is made
    line = InvocationReport(stats).log_fields()
    # THEN each count is logged under its own name with its own value
    assert {name: line[name] for name in names} == counts
