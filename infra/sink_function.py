"""The sink function, its least-privilege role and log group, and one MSK event source per topic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jsii
from aws_cdk import (
    Acknowledgment,
    AssetHashType,
    Aws,
    BundlingOptions,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    Stack,
    Token,
    Validations,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.bundling import build_function_asset, check_wheelhouse
from infra.config import (
    Architecture,
    AuthMode,
    FunctionConfig,
    LogLevel,
    SourceConfig,
    StartingPosition,
    function_settings,
)
from infra.dead_letters import FUNCTION_PREFIX
from infra.stream import StreamTargets

ASSET_DIR: Final = Path(__file__).resolve().parent.parent / "lambda"
PACKAGE: Final = "msk_kinesis_sink"
HANDLER: Final = "msk_kinesis_sink.handler.handler"
# Newest Lambda Python runtime; Powertools 3.37 supports Python 3.10-3.14.
RUNTIME: Final = lambda_.Runtime.PYTHON_3_14

_ARCHITECTURES: Final = {
    Architecture.ARM64: lambda_.Architecture.ARM_64,
    Architecture.X86_64: lambda_.Architecture.X86_64,
}
_STARTING_POSITIONS: Final = {
    StartingPosition.TRIM_HORIZON: lambda_.StartingPosition.TRIM_HORIZON,
    StartingPosition.LATEST: lambda_.StartingPosition.LATEST,
    StartingPosition.AT_TIMESTAMP: lambda_.StartingPosition.AT_TIMESTAMP,
}
_RETENTION: Final = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip
# ESM metrics groups: event counts (polled/invoked/dropped/on-failure), errors, consumer lag.
_ESM_METRICS: Final = (
    lambda_.MetricType.EVENT_COUNT,
    lambda_.MetricType.ERROR_COUNT,
    lambda_.MetricType.KAFKA_METRICS,
)
# What the event source mapping needs to reach the cluster's subnets: Lambda creates and removes
# ENIs in whichever VPC/subnets the cluster uses, found at run time (see the acknowledgement).
_ENI_ACTIONS: Final = (
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
)


@dataclass(frozen=True, slots=True)
class TopicMapping:
    """A topic and the id (UUID) of the event source mapping that reads it."""

    topic: str
    consumer_group_id: str
    mapping_id: str


class SinkFunction(Construct):
    """Exposes `function`, `log_group`, `role` and `mappings` (one per topic)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source: SourceConfig,
        config: FunctionConfig,
        streams: StreamTargets,
        dead_letter_bucket: s3.IBucket,
        dead_letter_key_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=getattr(logs.RetentionDays, _RETENTION[config.log_retention_days]),
            # Kept after the stack is gone: the last words of a sink are often the useful ones.
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="MSK -> Kinesis sink: read the topics, write the stream and dead letters",
            inline_policies={
                "sink": iam.PolicyDocument(
                    statements=_statements(
                        source=source,
                        log_group=self.log_group,
                        streams=streams,
                        bucket=dead_letter_bucket,
                        bucket_key_arn=dead_letter_key_arn,
                    )
                )
            },
        )
        self._acknowledge_role(dead_letter_bucket)

        self.function = lambda_.Function(
            self,
            "Function",
            description="Republishes MSK records to Kinesis, in order per key, losing nothing",
            runtime=RUNTIME,
            architecture=_ARCHITECTURES[config.architecture],
            handler=HANDLER,
            code=self._code(config.architecture),
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.timeout_seconds),
            reserved_concurrent_executions=config.reserved_concurrency,
            # Every permission is declared in _statements(); an immutable view keeps CDK's
            # convenience grants (broad managed policies, bucket read/write) off the role.
            role=self.role.without_policy_updates(),
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=application_log_level(config.log_level),
            # INFO keeps the platform's REPORT lines (duration, memory used, init duration);
            # WARN would drop them (AWS: "Log-level filtering").
            system_log_level_v2=lambda_.SystemLogLevel.INFO,
            environment=_environment(config, streams=streams, bucket=dead_letter_bucket),
        )
        self.mappings = self._add_event_sources(source, dead_letter_bucket)

    def _code(self, architecture: Architecture) -> lambda_.Code:
        # Checked here, in Python, so a missing wheel is one line rather than a jsii traceback.
        if Stack.of(self).bundling_required:
            check_wheelhouse(ASSET_DIR / "requirements.txt", architecture)
        return function_code(architecture)

    def _add_event_sources(
        self, source: SourceConfig, bucket: s3.IBucket
    ) -> tuple[TopicMapping, ...]:
        secret = (
            secretsmanager.Secret.from_secret_complete_arn(self, "Secret", source.auth_secret_arn)
            if source.auth_secret_arn is not None
            else None
        )
        mappings = []
        for topic in source.topics:
            event_source = sources.ManagedKafkaEventSource(
                cluster_arn=source.cluster.arn,
                topic=topic.topic,
                consumer_group_id=topic.consumer_group_id,
                starting_position=_STARTING_POSITIONS[source.starting_position],
                starting_position_timestamp=source.starting_position_timestamp,
                batch_size=source.batch_size,
                max_batching_window=Duration.seconds(source.batching_window_seconds),
                provisioned_poller_config=sources.ProvisionedPollerConfig(
                    minimum_pollers=source.min_pollers, maximum_pollers=source.max_pollers
                ),
                report_batch_item_failures=True,
                retry_attempts=source.retry_attempts,
                max_record_age=(
                    Duration.seconds(source.max_record_age_seconds)
                    if source.max_record_age_seconds is not None
                    else None
                ),
                bisect_batch_on_error=source.bisect_on_error,
                on_failure=sources.S3OnFailureDestination(bucket),
                metrics_config=lambda_.MetricsConfig(metrics=list(_ESM_METRICS)),
                filters=[lambda_.FilterCriteria.filter(dict(p)) for p in source.filters] or None,
                # SASL/SCRAM is what the construct emits for a secret; mTLS is rewritten below.
                secret=secret,
            )
            self.function.add_event_source(event_source)
            mappings.append(
                TopicMapping(
                    topic=topic.topic,
                    consumer_group_id=topic.consumer_group_id,
                    mapping_id=event_source.event_source_mapping_id,
                )
            )
        if source.auth is AuthMode.MTLS and source.auth_secret_arn is not None:
            for mapping in self._cfn_mappings():
                mapping.source_access_configurations = [
                    lambda_.CfnEventSourceMapping.SourceAccessConfigurationProperty(
                        type="CLIENT_CERTIFICATE_TLS_AUTH", uri=source.auth_secret_arn
                    )
                ]
        return tuple(mappings)

    def _cfn_mappings(self) -> list[lambda_.CfnEventSourceMapping]:
        found = []
        for child in self.function.node.children:
            if isinstance(child, lambda_.EventSourceMapping):
                cfn = child.node.default_child
                assert isinstance(cfn, lambda_.CfnEventSourceMapping)
                found.append(cfn)
        return found

    def _acknowledge_role(self, bucket: s3.IBucket) -> None:
        stack = Stack.of(self)
        bucket_resource = bucket.node.default_child
        assert isinstance(bucket_resource, s3.CfnBucket)
        bucket_id = stack.get_logical_id(bucket_resource)
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Only the ENI actions the MSK event source mapping needs to reach the"
                    " cluster's subnets: ec2:Describe* support no resource scoping, and the"
                    " subnets and security groups are the cluster's, discovered at run time."
                ),
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
                reason=(
                    "s3:PutObject only, on this stack's own dead-letter bucket (and only while it"
                    " is in this account). The event source mappings write their discarded"
                    " batches with this role, and AWS documents no object layout for Kafka"
                    " sources: its page 'Capturing discarded batches for Amazon MSK and"
                    " self-managed Apache Kafka event sources' grants s3:PutObject on the whole"
                    " bucket. The function's own keys (records/<topic>/<partition>/<offset>.json)"
                    " are unknown until a record fails."
                ),
            ),
        )


