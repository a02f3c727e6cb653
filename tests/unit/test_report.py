"""Unit tests for the invocation report: the summary line's fields and the metrics' values."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

from hypothesis import given
from hypothesis import strategies as st

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
    # GIVEN an invocation with more PutRecords latencies than EMF takes in one document, and no
    # record delivered (no delivery delays)
    stats = InvocationStats(put_latencies_ms=[float(n) for n in range(150)], bytes_published=7)
    # WHEN its metric values are listed
    values = list(InvocationReport(stats).metric_values())
    # THEN 100 latencies go out, at evenly spaced ranks from the least to the greatest; a
    # metric of no samples not at all; every other metric once with its unit
    latencies = [value for name, _, value in values if name == "PublishLatency"]
    assert len(latencies) == MAX_METRIC_VALUES
    assert (latencies[0], latencies[-1], latencies[50]) == (0.0, 149.0, 75.0)
    assert ("BytesPublished", Unit.BYTES, 7) in values
    assert not [name for name, _, _ in values if name == "DeliveryDelay"]
    assert len(values) == MAX_METRIC_VALUES + len(METRICS) - 2


@given(st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), max_size=1_000))
def test_report_sample_of_any_samples_keeps_their_extremes_and_ranks(samples: list[float]) -> None:
    # GIVEN any delivery delays of an invocation
    stats = InvocationStats(delivery_delays_ms=list(samples))
    # WHEN they go out as metric values
    sent = [
        value
        for name, _, value in InvocationReport(stats).metric_values()
        if name == "DeliveryDelay"
    ]
    # THEN all of them, or 100 of them including the smallest and the largest, each one of
    # the samples, in rank order
    if len(samples) <= MAX_METRIC_VALUES:
        assert sent == samples
    else:
        assert len(sent) == MAX_METRIC_VALUES
        assert sent == sorted(sent)
        assert (sent[0], sent[-1]) == (min(samples), max(samples))
        assert not Counter(sent) - Counter(samples)


def test_report_delivery_delay_is_a_metric_and_two_summary_fields() -> None:
    # GIVEN an invocation whose records reached the stream 40, 10 and 25 ms after their
    # Kafka timestamps, one more without a timestamp and one stamped in the future
    stats = InvocationStats(
        delivery_delays_ms=[40.0, 10.0, 25.0, 0.0],
        records_without_timestamp=1,
        records_timestamp_ahead=1,
    )
    report = InvocationReport(stats)
    # WHEN its summary line and metrics are made
    line = report.log_fields()
    delays = [
        (unit, value) for name, unit, value in report.metric_values() if name == "DeliveryDelay"
    ]
    # THEN the line has their median and maximum and the two counts; the metric every delay
    assert (line["delivery_delay_p50_ms"], line["delivery_delay_max_ms"]) == (25.0, 40.0)
    assert (line["records_without_timestamp"], line["records_timestamp_ahead"]) == (1, 1)
    assert delays == [(Unit.MILLISECONDS, v) for v in (40.0, 10.0, 25.0, 0.0)]


def test_report_every_count_reaches_the_summary_line() -> None:
    # GIVEN every count of the stats set to a value of its own
    names = [spec.name for spec in fields(InvocationStats) if spec.type == "int"]
    counts = {name: number for number, name in enumerate(names, start=1)}
    stats = InvocationStats(**counts)
    # WHEN the summary line is made
    line = InvocationReport(stats).log_fields()
    # THEN each count is logged under its own name with its own value
    assert {name: line[name] for name in names} == counts
