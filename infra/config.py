"""Deployment settings: CDK context keys validated once into frozen, typed models (pydantic).

A field per key: its alias is the cdk.json key and its docstring the key's description. A wrong
value raises `ConfigError`, one line naming the key and what is allowed, before any construct is
built. The keys that are the function's own settings are read by the function's own parser.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import DEFAULT_MAX_RECORD_BYTES, MAX_RECORD_BYTES_CEILING
from msk_kinesis_sink.settings import Aggregation, PartitionKeyMode, RecordFormat, Settings

# AWS limits used beyond their field (each field states the limit it encodes).
MAX_BATCH_SIZE: Final = 10_000  # ESM BatchSize for Amazon MSK: 1-10,000 records
# Kinesis MaxRecordSizeInKiB: 1 MiB by default, raisable to 10 MiB (as the function reads it).
MIN_RECORD_SIZE_KIB: Final = DEFAULT_MAX_RECORD_BYTES // 1024
MAX_RECORD_SIZE_KIB: Final = MAX_RECORD_BYTES_CEILING // 1024
# MaximumRetryAttempts: -1 (infinite) or 0-10,000. With an on-failure destination (this stack
# always has one) Lambda turns -1 into 10 (AWS: "Configuring error handling controls for Kafka
# event sources"), so -1 is refused rather than documented as "until the records expire".
MAX_RETRY_ATTEMPTS: Final = 10_000
INFINITE_RETRIES_CAP: Final = 10
# MaximumRecordAgeInSeconds: -1 (infinite) or 60-604,800 s (7 days).
MIN_RECORD_AGE_SECONDS: Final = 60
# KafkaConsumerGroupId: 1-200 characters of [a-zA-Z0-9-/*:_+=.@-].
MAX_CONSUMER_GROUP_ID_CHARS: Final = 200
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
# Kafka allows 1-249 of [a-zA-Z0-9._-]; an ESM's Topics also wants 2+ characters, no leading dot.
_TOPIC = re.compile(r"^[a-zA-Z0-9_-][a-zA-Z0-9._-]{1,248}$")
_GROUP_ID = re.compile(r"^[a-zA-Z0-9\-/*:_+=.@]+$")
# A complete secret ARN ends in the 6 random characters Secrets Manager appends to the name.
_COMPLETE_SECRET_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_INTEGER = re.compile(r"-?\d+")
_REGION = r"[a-z]{2}(-[a-z]+)+-\d"

# Context CDK itself (or its CLI) keeps beside ours, and "//" comments; any other key is a typo.
_FOREIGN_PREFIXES: Final = ("@", "aws:", "aws-cdk:", "cdk", "acknowledged-issue-numbers", "//")
# Keys that are the function's own settings: key -> (its variable, the Settings attribute).
SINK_SETTINGS: Final[Mapping[str, tuple[str, str]]] = {
    "recordFormat": ("RECORD_FORMAT", "record_format"),
    "partitionKey": ("PARTITION_KEY", "partition_key"),
    "aggregation": ("AGGREGATION", "aggregation"),
    "maxConcurrency": ("MAX_CONCURRENCY", "max_concurrency"),
    "kinesisTimeoutSeconds": ("KINESIS_TIMEOUT_SECONDS", "request_timeout_seconds"),
    "retryBaseMs": ("RETRY_BASE_MS", "retry_base_ms"),
    "retryMaxMs": ("RETRY_MAX_MS", "retry_max_ms"),
}
# Every variable of the function's environment that a context key sets.
_KEY_OF_VARIABLE: Final = {
    "STREAM_NAME": "streamArn",
    "MAX_RECORD_BYTES": "streamMaxRecordSizeKiB",
    "POWERTOOLS_LOG_LEVEL": "logLevel",
    **{variable: key for key, (variable, _) in SINK_SETTINGS.items()},
}


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
    def from_arn(cls, arn: object) -> MskCluster:
        match = _CLUSTER_ARN.match(arn) if isinstance(arn, str) else None
        if match is None:
            raise ConfigError(
                f"clusterArn={arn!r} is not an MSK cluster ARN"
                " (arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>)"
            )
        return cls(arn=match.group(0), **match.groupdict())

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


# Field validators. A ValueError's text follows the key in the message (`batchSize` + `=0 is
# ...`); a ConfigError is the whole message, naming its keys itself.


def _matching(pattern: str, what: str) -> BeforeValidator:
    regex = re.compile(f"^{pattern}$")

    def check(value: object) -> object:
        if not isinstance(value, str) or not regex.match(value):
            raise ValueError(f"={value!r} is not {what}")
        return value

    return BeforeValidator(check)


def _arn(service: str, resource: str) -> str:
    return rf"arn:aws[a-z-]*:{service}:{_REGION}:\d{{12}}:{resource}"


StackName = Annotated[str, _matching(r"[A-Za-z][A-Za-z0-9-]{0,127}", "a stack name")]
Account = Annotated[str, _matching(r"\d{12}", "a 12-digit AWS account id")]
Region = Annotated[str, _matching(_REGION, "an AWS region such as eu-west-1")]
GroupId = Annotated[str, _matching(_GROUP_ID.pattern[1:-1], "a group id (a-z A-Z 0-9 -/*_+=.@)")]
SecretArn = Annotated[
    str,
    _matching(_arn("secretsmanager", "secret:[A-Za-z0-9/_+=.@-]+"), "a Secrets Manager secret ARN"),
]
KmsKeyArn = Annotated[str, _matching(_arn("kms", "key/[a-f0-9-]{36}"), "a KMS key ARN")]
StreamArn = Annotated[
    str, _matching(_arn("kinesis", "stream/[a-zA-Z0-9_.-]{1,128}"), "a Kinesis stream ARN")
]
StreamName = Annotated[
    str, _matching(r"[a-zA-Z0-9_.-]{1,128}", "a stream name (1-128 of a-zA-Z0-9_.-)")
]
ServiceName = Annotated[str, _matching(r"[A-Za-z0-9_.-]{1,128}", "1-128 of A-Z a-z 0-9 _ . -")]
Namespace = Annotated[str, _matching(r"[A-Za-z0-9_.#:/-]{1,255}", "a CloudWatch namespace")]
Email = Annotated[str, _matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an e-mail address")]
# 500: keeps alarm descriptions within 1,024 characters.
Url = Annotated[
    str,
    _matching(
        r"https?://[^\s#]{1,500}", "an http(s) URL of at most 500 characters, without #fragment"
    ),
]


def _json(value: object, what: str) -> object:
    """A value from cdk.json, or the same as a JSON string from `-c key=...`."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        raise ValueError(f" is not valid JSON ({what})") from None


