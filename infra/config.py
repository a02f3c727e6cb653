"""Deployment settings: CDK context keys validated once into frozen, typed models (pydantic).

A field per key (its alias is the cdk.json key; the configuration table in docs/deploy.md
describes it). A wrong value raises `ConfigError`, one line naming the key and what is allowed,
before any construct is built. The keys that are the function's own settings are declared by its
`Settings` fields (SETTING_KEYS) and read by its own parser (FunctionConfig.settings).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    InstanceOf,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from infra.context import (
    GROUP_ID,
    PROBLEMS,
    STREAM_ID,
    Account,
    Because,
    BootstrapServers,
    ContextModel,
    DestinationTopic,
    Email,
    FilterPatterns,
    GroupId,
    GroupMap,
    KmsKeyArn,
    Namespace,
    PollerGroupName,
    Region,
    SecretArn,
    SecurityGroupId,
    ServiceName,
    StackName,
    StreamArn,
    StreamName,
    SubnetIds,
    TopicNames,
    TopicPatterns,
    UnixSeconds,
    Url,
    check,
    every_line,
    given,
    json_value,
    listed,
    refuse_all,
    unknown_key,
)
from infra.context import ConfigError as ConfigError  # what SinkConfig.from_context raises
from infra.destinations import DestinationKind as DestinationKind  # onFailureDestination's kinds
from infra.destinations import destination_for
from infra.failure_modes import FailureMode as FailureMode  # failureMode's values
from infra.failure_modes import mapping_retries
from infra.schema_registry import (
    EventRecordFormat,
    RegistryAuth,
    SchemaRegistry,
    check_mapping,
    parse_validate,
)
from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_ACCESS_CONFIGURATIONS,
    MAX_BATCH_SIZE,
    MAX_BATCHING_WINDOW_SECONDS,
    MAX_CONSUMER_GROUP_ID_CHARS,
    MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS,
    MAX_MAX_POLLERS,
    MAX_MIN_POLLERS,
    MAX_POLLERS_PER_POLLER_GROUP,
    MAX_RECORD_AGE_SECONDS,
    MAX_RECORD_BYTES_CEILING,
    MAX_RETRY_ATTEMPTS,
    MIN_RECORD_AGE_SECONDS,
)
from msk_kinesis_sink.settings import (
    SETTING_KEYS,
    OversizeRecords,
    Settings,
    StreamRoute,
    check_patterns_distinct,
    check_route_pattern,
    first_route,
)

# Kinesis MaxRecordSizeInKiB: 1 MiB by default, raisable to 10 MiB (as the function reads it).
MIN_RECORD_SIZE_KIB: Final = DEFAULT_MAX_RECORD_BYTES // 1024
MAX_RECORD_SIZE_KIB: Final = MAX_RECORD_BYTES_CEILING // 1024
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: Final = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# MSK only associates SASL/SCRAM secrets whose names start with this prefix.
SCRAM_SECRET_PREFIX: Final = "AmazonMSK_"

_CLUSTER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kafka:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"cluster/(?P<name>[A-Za-z0-9-]{1,64})/(?P<uuid>[A-Za-z0-9-]{1,64})$"
)
# A multi-VPC connection to a cluster of another account (AWS Service Authorization Reference:
# arn:${Partition}:kafka:${Region}:${VpcOwnerAccount}:vpc-connection/${ClusterOwnerAccount}/
# ${ClusterName}/${Uuid}); the mapping reads it in place of the cluster ARN (AWS: "Creating
# cross-account event source mappings in Lambda").
_VPC_CONNECTION_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kafka:(?P<region>[a-z]{2}(-[a-z]+)+-\d):"
    r"(?P<connection_account>\d{12}):vpc-connection/(?P<account>\d{12})/"
    r"(?P<name>[A-Za-z0-9-]{1,64})/[A-Za-z0-9-]{1,64}$"
)
# A complete secret ARN ends in the 6 random characters Secrets Manager appends to the name.
_COMPLETE_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")


class StartingPosition(StrEnum):
    """Where a new consumer group starts reading a topic."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class AuthMode(StrEnum):
    """How the event source mappings authenticate to the cluster."""

    IAM = "iam"  # MSK's IAM access control
    SASL_SCRAM = "sasl_scram"  # SCRAM-SHA-512 (MSK's only SCRAM)
    SASL_SCRAM_256 = "sasl_scram_256"  # self-managed only
    SASL_PLAIN = "sasl_plain"  # self-managed only, over TLS
    MTLS = "mtls"
    NONE = "none"  # self-managed only, inside a VPC


class SourceKind(StrEnum):
    """What kind of cluster the mappings read."""

    MSK = "msk"
    MSK_VPC_CONNECTION = "msk_vpc_connection"
    SELF_MANAGED = "self_managed"


# What each authentication needs from Secrets Manager, and which kinds of cluster offer it.
_SECRET_AUTH: Final = frozenset(AuthMode) - {AuthMode.IAM, AuthMode.NONE}
_MSK_AUTH: Final = (AuthMode.IAM, AuthMode.SASL_SCRAM, AuthMode.MTLS)
_SELF_MANAGED_AUTH: Final = (
    AuthMode.SASL_SCRAM_256,
    AuthMode.SASL_SCRAM,
    AuthMode.SASL_PLAIN,
    AuthMode.MTLS,
    AuthMode.NONE,
)


class StreamMode(StrEnum):
    """Capacity mode of a stream this stack creates."""

    ON_DEMAND = "on_demand"
    PROVISIONED = "provisioned"


class Architecture(StrEnum):
    """Instruction set of the function."""

    ARM64 = "arm64"
    X86_64 = "x86_64"