def _statements(
    *,
    source: SourceConfig,
    log_group: logs.ILogGroup,
    streams: StreamTargets,
    bucket: s3.IBucket,
    bucket_key_arn: str,
) -> list[iam.PolicyStatement]:
    cluster = source.cluster
    # AWS's advice for S3 on-failure destinations: only to buckets in this account, so a
    # deleted and re-created bucket of the same name elsewhere never receives dead letters.
    own_account = {"StringEquals": {"s3:ResourceAccount": Aws.ACCOUNT_ID}}
    statements = [
        iam.PolicyStatement(
            sid="WriteOwnLogs",
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        ),
        iam.PolicyStatement(
            sid="PublishToStream",
            actions=[
                "kinesis:PutRecord",
                "kinesis:PutRecords",
                "kinesis:ListShards",
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
            ],
            resources=[target.stream.stream_arn for target in streams.targets],
        ),
        # The function writes records/...; the mappings write their discarded batches with this
        # role, where AWS's Kafka on-failure page grants s3:PutObject and s3:ListBucket.
        iam.PolicyStatement(
            sid="WriteDeadLetters",
            actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects("*")],
            conditions=own_account,
        ),
        iam.PolicyStatement(
            sid="ListDeadLetterBucket",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions=own_account,
        ),
        # SSE-KMS uploads need kms:GenerateDataKey (the Kafka on-failure page names it);
        # kms:Decrypt too, which S3 needs for multipart uploads ("Multipart upload API and
        # permissions") in case Lambda uploads a large batch that way. The role has no
        # s3:GetObject, so it still cannot read dead letters.
        iam.PolicyStatement(
            sid="EncryptDeadLetters",
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[bucket_key_arn],
        ),
        iam.PolicyStatement(
            sid="DescribeCluster",
            actions=[
                "kafka:DescribeCluster",
                "kafka:DescribeClusterV2",
                "kafka:GetBootstrapBrokers",
            ]
            + (["kafka:ListScramSecrets"] if source.auth is AuthMode.SASL_SCRAM else []),
            resources=[cluster.arn],
        ),
        iam.PolicyStatement(
            sid="ManageMappingNetworkInterfaces", actions=list(_ENI_ACTIONS), resources=["*"]
        ),
    ]
    if streams.key_arns:
        statements.append(
            iam.PolicyStatement(
                sid="EncryptStreamRecords",
                actions=["kms:GenerateDataKey"],
                resources=streams.key_arns,
            )
        )
    if source.auth is AuthMode.IAM:
        statements += [
            iam.PolicyStatement(
                sid="ConnectToCluster",
                actions=[
                    "kafka-cluster:Connect",
                    "kafka-cluster:DescribeClusterDynamicConfiguration",
                ],
                resources=[cluster.arn],
            ),
            iam.PolicyStatement(
                sid="ReadTopics",
                actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                resources=[cluster.topic_arn(t.topic) for t in source.topics],
            ),
            iam.PolicyStatement(
                sid="JoinConsumerGroups",
                actions=["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                resources=[cluster.group_arn(t.consumer_group_id) for t in source.topics],
            ),
        ]
    else:
        assert source.auth_secret_arn is not None
        statements.append(
            iam.PolicyStatement(
                sid="ReadClusterCredentials",
                actions=["secretsmanager:GetSecretValue"],
                resources=[source.auth_secret_arn],
            )
        )
        if source.auth_secret_kms_key_arn is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="DecryptClusterCredentials",
                    actions=["kms:Decrypt"],
                    resources=[source.auth_secret_kms_key_arn],
                )
            )
    return statements


