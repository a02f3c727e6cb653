"""The sink's dashboard, one helper per row, in the order an on-call reads it: the alarms, the
headline numbers, lag and how late the data is, the mappings, the function, the sink's records,
the schema registry's refusals (with one), then each stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from aws_cdk import aws_cloudwatch as cw

from infra.cloudwatch import PERIOD, WIDTH, SinkMetrics
from infra.config import SourceConfig, SourceKind
from infra.event_sources import TopicMapping
from infra.stream import StreamTarget
from msk_kinesis_sink.limits import MAX_STATUS_WIDGET_ALARMS, MAX_WIDGET_METRICS

if TYPE_CHECKING:
    from infra.monitoring import MonitoredSink

Row = list[cw.IWidget]
Item = TypeVar("Item")
HALF: Final = WIDTH // 2
THIRD: Final = WIDTH // 3
# A latency's statistics, each with its label.
_PERCENTILES: Final = (("p50", "p50"), ("p99", "p99"), ("Maximum", "max"))
# The sink's record counts, and what publishing them cost (its own metrics, summed).
_RECORD_COUNTS: Final = (
    "RecordsReceived",
    "RecordsPublished",
    "RecordsFailed",
    "RecordsDeadLettered",
)
_PUBLISH_COSTS: Final = ("RecordsThrottled", "RetryAttempts", "PutRecordsCalls")


def dashboard_rows(
    sink: MonitoredSink, *, runbook: str, alarms: Sequence[cw.IAlarm]
) -> Iterator[Row]:
    """The rows, top to bottom."""
    metrics, mappings, source, streams = sink.metrics, sink.mappings, sink.source, sink.streams
    destination = sink.destination.short
    yield header_row(
        mappings=mappings, source=source, streams=streams, runbook=runbook, alarms=alarms
    )
    yield now_row(metrics)
    yield lag_row(metrics, mappings, source, destination)
    yield delivery_delay_row(metrics, alarm_seconds=sink.alarms.delivery_delay_seconds)
    yield mapping_row(metrics, mappings, destination)
    yield function_row(
        metrics,
        timeout_ms=sink.function.timeout_seconds * 1000,
        reserved=sink.function.reserved_concurrency,
    )
    yield records_row(metrics)
    if source.schema_registry is not None:
        yield schema_registry_row(metrics, mappings, destination)
    for target in streams:
        yield stream_row(metrics, target, only=len(streams) == 1)
    if widgets := sink.destination.widgets():
        yield widgets


def header_row(
    *,
    mappings: Sequence[TopicMapping],
    source: SourceConfig,
    streams: Sequence[StreamTarget],
    runbook: str,
    alarms: Sequence[cw.IAlarm],
) -> Row:
    """What flows where, how to read the alarms, and their states."""
    topics = ", ".join(mapping.topic for mapping in mappings)
    cluster = (
        f"cluster **{source.cluster.name}**"
        if source.cluster is not None
        else f"the self-managed cluster at **{', '.join(source.bootstrap_servers or ())}**"
    )
    return [
        cw.TextWidget(
            markdown=(
                f"# Kafka → Kinesis sink\nTopics **{topics}** of {cluster} →"
                f" {_streams(streams)}. Every alarm has an entry in the"
                f" [runbook]({runbook}), named like the alarm without the"
                " stack prefix. Healthy: lag flat or falling, no errors, nothing"
                " dead-lettered, published ≈ received."
            ),
            width=WIDTH,
            height=2,
        ),
        *(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(some), width=WIDTH, height=3)
            for some in _batched(alarms, MAX_STATUS_WIDGET_ALARMS)
        ),
    ]


def _streams(streams: Sequence[StreamTarget]) -> str:
    """Where the records go, for the header."""
    if len(streams) == 1 and not streams[0].patterns:
        return f"stream **{streams[0].stream.stream_name}**"
    return "streams " + ", ".join(
        f"**{target.stream.stream_name}** ("
        + (", ".join(f"`{p}`" for p in target.patterns) or "every other topic")
        + ")"
        for target in streams
    )


def now_row(metrics: SinkMetrics) -> Row:
    """Headline numbers for the last period: is it behind, is it moving, is it losing."""
    return [
        cw.SingleValueWidget(
            title="Now (last 5 minutes)",
            metrics=[
                metrics.of_function("OffsetLag", "Maximum", "offset lag"),
                metrics.of_sink("RecordsReceived", "Sum", "received"),
                metrics.of_sink("RecordsPublished", "Sum", "published"),
                metrics.of_sink("RecordsFailed", "Sum", "reported failed"),
                metrics.of_sink("RecordsDeadLettered", "Sum", "dead-lettered"),
                metrics.of_function("Errors", "Sum", "errors"),
            ],
            width=WIDTH,
            height=3,
        ),
    ]


def lag_row(
    metrics: SinkMetrics, mappings: Sequence[TopicMapping], source: SourceConfig, destination: str
) -> Row:
    """Offset lag, and what the mappings did with the events (`destination` names where the
    batches they give up on go)."""
    return [
        cw.GraphWidget(
            title="Offset lag (records behind, max over partitions)",
            left=[metrics.of_function("OffsetLag", "Maximum", "function offset lag")],
            right=_msk_lag(mappings, source) or None,
            width=HALF,
        ),
        *_events(metrics, mappings, destination),
    ]


def delivery_delay_row(metrics: SinkMetrics, *, alarm_seconds: int | None) -> Row:
    """How late the data is: from each record's Kafka timestamp to its acknowledgement by
    Kinesis (what the timestamp means depends on the topic: docs/guarantee.md)."""
    return [
        cw.GraphWidget(
            title="Delivery delay: Kafka timestamp to Kinesis acknowledgement (ms)",
            left=[metrics.of_sink("DeliveryDelay", stat, label) for stat, label in _PERCENTILES],
            left_annotations=(
                None
                if alarm_seconds is None
                else [cw.HorizontalAnnotation(value=alarm_seconds * 1000, label="alarm")]
            ),
            width=WIDTH,
        ),
    ]


def _events(
    metrics: SinkMetrics, mappings: Sequence[TopicMapping], destination: str
) -> list[cw.IWidget]:
    events = _per_mapping(
        metrics,
        mappings,
        ("PolledEventCount", "polled"),
        ("InvokedEventCount", "invoked"),
        ("FailedInvokeEventCount", "failed invoke"),
        ("DroppedEventCount", "dropped"),
        ("OnFailureDestinationDeliveredEventCount", f"sent to {destination}"),
    )
    failures = metrics.of_function(
        "DestinationDeliveryFailures", "Sum", f"{destination} delivery failures"
    )
    return _graphs("Event source mappings: events", [*events, failures], width=HALF)


def _graphs(title: str, left: Sequence[cw.IMetric], *, width: int) -> list[cw.IWidget]:
    """One graph of `left`, or, past the metrics a widget shows, as many as it takes."""
    parts = list(_batched(left, MAX_WIDGET_METRICS))
    if len(parts) == 1:
        return [cw.GraphWidget(title=title, left=parts[0], width=width)]
    return [
        cw.GraphWidget(title=f"{title} ({number}/{len(parts)})", left=part, width=width)
        for number, part in enumerate(parts, start=1)
    ]


def _batched(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _msk_lag(mappings: Sequence[TopicMapping], source: SourceConfig) -> list[cw.IMetric]:
    """MSK's own consumer-lag metrics (AWS: "Monitor consumer lags"): only for a cluster in this
    account. A self-managed cluster has none, and a cluster reached through a multi-VPC
    connection publishes them in its owner's account."""
    if source.cluster is None or source.kind is not SourceKind.MSK:
        return []
    return [
        cw.Metric(
            namespace="AWS/Kafka",
            metric_name="SumOffsetLag",
            dimensions_map={
                "Cluster Name": source.cluster.name,
                "Consumer Group": mapping.consumer_group_id,
                "Topic": mapping.topic,
            },
            statistic="Maximum",
            period=PERIOD,
            label=f"{mapping.topic} (MSK, sum over partitions)",
        )
        for mapping in mappings
    ]