class LogLevel(StrEnum):
    """The function's own log level (POWERTOOLS_LOG_LEVEL)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class MskCluster:
    """An MSK cluster, or a multi-VPC connection to one, split for IAM and metrics.

    `arn` is what the mappings read. Through a connection the cluster belongs to another account
    (`account`) and its UUID is not in the connection's ARN: its IAM resources match any UUID.
    """

    arn: str
    partition: str
    region: str
    account: str
    name: str
    uuid: str | None
    connection_account: str | None = None

    @classmethod
    def from_arn(cls, arn: object) -> MskCluster:
        text = arn if isinstance(arn, str) else ""
        if match := _CLUSTER_ARN.match(text):
            return cls(arn=match.group(0), **match.groupdict())
        if match := _VPC_CONNECTION_ARN.match(text):
            return cls(arn=match.group(0), uuid=None, **match.groupdict())
        raise ConfigError(
            f"clusterArn={arn!r} is not an MSK cluster ARN"
            " (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>) or multi-VPC connection ARN"
            " (arn:aws:kafka:<region>:<account>:vpc-connection/<cluster-account>/<name>/<uuid>)"
        )

    @property
    def through_connection(self) -> bool:
        return self.connection_account is not None

    def _child_arn(self, kind: str, child: str | None = None) -> str:
        arn = (
            f"arn:{self.partition}:kafka:{self.region}:{self.account}:"
            f"{kind}/{self.name}/{self.uuid or '*'}"
        )
        return arn if child is None else f"{arn}/{child}"

    @property
    def cluster_arn(self) -> str:
        """The cluster's own ARN (through a connection, with any UUID)."""
        return self.arn if not self.through_connection else self._child_arn("cluster")

    def topic_arn(self, topic: str) -> str:
        return self._child_arn("topic", topic)

    def group_arn(self, group_id: str) -> str:
        return self._child_arn("group", group_id)


@dataclass(frozen=True, slots=True)
class TopicSource:
    """One topic and the consumer group its event source mapping joins."""

    topic: str
    consumer_group_id: str


def _retry_attempts(value: object) -> object:
    # -1 (infinite) is failureMode=block's own; the destination's rules decide where it applies.
    if type(value) is int and value < -1:
        raise ValueError(
            f"={value} is out of range (allowed: 0-{MAX_RETRY_ATTEMPTS}; -1 with failureMode=block)"
        )
    return value


def _record_age(value: int | None) -> int | None:
    if value is not None and 0 <= value < MIN_RECORD_AGE_SECONDS:
        raise ValueError(
            f"={value} is out of range"
            f" (allowed: -1, or {MIN_RECORD_AGE_SECONDS}-{MAX_RECORD_AGE_SECONDS})"
        )
    return None if value == -1 else value


def _log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"={days} is not one of: {', '.join(map(str, LOG_RETENTION_DAYS))}")
    return days


def _comma_separated(value: object) -> object:
    """A list (or a JSON list from `-c`) as the comma-separated text it stands for."""
    value = listed(value, "names")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return value


