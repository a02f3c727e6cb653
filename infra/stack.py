"""The stack: composes the streams, dead letters, sink function, event sources and monitoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Aws, CfnOutput, CfnResource, Stack
from constructs import Construct

from infra.config import ConfigError, SinkConfig
from infra.dead_letters import DeadLetterBucket
from infra.destinations import failure_destination
from infra.event_sources import KafkaEventSources, mapping_access
from infra.monitoring import SinkMonitoring
from infra.plan import deployment_warnings
from infra.sink_function import SinkFunction
from infra.stream import build_streams
from msk_kinesis_sink.limits import MAX_STACK_RESOURCES, MAX_TEMPLATE_BYTES


class MskKinesisSinkStack(Stack):
    """Kafka topics -> sink function -> Kinesis stream(s), with dead letters and monitoring."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: SinkConfig, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Ordered, lossless MSK -> Kinesis Data Streams sink (Lambda)",
            # Written compact: a template of many topics stays within CloudFormation's 1 MB
            # (`cdk synth` still prints it readable).
            suppress_template_indentation=True,
            **kwargs,
        )
        self.config = config
        # Settings that can't help (docs/scaling.md): shown by synth and deploy, never refused.
        for warning in deployment_warnings(config):
            Annotations.of(self).add_warning_v2("msk-kinesis-sink:capacity", warning)
        self.streams = build_streams(self, config)
        self.dead_letters = DeadLetterBucket(
            self, "DeadLetters", retention_days=config.dead_letter_retention_days
        )
        self.on_failure = failure_destination(
            self, "OnFailure", source=config.source, bucket=self.dead_letters.bucket
        )
        self.sink = SinkFunction(
            self,
            "Sink",
            mapping_access=mapping_access(config.source, self.on_failure.statements),
            mappings_write_dead_letters=self.on_failure.writes_dead_letters,
            config=config.function,
            streams=self.streams,
            dead_letter_bucket=self.dead_letters.bucket,
            dead_letter_key_arn=self.dead_letters.key.key_arn,
        )
        self.sources = KafkaEventSources(
            self,
            "Sources",
            function=self.sink.function,
            source=config.source,
            on_failure=self.on_failure,
        )
        self.monitoring = SinkMonitoring(
            self,
            "Monitoring",
            function=self.sink.function,
            function_config=config.function,
            mappings=self.sources.mappings,
            source=config.source,
            on_failure=self.on_failure,
            streams=self.streams.targets,
            alarms=config.alarms,
        )
        self._add_outputs()
        self._check_resource_count()

    def _check_resource_count(self) -> None:
        """Refuse, in one line, a stack CloudFormation would refuse for its number of resources."""
        # CDK adds its metadata resource at synth.
        count = sum(isinstance(node, CfnResource) for node in self.node.find_all()) + 1
        if count > MAX_STACK_RESOURCES:
            raise ConfigError(
                f"this configuration makes a stack of {count} resources, more than the"
                f" {MAX_STACK_RESOURCES} CloudFormation takes: fewer topics"
                f" ({len(self.config.source.topic_names)}) or streams entries"
                f" ({len(self.config.streams)}) per stack"
            )

    def _add_outputs(self) -> None:
        """Where things are (the on-failure destination outputs its own)."""
        if self.streams.default is not None:
            CfnOutput(self, "StreamArn", value=self.streams.default.stream.stream_arn)
        CfnOutput(self, "FunctionName", value=self.sink.function.function_name)
        CfnOutput(self, "DeadLetterBucketName", value=self.dead_letters.bucket.bucket_name)
        CfnOutput(
            self,
            "DeadLetterKeyArn",
            value=self.dead_letters.key.key_arn,
            description="Readers of dead letters need kms:Decrypt on this key (and s3:GetObject)",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        CfnOutput(
            self,
            "DashboardUrl",
            value=(
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards:name={self.monitoring.dashboard.dashboard_name}"
            ),
        )


def check_template_size(template: Path, config: SinkConfig) -> None:
    """Refuse, in one line, a synthesized template CloudFormation would refuse for its size
    (within MAX_TOPICS, only topic names far longer than usual make one that big)."""
    size = template.stat().st_size
    if size <= MAX_TEMPLATE_BYTES:
        return
    topics = len(config.source.topic_names)
    raise ConfigError(
        f"topics: the template is {size:,} bytes, more than the {MAX_TEMPLATE_BYTES:,}"
        f" CloudFormation takes; about {topics * MAX_TEMPLATE_BYTES // size} of these {topics}"
        " topics (with names this long) fit one stack: split them over stacks"
    )