def application_log_level(level: LogLevel) -> lambda_.ApplicationLogLevel:
    """Lambda's filter for the function's output: never above INFO.

    Lambda treats a JSON line without a `level` field as INFO (AWS: "Log-level filtering"), and
    Powertools' EMF metric lines have none: any stricter filter would drop every metric.
    """
    if level is LogLevel.DEBUG:
        return lambda_.ApplicationLogLevel.DEBUG
    return lambda_.ApplicationLogLevel.INFO


@jsii.implements(ILocalBundling)
class _WheelhouseBundling:
    """CDK local bundler: builds the asset in-process from the wheelhouse, never with Docker."""

    def __init__(self, architecture: Architecture) -> None:
        self._architecture = architecture

    # jsii hands the BundlingOptions over positionally or by keyword; they are not needed here.
    def try_bundle(self, output_dir: str, *_options: object, **_named: object) -> bool:
        build_function_asset(ASSET_DIR, PACKAGE, Path(output_dir), self._architecture)
        return True


def function_code(architecture: Architecture = Architecture.ARM64) -> lambda_.Code:
    """The function asset: its package plus its pinned wheels for `architecture`, no Docker.

    Hashed by the bundle's output, not by lambda/: a dependency that changes in the wheelhouse
    changes the asset even when lambda/ does not.
    """
    return lambda_.Code.from_asset(
        str(ASSET_DIR),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image, local=_WheelhouseBundling(architecture)
        ),
    )


# Stand-ins for names CloudFormation only knows at deploy time, valid where the real ones are.
_DEPLOY_TIME_STREAM: Final = "stream-named-at-deploy"
_DEPLOY_TIME_NAMES: Final = {"DEAD_LETTER_BUCKET": "bucket-named-at-deploy"}


def _environment(
    config: FunctionConfig, *, streams: StreamTargets, bucket: s3.IBucket
) -> dict[str, str]:
    """The function's settings (see msk_kinesis_sink.settings) and Powertools' own.

    Checked by the function's own parser, so synth refuses what the function would refuse at
    its first invocation (a ConfigError naming the context key).
    """
    env = {
        **streams.environment(),
        **config.sink_environment(),
        "MAX_RECORD_BYTES": str(streams.max_record_bytes),
        "DEAD_LETTER_BUCKET": bucket.bucket_name,
        "DEAD_LETTER_PREFIX": FUNCTION_PREFIX,
        "POWERTOOLS_SERVICE_NAME": config.service_name,
        "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
        "POWERTOOLS_LOG_LEVEL": config.log_level.value,
    }
    checked = env | streams.environment(stand_in=_DEPLOY_TIME_STREAM)
    function_settings(
        {k: _DEPLOY_TIME_NAMES[k] if Token.is_unresolved(v) else v for k, v in checked.items()}
    )
    return env