class SourceConfig(ContextModel):
    """Where records come from, how the event source mappings read them, where failures go."""

    cluster: Annotated[MskCluster | None, PlainValidator(MskCluster.from_arn)] = Field(
        None, alias="clusterArn"
    )
    """ARN of the MSK cluster (provisioned or serverless), or of a multi-VPC connection to one"""
    bootstrap_servers: BootstrapServers | None = None
    """self-managed Kafka, instead of clusterArn: brokers (host:port), a list or comma-separated"""
    subnet_ids: SubnetIds = ()
    """self-managed Kafka in a VPC: the subnets the pollers run in"""
    security_group_id: SecurityGroupId | None = None
    """self-managed Kafka in a VPC: the security group of the pollers"""
    topic_names: TopicNames = Field(alias="topics")
    """topic(s) to republish: a list, or comma-separated; one event source mapping each"""
    consumer_group_id: GroupId = "msk-kinesis-sink"
    """group prefix: the mapping of topic T joins <consumerGroupId>-T"""
    consumer_groups: GroupMap = Field(default_factory=dict)
    """explicit group per topic (JSON object topic -> group), e.g. to keep a group"""
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    starting_position_timestamp: UnixSeconds | None = None
    auth: AuthMode = Field(AuthMode.IAM, alias="authentication")
    auth_secret_arn: SecretArn | None = None
    """Secrets Manager ARN: SCRAM or SASL/PLAIN login, or mTLS client certificate"""
    auth_secret_kms_key_arn: KmsKeyArn | None = None
    """customer managed KMS key ARN that encrypts authSecretArn"""
    root_ca_secret_arn: SecretArn | None = None
    """self-managed Kafka: Secrets Manager ARN of the brokers' root CA certificate (private CA)"""
    root_ca_secret_kms_key_arn: KmsKeyArn | None = None
    """customer managed KMS key ARN that encrypts rootCaSecretArn"""
    batch_size: Annotated[int, Interval(ge=1, le=MAX_BATCH_SIZE)] = 500
    batching_window_seconds: Annotated[int, Interval(ge=0, le=MAX_BATCHING_WINDOW_SECONDS)] = 1
    min_pollers: Annotated[int, Interval(ge=1, le=MAX_MIN_POLLERS)] = 1
    max_pollers: Annotated[int, Interval(ge=1, le=MAX_MAX_POLLERS)] = 10
    poller_group_name: PollerGroupName | None = None
    """provisioned poller group every mapping of this stack joins (shared capacity)"""
    low_latency: bool = False
    """low-latency profile: batchingWindowSeconds=0 and minPollers=maxPollers"""
    failure_mode: FailureMode = FailureMode.DIVERT
    """divert: retry a failing batch, then send it to the on-failure destination; block: retry
    until the fault clears (no destination, no retry or age limit), the partition waits"""
    retry_attempts: Annotated[
        int, BeforeValidator(_retry_attempts), Interval(ge=-1, le=MAX_RETRY_ATTEMPTS)
    ] = 10
    """retries of a failing batch before it goes to the on-failure destination"""
    max_record_age_seconds: Annotated[
        int | None, Interval(ge=-1, le=MAX_RECORD_AGE_SECONDS), AfterValidator(_record_age)
    ] = None
    """discard (to the on-failure destination) records older than this; -1 = never, or 60-604800"""
    bisect_on_error: bool = True
    filters: FilterPatterns = ()
    on_failure: DestinationKind = Field(DestinationKind.S3, alias="onFailureDestination")
    """where the mappings send batches they give up on: s3, kafka, sqs or sns"""
    on_failure_topic: DestinationTopic | None = None
    """with onFailureDestination=kafka: the topic (same cluster) that receives the records"""
    schema_registry_uri: str | None = None
    """Glue registry ARN or Confluent registry URL: the mappings validate records against it"""
    schema_registry_record_format: EventRecordFormat = EventRecordFormat.JSON
    """with a registry: JSON (decoded by Lambda) or SOURCE (the producer's bytes)"""
    schema_registry_validate: Annotated[str, BeforeValidator(_comma_separated)] = "VALUE"
    """with a registry: what it validates, VALUE, KEY or KEY,VALUE"""
    schema_registry_auth: RegistryAuth | None = None
    """Confluent registry: BASIC_AUTH, CLIENT_CERTIFICATE_TLS_AUTH or OAUTHBEARER_AUTH"""
    schema_registry_auth_secret_arn: SecretArn | None = None
    """Confluent registry: the secret for schemaRegistryAuth"""
    schema_registry_root_ca_secret_arn: SecretArn | None = None
    """Confluent registry with a private CA: the secret holding its root CA certificate"""
    schema_registry_secret_kms_key_arn: KmsKeyArn | None = None
    """customer managed KMS key ARN that encrypts the Confluent registry's secrets"""

    @property
    def schema_registry(self) -> SchemaRegistry | None:
        """The mappings' schema registry (checked as AWS documents it), if one is set."""
        if self.schema_registry_uri is None:
            return None
        registry = SchemaRegistry(
            uri=self.schema_registry_uri,
            event_record_format=self.schema_registry_record_format,
            validate=parse_validate(self.schema_registry_validate),
            auth=self.schema_registry_auth,
            auth_secret_arn=self.schema_registry_auth_secret_arn,
            root_ca_secret_arn=self.schema_registry_root_ca_secret_arn,
            secrets_kms_key_arn=self.schema_registry_secret_kms_key_arn,
        )
        # This stack always runs provisioned pollers; failureMode=block has no destination.
        retries = mapping_retries(self.failure_mode, self.retry_attempts, None)
        check_mapping(registry, provisioned=True, on_failure_destination=retries.has_destination)
        return registry

    @check
    def _schema_registry(self) -> SourceConfig:
        registry_keys = {
            "schemaRegistryAuth": self.schema_registry_auth,
            "schemaRegistryAuthSecretArn": self.schema_registry_auth_secret_arn,
            "schemaRegistryRootCaSecretArn": self.schema_registry_root_ca_secret_arn,
            "schemaRegistrySecretKmsKeyArn": self.schema_registry_secret_kms_key_arn,
        }
        if self.schema_registry_uri is None:
            if given := [key for key, value in registry_keys.items() if value is not None]:
                raise ConfigError(f"{given[0]} needs schemaRegistryUri")
            return self
        _ = self.schema_registry  # every rule of the registry, with its one-line refusal
        return self

    @property
    def kind(self) -> SourceKind:
        if self.cluster is None:
            return SourceKind.SELF_MANAGED
        if self.cluster.through_connection:
            return SourceKind.MSK_VPC_CONNECTION
        return SourceKind.MSK

    @property
    def iam_cluster(self) -> MskCluster | None:
        """The MSK cluster when its IAM access control authorizes the function's role."""
        return self.cluster if self.auth is AuthMode.IAM else None

    @property
    def in_vpc(self) -> bool:
        """Whether the pollers run in a VPC's subnets (always for MSK: the cluster's own)."""
        return self.cluster is not None or bool(self.subnet_ids)

    @property
    def secrets(self) -> tuple[tuple[str, str | None], ...]:
        """Each Secrets Manager secret the mappings read, with the key that encrypts it."""
        pairs = (
            (self.auth_secret_arn, self.auth_secret_kms_key_arn),
            (self.root_ca_secret_arn, self.root_ca_secret_kms_key_arn),
        )
        return tuple((secret, key) for secret, key in pairs if secret is not None)

    @property
    def region(self) -> str | None:
        """The region the cluster or the secrets name (the function's), if any names one."""
        if self.cluster is not None:
            return self.cluster.region
        return next((_arn_region(secret) for secret, _ in self.secrets), None)

    @property
    def topics(self) -> tuple[TopicSource, ...]:
        """Each topic's group depends on that topic alone, so adding a topic renames no group.

        A mapping's group can't change after creation (AWS: "Customizable consumer group ID in
        Lambda"); a renamed group means a new mapping reading from startingPosition.
        """
        return tuple(
            TopicSource(t, self.consumer_groups.get(t, f"{self.consumer_group_id}-{t}"))
            for t in self.topic_names
        )

    @check
    def _one_cluster(self) -> SourceConfig:
        if self.cluster is not None and self.bootstrap_servers is not None:
            raise ConfigError(
                "clusterArn and bootstrapServers exclude each other: clusterArn for Amazon MSK"
                " (or a multi-VPC connection to it), bootstrapServers for self-managed Kafka"
            )
        if self.cluster is None and self.bootstrap_servers is None:
            raise ConfigError(
                "clusterArn (Amazon MSK) or bootstrapServers (self-managed Kafka) is required"
            )
        if self.cluster is not None:
            names = ("subnet_ids", "security_group_id", "root_ca_secret_arn")
            if given := [_key(name) for name in names if name in self.model_fields_set]:
                raise ConfigError(
                    *(
                        f"{key} only applies with bootstrapServers: an MSK mapping reaches the"
                        " brokers through the cluster's own subnets, security groups and"
                        " certificates"
                        for key in given
                    )
                )
        # AWS: "Creating a Lambda event source mapping for a self-managed Apache Kafka event
        # source": brokers in a VPC need both the subnets and the security group.
        if bool(self.subnet_ids) != (self.security_group_id is not None):
            raise ConfigError(
                "subnetIds and securityGroupId go together: the pollers need both to reach"
                " brokers in a VPC"
            )
        access = len(self.subnet_ids) + (self.security_group_id is not None) + len(self.secrets)
        if access > MAX_ACCESS_CONFIGURATIONS:
            raise ConfigError(
                f"subnetIds: {len(self.subnet_ids)} subnets, with the security group and secrets,"
                f" exceed the {MAX_ACCESS_CONFIGURATIONS} access configurations a mapping takes"
            )
        return self

    @check
    def _consumer_groups(self) -> SourceConfig:
        for topic in self.consumer_groups:
            if topic not in self.topic_names:
                raise ConfigError(f"consumerGroups names topic {topic!r}, which is not in topics")
        seen: set[str] = set()
        for source in self.topics:
            key = "consumerGroups" if source.topic in self.consumer_groups else "consumerGroupId"
            group = source.consumer_group_id
            if not GROUP_ID.match(group):
                raise ConfigError(f"{key}: {group!r} is not a group id (a-z A-Z 0-9 -/*_+=.@)")
            # AWS: "Monitor consumer lags": MSK emits no consumer-lag metrics for such a group.
            if ":" in group and self.cluster is not None:
                raise ConfigError(
                    f"{key}: {group!r} contains ':' (MSK publishes no lag metrics for it)"
                )
            if len(group) > MAX_CONSUMER_GROUP_ID_CHARS:
                raise ConfigError(
                    f"{key}: {group!r} is longer than {MAX_CONSUMER_GROUP_ID_CHARS} characters"
                )
            # A consumer group id must be unique among all of the account's Kafka event sources.
            if group in seen:
                raise ConfigError(f"{key}: group {group!r} would be joined by two topics' mappings")
            seen.add(group)
        return self

    @check
    def _position_and_pollers(self) -> SourceConfig:
        problems = []  # the starting position and the pollers, each judged
        at_timestamp = self.starting_position is StartingPosition.AT_TIMESTAMP
        if at_timestamp and self.starting_position_timestamp is None:
            problems.append(
                "startingPositionTimestamp is required when startingPosition=AT_TIMESTAMP"
            )
        if not at_timestamp and self.starting_position_timestamp is not None:
            problems.append(
                f"startingPositionTimestamp is only allowed with startingPosition=AT_TIMESTAMP"
                f" (startingPosition={self.starting_position.value})"
            )
        if self.min_pollers > self.max_pollers:
            problems.append(
                f"minPollers={self.min_pollers} must be <= maxPollers={self.max_pollers}"
            )
        if self.poller_group_name is not None:
            # At most MAX_MAPPINGS_PER_POLLER_GROUP mappings: `topics` allows no more (MAX_TOPICS).
            mappings = len(self.topic_names)
            pollers = mappings * self.max_pollers
            if pollers > MAX_POLLERS_PER_POLLER_GROUP:
                problems.append(
                    f"pollerGroupName: {mappings} mappings x maxPollers={self.max_pollers} ="
                    f" {pollers} pollers in one group (AWS allows at most"
                    f" {MAX_POLLERS_PER_POLLER_GROUP:,} summed over a group)"
                )
        if problems:
            raise ConfigError(*problems)
        return self

    @check
    def _authentication(self) -> SourceConfig:
        if (self.cluster is None) == (self.bootstrap_servers is None):
            return self  # not one cluster to authenticate to (_one_cluster says so)
        refuse_all(
            lambda: _check_auth_mode(self),
            lambda: _check_secret_arns(self),
            lambda: _check_msk_scram_secret(self),
        )
        return self

    @check
    def _destination(self) -> SourceConfig:
        destination_for(self).check(self)
        return self

    @check
    def _low_latency(self) -> SourceConfig:
        """AWS: "Low latency processing for Kafka event sources": provisioned mode (always on
        here) with no batching window; equal minimum and maximum pollers keep Lambda from
        scaling pollers, whose rebalancing adds latency."""
        if not self.low_latency:
            return self
        if "batching_window_seconds" in self.model_fields_set and self.batching_window_seconds:
            raise ConfigError(
                f"batchingWindowSeconds={self.batching_window_seconds} contradicts"
                " lowLatency=true, which invokes without waiting: remove it or set 0"
            )
        if "min_pollers" in self.model_fields_set and self.min_pollers != self.max_pollers:
            raise ConfigError(
                f"minPollers={self.min_pollers} contradicts lowLatency=true, which keeps as many"
                f" pollers as maxPollers={self.max_pollers}: remove it or set {self.max_pollers}"
            )
        if self.max_pollers > MAX_MIN_POLLERS:
            raise ConfigError(
                f"maxPollers={self.max_pollers} is too many for lowLatency=true, which sets"
                f" minPollers to it (MinimumPollers allows 1-{MAX_MIN_POLLERS})"
            )
        return self.model_copy(
            update={"batching_window_seconds": 0, "min_pollers": self.max_pollers}
        )


