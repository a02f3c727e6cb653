"""The sink's alarms as data: one spec per alarm (infra.cloudwatch.AlarmSpec), each with an entry
in docs/runbook.md. The on-failure destination's alarms are its own (infra.destinations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from aws_cdk import aws_cloudwatch as cw

from infra.cloudwatch import AlarmSpec, SinkMetrics, across_mappings

if TYPE_CHECKING:
    from infra.event_sources import TopicMapping
    from infra.monitoring import MonitoredSink
    from infra.stream import StreamTarget

# A mapping's ErrorCount group: each metric exists only when an error happened, and these fire
# when so many of 3 periods have one. (entry, metric, periods breaching, what the mapping did)
_ERROR_COUNTS: Final = (
    ("MappingPollingErrors", "PollingErrorCount", 3, "could not poll the cluster for 15 minutes"),
    ("MappingInvokeErrors", "InvokeErrorCount", 2, "could not invoke the function"),
    ("MappingCommitErrors", "CommitErrorCount", 2, "could not commit offsets to the cluster"),
)


def alarm_specs(sink: MonitoredSink) -> tuple[AlarmSpec, ...]:
    """Every alarm of the sink: the function's and the streams', the destination's, then the
    mappings' (each of their alarms watching as many mappings as one alarm may read)."""
    return (
        *_function_alarms(sink),
        *sink.destination.alarms(sink.metrics),
        *across_mappings(
            [spec for mapping in sink.mappings for spec in _mapping_alarms(sink, mapping)]
        ),
    )


def _function_alarms(sink: MonitoredSink) -> tuple[AlarmSpec, ...]:
    """The function's alarms, the streams' in their place."""
    # A table, one spec per alarm: it grows with each alarm and is meant to be read whole, so
    # it may run past 60 lines rather than be cut into pieces that mean nothing alone.
    metrics, config, function = sink.metrics, sink.alarms, sink.metrics.of_function
    timeout_ms = sink.function.timeout_seconds * 1000
    return (
        AlarmSpec(
            "OffsetLag",
            function("OffsetLag", "Maximum", "offset lag (max)"),
            threshold=config.offset_lag_threshold,
            periods=3,
            breaching=3,
            what="offset lag stayed above the threshold for 15 minutes: the sink is falling behind",
        ),
        AlarmSpec(
            "FunctionErrors",
            function("Errors", "Sum", "errors"),
            periods=3,
            breaching=2,
            what=f"invocations failed as a whole ({sink.destination.fate})",
        ),
        AlarmSpec(
            "FunctionThrottles",
            function("Throttles", "Sum", "throttles"),
            periods=3,
            breaching=3,
            what="invocations were throttled for 15 minutes (concurrency limit)",
        ),
        AlarmSpec(
            "RecordsDeadLettered",
            metrics.of_sink("RecordsDeadLettered", "Sum"),
            what="records could not be published and were written to the dead-letter bucket",
        ),
        AlarmSpec(
            "StreamHeldByGuard",
            metrics.of_sink("PartitionsHeldByStreamGuard", "Sum"),
            what="nothing was written to a target stream: its RecordDistributionStrategy is AUTO"
            " (partition keys ignored) or could not be read; its partitions wait for redelivery",
        ),
        AlarmSpec(
            "RecordsMalformed",
            metrics.of_sink("RecordsMalformed", "Sum"),
            what="a record in an event could not be read: its partition is held there",
        ),
        *_stream_alarms(metrics, sink.streams),
        *_delivery_delay_alarms(sink),
        AlarmSpec(
            "DurationNearTimeout",
            function("Duration", "Maximum", "duration max"),
            threshold=timeout_ms * config.duration_percent / 100,
            periods=3,
            breaching=2,
            what=f"invocations ran past {config.duration_percent}% of the function timeout",
        ),
    )


def _delivery_delay_alarms(sink: MonitoredSink) -> tuple[AlarmSpec, ...]:
    """With deliveryDelayAlarmSeconds: records reached the stream that late for 15 minutes."""
    seconds = sink.alarms.delivery_delay_seconds
    if seconds is None:
        return ()
    return (
        AlarmSpec(
            "DeliveryDelay",
            sink.metrics.of_sink("DeliveryDelay", "Maximum", "delivery delay (max)"),
            threshold=seconds * 1000,
            periods=3,
            breaching=3,
            what=(
                f"records reached the stream more than {seconds} s after their Kafka timestamps"
                " for 15 minutes: the data is late"
            ),
        ),
    )


def _stream_alarms(metrics: SinkMetrics, streams: Sequence[StreamTarget]) -> tuple[AlarmSpec, ...]:
    """One alarm per target stream (the default stream's without a stream id)."""
    return tuple(
        AlarmSpec(
            "StreamWriteThrottling",
            metrics.of_stream(target, "WriteProvisionedThroughputExceeded", "Sum"),
            periods=3,
            breaching=3,
            what="Kinesis throttled writes for 15 minutes in a row"
            + (f" (stream {target.stream_id})" if target.stream_id else ""),
            stream=target.stream_id,
        )
        for target in streams
    )


def _mapping_alarms(sink: MonitoredSink, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
    """One mapping's alarms, in the order of its metric groups: what it gave up on (the
    destination's), whether it polls, then its errors (the destination's delivery errors last)."""
    # A table, one spec per alarm (as above).
    metrics, destination, topic = sink.metrics, sink.destination, mapping.topic
    of = metrics.of_mapping
    return (
        *destination.discard_alarms(metrics, mapping),
        # Lambda emits PolledEventCount on every poll, 0 for an empty one: no datapoint at all
        # means the mapping is not polling (network, authentication, permissions, disabled).
        AlarmSpec(
            "MappingNotPolling",
            of(mapping, "PolledEventCount", statistic="SampleCount"),
            periods=3,
            breaching=3,
            what=f"the event source mapping for {topic} has not polled the topic for 15 minutes",
            topic=topic,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cw.TreatMissingData.BREACHING,
        ),
        *(
            AlarmSpec(
                entry,
                of(mapping, metric),
                periods=3,
                breaching=breaching,
                what=f"the event source mapping for {topic} {what}",
                topic=topic,
            )
            for entry, metric, breaching, what in _ERROR_COUNTS
        ),
        *_schema_registry_alarms(sink, mapping),
        *destination.delivery_alarms(metrics, mapping),
    )


def _schema_registry_alarms(sink: MonitoredSink, mapping: TopicMapping) -> tuple[AlarmSpec, ...]:
    """With a schema registry, the mapping's records it could not validate: they went to the
    on-failure destination, not to the stream. Lambda emits the count only when it is not 0."""
    if sink.source.schema_registry is None:
        return ()
    return (
        AlarmSpec(
            "MappingSchemaRegistryErrors",
            sink.metrics.of_mapping(mapping, "SchemaRegistryErrorCount"),
            what=(
                f"the event source mapping for {mapping.topic} could not validate records"
                f" against the schema registry (they go to {sink.destination.label})"
            ),
            topic=mapping.topic,
        ),
    )