def _topic_names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"={value!r} must be a list of strings or a comma-separated string")
    if not value:
        raise ValueError(" is required: one or more Kafka topic names")
    topics = tuple(item.strip() for item in value)
    for topic in topics:
        if not _TOPIC.match(topic):
            raise ValueError(
                f": {topic!r} is not a topic name an event source mapping accepts"
                " (2-249 of a-z A-Z 0-9 . _ -, not starting with '.')"
            )
    if len(set(topics)) != len(topics):
        raise ValueError(f": {list(topics)!r} lists a topic twice")
    return topics


def _group_map(value: object) -> dict[str, str]:
    groups = _json(value, "a JSON object of strings (topic -> group id)")
    if not isinstance(groups, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in groups.items()
    ):
        raise ValueError(" must be a JSON object of strings (topic -> group id)")
    return {k.strip(): v.strip() for k, v in groups.items()}


def _unix_seconds(value: object) -> int:
    seconds = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            seconds = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
        except ValueError:
            pass
    if seconds is None:
        raise ValueError(f"={value!r} is neither an ISO-8601 time nor Unix seconds")
    if seconds <= 0:
        raise ValueError(f"={value!r} must be after 1970-01-01")
    return seconds


def _finite_retries(value: object) -> object:
    if value == -1:
        raise ValueError(
            f"=-1 (infinite) cannot apply here: with the S3 on-failure destination this stack"
            f" always sets, Lambda caps retries at {INFINITE_RETRIES_CAP}"
            f" (allowed: 0-{MAX_RETRY_ATTEMPTS})"
        )
    return value


def _record_age(value: int | None) -> int | None:
    if value is not None and 0 <= value < MIN_RECORD_AGE_SECONDS:
        raise ValueError(f"={value} is out of range (allowed: -1, or 60-604800)")
    return None if value == -1 else value