def _check_auth_mode(source: SourceConfig) -> None:
    """An authentication the kind of cluster offers, with the secrets it takes."""
    auth, secret, secret_key = source.auth, source.auth_secret_arn, source.auth_secret_kms_key_arn
    offered = _SELF_MANAGED_AUTH if source.cluster is None else _MSK_AUTH
    allowed = ", ".join(a.value for a in offered)
    if source.cluster is None and "auth" not in source.model_fields_set:
        raise ConfigError(f"authentication is required with bootstrapServers ({allowed})")
    if auth not in offered:
        where = "self-managed Kafka" if source.cluster is None else "Amazon MSK"
        raise ConfigError(
            f"authentication={auth.value} is not available with {where} (allowed: {allowed})"
        )
    if auth not in _SECRET_AUTH and (secret or secret_key):
        raise ConfigError(
            "authSecretArn/authSecretKmsKeyArn are only used with authentication="
            f"{', '.join(a.value for a in offered if a in _SECRET_AUTH)}"
            f" (authentication={auth.value})"
        )
    if auth in _SECRET_AUTH and secret is None:
        raise ConfigError(f"authSecretArn is required when authentication={auth.value}")
    # AWS: "Creating a Lambda event source mapping for a self-managed Apache Kafka event
    # source": brokers outside a VPC need credentials; and the root CA applies to TLS with
    # SASL/SCRAM, SASL/PLAIN or mTLS.
    if auth is AuthMode.NONE and not source.subnet_ids:
        raise ConfigError(
            "authentication=none needs subnetIds and securityGroupId: Lambda reaches brokers"
            " without credentials only inside a VPC"
        )
    if auth is AuthMode.NONE and source.root_ca_secret_arn is not None:
        raise ConfigError(
            "rootCaSecretArn applies to TLS with sasl_scram_256, sasl_scram, sasl_plain or"
            " mtls, not to authentication=none"
        )
    if source.root_ca_secret_kms_key_arn is not None and source.root_ca_secret_arn is None:
        raise ConfigError("rootCaSecretKmsKeyArn only applies with rootCaSecretArn")


