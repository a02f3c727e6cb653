"""Deployment settings: CDK context keys parsed once into a frozen, validated value.

Every key is documented in `CONTEXT_KEYS`; a wrong value raises `ConfigError` naming the key and
what is allowed, before any construct is built.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypeVar

# --- AWS limits the settings are checked against (each with the fact it encodes) ----------------

# ESM BatchSize for Amazon MSK: 1-10,000 records.
MIN_BATCH_SIZE: Final = 1
MAX_BATCH_SIZE: Final = 10_000
# MaximumBatchingWindowInSeconds: 0-300 s.
MAX_BATCHING_WINDOW_SECONDS: Final = 300
# ProvisionedPollerConfig: MinimumPollers 1-200, MaximumPollers 1-2,000.
MAX_MIN_POLLERS: Final = 200
MAX_MAX_POLLERS: Final = 2_000
# MaximumRetryAttempts: -1 (infinite) or 0-10,000. With an on-failure destination (this stack
# always has one) Lambda turns -1 into 10 (AWS: "Configuring error handling controls for Kafka
# event sources"), so -1 is refused rather than documented as "until the records expire".
MAX_RETRY_ATTEMPTS: Final = 10_000
INFINITE_RETRIES_CAP: Final = 10
# MaximumRecordAgeInSeconds: -1 (infinite) or 60-604,800 s (7 days).
MIN_RECORD_AGE_SECONDS: Final = 60
MAX_RECORD_AGE_SECONDS: Final = 604_800
# Event filtering: at most 5 filter patterns per event source mapping (default quota).
MAX_FILTERS: Final = 5
# KafkaConsumerGroupId: 1-200 characters of [a-zA-Z0-9-/*:_+=.@-].
MAX_CONSUMER_GROUP_ID_CHARS: Final = 200
# Lambda memory 128-10,240 MB; timeout 1-900 s.
MIN_MEMORY_MB: Final = 128
MAX_MEMORY_MB: Final = 10_240
MAX_TIMEOUT_SECONDS: Final = 900
# Kinesis retention 24-8,760 hours (365 days).
MIN_RETENTION_HOURS: Final = 24
MAX_RETENTION_HOURS: Final = 8_760
# Kinesis record size: 1 MiB by default, raisable to 10 MiB (MaxRecordSizeInKiB 1,024-10,240).
MIN_RECORD_SIZE_KIB: Final = 1_024
MAX_RECORD_SIZE_KIB: Final = 10_240
# Provisioned shard count: the default account quota is far below this; the API ceiling is 100,000.
MAX_SHARD_COUNT: Final = 100_000
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: Final = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# S3 lifecycle expiration on dead letters: 1 day to 10 years.
MAX_DEAD_LETTER_RETENTION_DAYS: Final = 3_650
# Sink settings (mirrors msk_kinesis_sink.settings; a test keeps the two in step).
MAX_SINK_CONCURRENCY: Final = 64
MAX_KINESIS_TIMEOUT_SECONDS: Final = 60.0
MIN_KINESIS_TIMEOUT_SECONDS: Final = 0.1

_CLUSTER_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kafka:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"cluster/(?P<name>[A-Za-z0-9-]{1,64})/(?P<uuid>[A-Za-z0-9-]{1,64})$"
)
_STREAM_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kinesis:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):"
    r"stream/(?P<name>[a-zA-Z0-9_.-]{1,128})$"
)
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z]{2}(-[a-z]+)+-\d:\d{12}:secret:(?P<name>[A-Za-z0-9/_+=.@-]+)$"
)
# A complete secret ARN ends in the 6 random characters Secrets Manager appends to the name.
_COMPLETE_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
# MSK only associates SASL/SCRAM secrets whose names start with this prefix.
SCRAM_SECRET_PREFIX: Final = "AmazonMSK_"
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z]{2}(-[a-z]+)+-\d:\d{12}:key/[a-f0-9-]{36}$")
# Kafka allows 1-249 of [a-zA-Z0-9._-]; an ESM's Topics also wants 2+ characters, no leading dot.
_TOPIC = re.compile(r"^[a-zA-Z0-9_-][a-zA-Z0-9._-]{1,248}$")
_GROUP_ID = re.compile(r"^[a-zA-Z0-9\-/*:_+=.@]+$")
_STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_METRICS_NAMESPACE = re.compile(r"^[A-Za-z0-9_.#:/-]{1,255}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s#]{1,500}$")  # 500: keeps alarm descriptions within 1,024
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


class ConfigError(ValueError):
    """A context key holds a value the stack cannot be built from."""


class StartingPosition(StrEnum):
    """Where a new consumer group starts reading a topic."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class AuthMode(StrEnum):
    """How the event source mapping authenticates to the MSK cluster."""

    IAM = "iam"
    SASL_SCRAM = "sasl_scram"
    MTLS = "mtls"


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


