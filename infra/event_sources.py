"""One Kafka event source mapping per topic, and what the mappings need from the function's role.

The cluster is Amazon MSK (by cluster ARN, or by multi-VPC connection ARN for a cluster in another
account) or self-managed Kafka (bootstrap servers, in a VPC or over the internet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from aws_cdk import Acknowledgment, Duration, Names
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import AuthMode, SourceConfig, SourceKind, StartingPosition, TopicSource
from infra.destinations import FailureDestination
from infra.failure_modes import UNLIMITED
from infra.schema_registry import role_statements, schema_registry_property

_STARTING_POSITIONS: Final = {
    StartingPosition.TRIM_HORIZON: lambda_.StartingPosition.TRIM_HORIZON,
    StartingPosition.LATEST: lambda_.StartingPosition.LATEST,
    StartingPosition.AT_TIMESTAMP: lambda_.StartingPosition.AT_TIMESTAMP,
}
# SourceAccessConfiguration type of each authentication that reads a secret (AWS:
# "SourceAccessConfiguration"; SASL/PLAIN is BASIC_AUTH).
_AUTH_TYPES: Final = {
    AuthMode.SASL_SCRAM: lambda_.SourceAccessConfigurationType.SASL_SCRAM_512_AUTH,
    AuthMode.SASL_SCRAM_256: lambda_.SourceAccessConfigurationType.SASL_SCRAM_256_AUTH,
    AuthMode.SASL_PLAIN: lambda_.SourceAccessConfigurationType.BASIC_AUTH,
    AuthMode.MTLS: lambda_.SourceAccessConfigurationType.CLIENT_CERTIFICATE_TLS_AUTH,
}
# ESM metrics groups: event counts (polled/invoked/dropped/on-failure), errors, consumer lag.
_ESM_METRICS: Final = (
    lambda_.MetricType.EVENT_COUNT,
    lambda_.MetricType.ERROR_COUNT,
    lambda_.MetricType.KAFKA_METRICS,
)
# What the pollers need to run in the cluster's subnets: Lambda creates and removes ENIs in
# whichever VPC/subnets the cluster uses (or subnetIds), found at run time (see the
# acknowledgement).
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


@dataclass(frozen=True, slots=True)
class MappingAccess:
    """What the mappings do with the function's role, and the cdk-nag findings that raises."""

    statements: tuple[iam.PolicyStatement, ...]
    acknowledgements: tuple[Acknowledgment, ...]