def _check_secret_arns(source: SourceConfig) -> None:
    """Complete secret ARNs, every secret and key in the cluster's region."""
    for key, arn in (
        ("authSecretArn", source.auth_secret_arn),
        ("rootCaSecretArn", source.root_ca_secret_arn),
    ):
        if arn is not None and not _COMPLETE_SECRET_SUFFIX.search(arn):
            raise ConfigError(
                f"{key}={arn!r} is a partial ARN: give the complete one, ending in the"
                " 6 characters Secrets Manager appends to the name (...:secret:<name>-AbCdEf)"
            )
    # AWS: "Configuring cluster authentication methods in Lambda": secrets must be in the
    # function's region; the mappings live in the cluster's region.
    arns = {
        _key(name): getattr(source, name)
        for name in (
            "auth_secret_arn",
            "auth_secret_kms_key_arn",
            "root_ca_secret_arn",
            "root_ca_secret_kms_key_arn",
        )
    }
    regions = {key: _arn_region(arn) for key, arn in arns.items() if arn is not None}
    if source.cluster is not None:
        regions = {"clusterArn": source.cluster.region, **regions}
    first, region = next(iter(regions.items()), ("", ""))
    for key, other in regions.items():
        if other != region:
            raise ConfigError(
                f"{key} is in {other!r} but {first} is in {region!r}: Lambda reads secrets"
                " only in the function's region, which is the cluster's"
            )


def _msk_associated(source: SourceConfig, secret: str | None) -> bool:
    """Whether `secret` must be one MSK associates with the cluster.

    Through a multi-VPC connection the function's account may keep its own copy (AWS:
    "Creating cross-account event source mappings in Lambda"); the cluster's account holds
    the associated one.
    """
    if source.cluster is None or secret is None:
        return False
    return not source.cluster.through_connection or secret.split(":")[4] == source.cluster.account


def _check_msk_scram_secret(source: SourceConfig) -> None:
    """A SCRAM secret MSK associates with the cluster: its key and its name, both checked."""
    secret = source.auth_secret_arn
    if source.auth is not AuthMode.SASL_SCRAM or not _msk_associated(source, secret):
        return
    problems = []
    # AWS: "Set up SASL/SCRAM authentication for an Amazon MSK cluster": a secret encrypted
    # with the default Secrets Manager key cannot be used with MSK: the mapping needs the key.
    if source.auth_secret_kms_key_arn is None:
        problems.append(
            "authSecretKmsKeyArn is required when authentication=sasl_scram: MSK only uses"
            " SCRAM secrets encrypted with a customer managed KMS key, and the role needs"
            " kms:Decrypt on it"
        )
    name = str(secret).split(":secret:")[-1]
    if not name.startswith(SCRAM_SECRET_PREFIX):
        problems.append(
            f"authSecretArn: secret {name!r} must be named {SCRAM_SECRET_PREFIX}... for"
            " sasl_scram (MSK associates no other SCRAM secrets)"
        )
    if problems:
        raise ConfigError(*problems)


def _key(field: str) -> str:
    """The context key of a SourceConfig field."""
    return str(SourceConfig.model_fields[field].alias)


def _arn_region(arn: str) -> str:
    return arn.split(":")[3]