# The sink's own choices (RECORD_FORMAT, PARTITION_KEY, AGGREGATION), as the function accepts them.
RECORD_FORMATS: Final = ("raw", "envelope")
PARTITION_KEY_MODES: Final = ("key", "partition")
AGGREGATION_MODES: Final = ("off", "on")

# key -> one-line description; the README configuration table follows this list.
CONTEXT_KEYS: Final[Mapping[str, str]] = {
    "stackName": "CloudFormation stack name",
    "account": "AWS account to pin the stack to (12 digits); empty = environment-agnostic",
    "region": "AWS region to pin the stack to; must match the cluster's region when set",
    "clusterArn": "ARN of the MSK cluster (provisioned or serverless)",
    "topics": "topic(s) to republish: a list, or comma-separated; one event source mapping each",
    "consumerGroupId": "group prefix: the mapping of topic T joins <consumerGroupId>-T",
    "consumerGroups": "explicit group per topic (JSON object topic -> group), e.g. to keep a group",
    "startingPosition": "TRIM_HORIZON, LATEST or AT_TIMESTAMP (for a new consumer group)",
    "startingPositionTimestamp": "with AT_TIMESTAMP: ISO-8601 time or Unix seconds",
    "authentication": "iam, sasl_scram or mtls",
    "authSecretArn": "Secrets Manager ARN: SCRAM login (AmazonMSK_...) or mTLS client certificate",
    "authSecretKmsKeyArn": "customer managed KMS key ARN that encrypts authSecretArn",
    "batchSize": f"records per invocation, {MIN_BATCH_SIZE}-{MAX_BATCH_SIZE}",
    "batchingWindowSeconds": f"max wait to fill a batch, 0-{MAX_BATCHING_WINDOW_SECONDS} s",
    "minPollers": f"provisioned pollers, minimum, 1-{MAX_MIN_POLLERS}",
    "maxPollers": f"provisioned pollers, maximum, 1-{MAX_MAX_POLLERS} (>= minPollers)",
    "retryAttempts": f"retries of a failing batch before it goes to S3, 0-{MAX_RETRY_ATTEMPTS}",
    "maxRecordAgeSeconds": (
        f"discard (to S3) records older than this; -1 = never, or "
        f"{MIN_RECORD_AGE_SECONDS}-{MAX_RECORD_AGE_SECONDS}"
    ),
    "bisectOnError": "split a batch in two when the function errors (true/false)",
    "filters": f"event filter patterns (JSON objects), at most {MAX_FILTERS}",
    "streamArn": "import this existing Kinesis stream instead of creating one",
    "streamKmsKeyArn": "with streamArn: the customer managed key encrypting it",
    "streamName": "name of the stream to create (default: generated)",
    "streamMode": "on_demand or provisioned (for a created stream)",
    "shardCount": f"shards of a provisioned stream, 1-{MAX_SHARD_COUNT}",
    "streamRetentionHours": (
        f"retention of a created stream, {MIN_RETENTION_HOURS}-{MAX_RETENTION_HOURS} h"
    ),
    "streamMaxRecordSizeKiB": (
        f"max record size of the stream, {MIN_RECORD_SIZE_KIB}-{MAX_RECORD_SIZE_KIB} KiB"
    ),
    "functionMemoryMb": f"function memory, {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB",
    "functionTimeoutSeconds": f"function timeout, up to {MAX_TIMEOUT_SECONDS} s",
    "architecture": "arm64 or x86_64",
    "reservedConcurrency": "reserved concurrency (empty = unreserved)",
    "logRetentionDays": "function log retention (a CloudWatch Logs retention value)",
    "logLevel": "the function's own log level (POWERTOOLS_LOG_LEVEL): DEBUG, INFO, WARNING, ERROR",
    "serviceName": "Powertools service name (the `service` metric dimension)",
    "metricsNamespace": "CloudWatch namespace of the function's own metrics",
    "recordFormat": "Kinesis record data: raw (the Kafka value) or envelope (JSON with metadata)",
    "partitionKey": "Kinesis partition key from the Kafka key or partition: key or partition",
    "aggregation": "pack same-key runs into aggregated records: off or on",
    "maxConcurrency": f"parallel PutRecords calls per invocation, 1-{MAX_SINK_CONCURRENCY}",
    "kinesisTimeoutSeconds": "connect/read timeout of one Kinesis call",
    "retryBaseMs": "first retry backoff of throttled records, ms",
    "retryMaxMs": "backoff ceiling, ms (>= retryBaseMs)",
    "deadLetterRetentionDays": f"days dead letters are kept, 1-{MAX_DEAD_LETTER_RETENTION_DAYS}",
    "alarmEmail": "e-mail address subscribed to the alarm topic (empty = none)",
    "offsetLagAlarmThreshold": "offset lag (records) that, sustained 15 minutes, raises an alarm",
    "durationAlarmPercent": "duration as a percentage of the timeout that raises an alarm, 10-100",
    "runbookUrl": "URL of docs/runbook.md as your team reads it; alarm descriptions link into it",
}