def _per_mapping(
    metrics: SinkMetrics, mappings: Sequence[TopicMapping], *names: tuple[str, str]
) -> list[cw.IMetric]:
    """Each mapping's metrics of `names` (metric, label), the label after the topic."""
    return [
        metrics.of_mapping(mapping, name, f"{mapping.topic} {label}")
        for mapping in mappings
        for name, label in names
    ]


def mapping_row(metrics: SinkMetrics, mappings: Sequence[TopicMapping], destination: str) -> Row:
    """The mappings' errors, and their polls, commits and lag."""
    of = metrics.of_mapping
    return [
        cw.GraphWidget(
            title="Event source mappings: errors (each exists only when it happens)",
            left=_per_mapping(
                metrics,
                mappings,
                ("PollingErrorCount", "polling errors"),
                ("InvokeErrorCount", "invoke errors"),
                ("CommitErrorCount", "commit errors"),
                ("OnFailureDestinationDeliveryErrorCount", f"{destination} delivery errors"),
            ),
            width=HALF,
        ),
        cw.GraphWidget(
            title="Event source mappings: polls, committed records, max offset lag",
            left=[
                of(m, "PolledEventCount", f"{m.topic} polls", statistic="SampleCount")
                for m in mappings
            ]
            + [of(m, "CommittedEventCount", f"{m.topic} committed") for m in mappings],
            right=[
                of(m, "MaxOffsetLag", f"{m.topic} max offset lag", statistic="Maximum")
                for m in mappings
            ],
            width=HALF,
        ),
    ]


