"""The sink function, its least-privilege role and its log group."""

from __future__ import annotations

from dataclasses import replace
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
    Validations,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.bundling import build_function_asset, check_wheelhouse
from infra.config import Architecture, FunctionConfig, LogLevel
from infra.dead_letters import FUNCTION_PREFIX
from infra.event_sources import MappingAccess
from infra.stream import StreamTargets
from msk_kinesis_sink.claim_checks import CLAIM_CHECK_PREFIX
from msk_kinesis_sink.settings import OversizeRecords

ASSET_DIR: Final = Path(__file__).resolve().parent.parent / "lambda"
PACKAGE: Final = "msk_kinesis_sink"
HANDLER: Final = "msk_kinesis_sink.handler.handler"
# Newest Lambda Python runtime; Powertools 3.37 supports Python 3.10-3.14.
RUNTIME: Final = lambda_.Runtime.PYTHON_3_14

_ARCHITECTURES: Final = {
    Architecture.ARM64: lambda_.Architecture.ARM_64,
    Architecture.X86_64: lambda_.Architecture.X86_64,
}
_RETENTION: Final = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}  # fmt: skip


class SinkFunction(Construct):
    """Exposes `function`, `log_group` and `role`.

    `mapping_access` is what the event source mappings do with the role; with
    `mappings_write_dead_letters` they also write discarded batches to the dead-letter bucket.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        mapping_access: MappingAccess,
        mappings_write_dead_letters: bool,
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
        self.role = self._role(
            mapping_access,
            own=_statements(
                log_group=self.log_group,
                streams=streams,
                bucket=dead_letter_bucket,
                bucket_key_arn=dead_letter_key_arn,
                mappings_write_dead_letters=mappings_write_dead_letters,
            )
            + _claim_check_statements(config, dead_letter_bucket),
        )
        self._acknowledge_dead_letters(dead_letter_bucket, mappings_write_dead_letters)
        self._acknowledge_claim_checks(config, dead_letter_bucket)

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

    def _role(self, mapping_access: MappingAccess, *, own: list[iam.PolicyStatement]) -> iam.Role:
        """The function's `own` statements, then what the mappings do with the role."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="MSK -> Kinesis sink: read the topics, write the stream and dead letters",
            inline_policies={
                "sink": iam.PolicyDocument(statements=own + list(mapping_access.statements))
            },
        )
        Validations.of(role).acknowledge(*mapping_access.acknowledgements)
        return role

    def _code(self, architecture: Architecture) -> lambda_.Code:
        # Checked here, in Python, so a missing wheel is one line rather than a jsii traceback.
        if Stack.of(self).bundling_required:
            check_wheelhouse(ASSET_DIR / "requirements.txt", architecture)
        return function_code(architecture)

    def _acknowledge_dead_letters(self, bucket: s3.IBucket, from_mappings: bool) -> None:
        bucket_resource = bucket.node.default_child
        assert isinstance(bucket_resource, s3.CfnBucket)
        bucket_id = Stack.of(self).get_logical_id(bucket_resource)
        if from_mappings:
            acknowledgement = Acknowledgment(
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
            )
        else:
            acknowledgement = Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{FUNCTION_PREFIX}*]",
                reason=(
                    "s3:PutObject only, under the function's own prefix of this stack's"
                    " dead-letter bucket (and only while it is in this account): each key"
                    " (records/<topic>/<partition>/<offset>.json) is unknown until a record fails."
                ),
            )
        Validations.of(self.role).acknowledge(acknowledgement)

    def _acknowledge_claim_checks(self, config: FunctionConfig, bucket: s3.IBucket) -> None:
        settings = config.settings
        if settings.oversize_records is not OversizeRecords.CLAIM_CHECK:
            return
        # As cdk-nag writes the resource: the dead-letter bucket by logical id, or its name.
        if settings.claim_check_bucket is None:
            bucket_resource = bucket.node.default_child
            assert isinstance(bucket_resource, s3.CfnBucket)
            objects = f"<{Stack.of(self).get_logical_id(bucket_resource)}.Arn>"
        else:
            objects = f"arn:<AWS::Partition>:s3:::{settings.claim_check_bucket}"
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{objects}/{CLAIM_CHECK_PREFIX}*]",
                reason=(
                    "s3:PutObject only, under the claim-check prefix of its bucket (and only"
                    " while the bucket is in this account): each key"
                    " (claim-checks/<topic>/<partition>/<offset>-<sha256>.json) is known only"
                    " when an oversize record arrives."
                ),
            )
        )