# Context CDK itself (or its CLI) keeps beside ours, and "//" comments; any other key is a typo.
_FOREIGN_PREFIXES: Final = ("@", "aws:", "aws-cdk:", "cdk", "acknowledged-issue-numbers", "//")


@dataclass(frozen=True, slots=True)
class MskCluster:
    """An MSK cluster ARN, split so IAM resources for its topics and groups can be derived."""

    arn: str
    partition: str
    region: str
    account: str
    name: str
    uuid: str

    @classmethod
    def from_arn(cls, arn: str) -> MskCluster:
        match = _CLUSTER_ARN.match(arn)
        if match is None:
            raise ConfigError(
                f"clusterArn={arn!r} is not an MSK cluster ARN"
                " (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>)"
            )
        return cls(arn=arn, **{k: v for k, v in match.groupdict().items() if v is not None})

    def _child_arn(self, kind: str, child: str) -> str:
        return (
            f"arn:{self.partition}:kafka:{self.region}:{self.account}:"
            f"{kind}/{self.name}/{self.uuid}/{child}"
        )

    def topic_arn(self, topic: str) -> str:
        return self._child_arn("topic", topic)

    def group_arn(self, group_id: str) -> str:
        return self._child_arn("group", group_id)


@dataclass(frozen=True, slots=True)
class TopicSource:
    """One topic and the consumer group its event source mapping joins."""

    topic: str
    consumer_group_id: str


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where records come from and how the event source mappings read them."""

    cluster: MskCluster
    topics: tuple[TopicSource, ...]
    starting_position: StartingPosition
    starting_position_timestamp: int | None
    auth: AuthMode
    auth_secret_arn: str | None
    auth_secret_kms_key_arn: str | None
    batch_size: int
    batching_window_seconds: int
    min_pollers: int
    max_pollers: int
    retry_attempts: int
    max_record_age_seconds: int | None
    bisect_on_error: bool
    filters: tuple[Mapping[str, object], ...]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """The target stream: created here (encrypted with a new key) or imported by ARN."""

    existing_arn: str | None
    existing_kms_key_arn: str | None
    name: str | None
    mode: StreamMode
    shard_count: int | None
    retention_hours: int
    max_record_size_kib: int


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """The sink function and the sink's own settings passed to it as environment."""

    memory_mb: int
    timeout_seconds: int
    architecture: Architecture
    reserved_concurrency: int | None
    log_retention_days: int
    log_level: LogLevel
    service_name: str
    metrics_namespace: str
    record_format: str
    partition_key: str
    aggregation: str
    max_concurrency: int
    kinesis_timeout_seconds: float
    retry_base_ms: int
    retry_max_ms: int


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    """Where alarms go, what trips them, and where their runbook lives."""

    email: str | None
    offset_lag_threshold: int
    duration_percent: int
    runbook_url: str | None


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """The whole deployment, validated."""

    stack_name: str
    account: str | None
    region: str | None
    source: SourceConfig
    stream: StreamConfig
    function: FunctionConfig
    dead_letter_retention_days: int
    alarms: AlarmConfig

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> SinkConfig:
        """Parse and validate; raises ConfigError naming the key and what is allowed."""
        _reject_unknown_keys(context)
        ctx = _Context(context)
        cluster = MskCluster.from_arn(ctx.required_str("clusterArn"))
        region = ctx.optional_str("region", _REGION, "an AWS region such as eu-west-1")
        if region is not None and region != cluster.region:
            raise ConfigError(
                f"region={region!r} differs from the cluster's region {cluster.region!r}:"
                " the function and its event source mappings must live in the cluster's region"
            )
        return cls(
            stack_name=ctx.str_matching("stackName", "MskKinesisSink", _STACK_NAME, "a stack name"),
            account=ctx.optional_str("account", _ACCOUNT, "a 12-digit AWS account id"),
            region=region,
            source=_source(ctx, cluster),
            stream=_stream(ctx, cluster),
            function=_function(ctx),
            dead_letter_retention_days=ctx.integer(
                "deadLetterRetentionDays", 90, 1, MAX_DEAD_LETTER_RETENTION_DAYS
            ),
            alarms=AlarmConfig(
                email=ctx.optional_str("alarmEmail", _EMAIL, "an e-mail address"),
                offset_lag_threshold=ctx.integer("offsetLagAlarmThreshold", 10_000, 1, 10**12),
                duration_percent=ctx.integer("durationAlarmPercent", 80, 10, 100),
                runbook_url=ctx.optional_str(
                    "runbookUrl",
                    _URL,
                    "an http(s) URL of at most 500 characters, without #fragment",
                ),
            ),
        )