class StreamConfig(ContextModel):
    """The target stream: created here (encrypted with a new key) or imported by ARN."""

    existing_arn: StreamArn | None = Field(None, alias="streamArn")
    """import this existing Kinesis stream instead of creating one"""
    existing_kms_key_arn: KmsKeyArn | None = Field(None, alias="streamKmsKeyArn")
    """with streamArn: the customer managed key encrypting it"""
    name: StreamName | None = Field(None, alias="streamName")
    mode: StreamMode = Field(StreamMode.ON_DEMAND, alias="streamMode")
    # The default account quota is far below it; the API ceiling is 100,000 shards.
    shard_count: Annotated[int | None, Interval(ge=1, le=100_000)] = None
    # Kinesis retention: 24-8,760 hours (365 days).
    retention_hours: Annotated[int, Interval(ge=24, le=8_760)] = Field(
        24, alias="streamRetentionHours"
    )
    max_record_size_kib: Annotated[
        int, Interval(ge=MIN_RECORD_SIZE_KIB, le=MAX_RECORD_SIZE_KIB)
    ] = Field(MIN_RECORD_SIZE_KIB, alias="streamMaxRecordSizeKiB")

    @check
    def _created_or_imported(self) -> StreamConfig:
        if self.existing_arn is not None:
            for name in ("name", "shard_count", "mode", "retention_hours"):
                if name in self.model_fields_set:
                    key = type(self).model_fields[name].alias
                    raise ConfigError(f"{key} only applies to a created stream, not streamArn")
        elif self.existing_kms_key_arn is not None:
            raise ConfigError(
                "streamKmsKeyArn only applies with streamArn (a created stream has its own key)"
            )
        if self.mode is StreamMode.ON_DEMAND and self.shard_count is not None:
            raise ConfigError("shardCount only applies with streamMode=provisioned")
        if self.mode is StreamMode.PROVISIONED and self.shard_count is None:
            return self.model_copy(update={"shard_count": 1})
        return self


class RoutedStreamConfig(StreamConfig):
    """An entry of `streams`: a stream (the default stream's keys) and the topics routed to it."""

    topics: TopicPatterns
    """the topic names or globs routed to this stream"""


def _stream_map(value: object) -> dict[str, RoutedStreamConfig]:
    """`streams`: a JSON object, stream id -> entry; kept in the order written."""
    entries = json_value(value, "a JSON object: stream id -> topics and stream keys")
    if not isinstance(entries, dict):
        raise ValueError(' must be a JSON object: stream id -> {"topics": [...], stream keys}')
    streams: dict[str, RoutedStreamConfig] = {}
    problems: list[str] = []
    for stream_id, entry in entries.items():
        if not STREAM_ID.match(stream_id):
            problems.append(
                f"streams: {stream_id!r} is not a stream id (a letter, then up to 63 of"
                " a-z A-Z 0-9 -)"
            )
        elif not isinstance(entry, dict):
            problems.append(f"streams.{stream_id} must be a JSON object (topics and stream keys)")
        else:
            try:
                streams[stream_id] = RoutedStreamConfig.model_validate(given(entry))
            except ValidationError as error:
                keys = RoutedStreamConfig.keys()
                for message in every_line(error, keys):
                    # "shardCount=0 is ..." reads as "streams.<id>.shardCount=0 is ..."
                    joint = "." if re.match(rf"({'|'.join(keys)})\b", message) else ": "
                    problems.append(f"streams.{stream_id}{joint}{message}")
    if problems:
        raise ConfigError(*problems)
    return streams


StreamMap = Annotated[dict[str, RoutedStreamConfig], BeforeValidator(_stream_map)]


class FunctionConfig(ContextModel):
    """The sink function, and the settings of its own that context keys set."""

    # Lambda memory: 128-10,240 MB. Any timeout works with any kinesisTimeoutSeconds: the
    # function bounds each request by the time the invocation has left.
    memory_mb: Annotated[int, Interval(ge=128, le=10_240)] = Field(1024, alias="functionMemoryMb")
    timeout_seconds: Annotated[
        int,
        Interval(ge=1, le=MAX_KAFKA_FUNCTION_TIMEOUT_SECONDS),
        Because("Kafka event source mappings take functions of at most 14 minutes"),
    ] = Field(120, alias="functionTimeoutSeconds")
    architecture: Architecture = Architecture.ARM64
    reserved_concurrency: Annotated[int | None, Interval(ge=1, le=10_000)] = None
    """reserved concurrency (empty = unreserved)"""
    log_retention_days: Annotated[
        int, Interval(ge=1, le=LOG_RETENTION_DAYS[-1]), AfterValidator(_log_retention)
    ] = 30
    log_level: LogLevel = LogLevel.INFO
    """the function's own log level (POWERTOOLS_LOG_LEVEL): DEBUG, INFO, WARNING, ERROR"""
    service_name: ServiceName = "msk-kinesis-sink"
    """Powertools service name (the `service` metric dimension)"""
    metrics_namespace: Namespace = "MskKinesisSink"
    claim_check_kms_key_arn: KmsKeyArn | None = None
    """with claimCheckBucket: the customer managed KMS key that encrypts it (SSE-KMS)"""
    # What the keys Settings declares (SETTING_KEYS) set, read by the function's own parser; the
    # stack adds the streams, the record limit, the bucket and the log level. Never a key itself.
    settings: InstanceOf[Settings] = Field(exclude=True)

    @classmethod
    def keys(cls) -> dict[str, FieldInfo]:
        """Its fields' keys, and the keys of the function's own settings."""
        return super().keys() | {
            key: FieldInfo(description=f"the function's {variable.name}")
            for key, variable in SETTING_KEYS.items()
        }

    @model_validator(mode="before")
    @classmethod
    def _function_settings(cls, data: dict[str, object]) -> dict[str, object]:
        # cdk.json may hold a number or true/false: the function reads the text of it.
        keyed = {key: str(value) for key, value in data.items() if key in SETTING_KEYS}
        try:
            settings = Settings.from_keys(keyed)
        except ConfigurationError as error:
            # The parser stops at its first refusal: each key alone shows every bad one (and
            # when each is fine alone, the refusal is of how they go together).
            alone = [_refusal({key: text}) for key, text in keyed.items()]
            raise ConfigError(*([r for r in alone if r] or [str(error)])) from None
        return {k: v for k, v in data.items() if k not in SETTING_KEYS} | {"settings": settings}

    @check
    def _claim_check_key(self) -> FunctionConfig:
        if self.claim_check_kms_key_arn is not None and self.settings.claim_check_bucket is None:
            raise ConfigError(
                "claimCheckKmsKeyArn only applies with claimCheckBucket (claim checks in the"
                " dead-letter bucket use its key)"
            )
        return self