def _filter_patterns(value: object) -> tuple[dict[str, Any], ...]:
    patterns = _json(value, "a list of filter patterns")
    patterns = [patterns] if isinstance(patterns, dict) else patterns
    if not isinstance(patterns, list) or not all(isinstance(p, dict) for p in patterns):
        raise ValueError(" must be a list of filter patterns (JSON objects)")
    # Event filtering: at most 5 filter patterns per event source mapping (default quota).
    if len(patterns) > 5:
        raise ValueError(f" has {len(patterns)} patterns (allowed: at most 5)")
    if not all(patterns):
        raise ValueError(": an empty pattern would match every record; remove it")
    return tuple(patterns)


def _log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"={days} is not one of: {', '.join(map(str, LOG_RETENTION_DAYS))}")
    return days


class _Keys(BaseModel):
    """A group of context keys: camelCase aliases, nothing unknown, values as `-c` gives them."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        use_attribute_docstrings=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: object, info: ValidationInfo) -> object:
        """`-c key=value` hands every value over as a string: read digits, true/false, choices."""
        annotation = cls.model_fields[str(info.field_name)].annotation
        if not isinstance(value, str):
            return value
        if _value_type(annotation) is int and _INTEGER.fullmatch(value):
            return int(value)
        if _value_type(annotation) is bool and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return next((m for m in _choices(annotation) if m.value.lower() == value.lower()), value)


class SourceConfig(_Keys):
    """Where records come from and how the event source mappings read them."""

    cluster: Annotated[MskCluster, PlainValidator(MskCluster.from_arn)] = Field(alias="clusterArn")
    """ARN of the MSK cluster (provisioned or serverless)"""
    topic_names: Annotated[tuple[str, ...], BeforeValidator(_topic_names)] = Field(alias="topics")
    """topic(s) to republish: a list, or comma-separated; one event source mapping each"""
    consumer_group_id: GroupId = "msk-kinesis-sink"
    """group prefix: the mapping of topic T joins <consumerGroupId>-T"""
    consumer_groups: Annotated[dict[str, str], BeforeValidator(_group_map)] = {}
    """explicit group per topic (JSON object topic -> group), e.g. to keep a group"""
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    """TRIM_HORIZON, LATEST or AT_TIMESTAMP (for a new consumer group)"""
    starting_position_timestamp: Annotated[int | None, BeforeValidator(_unix_seconds)] = None
    """with AT_TIMESTAMP: ISO-8601 time or Unix seconds"""
    auth: AuthMode = Field(AuthMode.IAM, alias="authentication")
    """iam, sasl_scram or mtls"""
    auth_secret_arn: SecretArn | None = None
    """Secrets Manager ARN: SCRAM login (AmazonMSK_...) or mTLS client certificate"""
    auth_secret_kms_key_arn: KmsKeyArn | None = None
    """customer managed KMS key ARN that encrypts authSecretArn"""
    batch_size: Annotated[int, Interval(ge=1, le=MAX_BATCH_SIZE)] = 500
    """records per invocation"""
    batching_window_seconds: Annotated[int, Interval(ge=0, le=300)] = 1  # AWS: 0-300 s
    """max wait to fill a batch, s"""
    # ProvisionedPollerConfig: MinimumPollers 1-200, MaximumPollers 1-2,000.
    min_pollers: Annotated[int, Interval(ge=1, le=200)] = 1
    """provisioned pollers, minimum"""
    max_pollers: Annotated[int, Interval(ge=1, le=2_000)] = 10
    """provisioned pollers, maximum (>= minPollers)"""
    retry_attempts: Annotated[
        int, BeforeValidator(_finite_retries), Interval(ge=0, le=MAX_RETRY_ATTEMPTS)
    ] = 10
    """retries of a failing batch before it goes to S3"""
    max_record_age_seconds: Annotated[
        int | None, Interval(ge=-1, le=604_800), AfterValidator(_record_age)
    ] = None
    """discard (to S3) records older than this; -1 = never, or 60-604800"""
    bisect_on_error: bool = True
    """split a batch in two when the function errors (true/false)"""
    filters: Annotated[tuple[dict[str, Any], ...], BeforeValidator(_filter_patterns)] = ()
    """event filter patterns (JSON objects), at most 5"""

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

    @model_validator(mode="after")
    def _consumer_groups(self) -> SourceConfig:
        for topic in self.consumer_groups:
            if topic not in self.topic_names:
                raise ConfigError(f"consumerGroups names topic {topic!r}, which is not in topics")
        seen: set[str] = set()
        for source in self.topics:
            key = "consumerGroups" if source.topic in self.consumer_groups else "consumerGroupId"
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
        return self

    @model_validator(mode="after")
    def _position_and_pollers(self) -> SourceConfig:
        at_timestamp = self.starting_position is StartingPosition.AT_TIMESTAMP
        if at_timestamp and self.starting_position_timestamp is None:
            raise ConfigError(
                "startingPositionTimestamp is required when startingPosition=AT_TIMESTAMP"
            )
        if not at_timestamp and self.starting_position_timestamp is not None:
            raise ConfigError(
                f"startingPositionTimestamp is only allowed with startingPosition=AT_TIMESTAMP"
                f" (startingPosition={self.starting_position.value})"
            )
        if self.min_pollers > self.max_pollers:
            raise ConfigError(
                f"minPollers={self.min_pollers} must be <= maxPollers={self.max_pollers}"
            )
        return self

    @model_validator(mode="after")
    def _authentication(self) -> SourceConfig:
        auth, secret, secret_key = self.auth, self.auth_secret_arn, self.auth_secret_kms_key_arn
        if auth is AuthMode.IAM and (secret or secret_key):
            raise ConfigError(
                "authSecretArn/authSecretKmsKeyArn are only used with sasl_scram or mtls"
            )
        if auth is not AuthMode.IAM and secret is None:
            raise ConfigError(f"authSecretArn is required when authentication={auth.value}")
        if secret is not None and not _COMPLETE_SECRET_SUFFIX.search(secret):
            raise ConfigError(
                f"authSecretArn={secret!r} is a partial ARN: give the complete one, ending in the"
                " 6 characters Secrets Manager appends to the name (...:secret:<name>-AbCdEf)"
            )
        # AWS: "Set up SASL/SCRAM authentication for an Amazon MSK cluster": a secret encrypted
        # with the default Secrets Manager key cannot be used with MSK: the mapping needs the key.
        if auth is AuthMode.SASL_SCRAM and secret_key is None:
            raise ConfigError(
                "authSecretKmsKeyArn is required when authentication=sasl_scram: MSK only uses"
                " SCRAM secrets encrypted with a customer managed KMS key, and the role needs"
                " kms:Decrypt on it"
            )
        name = (secret or "").split(":secret:")[-1]
        if auth is AuthMode.SASL_SCRAM and not name.startswith(SCRAM_SECRET_PREFIX):
            raise ConfigError(
                f"authSecretArn: secret {name!r} must be named {SCRAM_SECRET_PREFIX}... for"
                " sasl_scram (MSK associates no other SCRAM secrets)"
            )
        return self


class StreamConfig(_Keys):
    """The target stream: created here (encrypted with a new key) or imported by ARN."""

    existing_arn: StreamArn | None = Field(None, alias="streamArn")
    """import this existing Kinesis stream instead of creating one"""
    existing_kms_key_arn: KmsKeyArn | None = Field(None, alias="streamKmsKeyArn")
    """with streamArn: the customer managed key encrypting it"""
    name: StreamName | None = Field(None, alias="streamName")
    """name of the stream to create (default: generated)"""
    mode: StreamMode = Field(StreamMode.ON_DEMAND, alias="streamMode")
    """on_demand or provisioned (for a created stream)"""
    # The default account quota is far below it; the API ceiling is 100,000 shards.
    shard_count: Annotated[int | None, Interval(ge=1, le=100_000)] = None
    """shards of a provisioned stream"""
    # Kinesis retention: 24-8,760 hours (365 days).
    retention_hours: Annotated[int, Interval(ge=24, le=8_760)] = Field(
        24, alias="streamRetentionHours"
    )
    """retention of a created stream, hours"""
    max_record_size_kib: Annotated[
        int, Interval(ge=MIN_RECORD_SIZE_KIB, le=MAX_RECORD_SIZE_KIB)
    ] = Field(MIN_RECORD_SIZE_KIB, alias="streamMaxRecordSizeKiB")
    """max record size of the stream, KiB"""

    @model_validator(mode="after")
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


class FunctionConfig(_Keys):
    """The sink function, and the sink's own settings as its parser reads them."""

    # Lambda memory: 128-10,240 MB; timeout: 1-900 s. Any timeout works with any
    # kinesisTimeoutSeconds: the function bounds each request by the time the invocation has left.
    memory_mb: Annotated[int, Interval(ge=128, le=10_240)] = Field(1024, alias="functionMemoryMb")
    """function memory, MB"""
    timeout_seconds: Annotated[int, Interval(ge=1, le=900)] = Field(
        120, alias="functionTimeoutSeconds"
    )
    """function timeout, s"""
    architecture: Architecture = Architecture.ARM64
    """arm64 or x86_64"""
    reserved_concurrency: Annotated[int | None, Interval(ge=1, le=10_000)] = None
    """reserved concurrency (empty = unreserved)"""
    log_retention_days: Annotated[
        int, Interval(ge=1, le=LOG_RETENTION_DAYS[-1]), AfterValidator(_log_retention)
    ] = 30
    """function log retention (a CloudWatch Logs retention value)"""
    log_level: LogLevel = LogLevel.INFO
    """the function's own log level (POWERTOOLS_LOG_LEVEL): DEBUG, INFO, WARNING, ERROR"""
    service_name: ServiceName = "msk-kinesis-sink"
    """Powertools service name (the `service` metric dimension)"""
    metrics_namespace: Namespace = "MskKinesisSink"
    """CloudWatch namespace of the function's own metrics"""
    # The function's own settings (SINK_SETTINGS): its parser gives their values and defaults.
    record_format: RecordFormat
    """Kinesis record data: raw (the Kafka value) or envelope (JSON with metadata)"""
    partition_key: PartitionKeyMode
    """Kinesis partition key from the Kafka key or partition: key or partition"""
    aggregation: Aggregation
    """pack same-key runs into aggregated records: off or on"""
    max_concurrency: int
    """parallel PutRecords calls per invocation"""
    kinesis_timeout_seconds: float
    """connect/read timeout of one Kinesis call"""
    retry_base_ms: int
    """first retry backoff of throttled records, ms"""
    retry_max_ms: int
    """backoff ceiling, ms (>= retryBaseMs)"""

    @model_validator(mode="before")
    @classmethod
    def _sink_settings(cls, data: dict[str, object]) -> dict[str, object]:
        env = {var: str(data[key]) for key, (var, _) in SINK_SETTINGS.items() if key in data}
        settings = function_settings({"STREAM_NAME": "checked-at-synth", **env})
        return data | {key: getattr(settings, attr) for key, (_, attr) in SINK_SETTINGS.items()}

    def sink_environment(self) -> dict[str, str]:
        """The sink's own settings as the function's environment variables."""
        return {
            var: _as_text(getattr(self, to_snake(key))) for key, (var, _) in SINK_SETTINGS.items()
        }