class KafkaEventSources(Construct):
    """One mapping per topic on `function`; exposes `mappings` (topic, group, mapping id).

    The mappings are the function's children, under the ids `ManagedKafkaEventSource` gave them,
    so their logical ids stay those earlier versions deployed: a new logical id would make
    CloudFormation create a second mapping in the same consumer group before deleting the first.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        source: SourceConfig,
        on_failure: FailureDestination,
    ) -> None:
        super().__init__(scope, construct_id)
        self._source = source
        self._on_failure = on_failure
        prefix = f"KafkaEventSource:{Names.node_unique_id(function.node)}"
        mappings = []
        for topic in source.topics:
            mapping = function.add_event_source_mapping(
                f"{prefix}{topic.topic}", **self._options(topic)
            )
            self._add_schema_registry(mapping, topic)
            self._add_unlimited_record_age(mapping)
            mappings.append(
                TopicMapping(
                    topic=topic.topic,
                    consumer_group_id=topic.consumer_group_id,
                    mapping_id=mapping.event_source_mapping_id,
                )
            )
        self.mappings = tuple(mappings)

    def _add_schema_registry(self, mapping: lambda_.EventSourceMapping, topic: TopicSource) -> None:
        """SchemaRegistryConfig sits beside the group id in the Kafka source's own config."""
        registry = self._source.schema_registry
        if registry is None:
            return
        cfn = mapping.node.default_child
        assert isinstance(cfn, lambda_.CfnEventSourceMapping)
        if self._source.cluster is not None:
            cfn.amazon_managed_kafka_event_source_config = (
                lambda_.CfnEventSourceMapping.AmazonManagedKafkaEventSourceConfigProperty(
                    consumer_group_id=topic.consumer_group_id,
                    schema_registry_config=schema_registry_property(registry),
                )
            )
        else:
            cfn.self_managed_kafka_event_source_config = (
                lambda_.CfnEventSourceMapping.SelfManagedKafkaEventSourceConfigProperty(
                    consumer_group_id=topic.consumer_group_id,
                    schema_registry_config=schema_registry_property(registry),
                )
            )

    def _add_unlimited_record_age(self, mapping: lambda_.EventSourceMapping) -> None:
        """MaximumRecordAgeInSeconds -1 (never too old), written out rather than left to Lambda's
        default: failureMode=block depends on it. The L2 takes ages of 60 s or more only."""
        if self._on_failure.max_record_age_seconds != UNLIMITED:
            return
        cfn = mapping.node.default_child
        assert isinstance(cfn, lambda_.CfnEventSourceMapping)
        cfn.maximum_record_age_in_seconds = UNLIMITED

    def _options(self, topic: TopicSource) -> dict[str, Any]:
        """The mapping's properties (lambda_.EventSourceMappingOptions), one per setting."""
        source, on_failure = self._source, self._on_failure
        return {
            **self._cluster(),
            "kafka_topic": topic.topic,
            "kafka_consumer_group_id": topic.consumer_group_id,
            "starting_position": _STARTING_POSITIONS[source.starting_position],
            "starting_position_timestamp": source.starting_position_timestamp,
            "batch_size": source.batch_size,
            "max_batching_window": Duration.seconds(source.batching_window_seconds),
            "provisioned_poller_config": lambda_.ProvisionedPollerConfig(
                minimum_pollers=source.min_pollers,
                maximum_pollers=source.max_pollers,
                poller_group_name=source.poller_group_name,
            ),
            "report_batch_item_failures": True,
            "retry_attempts": on_failure.retry_attempts,
            "max_record_age": (
                Duration.seconds(on_failure.max_record_age_seconds)
                if on_failure.max_record_age_seconds not in (None, UNLIMITED)
                else None
            ),
            "bisect_batch_on_error": source.bisect_on_error,
            "on_failure": on_failure.target,
            "support_s3_on_failure_destination": True,
            "metrics_config": lambda_.MetricsConfig(metrics=list(_ESM_METRICS)),
            "filters": [lambda_.FilterCriteria.filter(dict(p)) for p in source.filters] or None,
            "source_access_configurations": self._access() or None,
        }

    def _cluster(self) -> dict[str, Any]:
        source = self._source
        if source.cluster is not None:
            return {"event_source_arn": source.cluster.arn}
        assert source.bootstrap_servers is not None
        return {"kafka_bootstrap_servers": list(source.bootstrap_servers)}

    def _access(self) -> list[lambda_.SourceAccessConfiguration]:
        """Credentials, the brokers' root CA and the pollers' VPC (self-managed Kafka).

        The VPC URIs carry the `subnet:` and `security_group:` prefixes AWS's own example uses
        ("Creating a Lambda event source mapping for a self-managed Apache Kafka event source").
        """
        source, types = self._source, lambda_.SourceAccessConfigurationType
        access = []
        if source.auth_secret_arn is not None:
            access.append(
                lambda_.SourceAccessConfiguration(
                    type=_AUTH_TYPES[source.auth], uri=source.auth_secret_arn
                )
            )
        if source.root_ca_secret_arn is not None:
            access.append(
                lambda_.SourceAccessConfiguration(
                    type=types.SERVER_ROOT_CA_CERTIFICATE, uri=source.root_ca_secret_arn
                )
            )
        access += [
            lambda_.SourceAccessConfiguration(type=types.VPC_SUBNET, uri=f"subnet:{subnet}")
            for subnet in source.subnet_ids
        ]
        if source.security_group_id is not None:
            access.append(
                lambda_.SourceAccessConfiguration(
                    type=types.VPC_SECURITY_GROUP, uri=f"security_group:{source.security_group_id}"
                )
            )
        return access