def function_row(metrics: SinkMetrics, *, timeout_ms: int, reserved: int | None) -> Row:
    """Invocations, duration against the timeout, concurrency against what is reserved."""
    function = metrics.of_function
    return [
        cw.GraphWidget(
            title="Invocations, errors, throttles",
            left=[
                function("Invocations", "Sum", "invocations"),
                function("Errors", "Sum", "errors"),
                function("Throttles", "Sum", "throttles"),
            ],
            width=THIRD,
        ),
        cw.GraphWidget(
            title="Duration against the timeout (ms)",
            left=[function("Duration", stat, label) for stat, label in _PERCENTILES],
            left_annotations=[cw.HorizontalAnnotation(value=timeout_ms, label="timeout")],
            width=THIRD,
        ),
        cw.GraphWidget(
            title="Concurrency",
            left=[function("ConcurrentExecutions", "Maximum", "concurrent executions")],
            left_annotations=(
                None
                if reserved is None
                else [cw.HorizontalAnnotation(value=reserved, label="reserved")]
            ),
            width=THIRD,
        ),
    ]


def records_row(metrics: SinkMetrics) -> Row:
    """What the sink did with the records, and what publishing them cost."""
    sink = metrics.of_sink
    return [
        cw.GraphWidget(
            title="Records: received, published, reported failed, dead-lettered",
            left=[sink(name, "Sum") for name in _RECORD_COUNTS],
            width=THIRD,
        ),
        cw.GraphWidget(
            title="Throttled records, retries, PutRecords calls",
            left=[sink(name, "Sum") for name in _PUBLISH_COSTS],
            width=THIRD,
        ),
        cw.GraphWidget(
            title="PutRecords latency (ms)",
            left=[sink("PublishLatency", stat, label) for stat, label in _PERCENTILES],
            width=THIRD,
        ),
    ]


def schema_registry_row(
    metrics: SinkMetrics, mappings: Sequence[TopicMapping], destination: str
) -> Row:
    """Records the mappings could not validate against the schema registry (they went to the
    on-failure destination: the events graph shows them there too)."""
    return [
        cw.GraphWidget(
            title=(
                f"Schema registry: records not validated, sent to {destination} (exists only"
                " when it happens)"
            ),
            left=_per_mapping(metrics, mappings, ("SchemaRegistryErrorCount", "not validated")),
            width=WIDTH,
        )
    ]


def stream_row(metrics: SinkMetrics, target: StreamTarget, *, only: bool) -> Row:
    """One stream's row. The sink's own totals count every stream, so they are drawn beside the
    stream's only when it is the `only` one."""
    name = f"Stream {target.stream_id}" if target.stream_id else "Default stream"
    title = "Stream" if only else name
    stream = metrics.of_stream
    sink_total = metrics.of_sink("RecordsPublished", "Sum", "published by the sink")
    sink_bytes = metrics.of_sink("BytesPublished", "Sum", "published by the sink")
    return [
        cw.GraphWidget(
            title=f"{title}: incoming records",
            left=[stream(target, "IncomingRecords", "Sum", "incoming records")],
            right=[sink_total] if only else None,
            width=THIRD,
        ),
        cw.GraphWidget(
            title=f"{title}: incoming bytes",
            left=[stream(target, "IncomingBytes", "Sum", "incoming bytes")],
            right=[sink_bytes] if only else None,
            width=THIRD,
        ),
        cw.GraphWidget(
            title=f"{title}: write throttling",
            left=[
                stream(target, "WriteProvisionedThroughputExceeded", "Sum", "throttled writes"),
                stream(target, "PutRecords.ThrottledRecords", "Sum", "throttled records"),
            ],
            width=THIRD,
        ),
    ]