class AlarmConfig(_Keys):
    """Where alarms go, what trips them, and where their runbook lives."""

    email: Email | None = Field(None, alias="alarmEmail")
    """e-mail address subscribed to the alarm topic (empty = none)"""
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


_SECTIONS: Final[Mapping[str, type[_Keys]]] = {
    "source": SourceConfig,
    "stream": StreamConfig,
    "function": FunctionConfig,
    "alarms": AlarmConfig,
}


class SinkConfig(_Keys):
    """The whole deployment, validated."""

    stack_name: StackName = "MskKinesisSink"
    """CloudFormation stack name"""
    account: Account | None = None
    """AWS account to pin the stack to (12 digits); empty = environment-agnostic"""
    region: Region | None = None
    """AWS region to pin the stack to; must match the cluster's region when set"""
    # S3 lifecycle expiration: 1 day to 10 years.
    dead_letter_retention_days: Annotated[int, Interval(ge=1, le=3_650)] = 90
    """days dead letters are kept"""
    source: SourceConfig
    stream: StreamConfig
    function: FunctionConfig
    alarms: AlarmConfig

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> SinkConfig:
        """Parse and validate; raises ConfigError naming the key and what is allowed."""
        try:
            return cls.model_validate(dict(context))
        except ValidationError as error:
            raise ConfigError(_message(error)) from None

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, context: dict[str, object]) -> dict[str, object]:
        """cdk.json's context is flat: each section gets its keys; unknown keys stay here."""
        given = {
            key: value.strip() if isinstance(value, str) else value
            for key, value in context.items()
            if not key.startswith(_FOREIGN_PREFIXES) and value is not None
        }
        given = {key: value for key, value in given.items() if value != ""}
        if clash := sorted(set(given) & set(_SECTIONS)):
            raise ConfigError(_unknown_key(clash[0]))
        sections = {
            name: {k: given.pop(k) for k in _aliases(m) & set(given)}
            for name, m in _SECTIONS.items()
        }
        return given | sections

    @model_validator(mode="after")
    def _one_region(self) -> SinkConfig:
        cluster_region = self.source.cluster.region
        if self.region is not None and self.region != cluster_region:
            raise ConfigError(
                f"region={self.region!r} differs from the cluster's region {cluster_region!r}:"
                " the function and its event source mappings must live in the cluster's region"
            )
        stream_region = (self.stream.existing_arn or "").split(":")[3:4]
        if stream_region and stream_region[0] != cluster_region:
            raise ConfigError(
                f"streamArn is in {stream_region[0]!r} but the cluster is in {cluster_region!r}:"
                " the function writes to a stream in its own region"
            )
        return self