def _source(ctx: _Context, cluster: MskCluster) -> SourceConfig:
    topics = ctx.string_list("topics")
    if not topics:
        raise ConfigError("topics is required: one or more Kafka topic names")
    for topic in topics:
        if not _TOPIC.match(topic):
            raise ConfigError(
                f"topics: {topic!r} is not a topic name an event source mapping accepts"
                " (2-249 of a-z A-Z 0-9 . _ -, not starting with '.')"
            )
    if len(set(topics)) != len(topics):
        raise ConfigError(f"topics: {topics!r} lists a topic twice")
    sources = _topic_sources(ctx, topics)

    position = ctx.choice("startingPosition", StartingPosition, StartingPosition.TRIM_HORIZON)
    timestamp = ctx.timestamp("startingPositionTimestamp")
    if position is StartingPosition.AT_TIMESTAMP and timestamp is None:
        raise ConfigError(
            "startingPositionTimestamp is required when startingPosition=AT_TIMESTAMP"
        )
    if position is not StartingPosition.AT_TIMESTAMP and timestamp is not None:
        raise ConfigError(
            f"startingPositionTimestamp is only allowed with startingPosition=AT_TIMESTAMP"
            f" (startingPosition={position.value})"
        )

    auth = ctx.choice("authentication", AuthMode, AuthMode.IAM)
    secret = ctx.optional_str("authSecretArn", _SECRET_ARN, "a Secrets Manager secret ARN")
    secret_key = ctx.optional_str("authSecretKmsKeyArn", _KMS_KEY_ARN, "a KMS key ARN")
    if auth is AuthMode.IAM and (secret or secret_key):
        raise ConfigError("authSecretArn/authSecretKmsKeyArn are only used with sasl_scram or mtls")
    if auth is not AuthMode.IAM and secret is None:
        raise ConfigError(f"authSecretArn is required when authentication={auth.value}")
    if secret is not None and not _COMPLETE_SECRET_SUFFIX.search(secret):
        raise ConfigError(
            f"authSecretArn={secret!r} is a partial ARN: give the complete one, ending in the"
            " 6 characters Secrets Manager appends to the name (...:secret:<name>-AbCdEf)"
        )
    # AWS: "Set up SASL/SCRAM authentication for an Amazon MSK cluster": a secret encrypted with
    # the default Secrets Manager key cannot be used with MSK, so the mapping needs the key's ARN.
    if auth is AuthMode.SASL_SCRAM and secret_key is None:
        raise ConfigError(
            "authSecretKmsKeyArn is required when authentication=sasl_scram: MSK only uses"
            " SCRAM secrets encrypted with a customer managed KMS key, and the role needs"
            " kms:Decrypt on it"
        )
    if auth is AuthMode.SASL_SCRAM and secret is not None:
        name = secret.split(":secret:", 1)[1]
        if not name.startswith(SCRAM_SECRET_PREFIX):
            raise ConfigError(
                f"authSecretArn: secret {name!r} must be named {SCRAM_SECRET_PREFIX}... for"
                " sasl_scram (MSK associates no other SCRAM secrets)"
            )

    min_pollers = ctx.integer("minPollers", 1, 1, MAX_MIN_POLLERS)
    max_pollers = ctx.integer("maxPollers", 10, 1, MAX_MAX_POLLERS)
    if min_pollers > max_pollers:
        raise ConfigError(f"minPollers={min_pollers} must be <= maxPollers={max_pollers}")

    max_age = ctx.integer("maxRecordAgeSeconds", -1, -1, MAX_RECORD_AGE_SECONDS)
    if 0 <= max_age < MIN_RECORD_AGE_SECONDS:
        raise ConfigError(
            f"maxRecordAgeSeconds={max_age} is out of range"
            f" (allowed: -1, or {MIN_RECORD_AGE_SECONDS}-{MAX_RECORD_AGE_SECONDS})"
        )

    return SourceConfig(
        cluster=cluster,
        topics=sources,
        starting_position=position,
        starting_position_timestamp=timestamp,
        auth=auth,
        auth_secret_arn=secret,
        auth_secret_kms_key_arn=secret_key,
        batch_size=ctx.integer("batchSize", 500, MIN_BATCH_SIZE, MAX_BATCH_SIZE),
        batching_window_seconds=ctx.integer(
            "batchingWindowSeconds", 1, 0, MAX_BATCHING_WINDOW_SECONDS
        ),
        min_pollers=min_pollers,
        max_pollers=max_pollers,
        retry_attempts=_retry_attempts(ctx),
        max_record_age_seconds=None if max_age == -1 else max_age,
        bisect_on_error=ctx.boolean("bisectOnError", True),
        filters=ctx.filters("filters"),
    )