def _claim_check_objects(config: FunctionConfig, dead_letter_bucket: s3.IBucket) -> str:
    """The objects claim checks go to: under their prefix, in claimCheckBucket or the
    dead-letter bucket."""
    bucket = config.settings.claim_check_bucket
    if bucket is None:
        return dead_letter_bucket.arn_for_objects(f"{CLAIM_CHECK_PREFIX}*")
    return f"arn:{Aws.PARTITION}:s3:::{bucket}/{CLAIM_CHECK_PREFIX}*"


def _claim_check_statements(
    config: FunctionConfig, dead_letter_bucket: s3.IBucket
) -> list[iam.PolicyStatement]:
    """With OVERSIZE_RECORDS=claim_check: write the objects (S3 encrypts them with the bucket's
    key: the dead-letter key, granted with the dead letters, or claimCheckKmsKeyArn)."""
    if config.settings.oversize_records is not OversizeRecords.CLAIM_CHECK:
        return []
    statements = [
        iam.PolicyStatement(
            sid="WriteClaimChecks",
            actions=["s3:PutObject"],
            resources=[_claim_check_objects(config, dead_letter_bucket)],
            conditions={"StringEquals": {"s3:ResourceAccount": Aws.ACCOUNT_ID}},
        )
    ]
    if config.claim_check_kms_key_arn is not None:
        statements.append(
            iam.PolicyStatement(
                sid="EncryptClaimChecks",
                actions=["kms:GenerateDataKey"],
                resources=[config.claim_check_kms_key_arn],
            )
        )
    return statements


def _statements(
    *,
    log_group: logs.ILogGroup,
    streams: StreamTargets,
    bucket: s3.IBucket,
    bucket_key_arn: str,
    mappings_write_dead_letters: bool,
) -> list[iam.PolicyStatement]:
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
        *_dead_letter_statements(bucket, bucket_key_arn, mappings_write_dead_letters),
    ]
    if streams.key_arns:
        statements.append(
            iam.PolicyStatement(
                sid="EncryptStreamRecords",
                actions=["kms:GenerateDataKey"],
                resources=streams.key_arns,
            )
        )
    return statements


def _dead_letter_statements(
    bucket: s3.IBucket, key_arn: str, from_mappings: bool
) -> list[iam.PolicyStatement]:
    """The function writes records/...; with the S3 on-failure destination, the mappings write
    their discarded batches with this role too, where AWS's Kafka on-failure page grants
    s3:PutObject and s3:ListBucket."""
    # AWS's advice for S3 on-failure destinations: only to buckets in this account, so a
    # deleted and re-created bucket of the same name elsewhere never receives dead letters.
    own_account = {"StringEquals": {"s3:ResourceAccount": Aws.ACCOUNT_ID}}
    if not from_mappings:
        return [
            iam.PolicyStatement(
                sid="WriteDeadLetters",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{FUNCTION_PREFIX}*")],
                conditions=own_account,
            ),
            iam.PolicyStatement(
                sid="EncryptDeadLetters", actions=["kms:GenerateDataKey"], resources=[key_arn]
            ),
        ]
    return [
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
            resources=[key_arn],
        ),
    ]


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


def _environment(
    config: FunctionConfig, *, streams: StreamTargets, bucket: s3.IBucket
) -> dict[str, str]:
    """The function's settings (msk_kinesis_sink.settings) as its environment, and Powertools' own.

    The keys of the function's own settings were read by its parser (config.settings); what the
    stack adds is known to be valid (the streams' names and ARNs, which may be deploy-time tokens,
    are written as they are).
    """
    default = streams.default
    settings = replace(
        config.settings,
        stream_name=default.stream.stream_name if default is not None else None,
        stream_arn=default.stream.stream_arn if default is not None else None,
        stream_routes=streams.routes,
        max_record_bytes=streams.max_record_bytes,
        dead_letter_bucket=bucket.bucket_name,
        dead_letter_prefix=FUNCTION_PREFIX,
        log_level=config.log_level.value,
    )
    return {
        **settings.to_env(),
        "POWERTOOLS_SERVICE_NAME": config.service_name,
        "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
    }
