"""The stack: composes the streams, dead letters, sink function and monitoring constructs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from infra.config import SinkConfig
from infra.dead_letters import DeadLetterBucket
from infra.monitoring import SinkMonitoring
from infra.sink_function import SinkFunction
from infra.stream import build_streams


class MskKinesisSinkStack(Stack):
    """MSK topics -> sink function -> Kinesis stream(s), with dead letters and monitoring."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: SinkConfig, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Ordered, lossless MSK -> Kinesis Data Streams sink (Lambda)",
            **kwargs,
        )
        self.config = config
        self.streams = build_streams(self, config)
        self.dead_letters = DeadLetterBucket(
            self, "DeadLetters", retention_days=config.dead_letter_retention_days
        )
        self.sink = SinkFunction(
            self,
            "Sink",
            source=config.source,
            config=config.function,
            streams=self.streams,
            dead_letter_bucket=self.dead_letters.bucket,
            dead_letter_key_arn=self.dead_letters.key.key_arn,
        )
        self.monitoring = SinkMonitoring(
            self,
            "Monitoring",
            function=self.sink.function,
            function_config=config.function,
            mappings=self.sink.mappings,
            cluster=config.source.cluster,
            streams=self.streams.targets,
            alarms=config.alarms,
        )

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