def mapping_access(
    source: SourceConfig, destination: Sequence[iam.PolicyStatement] = ()
) -> MappingAccess:
    """The role's statements for reading the cluster (and reaching the on-failure destination)."""
    statements = _cluster_statements(source) + _secret_statements(source) + list(destination)
    acknowledgements = []
    registry = source.schema_registry
    if registry is not None:
        registry_statements = role_statements(registry)
        for index, statement in enumerate(registry_statements):
            statement.sid = f"ReadSchemaRegistry{index}"
        statements += registry_statements
        acknowledgements += [
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{resource}]",
                reason=(
                    "glue:GetSchemaVersion on the registry's own schemas: the mappings look a"
                    " schema version up by the id each record carries, unknown until it arrives"
                    " (the grant aws-cdk-lib's GlueSchemaRegistry makes)."
                ),
            )
            for resource in sorted(
                {r for s in registry_statements for r in s.resources if "*" in r}
            )
        ]
    if source.in_vpc:
        statements.append(
            iam.PolicyStatement(
                sid="ManageMappingNetworkInterfaces", actions=list(_ENI_ACTIONS), resources=["*"]
            )
        )
        acknowledgements.append(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Only the ENI actions the event source mappings need to reach the cluster's"
                    " subnets: ec2:Describe* support no resource scoping, and the subnets and"
                    " security groups (the cluster's, or subnetIds and securityGroupId) are"
                    " found at run time."
                ),
            )
        )
    if source.kind is SourceKind.MSK_VPC_CONNECTION:
        wildcards = sorted({r for s in statements for r in s.resources if "*" in r and r != "*"})
        acknowledgements += [
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{resource}]",
                reason=(
                    "The cluster is another account's, reached through a multi-VPC connection"
                    " whose ARN names the cluster's account and name but not its UUID: the"
                    " resource matches only a cluster of that name in that account."
                ),
            )
            for resource in wildcards
        ]
    return MappingAccess(statements=tuple(statements), acknowledgements=tuple(acknowledgements))


def _cluster_statements(source: SourceConfig) -> list[iam.PolicyStatement]:
    cluster = source.cluster
    if cluster is None:
        # Self-managed Kafka: no AWS API to call, the brokers check the credentials.
        return []
    statements = []
    if cluster.through_connection:
        # AWS: "Configuring Lambda execution role permissions" (Amazon MSK): only for
        # cross-account event source mappings.
        statements.append(
            iam.PolicyStatement(
                sid="DescribeVpcConnection",
                actions=["kafka:DescribeVpcConnection"],
                resources=[cluster.arn],
            )
        )
    statements.append(
        iam.PolicyStatement(
            sid="DescribeCluster",
            actions=[
                "kafka:DescribeCluster",
                "kafka:DescribeClusterV2",
                "kafka:GetBootstrapBrokers",
            ]
            + (["kafka:ListScramSecrets"] if source.auth is AuthMode.SASL_SCRAM else []),
            resources=[cluster.cluster_arn],
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
                resources=[cluster.cluster_arn],
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
    return statements


def _secret_statements(source: SourceConfig) -> list[iam.PolicyStatement]:
    if not source.secrets:
        return []
    statements = [
        iam.PolicyStatement(
            sid="ReadClusterCredentials",
            actions=["secretsmanager:GetSecretValue"],
            resources=[secret for secret, _ in source.secrets],
        )
    ]
    keys = sorted({key for _, key in source.secrets if key is not None})
    if keys:
        statements.append(
            iam.PolicyStatement(
                sid="DecryptClusterCredentials", actions=["kms:Decrypt"], resources=keys
            )
        )
    return statements
