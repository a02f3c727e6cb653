"""The stack: composes the stream, dead letters, sink function and monitoring constructs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from infra.config import SinkConfig
from infra.dead_letters import DeadLetterBucket
from infra.monitoring import SinkMonitoring
from infra.sink_function import SinkFunction
from infra.stream import SinkStream

KIB = 1024


class MskKinesisSinkStack(Stack):
    """MSK topics -> sink function -> Kinesis stream, with dead letters and monitoring."""

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
        self.stream = SinkStream(self, "Stream", config=config.stream)
        self.dead_letters = DeadLetterBucket(
            self, "DeadLetters", retention_days=config.dead_letter_retention_days
        )
        self.sink = SinkFunction(
            self,
            "Sink",
            source=config.source,
            config=config.function,
            stream=self.stream.stream,
            stream_key_arn=self.stream.key_arn,
            max_record_bytes=config.stream.max_record_size_kib * KIB,
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
            stream=self.stream.stream,
            alarms=config.alarms,
        )

        CfnOutput(self, "StreamArn", value=self.stream.stream.stream_arn)
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