class AlarmConfig(ContextModel):
    """Where alarms go, what trips them, and where their runbook lives."""

    email: Email | None = Field(None, alias="alarmEmail")
    offset_lag_threshold: Annotated[int, Interval(ge=1, le=10**12)] = Field(
        10_000, alias="offsetLagAlarmThreshold"
    )
    """offset lag (records) that, sustained 15 minutes, raises an alarm"""
    duration_percent: Annotated[int, Interval(ge=10, le=100)] = Field(
        80, alias="durationAlarmPercent"
    )
    """duration as a percentage of the timeout that raises an alarm"""
    runbook_url: Url | None = None
    """URL of docs/runbook.md as your team reads it; alarm descriptions link into it"""
    delivery_delay_seconds: Annotated[int | None, Interval(ge=1, le=604_800)] = Field(
        None, alias="deliveryDelayAlarmSeconds"
    )
    """records reaching the stream this long after their Kafka timestamps, for 15 minutes, raise
    an alarm (unset: no alarm)"""


class CapacityConfig(ContextModel):
    """What the deployment is meant to carry, when known: only for synth's warnings about
    settings that can't help (infra.plan; docs/scaling.md)."""

    topic_partitions: Annotated[int | None, Interval(ge=1, le=100_000)] = None
    """partitions of each topic (maxPollers above it can't help)"""
    target_mb_per_second: Annotated[float | None, Interval(gt=0, le=100_000)] = None
    """Kafka bytes per second the sink should carry, in MB; with averageRecordBytes"""
    average_record_bytes: Annotated[int | None, Interval(ge=1, le=MAX_RECORD_BYTES_CEILING)] = None
    """average key + value bytes of a record"""
    hot_key_share: Annotated[float, Interval(ge=0, le=1)] = 0.0
    """share of the traffic on the hottest key"""

    @check
    def _target(self) -> CapacityConfig:
        if (self.target_mb_per_second is None) != (self.average_record_bytes is None):
            raise ConfigError("targetMbPerSecond and averageRecordBytes go together")
        if self.target_mb_per_second is not None and self.topic_partitions is None:
            raise ConfigError("targetMbPerSecond needs topicPartitions")
        return self


_SECTIONS: Final[Mapping[str, type[ContextModel]]] = {
    "source": SourceConfig,
    "stream": StreamConfig,
    "function": FunctionConfig,
    "alarms": AlarmConfig,
    "capacity": CapacityConfig,
}


