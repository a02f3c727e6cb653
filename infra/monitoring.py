"""On-call view of the sink: one CloudWatch dashboard, alarms, and the SNS topic they notify.

Every alarm is named `<stack>-<entry>` and its description links to `<entry>` in the runbook
(docs/runbook.md); per-mapping alarms are `<stack>-<Entry>-<topic>`, entry `<Entry>-<topic>`.
A `streams` entry's alarms are `<stack>-<Entry>-<stream id>`, entry `<Entry>` (the default
stream's keep `<stack>-<Entry>`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import AlarmConfig, DestinationKind, FunctionConfig, SourceConfig, SourceKind
from infra.destinations import FailureDestination
from infra.event_sources import TopicMapping
from infra.stream import StreamTarget
from msk_kinesis_sink.report import METRICS

PERIOD: Final = Duration.minutes(5)
WIDTH: Final = 24  # dashboard grid columns
# Where alarm descriptions point when no runbookUrl is configured (the repository's copy).
RUNBOOK_PATH: Final = "docs/runbook.md"
# CloudWatch AlarmName: 1-255 characters.
MAX_ALARM_NAME_CHARS: Final = 255
_PER_MAPPING: Final = "<topic>"
# Per-mapping alarms on what the mappings give up on: the runbook's entry (what happened, what
# to do) depends on what the destination holds. (discarded, delivery errors, short label)
_DISCARD_ENTRIES: Final = {
    DestinationKind.S3: ("MappingDiscarded", "MappingDeliveryErrors", "S3"),
    DestinationKind.KAFKA: ("MappingDiscardedToKafka", "MappingKafkaDeliveryErrors", "Kafka"),
    DestinationKind.SQS: ("MappingDiscardedToNotice", "MappingNoticeDeliveryErrors", "SQS"),
    DestinationKind.SNS: ("MappingDiscardedToNotice", "MappingNoticeDeliveryErrors", "SNS"),
}
# A discard notice in the queue this long has not been acted on; Kafka may drop its records.
NOTICE_WAITING_SECONDS: Final = 86_400
# The function's own metrics (Powertools EMF, dimension `service`); see docs/guarantee.md.
SINK_METRICS: Final = tuple(metric.name for metric in METRICS)


class SinkMonitoring(Construct):
    """Exposes `topic` (alarm notifications), `dashboard` and `alarms` (by name)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        function_config: FunctionConfig,
        mappings: Sequence[TopicMapping],
        source: SourceConfig,
        on_failure: FailureDestination,
        streams: Sequence[StreamTarget],
        alarms: AlarmConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        self._function = function
        self._function_config = function_config
        self._on_failure = on_failure
        self._streams = streams
        self._stack_name = Stack.of(self).stack_name
        self._runbook = alarms.runbook_url or RUNBOOK_PATH
        self.topic = self._alarm_topic(alarms.email)
        self.alarms: dict[str, cw.Alarm] = {}

        lag = self._lambda("OffsetLag", "Maximum", "offset lag (max)")
        errors = self._lambda("Errors", "Sum", "errors")
        throttles = self._lambda("Throttles", "Sum", "throttles")
        duration_max = self._lambda("Duration", "Maximum", "duration max")
        dead_lettered = self._sink("RecordsDeadLettered", "Sum")
        timeout_ms = function_config.timeout_seconds * 1000
        duration_threshold = timeout_ms * alarms.duration_percent / 100

        self._alarm(
            "OffsetLag",
            lag,
            threshold=alarms.offset_lag_threshold,
            evaluate=3,
            breaching=3,
            what="offset lag stayed above the threshold for 15 minutes: the sink is falling behind",
        )
        self._alarm(
            "FunctionErrors",
            errors,
            threshold=1,
            evaluate=3,
            breaching=2,
            what="invocations failed as a whole (the batch is retried, then sent to S3)",
        )
        self._alarm(
            "FunctionThrottles",
            throttles,
            threshold=1,
            evaluate=3,
            breaching=3,
            what="invocations were throttled for 15 minutes (concurrency limit)",
        )
        self._alarm(
            "RecordsDeadLettered",
            dead_lettered,
            threshold=1,
            evaluate=1,
            breaching=1,
            what="records could not be published and were written to the dead-letter bucket",
        )
        for target in streams:
            self._alarm(
                "StreamWriteThrottling",
                self._kinesis(target, "WriteProvisionedThroughputExceeded", "Sum"),
                stream=target.stream_id,
                threshold=1,
                evaluate=3,
                breaching=3,
                what=(
                    "Kinesis throttled writes for 15 minutes in a row"
                    + (f" (stream {target.stream_id})" if target.stream_id else "")
                ),
            )
        self._alarm(
            "DurationNearTimeout",
            duration_max,
            threshold=duration_threshold,
            evaluate=3,
            breaching=2,
            what=f"invocations ran past {alarms.duration_percent}% of the function timeout",
        )
        self._alarm(
            "DestinationDeliveryFailures",
            self._lambda("DestinationDeliveryFailures", "Sum", "on-failure delivery failures"),
            threshold=1,
            evaluate=1,
            breaching=1,
            what=(
                f"a discarded batch could not be delivered to {on_failure.label}: those"
                " records exist only in Kafka now"
            ),
        )
        self._notice_alarms()
        for mapping in mappings:
            self._mapping_alarms(mapping)

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-sink",
            default_interval=Duration.hours(3),
        )
        self._build_dashboard(mappings, source, timeout_ms)
        self._notice_widget()

    def _notice_widget(self) -> None:
        queue, topic = self._on_failure.queue, self._on_failure.topic
        if queue is not None:
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="Discard notices (SQS): waiting, and age of the oldest (s)",
                    left=[queue.metric_approximate_number_of_messages_visible(period=PERIOD)],
                    right=[
                        queue.metric_approximate_age_of_oldest_message(
                            statistic="Maximum", period=PERIOD
                        )
                    ],
                    right_annotations=[
                        cw.HorizontalAnnotation(value=NOTICE_WAITING_SECONDS, label="alarm")
                    ],
                    width=WIDTH,
                )
            )
        if topic is not None:
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="Discard notices (SNS): published, delivered, failed",
                    left=[
                        topic.metric_number_of_messages_published(period=PERIOD),
                        topic.metric_number_of_notifications_delivered(period=PERIOD),
                        topic.metric_number_of_notifications_failed(period=PERIOD),
                    ],
                    width=WIDTH,
                )
            )

    def _notice_alarms(self) -> None:
        """SQS and SNS hold only a notice of a discarded batch: the records are still in Kafka,
        and only until its retention removes them."""
        queue, topic = self._on_failure.queue, self._on_failure.topic
        if queue is not None:
            self._alarm(
                "DiscardNoticesWaiting",
                queue.metric_approximate_age_of_oldest_message(statistic="Maximum", period=PERIOD),
                threshold=NOTICE_WAITING_SECONDS,
                evaluate=1,
                breaching=1,
                what=(
                    "a discard notice has waited in the queue for a day: its records are"
                    " only in Kafka, until the topic's retention removes them"
                ),
            )
        if topic is not None:
            self._alarm(
                "DiscardNoticesFailed",
                topic.metric_number_of_notifications_failed(statistic="Sum", period=PERIOD),
                threshold=1,
                evaluate=1,
                breaching=1,
                what="SNS could not deliver a discard notice to a subscriber",
            )

    def _mapping_alarms(self, mapping: TopicMapping) -> None:
        """Alarms on one mapping's own metrics (AWS: "Types of metrics for Lambda functions",
        section "Event source mapping metrics"; dimension EventSourceMappingUUID)."""
        topic = mapping.topic
        # The two exist only when something happened; FILL makes the sum defined when one is
        # missing (a plain a + b has no value then, and the alarm would never see the other).
        discarded = cw.MathExpression(
            expression="FILL(dropped, 0) + FILL(delivered, 0)",
            using_metrics={
                "dropped": self._mapping(mapping, "DroppedEventCount"),
                "delivered": self._mapping(mapping, "OnFailureDestinationDeliveredEventCount"),
            },
            label=f"{topic}: discarded by the event source mapping",
            period=PERIOD,
        )
        discarded_entry, delivery_entry, _ = _DISCARD_ENTRIES[self._on_failure.kind]
        self._alarm(
            discarded_entry,
            discarded,
            topic=topic,
            threshold=1,
            evaluate=1,
            breaching=1,
            what=(
                f"the event source mapping for {topic} gave up on records (their batch went"
                f" to {self._on_failure.label}, or was dropped)"
            ),
        )
        # Lambda emits PolledEventCount on every poll, 0 for an empty one: no datapoint at all
        # means the mapping is not polling (network, authentication, permissions, disabled).
        self._alarm(
            "MappingNotPolling",
            self._mapping(mapping, "PolledEventCount", statistic="SampleCount"),
            topic=topic,
            threshold=1,
            evaluate=3,
            breaching=3,
            comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cw.TreatMissingData.BREACHING,
            what=f"the event source mapping for {topic} has not polled the topic for 15 minutes",
        )
        # The ErrorCount group: each metric exists only when an error happened.
        for entry, metric, evaluate, breaching, what in (
            (
                "MappingPollingErrors",
                "PollingErrorCount",
                3,
                3,
                "could not poll the cluster for 15 minutes",
            ),
            ("MappingInvokeErrors", "InvokeErrorCount", 3, 2, "could not invoke the function"),
            (
                "MappingCommitErrors",
                "CommitErrorCount",
                3,
                2,
                "could not commit offsets to the cluster",
            ),
            (
                delivery_entry,
                "OnFailureDestinationDeliveryErrorCount",
                1,
                1,
                f"could not deliver a discarded batch to {self._on_failure.label}",
            ),
        ):
            self._alarm(
                entry,
                self._mapping(mapping, metric),
                topic=topic,
                threshold=1,
                evaluate=evaluate,
                breaching=breaching,
                what=f"the event source mapping for {topic} {what}",
            )

    # --- metrics -------------------------------------------------------------------------------

    def _lambda(self, name: str, statistic: str, label: str) -> cw.Metric:
        return self._function.metric(name, statistic=statistic, period=PERIOD, label=label)

    def _sink(self, name: str, statistic: str, label: str | None = None) -> cw.Metric:
        return cw.Metric(
            namespace=self._function_config.metrics_namespace,
            metric_name=name,
            dimensions_map={"service": self._function_config.service_name},
            statistic=statistic,
            period=PERIOD,
            label=label or name,
        )

    @staticmethod
    def _kinesis(
        target: StreamTarget, name: str, statistic: str, label: str | None = None
    ) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/Kinesis",
            metric_name=name,
            dimensions_map={"StreamName": target.stream.stream_name},
            statistic=statistic,
            period=PERIOD,
            label=label or name,
        )

    @staticmethod
    def _mapping(
        mapping: TopicMapping, name: str, label: str | None = None, *, statistic: str = "Sum"
    ) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"EventSourceMappingUUID": mapping.mapping_id},
            statistic=statistic,
            period=PERIOD,
            label=label or f"{mapping.topic} {name}",
        )

    # --- alarms --------------------------------------------------------------------------------

    def _alarm_topic(self, email: str | None) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the MSK -> Kinesis sink's alarm notifications",
            enable_key_rotation=True,
        )
        cloudwatch = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        # Only on behalf of this account's alarms: the service principal alone would let any
        # account's alarms use the key or the topic (the confused-deputy problem).
        this_account = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
        # CloudWatch needs the topic's key to publish to it (AWS SNS: "Enable compatibility
        # between event sources from AWS services and encrypted topics").
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublishToEncryptedTopic",
                principals=[cloudwatch],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions=this_account,
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="MSK -> Kinesis sink alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # The TLS-only topic policy replaces SNS's default one, which let the account publish.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublish",
                principals=[cloudwatch],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions=this_account,
            )
        )
        if email is not None:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _alarm(
        self,
        entry: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        evaluate: int,
        breaching: int,
        what: str,
        topic: str | None = None,
        stream: str | None = None,
        comparison: cw.ComparisonOperator = (
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
        # No data means no traffic (or no failures), which is not a problem in itself.
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> None:
        subject = topic or stream
        name = entry if subject is None else f"{entry}-{subject}"
        # A stream's alarms share their entry; a mapping's are `<Entry>-<topic>`.
        runbook_entry = entry if topic is None else f"{entry}-{_PER_MAPPING}"
        alarm = cw.Alarm(
            self,
            name,
            alarm_name=alarm_name(self._stack_name, entry, subject),
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluate,
            datapoints_to_alarm=breaching,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_description=(f"{what}. Runbook: {self._runbook}#{runbook_anchor(runbook_entry)}"),
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[name] = alarm

    # --- dashboard -----------------------------------------------------------------------------

    def _build_dashboard(
        self, mappings: Sequence[TopicMapping], source: SourceConfig, timeout_ms: int
    ) -> None:
        topics = ", ".join(mapping.topic for mapping in mappings)
        cluster = (
            f"cluster **{source.cluster.name}**"
            if source.cluster is not None
            else f"the self-managed cluster at **{', '.join(source.bootstrap_servers or ())}**"
        )
        _, _, destination = _DISCARD_ENTRIES[self._on_failure.kind]
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=(
                    f"# Kafka → Kinesis sink\nTopics **{topics}** of {cluster} →"
                    f" {self._destinations()}. Every alarm has an entry in the"
                    f" [runbook]({self._runbook}), named like the alarm without the"
                    " stack prefix. Healthy: lag flat or falling, no errors, nothing"
                    " dead-lettered, published ≈ received."
                ),
                width=WIDTH,
                height=2,
            ),
            cw.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=WIDTH, height=3
            ),
        )
        # Headline numbers for the last period: is it behind, is it moving, is it losing.
        self.dashboard.add_widgets(
            cw.SingleValueWidget(
                title="Now (last 5 minutes)",
                metrics=[
                    self._lambda("OffsetLag", "Maximum", "offset lag"),
                    self._sink("RecordsReceived", "Sum", "received"),
                    self._sink("RecordsPublished", "Sum", "published"),
                    self._sink("RecordsFailed", "Sum", "reported failed"),
                    self._sink("RecordsDeadLettered", "Sum", "dead-lettered"),
                    self._lambda("Errors", "Sum", "errors"),
                ],
                width=WIDTH,
                height=3,
            ),
        )
        # MSK's own consumer-lag metrics (AWS: "Monitor consumer lags") exist only for a
        # cluster in this account: a self-managed cluster has none, and a cluster reached
        # through a multi-VPC connection publishes them in its owner's account.
        msk_lag = [
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
            if source.cluster is not None and source.kind is SourceKind.MSK
        ]
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Offset lag (records behind, max over partitions)",
                left=[self._lambda("OffsetLag", "Maximum", "function offset lag")],
                right=msk_lag or None,
                width=12,
            ),
            cw.GraphWidget(
                title="Event source mappings: events",
                left=[
                    self._mapping(mapping, name, f"{mapping.topic} {label}")
                    for mapping in mappings
                    for name, label in (
                        ("PolledEventCount", "polled"),
                        ("InvokedEventCount", "invoked"),
                        ("FailedInvokeEventCount", "failed invoke"),
                        ("DroppedEventCount", "dropped"),
                        ("OnFailureDestinationDeliveredEventCount", f"sent to {destination}"),
                    )
                ]
                + [
                    self._lambda(
                        "DestinationDeliveryFailures", "Sum", f"{destination} delivery failures"
                    )
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Event source mappings: errors (each exists only when it happens)",
                left=[
                    self._mapping(mapping, name, f"{mapping.topic} {label}")
                    for mapping in mappings
                    for name, label in (
                        ("PollingErrorCount", "polling errors"),
                        ("InvokeErrorCount", "invoke errors"),
                        ("CommitErrorCount", "commit errors"),
                        (
                            "OnFailureDestinationDeliveryErrorCount",
                            f"{destination} delivery errors",
                        ),
                    )
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Event source mappings: polls, committed records, max offset lag",
                left=[
                    self._mapping(
                        mapping,
                        "PolledEventCount",
                        f"{mapping.topic} polls",
                        statistic="SampleCount",
                    )
                    for mapping in mappings
                ]
                + [
                    self._mapping(mapping, "CommittedEventCount", f"{mapping.topic} committed")
                    for mapping in mappings
                ],
                right=[
                    self._mapping(
                        mapping,
                        "MaxOffsetLag",
                        f"{mapping.topic} max offset lag",
                        statistic="Maximum",
                    )
                    for mapping in mappings
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Invocations, errors, throttles",
                left=[
                    self._lambda("Invocations", "Sum", "invocations"),
                    self._lambda("Errors", "Sum", "errors"),
                    self._lambda("Throttles", "Sum", "throttles"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Duration against the timeout (ms)",
                left=[
                    self._lambda("Duration", "p50", "p50"),
                    self._lambda("Duration", "p99", "p99"),
                    self._lambda("Duration", "Maximum", "max"),
                ],
                left_annotations=[cw.HorizontalAnnotation(value=timeout_ms, label="timeout")],
                width=8,
            ),
            cw.GraphWidget(
                title="Concurrency",
                left=[self._lambda("ConcurrentExecutions", "Maximum", "concurrent executions")],
                left_annotations=(
                    [
                        cw.HorizontalAnnotation(
                            value=self._function_config.reserved_concurrency, label="reserved"
                        )
                    ]
                    if self._function_config.reserved_concurrency is not None
                    else None
                ),
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Records: received, published, reported failed, dead-lettered",
                left=[
                    self._sink(name, "Sum")
                    for name in (
                        "RecordsReceived",
                        "RecordsPublished",
                        "RecordsFailed",
                        "RecordsDeadLettered",
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Throttled records, retries, PutRecords calls",
                left=[
                    self._sink(name, "Sum")
                    for name in ("RecordsThrottled", "RetryAttempts", "PutRecordsCalls")
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="PutRecords latency (ms)",
                left=[
                    self._sink("PublishLatency", "p50", "p50"),
                    self._sink("PublishLatency", "p99", "p99"),
                    self._sink("PublishLatency", "Maximum", "max"),
                ],
                width=8,
            ),
        )
        for target in self._streams:
            self._stream_row(target)

    def _destinations(self) -> str:
        """Where the records go, for the dashboard's header."""
        if len(self._streams) == 1 and not self._streams[0].patterns:
            return f"stream **{self._streams[0].stream.stream_name}**"
        return "streams " + ", ".join(
            f"**{target.stream.stream_name}** ("
            + (", ".join(f"`{p}`" for p in target.patterns) or "every other topic")
            + ")"
            for target in self._streams
        )

    def _stream_row(self, target: StreamTarget) -> None:
        """One row per stream. The sink's own totals count every stream, so they are drawn
        beside the stream's only when there is one stream."""
        only = len(self._streams) == 1
        if only:
            title = "Stream"
        else:
            title = f"Stream {target.stream_id}" if target.stream_id else "Default stream"
        published = [self._sink("RecordsPublished", "Sum", "published by the sink")]
        published_bytes = [self._sink("BytesPublished", "Sum", "published by the sink")]
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title=f"{title}: incoming records",
                left=[self._kinesis(target, "IncomingRecords", "Sum", "incoming records")],
                right=published if only else None,
                width=8,
            ),
            cw.GraphWidget(
                title=f"{title}: incoming bytes",
                left=[self._kinesis(target, "IncomingBytes", "Sum", "incoming bytes")],
                right=published_bytes if only else None,
                width=8,
            ),
            cw.GraphWidget(
                title=f"{title}: write throttling",
                left=[
                    self._kinesis(
                        target, "WriteProvisionedThroughputExceeded", "Sum", "throttled writes"
                    ),
                    self._kinesis(
                        target, "PutRecords.ThrottledRecords", "Sum", "throttled records"
                    ),
                ],
                width=8,
            ),
        )


def alarm_name(stack_name: str, entry: str, subject: str | None = None) -> str:
    """`<stack>-<entry>[-<subject>]` (a topic or a stream id), within CloudWatch's 255 characters.

    A subject too long to fit is cut and given a hash of its full name, so names stay unique.
    """
    name = f"{stack_name}-{entry}" if subject is None else f"{stack_name}-{entry}-{subject}"
    if len(name) <= MAX_ALARM_NAME_CHARS:
        return name
    assert subject is not None  # stack names and entries alone are far shorter
    digest = hashlib.sha256(subject.encode()).hexdigest()[:8]
    room = MAX_ALARM_NAME_CHARS - len(f"{stack_name}-{entry}--") - len(digest)
    return f"{stack_name}-{entry}-{subject[:room]}-{digest}"


def runbook_anchor(entry: str) -> str:
    """The anchor GitHub gives the runbook heading "### `<entry>`"."""
    return re.sub(r"[^a-z0-9_ -]", "", entry.lower()).replace(" ", "-")
