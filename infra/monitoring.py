"""On-call view of the sink: one CloudWatch dashboard, alarms, and the SNS topic they notify.

Every alarm is named `<stack>-<entry>` and its description links to `<entry>` in the runbook
(docs/runbook.md); per-mapping alarms are `<stack>-<Entry>-<topic>`, entry `<Entry>-<topic>`.
A `streams` entry's alarms are `<stack>-<Entry>-<stream id>`, entry `<Entry>` (the default
stream's keep `<stack>-<Entry>`). The alarms are specs (infra.alarms, and the on-failure
destination's own); the dashboard is one helper per row (infra.dashboard).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
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

from infra.alarms import alarm_specs
from infra.cloudwatch import AlarmSpec, SinkMetrics
from infra.config import AlarmConfig, FunctionConfig, SourceConfig
from infra.dashboard import dashboard_rows
from infra.destinations import FailureDestination
from infra.event_sources import TopicMapping
from infra.stream import StreamTarget
from msk_kinesis_sink.report import METRICS
from msk_kinesis_sink.runbook import RUNBOOK_PATH, runbook_anchor

# CloudWatch AlarmName: 1-255 characters.
MAX_ALARM_NAME_CHARS: Final = 255
# The function's own metrics (Powertools EMF, dimension `service`); see docs/guarantee.md.
SINK_METRICS: Final = tuple(metric.name for metric in METRICS)


@dataclass(frozen=True, slots=True)
class MonitoredSink:
    """What the alarms (infra.alarms) and the dashboard (infra.dashboard) are about."""

    metrics: SinkMetrics
    function: FunctionConfig
    source: SourceConfig
    alarms: AlarmConfig
    mappings: tuple[TopicMapping, ...]
    streams: tuple[StreamTarget, ...]
    destination: FailureDestination


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
        self._stack_name = Stack.of(self).stack_name
        self._runbook = alarms.runbook_url or RUNBOOK_PATH
        self.topic = self._alarm_topic(alarms.email)
        sink = MonitoredSink(
            metrics=SinkMetrics(
                function=function,
                namespace=function_config.metrics_namespace,
                service=function_config.service_name,
            ),
            function=function_config,
            source=source,
            alarms=alarms,
            mappings=tuple(mappings),
            streams=tuple(streams),
            destination=on_failure,
        )
        self.alarms: dict[str, cw.Alarm] = {}
        for spec in alarm_specs(sink):
            self.alarms[spec.name] = self._alarm(spec)
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self._stack_name}-sink",
            default_interval=Duration.hours(3),
        )
        for row in dashboard_rows(sink, runbook=self._runbook, alarms=list(self.alarms.values())):
            self.dashboard.add_widgets(*row)

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

    def _alarm(self, spec: AlarmSpec) -> cw.Alarm:
        runbook = f"{self._runbook}#{runbook_anchor(spec.runbook_entry)}"
        alarm = spec.metric.create_alarm(
            self,
            spec.name,
            alarm_name=alarm_name(self._stack_name, spec.entry, spec.subject),
            alarm_description=f"{spec.what}. Runbook: {runbook}",
            threshold=spec.threshold,
            evaluation_periods=spec.periods,
            datapoints_to_alarm=spec.breaching,
            comparison_operator=spec.comparison,
            treat_missing_data=spec.missing,
        )
        action = cw_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm


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