def _topic_sources(ctx: _Context, topics: Sequence[str]) -> tuple[TopicSource, ...]:
    """Each topic's group depends on that topic alone, so adding a topic renames no group.

    A mapping's group can't change after creation (AWS: "Customizable consumer group ID in
    Lambda"); a renamed group means a new mapping reading from startingPosition.
    """
    prefix = ctx.str_matching(
        "consumerGroupId", "msk-kinesis-sink", _GROUP_ID, "a group id (a-z A-Z 0-9 -/*_+=.@)"
    )
    explicit = ctx.string_map("consumerGroups")
    for topic in explicit:
        if topic not in topics:
            raise ConfigError(f"consumerGroups names topic {topic!r}, which is not in topics")
    sources = tuple(TopicSource(t, explicit.get(t, f"{prefix}-{t}")) for t in topics)
    seen: set[str] = set()
    for source in sources:
        key = "consumerGroups" if source.topic in explicit else "consumerGroupId"
        group = source.consumer_group_id
        if not _GROUP_ID.match(group):
            raise ConfigError(f"{key}: {group!r} is not a group id (a-z A-Z 0-9 -/*_+=.@)")
        # AWS: "Monitor consumer lags": MSK emits no consumer-lag metrics for such a group.
        if ":" in group:
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
    return sources


def _retry_attempts(ctx: _Context) -> int:
    if str(ctx.raw("retryAttempts")).strip() == "-1":
        raise ConfigError(
            f"retryAttempts=-1 (infinite) cannot apply here: with the S3 on-failure destination"
            f" this stack always sets, Lambda caps retries at {INFINITE_RETRIES_CAP}"
            f" (allowed: 0-{MAX_RETRY_ATTEMPTS})"
        )
    return ctx.integer("retryAttempts", 10, 0, MAX_RETRY_ATTEMPTS)


