"""On-call view of the sink: one CloudWatch dashboard, alarms, and the SNS topic they notify."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import AlarmConfig, FunctionConfig, MskCluster
from infra.sink_function import TopicMapping

PERIOD: Final = Duration.minutes(5)
WIDTH: Final = 24  # dashboard grid columns
# The function's own metrics (Powertools EMF, dimension `service`); see the sink's README section.
SINK_METRICS: Final = (
    "RecordsReceived",
    "RecordsPublished",
    "RecordsFailed",
    "RecordsDeadLettered",
    "RecordsThrottled",
    "RetryAttempts",
    "PutRecordsCalls",
    "BytesPublished",
    "PublishLatency",
)


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
        cluster: MskCluster,
        stream: kinesis.IStream,
        alarms: AlarmConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        self._function = function
        self._function_config = function_config
        self._stream = stream
        self.topic = self._alarm_topic(alarms.email)
        self.alarms: dict[str, cw.Alarm] = {}

        lag = self._lambda("OffsetLag", "Maximum", "offset lag (max)")
        errors = self._lambda("Errors", "Sum", "errors")
        throttles = self._lambda("Throttles", "Sum", "throttles")
        duration_max = self._lambda("Duration", "Maximum", "duration max")
        dead_lettered = self._sink("RecordsDeadLettered", "Sum")
        write_throttled = self._kinesis("WriteProvisionedThroughputExceeded", "Sum")
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
        self._alarm(
            "StreamWriteThrottling",
            write_throttled,
            threshold=1,
            evaluate=3,
            breaching=3,
            what="Kinesis throttled writes for 15 minutes in a row",
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
                "a discarded batch could not be written to the dead-letter bucket: those"
                " records exist only in Kafka now"
            ),
        )
        for mapping in mappings:
            discarded = cw.MathExpression(
                expression="dropped + delivered",
                using_metrics={
                    "dropped": self._mapping(mapping, "DroppedEventCount"),
                    "delivered": self._mapping(mapping, "OnFailureDestinationDeliveredEventCount"),
                },
                label=f"{mapping.topic}: discarded by the event source mapping",
                period=PERIOD,
            )
            self._alarm(
                f"MappingDiscarded-{mapping.topic}",
                discarded,
                threshold=1,
                evaluate=1,
                breaching=1,
                what=(
                    f"the event source mapping for {mapping.topic} gave up on records"
                    " (dropped, or sent whole batches to the dead-letter bucket)"
                ),
            )

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-sink",
            default_interval=Duration.hours(3),
        )
        self._build_dashboard(mappings, cluster, timeout_ms)

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

    def _kinesis(self, name: str, statistic: str, label: str | None = None) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/Kinesis",
            metric_name=name,
            dimensions_map={"StreamName": self._stream.stream_name},
            statistic=statistic,
            period=PERIOD,
            label=label or name,
        )

    @staticmethod
    def _mapping(mapping: TopicMapping, name: str, label: str | None = None) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/Lambda",
            metric_name=name,
            dimensions_map={"EventSourceMappingUUID": mapping.mapping_id},
            statistic="Sum",
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
        # CloudWatch publishes alarm notifications to the encrypted topic with this key.
        key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey"
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="MSK -> Kinesis sink alarms",
            master_key=key,
            enforce_ssl=True,
        )
        if email is not None:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        evaluate: int,
        breaching: int,
        what: str,
    ) -> None:
        alarm = cw.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluate,
            datapoints_to_alarm=breaching,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # No data means no traffic (or no failures), which is not a problem in itself.
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=f"{what}. Runbook: README, section Runbook, entry {name}.",
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[name] = alarm

    # --- dashboard -----------------------------------------------------------------------------

    def _build_dashboard(
        self, mappings: Sequence[TopicMapping], cluster: MskCluster, timeout_ms: int
    ) -> None:
        topics = ", ".join(mapping.topic for mapping in mappings)
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=(
                    f"# MSK → Kinesis sink\nTopics **{topics}** of cluster **{cluster.name}** →"
                    f" stream **{self._stream.stream_name}**. Every alarm has a runbook entry in"
                    " the README (section *Runbook*). Healthy: lag flat or falling, no errors,"
                    " nothing dead-lettered, published ≈ received."
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
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Offset lag (records behind, max over partitions)",
                left=[self._lambda("OffsetLag", "Maximum", "function offset lag")],
                right=[
                    cw.Metric(
                        namespace="AWS/Kafka",
                        metric_name="SumOffsetLag",
                        dimensions_map={
                            "Cluster Name": cluster.name,
                            "Consumer Group": mapping.consumer_group_id,
                            "Topic": mapping.topic,
                        },
                        statistic="Maximum",
                        period=PERIOD,
                        label=f"{mapping.topic} (MSK, sum over partitions)",
                    )
                    for mapping in mappings
                ],
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
                        ("OnFailureDestinationDeliveredEventCount", "sent to S3"),
                    )
                ]
                + [self._lambda("DestinationDeliveryFailures", "Sum", "S3 delivery failures")],
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
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Stream: incoming records",
                left=[self._kinesis("IncomingRecords", "Sum", "incoming records")],
                right=[self._sink("RecordsPublished", "Sum", "published by the sink")],
                width=8,
            ),
            cw.GraphWidget(
                title="Stream: incoming bytes",
                left=[self._kinesis("IncomingBytes", "Sum", "incoming bytes")],
                right=[self._sink("BytesPublished", "Sum", "published by the sink")],
                width=8,
            ),
            cw.GraphWidget(
                title="Stream: write throttling",
                left=[
                    self._kinesis("WriteProvisionedThroughputExceeded", "Sum", "throttled writes"),
                    self._kinesis("PutRecords.ThrottledRecords", "Sum", "throttled records"),
                ],
                width=8,
            ),
        )
