"""The sink's alarms as data: one spec per alarm (infra.cloudwatch.AlarmSpec), each with an entry
in docs/runbook.md. The on-failure destination's alarms are its own (infra.destinations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aws_cdk import aws_cloudwatch as cw

from infra.cloudwatch import AlarmSpec, SinkMetrics

if TYPE_CHECKING:
    from infra.config import AlarmConfig
    from infra.destinations import FailureDestination
    from infra.event_sources import TopicMapping
    from infra.stream import StreamTarget


def alarm_specs(
    metrics: SinkMetrics,
    config: AlarmConfig,
    *,
    timeout_seconds: int,
    streams: Sequence[StreamTarget],
    mappings: Sequence[TopicMapping],
    destination: FailureDestination,
) -> tuple[AlarmSpec, ...]:
    """Every alarm of the sink: the function's and the streams', the destination's, then each
    mapping's."""
    return (
        *_function_alarms(metrics, config, timeout_seconds, streams, destination),
        *destination.alarms(metrics),
        *(spec for mapping in mappings for spec in _mapping_alarms(metrics, mapping, destination)),
    )


def _function_alarms(
    metrics: SinkMetrics,
    config: AlarmConfig,
    timeout_seconds: int,
    streams: Sequence[StreamTarget],
    destination: FailureDestination,
) -> tuple[AlarmSpec, ...]:
    # A table, one spec per alarm: it grows with each alarm and is meant to be read whole, so
    # it may run past 60 lines rather than be cut into pieces that mean nothing alone.
    function = metrics.of_function
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
            threshold=1,
            periods=3,
            breaching=2,
            what=f"invocations failed as a whole ({destination.fate})",
        ),
        AlarmSpec(
            "FunctionThrottles",
            function("Throttles", "Sum", "throttles"),
            threshold=1,
            periods=3,
            breaching=3,
            what="invocations were throttled for 15 minutes (concurrency limit)",
        ),
        AlarmSpec(
            "RecordsDeadLettered",
            metrics.of_sink("RecordsDeadLettered", "Sum"),
            threshold=1,
            periods=1,
            breaching=1,
            what="records could not be published and were written to the dead-letter bucket",
        ),
        *_stream_alarms(metrics, streams),
        AlarmSpec(
            "DurationNearTimeout",
            function("Duration", "Maximum", "duration max"),
            threshold=timeout_seconds * 1000 * config.duration_percent / 100,
            periods=3,
            breaching=2,
            what=f"invocations ran past {config.duration_percent}% of the function timeout",
        ),
    )


def _stream_alarms(metrics: SinkMetrics, streams: Sequence[StreamTarget]) -> tuple[AlarmSpec, ...]:
    """One alarm per target stream (the default stream's without a stream id)."""
    return tuple(
        AlarmSpec(
            "StreamWriteThrottling",
            metrics.of_stream(target, "WriteProvisionedThroughputExceeded", "Sum"),
            threshold=1,
            periods=3,
            breaching=3,
            what="Kinesis throttled writes for 15 minutes in a row"
            + (f" (stream {target.stream_id})" if target.stream_id else ""),
            stream=target.stream_id,
        )
        for target in streams
    )


def _mapping_alarms(
    metrics: SinkMetrics, mapping: TopicMapping, destination: FailureDestination
) -> tuple[AlarmSpec, ...]:
    """One mapping's alarms, in the order of its metric groups: what it gave up on (the
    destination's), whether it polls, then its errors (the destination's delivery errors last)."""
    # A table, one spec per alarm (as above).
    topic, of = mapping.topic, metrics.of_mapping
    return (
        *destination.discard_alarms(metrics, mapping),
        # Lambda emits PolledEventCount on every poll, 0 for an empty one: no datapoint at all
        # means the mapping is not polling (network, authentication, permissions, disabled).
        AlarmSpec(
            "MappingNotPolling",
            of(mapping, "PolledEventCount", statistic="SampleCount"),
            threshold=1,
            periods=3,
            breaching=3,
            what=f"the event source mapping for {topic} has not polled the topic for 15 minutes",
            topic=topic,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cw.TreatMissingData.BREACHING,
        ),
        # The ErrorCount group: each metric exists only when an error happened.
        AlarmSpec(
            "MappingPollingErrors",
            of(mapping, "PollingErrorCount"),
            threshold=1,
            periods=3,
            breaching=3,
            what=f"the event source mapping for {topic} could not poll the cluster for 15 minutes",
            topic=topic,
        ),
        AlarmSpec(
            "MappingInvokeErrors",
            of(mapping, "InvokeErrorCount"),
            threshold=1,
            periods=3,
            breaching=2,
            what=f"the event source mapping for {topic} could not invoke the function",
            topic=topic,
        ),
        AlarmSpec(
            "MappingCommitErrors",
            of(mapping, "CommitErrorCount"),
            threshold=1,
            periods=3,
            breaching=2,
            what=f"the event source mapping for {topic} could not commit offsets to the cluster",
            topic=topic,
        ),
        *destination.delivery_alarms(metrics, mapping),
    )