def _stream(ctx: _Context, cluster: MskCluster) -> StreamConfig:
    existing = ctx.optional_str("streamArn", _STREAM_ARN, "a Kinesis stream ARN")
    key = ctx.optional_str("streamKmsKeyArn", _KMS_KEY_ARN, "a KMS key ARN")
    name = ctx.optional_str("streamName", _STREAM_NAME, "a stream name (1-128 of a-zA-Z0-9_.-)")
    mode = ctx.choice("streamMode", StreamMode, StreamMode.ON_DEMAND)
    shards = ctx.optional_integer("shardCount", 1, MAX_SHARD_COUNT)
    if existing is not None:
        region = existing.split(":")[3]
        if region != cluster.region:
            raise ConfigError(
                f"streamArn is in {region!r} but the cluster is in {cluster.region!r}:"
                " the function writes to a stream in its own region"
            )
        for key_name, value in (("streamName", name), ("shardCount", shards)):
            if value is not None:
                raise ConfigError(f"{key_name} only applies to a created stream, not streamArn")
        for key_name in ("streamMode", "streamRetentionHours"):
            if ctx.present(key_name):
                raise ConfigError(f"{key_name} only applies to a created stream, not streamArn")
    elif key is not None:
        raise ConfigError(
            "streamKmsKeyArn only applies with streamArn (a created stream has its own key)"
        )
    if mode is StreamMode.ON_DEMAND and shards is not None:
        raise ConfigError("shardCount only applies with streamMode=provisioned")
    if mode is StreamMode.PROVISIONED and shards is None:
        shards = 1
    return StreamConfig(
        existing_arn=existing,
        existing_kms_key_arn=key,
        name=name,
        mode=mode,
        shard_count=shards,
        retention_hours=ctx.integer(
            "streamRetentionHours", MIN_RETENTION_HOURS, MIN_RETENTION_HOURS, MAX_RETENTION_HOURS
        ),
        max_record_size_kib=ctx.integer(
            "streamMaxRecordSizeKiB", MIN_RECORD_SIZE_KIB, MIN_RECORD_SIZE_KIB, MAX_RECORD_SIZE_KIB
        ),
    )


def _function(ctx: _Context) -> FunctionConfig:
    kinesis_timeout = ctx.number(
        "kinesisTimeoutSeconds", 5.0, MIN_KINESIS_TIMEOUT_SECONDS, MAX_KINESIS_TIMEOUT_SECONDS
    )
    # Any timeout works with any kinesisTimeoutSeconds: the function bounds each request by the
    # time the invocation has left (a short timeout only means smaller steps per invocation).
    timeout = ctx.integer("functionTimeoutSeconds", 120, 1, MAX_TIMEOUT_SECONDS)
    retry_base = ctx.integer("retryBaseMs", 10, 1, 10_000)
    retry_max = ctx.integer("retryMaxMs", 2_000, 1, 60_000)
    if retry_max < retry_base:
        raise ConfigError(f"retryMaxMs={retry_max} must be >= retryBaseMs={retry_base}")
    retention = ctx.integer("logRetentionDays", 30, 1, LOG_RETENTION_DAYS[-1])
    if retention not in LOG_RETENTION_DAYS:
        allowed = ", ".join(str(days) for days in LOG_RETENTION_DAYS)
        raise ConfigError(f"logRetentionDays={retention} is not one of: {allowed}")
    return FunctionConfig(
        memory_mb=ctx.integer("functionMemoryMb", 1024, MIN_MEMORY_MB, MAX_MEMORY_MB),
        timeout_seconds=timeout,
        architecture=ctx.choice("architecture", Architecture, Architecture.ARM64),
        reserved_concurrency=ctx.optional_integer("reservedConcurrency", 1, 10_000),
        log_retention_days=retention,
        log_level=ctx.choice("logLevel", LogLevel, LogLevel.INFO),
        service_name=ctx.str_matching(
            "serviceName", "msk-kinesis-sink", _SERVICE_NAME, "1-128 of A-Z a-z 0-9 _ . -"
        ),
        metrics_namespace=ctx.str_matching(
            "metricsNamespace", "MskKinesisSink", _METRICS_NAMESPACE, "a CloudWatch namespace"
        ),
        record_format=ctx.word("recordFormat", RECORD_FORMATS),
        partition_key=ctx.word("partitionKey", PARTITION_KEY_MODES),
        aggregation=ctx.word("aggregation", AGGREGATION_MODES, default="on"),
        max_concurrency=ctx.integer("maxConcurrency", 8, 1, MAX_SINK_CONCURRENCY),
        kinesis_timeout_seconds=kinesis_timeout,
        retry_base_ms=retry_base,
        retry_max_ms=retry_max,
    )