def function_settings(env: Mapping[str, str]) -> Settings:
    """The function's own reading of `env`; what it refuses is a ConfigError naming the key."""
    try:
        return Settings.from_env(env)
    except ConfigurationError as error:
        variables = "|".join(_KEY_OF_VARIABLE)
        message = re.sub(rf"\b({variables})\b", lambda m: _KEY_OF_VARIABLE[m[1]], str(error))
        raise ConfigError(message) from None


def _as_text(value: object) -> str:
    if isinstance(value, StrEnum):
        return value.value
    return f"{value:g}" if isinstance(value, float) else str(value)


def _value_type(annotation: object) -> object:
    """int for `int | None` and `Annotated[int, ...]`: what a text value should become."""
    while get_origin(annotation) in (Union, UnionType, Annotated):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _choices(annotation: object) -> tuple[StrEnum, ...]:
    kind = _value_type(annotation)
    return tuple(kind) if isinstance(kind, type) and issubclass(kind, StrEnum) else ()


def _aliases(model: type[BaseModel]) -> set[str]:
    return {str(field.alias) for field in model.model_fields.values()}


def _unknown_key(key: str) -> str:
    close = difflib.get_close_matches(key, list(CONTEXT_KEYS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown context key {key!r}{hint}; see README configuration"


def _message(error: ValidationError) -> str:
    """The first problem as one line: the key, the value, and what is allowed."""
    first = error.errors()[0]
    kind, value = first["type"], first.get("input")
    key = str(first["loc"][-1]) if first["loc"] else ""
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ValueError):
        return str(cause) if isinstance(cause, ConfigError) else f"{key}{cause}"
    if kind == "extra_forbidden":
        return _unknown_key(key)
    field = _FIELDS.get(key)
    if field is None:
        return f"{key}={value!r}: {first['msg']}"
    bounds = next((f"{m.ge}-{m.le}" for m in field.metadata if isinstance(m, Interval)), "")
    choices = ", ".join(member.value for member in _choices(field.annotation))
    if kind == "missing":
        return f"{key} is required ({field.description})"
    if kind == "int_type":
        return f"{key}={value!r} is not an integer (allowed: {bounds})"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{key}={value} is out of range (allowed: {bounds})"
    if kind == "is_instance_of" and choices:
        return f"{key}={value!r} is not one of: {choices}"
    if kind == "bool_type":
        return f"{key}={value!r} is not true or false"
    return f"{key}={value!r}: {first['msg']}"


_MODELS: Final[tuple[type[_Keys], ...]] = (SinkConfig, *_SECTIONS.values())
_FIELDS: Final = {
    str(field.alias): field
    for model in _MODELS
    for field in model.model_fields.values()
    if field.description
}
# key -> one-line description; the README configuration table follows this list.
CONTEXT_KEYS: Final[Mapping[str, str]] = {key: str(f.description) for key, f in _FIELDS.items()}
