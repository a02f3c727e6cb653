"""The target Kinesis data streams: each created (KMS-encrypted with its own key) or imported by
ARN; the default stream and the `streams` entries, with the routes the function follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aws_cdk import CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import SinkConfig, StreamConfig, StreamMode
from infra.nag import acknowledge
from msk_kinesis_sink.settings import StreamRoute

KIB: Final = 1024
# RecordDistributionStrategy: Kinesis places records by the partition key producers supply.
USER_PARTITION_KEY: Final = "USER_PARTITION_KEY"


class SinkStream(Construct):
    """Exposes `stream` and, when the stream is encrypted with a customer managed key, `key_arn`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StreamConfig,
        description: str = "Encrypts the MSK -> Kinesis sink's target stream",
    ) -> None:
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
            description=description,
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
        if not provisioned:
            _place_records_by_partition_key(cfn_stream)
        self.key_arn = key.key_arn
        acknowledge(
            self.stream,
            "AwsSolutions-KDS3",
            (
                "A customer managed key instead of aws/kinesis: its key policy decides who may"
                " read the records (consumers need kms:Decrypt on it), it rotates yearly, and"
                " every use is in CloudTrail. The finding only asks for aws/kinesis."
            ),
        )


def _place_records_by_partition_key(stream: kinesis.CfnStream) -> None:
    """Per-key order needs shards placed by partition key. USER_PARTITION_KEY is the default,
    but stating it makes drift visible (a console switch to AUTO shows in `cdk diff`, and a
    deploy puts it back); CloudFormation takes the property only for ON_DEMAND streams. The
    function's stream guard watches it at run time."""
    stream.record_distribution_strategy = USER_PARTITION_KEY
    acknowledge(
        stream,
        "CloudFormation-Validate::F3002",
        (
            "RecordDistributionStrategy is a property of AWS::Kinesis::Stream (aws-cdk-lib's"
            " CfnStream has it, and cfn-lint's schema accepts it); the schema bundled with"
            " synth's CloudFormation Validate plugin predates it."
        ),
    )


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """A stream the function writes to: the default one (`stream_id` None) or a `streams` entry
    with the topic patterns routed to it."""

    stream_id: str | None
    stream: kinesis.IStream
    key_arn: str | None
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamTargets:
    """Every stream the function writes to, the default first, then `streams` as written."""

    targets: tuple[StreamTarget, ...]
    max_record_bytes: int

    @property
    def default(self) -> StreamTarget | None:
        return next((t for t in self.targets if t.stream_id is None), None)

    @property
    def key_arns(self) -> list[str]:
        return [t.key_arn for t in self.targets if t.key_arn is not None]

    @property
    def routes(self) -> tuple[StreamRoute, ...]:
        """The function's routes (STREAM_ROUTES), to each stream by ARN: first match wins."""
        return tuple(
            StreamRoute(pattern, target.stream.stream_arn)
            for target in self.targets
            for pattern in target.patterns
        )


def build_streams(scope: Construct, config: SinkConfig) -> StreamTargets:
    """The default stream (construct id "Stream", as with one stream) and, under "Streams",
    one construct per `streams` entry, named by its id (renaming an entry replaces its stream)."""
    targets: list[StreamTarget] = []
    if config.default_stream:
        default = SinkStream(scope, "Stream", config=config.stream)
        targets.append(StreamTarget(None, default.stream, default.key_arn))
    if config.streams:
        group = Construct(scope, "Streams")
        for stream_id, entry in config.streams.items():
            built = SinkStream(
                group,
                stream_id,
                config=entry,
                description=f"Encrypts the MSK -> Kinesis sink's stream {stream_id}",
            )
            targets.append(StreamTarget(stream_id, built.stream, built.key_arn, entry.topics))
            CfnOutput(
                built,
                "Arn",
                value=built.stream.stream_arn,
                description=f"ARN of streams.{stream_id} ({', '.join(entry.topics)})",
            )
    return StreamTargets(tuple(targets), config.max_record_size_kib * KIB)