def _reject_unknown_keys(context: Mapping[str, object]) -> None:
    for key in context:
        if key in CONTEXT_KEYS or key.startswith(_FOREIGN_PREFIXES):
            continue
        close = difflib.get_close_matches(key, list(CONTEXT_KEYS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown context key {key!r}{hint}; see README configuration")


_E = TypeVar("_E", bound=StrEnum)


class _Context:
    """Typed reads of raw context values (from cdk.json, or strings from `-c key=value`)."""

    def __init__(self, raw: Mapping[str, object]) -> None:
        self._raw = raw

    def present(self, key: str) -> bool:
        value = self._raw.get(key)
        return value is not None and value != ""

    def raw(self, key: str) -> object | None:
        return self._raw.get(key)

    def _get(self, key: str) -> object | None:
        value = self._raw.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value.strip() if isinstance(value, str) else value

    def required_str(self, key: str) -> str:
        value = self._get(key)
        if value is None:
            raise ConfigError(f"{key} is required ({CONTEXT_KEYS[key]})")
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string ({CONTEXT_KEYS[key]})")
        return value

    def optional_str(self, key: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not pattern.match(value):
            raise ConfigError(f"{key}={value!r} is not {what}")
        return value

    def str_matching(self, key: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        value = self.optional_str(key, pattern, what)
        return default if value is None else value

    def word(self, key: str, allowed: Sequence[str], default: str | None = None) -> str:
        value = self._get(key)
        if value is None:
            return allowed[0] if default is None else default
        if not isinstance(value, str) or value.lower() not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(allowed)}")
        return value.lower()

    def choice(self, key: str, enum: type[_E], default: _E) -> _E:
        value = self._get(key)
        if value is None:
            return default
        for member in enum:
            if isinstance(value, str) and value.lower() == member.value.lower():
                return member
        allowed = ", ".join(member.value for member in enum)
        raise ConfigError(f"{key}={value!r} is not one of: {allowed}")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.optional_integer(key, low, high)
        return default if value is None else value

    def optional_integer(self, key: str, low: int, high: int) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        parsed: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            parsed = value
        elif isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            parsed = int(value)
        if parsed is None:
            raise ConfigError(f"{key}={value!r} is not an integer (allowed: {low}-{high})")
        if not low <= parsed <= high:
            raise ConfigError(f"{key}={parsed} is out of range (allowed: {low}-{high})")
        return parsed

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            parsed = float(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a number (allowed: {low}-{high})") from None
        if not low <= parsed <= high:
            raise ConfigError(f"{key}={value} is out of range (allowed: {low}-{high})")
        return parsed

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}={value!r} is not true or false")

    def string_list(self, key: str) -> list[str]:
        value = self._get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [item.strip() for item in value]
        raise ConfigError(f"{key}={value!r} must be a list of strings or a comma-separated string")

    def string_map(self, key: str) -> dict[str, str]:
        """A JSON object of strings (from cdk.json, or a JSON string from `-c key=...`)."""
        value = self._get(key)
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{key} must be a JSON object of strings (topic -> group id)")
        return {k.strip(): v.strip() for k, v in value.items()}

    def timestamp(self, key: str) -> int | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif isinstance(value, str) and value.isdigit():
            seconds = int(value)
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"{key}={value!r} is neither an ISO-8601 time nor Unix seconds"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = int(parsed.timestamp())
        else:
            raise ConfigError(f"{key}={value!r} is neither an ISO-8601 time nor Unix seconds")
        if seconds <= 0:
            raise ConfigError(f"{key}={value!r} must be after 1970-01-01")
        return seconds

    def filters(self, key: str) -> tuple[Mapping[str, object], ...]:
        value = self._get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{key} is not valid JSON (a list of filter patterns)") from None
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(f"{key} must be a list of filter patterns (JSON objects)")
        if len(value) > MAX_FILTERS:
            raise ConfigError(f"{key} has {len(value)} patterns (allowed: at most {MAX_FILTERS})")
        for pattern in value:
            if not pattern:
                raise ConfigError(f"{key}: an empty pattern would match every record; remove it")
        return tuple(value)