class SinkConfig(ContextModel):
    """The whole deployment, validated."""

    stack_name: StackName = "MskKinesisSink"
    account: Account | None = None
    """AWS account to pin the stack to (12 digits); empty = environment-agnostic"""
    region: Region | None = None
    """AWS region to pin the stack to; must match the cluster's region when set"""
    # S3 lifecycle expiration: 1 day to 10 years.
    dead_letter_retention_days: Annotated[int, Interval(ge=1, le=3_650)] = 90
    streams: StreamMap = Field(default_factory=dict)
    """more streams, each with the topics routed to it (docs/routing.md)"""
    default_stream: bool = True
    """false: no default stream; every topic must be routed by streams"""
    source: SourceConfig
    stream: StreamConfig
    """the default stream: for topics no `streams` entry routes (unless defaultStream=false)"""
    function: FunctionConfig
    alarms: AlarmConfig
    capacity: CapacityConfig

    @property
    def routes(self) -> tuple[tuple[str, str], ...]:
        """(pattern, stream id) in the order the function tries them, first match wins: the
        entries of `streams` as written, each entry's topics as listed."""
        return tuple(
            (pattern, stream_id)
            for stream_id, entry in self.streams.items()
            for pattern in entry.topics
        )

    @property
    def max_record_size_kib(self) -> int:
        """The function's one record limit: the smallest of the streams it writes to."""
        streams = [*self.streams.values(), *([self.stream] if self.default_stream else [])]
        return min(stream.max_record_size_kib for stream in streams)

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> SinkConfig:
        """Parse and validate; raises ConfigError with every problem, one line each naming the
        key and what is allowed.

        A refusal validation stops at (a bad value, an unknown key) keeps its section's checks
        from running: the keys it names are taken out and the rest validated again, and what
        that finds is added unless it names a key taken out (a problem of its absence).
        """
        remaining, taken_out = dict(context), set[str]()
        problems: list[str] = []
        while True:
            found: list[str] = []
            try:
                config, stopped = cls.model_validate(remaining, context={PROBLEMS: found}), []
            except ValidationError as error:
                stopped = every_line(error, _FIELDS)
            problems += [
                p for p in [*stopped, *found] if p not in problems and not _names(p, taken_out)
            ]
            keys = {key for key in remaining if _names(" ".join(stopped), {key})}
            if not keys:
                break
            taken_out |= keys
            remaining = {k: v for k, v in remaining.items() if k not in keys}
        if problems:
            raise ConfigError(*problems)
        return config

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, context: dict[str, object]) -> dict[str, object]:
        """cdk.json's context is flat: each section gets its keys; unknown keys stay here."""
        values = given(context)
        if clash := sorted(set(values) & set(_SECTIONS)):
            raise ConfigError(unknown_key(clash[0], _FIELDS))
        sections = {
            name: {k: values.pop(k) for k in set(m.keys()) & set(values)}
            for name, m in _SECTIONS.items()
        }
        return values | sections

    @check
    def _one_region(self) -> SinkConfig:
        # The cluster's region (MSK), else that of the secrets (self-managed), else unknown.
        cluster_region = self.source.region
        if None not in (self.region, cluster_region) and self.region != cluster_region:
            named_by = "the cluster's" if self.source.cluster is not None else "the secrets'"
            raise ConfigError(
                f"region={self.region!r} differs from {named_by} region {cluster_region!r}:"
                " the function and its event source mappings must live in the cluster's region"
            )
        cluster_region = cluster_region or self.region
        for key, arn in self._imported_arns():
            stream_region = arn.split(":")[3]
            if cluster_region and stream_region != cluster_region:
                raise ConfigError(
                    f"{key} is in {stream_region!r} but the cluster is in {cluster_region!r}:"
                    " the function writes to a stream in its own region"
                )
        return self

    def _imported_arns(self) -> list[tuple[str, str]]:
        """(key, ARN) of every imported stream the function writes to."""
        arns = [(f"streams.{i}.streamArn", s.existing_arn) for i, s in self.streams.items()]
        if self.default_stream:
            arns.insert(0, ("streamArn", self.stream.existing_arn))
        return [(key, arn) for key, arn in arns if arn is not None]

    @check
    def _claim_checks_outlive_pointers(self) -> SinkConfig:
        """Claim checks in the dead-letter bucket expire with it: a created stream must not keep
        a pointer longer than its object (an imported stream's retention is not known here)."""
        settings = self.function.settings
        if settings.oversize_records is not OversizeRecords.CLAIM_CHECK:
            return self
        if settings.claim_check_bucket is not None:
            return self
        kept_hours = self.dead_letter_retention_days * 24
        named: list[tuple[str, StreamConfig]] = [
            (f"streams.{i}.streamRetentionHours", s) for i, s in self.streams.items()
        ]
        if self.default_stream:
            named.insert(0, ("streamRetentionHours", self.stream))
        for key, stream in named:
            if stream.existing_arn is None and stream.retention_hours > kept_hours:
                raise ConfigError(
                    f"{key}={stream.retention_hours} outlives the claim checks:"
                    f" deadLetterRetentionDays={self.dead_letter_retention_days} keeps them"
                    f" {kept_hours} hours, so a consumer could read a pointer whose object is"
                    " gone; raise deadLetterRetentionDays (or set claimCheckBucket)"
                )
        return self

    @check
    def _distinct_streams(self) -> SinkConfig:
        named = [(f"streams.{i}.streamName", s.name) for i, s in self.streams.items()]
        if self.default_stream:
            named.insert(0, ("streamName", self.stream.name))
        first: dict[str, str] = {}
        for key, value in [*self._imported_arns(), *named]:
            if value is None:
                continue
            if value in first:
                raise ConfigError(f"{key}={value!r} is also {first[value]}: name each stream once")
            first[value] = key
        return self

    @check
    def _routing(self) -> SinkConfig:
        """Every topic reaches a stream, and every route carries a topic, by the function's own
        rules for patterns and its first-match routing (a route no topic reaches is a typo or
        shadowed)."""
        if not self.default_stream:
            if not self.streams:
                raise ConfigError("defaultStream=false needs streams: every topic routed there")
            # The shipped cdk.json sets some of them to their defaults, which say nothing.
            fields = StreamConfig.model_fields
            changed = [n for n in fields if getattr(self.stream, n) != fields[n].default]
            if changed:
                name = changed[0]
                raise ConfigError(
                    f"{fields[name].alias} describes the default stream,"
                    " which defaultStream=false turns off: remove it (or set it in a streams entry)"
                )
        with _function_refusal():
            for stream_id, entry in self.streams.items():
                for pattern in entry.topics:
                    check_route_pattern(pattern, f"streams.{stream_id}.topics")
            routes = tuple(StreamRoute(pattern, stream_id) for pattern, stream_id in self.routes)
            check_patterns_distinct(routes, "streams")
        if not routes:
            return self
        # The route each topic takes, by the function's own first-match routing.
        chosen: dict[str, int] = {}
        for topic in self.source.topic_names:
            route = first_route(routes, topic)
            if route is None and not self.default_stream:
                raise ConfigError(
                    f"topics: {topic!r} matches no pattern in streams and defaultStream=false:"
                    " route it in streams, or keep the default stream"
                )
            if route is not None:
                chosen[topic] = routes.index(route)
        for index, route in enumerate(routes):
            if index in chosen.values():
                continue
            matching = [topic for topic in self.source.topic_names if route.matches(topic)]
            where = f"streams.{route.stream}.topics: {route.pattern!r}"
            if not matching:
                raise ConfigError(
                    f"{where} matches no topic in topics (a typo? every route must carry one)"
                )
            winner = routes[chosen[matching[0]]]
            raise ConfigError(
                f"{where} is never used: {matching[0]!r} goes to streams.{winner.stream} by the"
                f" earlier {winner.pattern!r} (the first match wins: streams in the order written,"
                " then each entry's topics in order)"
            )
        return self


def _names(problem: str, keys: set[str]) -> bool:
    """Whether the problem's text names one of the keys (`streams.<id>.topics` is not `topics`)."""
    return any(re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", problem) for key in keys)


def _refusal(keyed: Mapping[str, str]) -> str | None:
    """What the function's own parser says of these keys, if it refuses them."""
    try:
        Settings.from_keys(keyed)
    except ConfigurationError as error:
        return str(error)
    return None


@contextmanager
def _function_refusal() -> Iterator[None]:
    """What the function's own parser refuses, in its words (which name the key): a ConfigError."""
    try:
        yield
    except ConfigurationError as error:
        raise ConfigError(str(error)) from None


_MODELS: Final[tuple[type[ContextModel], ...]] = (SinkConfig, *_SECTIONS.values())
_FIELDS: Final = {
    key: field for model in _MODELS for key, field in model.keys().items() if key not in _SECTIONS
}
# Every key; the configuration table in docs/deploy.md describes each one.
CONTEXT_KEYS: Final = tuple(_FIELDS)
