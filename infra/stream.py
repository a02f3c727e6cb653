"""The target Kinesis data stream: created (KMS-encrypted with its own key) or imported by ARN."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import StreamConfig, StreamMode


class SinkStream(Construct):
    """Exposes `stream` and, when the stream is encrypted with a customer managed key, `key_arn`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StreamConfig) -> None:
        super().__init__(scope, construct_id)
        self.stream: kinesis.IStream
        self.key_arn: str | None
        if config.existing_arn is not None:
            self.stream = kinesis.Stream.from_stream_arn(self, "Imported", config.existing_arn)
            self.key_arn = config.existing_kms_key_arn
            return

        key = kms.Key(
            self,
            "Key",
            description="Encrypts the MSK -> Kinesis sink's target stream",
            enable_key_rotation=True,
            # Records in the stream stay readable only while this key exists.
            removal_policy=RemovalPolicy.RETAIN,
        )
        provisioned = config.mode is StreamMode.PROVISIONED
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=config.name,
            stream_mode=(
                kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND
            ),
            shard_count=config.shard_count if provisioned else None,
            retention_period=Duration.hours(config.retention_hours),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The L2 construct has no property for it yet; the CloudFormation resource does.
        cfn_stream = self.stream.node.default_child
        assert isinstance(cfn_stream, kinesis.CfnStream)
        cfn_stream.max_record_size_in_kib = config.max_record_size_kib
        self.key_arn = key.key_arn
        Validations.of(self.stream).acknowledge(
            Acknowledgment(
                id="AwsSolutions-KDS3",
                reason=(
                    "A customer managed key instead of aws/kinesis: its key policy decides who may"
                    " read the records (consumers need kms:Decrypt on it), it rotates yearly, and"
                    " every use is in CloudTrail. The finding only asks for aws/kinesis."
                ),
            )
        )
