"""The sink's configuration: environment variables parsed once into a validated, frozen value,
and written back by the stack that deploys it.

Each field that a variable sets declares it once (`reads`): the variable, how its text reads and
writes (msk_kinesis_sink.variables), and the cdk.json context key that sets it. `from_env`,
`to_env` and `from_keys` all work from that declaration.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_RECORD_BYTES_CEILING,
    MIN_RECORD_BYTES,
)
from msk_kinesis_sink.variables import (
    VARIABLE,
    BucketName,
    Choice,
    Integer,
    LogLevelName,
    Number,
    Prefix,
    Variable,
    reads,
)

# Every pattern is ASCII-only and matched in full: `\d` and `$` would also take other
# scripts' digits and a trailing newline.
STREAM_NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9_.-]{1,128}", re.ASCII)
STREAM_ARN_PATTERN: Final = re.compile(
    r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/(?P<name>[a-zA-Z0-9_.-]{1,128})",
    re.ASCII,
)
# Endpoint overrides the SDK reads for the two clients the function makes.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_S3")
# One DNS label: 1-63 letters, digits and '-', not starting or ending with '-' (as botocore).
_HOST_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?:{_HOST_LABEL}\.)*{_HOST_LABEL}\.?", re.ASCII)


class RecordFormat(StrEnum):
    """What the Kinesis record's `Data` holds."""

    RAW = "raw"  # the Kafka value bytes, unchanged (a tombstone becomes an empty record)
    ENVELOPE = "envelope"  # JSON with topic/partition/offset/timestamp/key/value/headers, base64


class PartitionKeyMode(StrEnum):
    """How the Kinesis partition key is derived from a Kafka record."""

    KEY = "key"  # the Kafka key (text, or a digest of binary keys); null keys -> topic-partition
    PARTITION = "partition"  # always "<topic>-<partition>"
    HEADER = "header"  # PARTITION_KEY=header:<name>: that header's value; without it, as KEY


# Kafka topic names: 1-249 of a-z A-Z 0-9 . _ - ; a route's pattern may add glob characters.
_ROUTE_PATTERN = re.compile(r"[a-zA-Z0-9._*?\[\]!-]{1,249}", re.ASCII)
# A header name for PARTITION_KEY=header:<name>: any printable text without ',' (kept short).
_HEADER_NAME = re.compile(r"[^\x00-\x1f\x7f,]{1,249}")


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """Records of topics matching `pattern` (a name or a glob) go to `stream` (name or ARN)."""

    pattern: str
    stream: str

    def matches(self, topic: str) -> bool:
        return fnmatch.fnmatchcase(topic, self.pattern)


class Aggregation(StrEnum):
    """Whether runs of same-key records are packed into KPL aggregated records."""

    OFF = "off"
    ON = "on"


class OversizeRecords(StrEnum):
    """What becomes of a record too large for the stream."""

    DEAD_LETTER = "dead_letter"  # kept in the dead-letter bucket; its key goes on without it
    CLAIM_CHECK = "claim_check"  # kept in S3; a pointer envelope takes its place in the stream


# --- The variables of the sink's own kinds ----------------------------------------------------


class StreamReference:
    """A stream by name or ARN, read into (name, ARN or None); blank is none."""

    def read(
        self, raw: str, name: str, default: tuple[str | None, str | None]
    ) -> tuple[str | None, str | None]:
        reference = raw.strip()
        if not reference:
            return default
        stream_name = _stream_name(reference, name)
        return stream_name, (reference if stream_name != reference else None)

    def write(self, value: tuple[str | None, str | None]) -> str | None:
        stream_name, stream_arn = value
        return stream_arn or stream_name


class PartitionKey:
    """`key`, `partition` or `header:<name>`, read into (mode, header name or None)."""

    def read(
        self, raw: str, name: str, default: tuple[PartitionKeyMode, str | None]
    ) -> tuple[PartitionKeyMode, str | None]:
        prefix, colon, header = raw.strip().partition(":")
        if colon and prefix.lower() == PartitionKeyMode.HEADER.value:
            if not _HEADER_NAME.fullmatch(header):
                raise ConfigurationError(
                    f"{name}={raw!r} needs a header name after 'header:' (1-249 printable"
                    " characters, no ',')"
                )
            return PartitionKeyMode.HEADER, header
        mode = Choice(PartitionKeyMode).read(raw, name, default[0])
        if mode is PartitionKeyMode.HEADER:
            raise ConfigurationError(
                f"{name}={raw!r} names no header: use header:<name>, e.g. header:tenant-id"
            )
        return mode, None

    def write(self, value: tuple[PartitionKeyMode, str | None]) -> str:
        mode, header = value
        return mode.value if header is None else f"{mode.value}:{header}"


class Routes:
    """Comma-separated `pattern=stream` pairs, first match wins; blank is none."""

    def read(
        self, raw: str, name: str, default: tuple[StreamRoute, ...]
    ) -> tuple[StreamRoute, ...]:
        text = raw.strip()
        if not text:
            return default
        routes: list[StreamRoute] = []
        for item in text.split(","):
            pattern, equals, stream = (part.strip() for part in item.partition("="))
            if not equals or not pattern or not stream:
                raise ConfigurationError(
                    f"{name} item {item.strip()!r} is not pattern=stream"
                    " (e.g. orders.*=orders-stream,payments=arn:aws:kinesis:...:stream/payments)"
                )
            check_route_pattern(pattern, name)
            _check_new_pattern(routes, pattern, name)
            _stream_name(stream, f"{name} stream for {pattern}")
            routes.append(StreamRoute(pattern, stream))
        return tuple(routes)

    def write(self, value: tuple[StreamRoute, ...]) -> str | None:
        return ",".join(f"{route.pattern}={route.stream}" for route in value) or None


# --- The settings ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one function container."""

    # The default stream (STREAM_NAME): for topics no route matches; None with routes only.
    stream_name: str | None = field(
        default=None, metadata=reads("STREAM_NAME", StreamReference(), also=("stream_arn",))
    )
    stream_arn: str | None = None
    record_format: RecordFormat = field(
        default=RecordFormat.RAW,
        metadata=reads("RECORD_FORMAT", Choice(RecordFormat), key="recordFormat"),
    )
    partition_key: PartitionKeyMode = field(
        default=PartitionKeyMode.KEY,
        metadata=reads(
            "PARTITION_KEY", PartitionKey(), key="partitionKey", also=("partition_key_header",)
        ),
    )
    aggregation: Aggregation = field(
        default=Aggregation.ON,
        metadata=reads("AGGREGATION", Choice(Aggregation), key="aggregation"),
    )
    max_record_bytes: int = field(
        default=DEFAULT_MAX_RECORD_BYTES,
        metadata=reads("MAX_RECORD_BYTES", Integer(MIN_RECORD_BYTES, MAX_RECORD_BYTES_CEILING)),
    )
    dead_letter_bucket: str | None = field(
        default=None, metadata=reads("DEAD_LETTER_BUCKET", BucketName())
    )
    dead_letter_prefix: str = field(
        default="records/", metadata=reads("DEAD_LETTER_PREFIX", Prefix())
    )
    max_concurrency: int = field(
        default=8, metadata=reads("MAX_CONCURRENCY", Integer(1, 64), key="maxConcurrency")
    )
    request_timeout_seconds: float = field(
        default=5.0,
        metadata=reads("KINESIS_TIMEOUT_SECONDS", Number(0.1, 60.0), key="kinesisTimeoutSeconds"),
    )
    # The function's own verbosity (logLevel in cdk.json); Lambda's application log level stays
    # at INFO so that metric lines, which carry no level, pass its filter.
    log_level: str = field(
        default="INFO",
        metadata=reads("POWERTOOLS_LOG_LEVEL", LogLevelName(), legacy="LOG_LEVEL"),
    )
    retry_base_ms: int = field(
        default=10, metadata=reads("RETRY_BASE_MS", Integer(1, 10_000), key="retryBaseMs")
    )
    retry_max_ms: int = field(
        default=2_000, metadata=reads("RETRY_MAX_MS", Integer(1, 60_000), key="retryMaxMs")
    )
    # How old the stream guard's knowledge of a stream's summary may get before it asks again
    # (DescribeStreamSummary: 20 calls per second per account, shared by every caller).
    stream_check_seconds: int = field(
        default=60,
        metadata=reads("STREAM_CHECK_SECONDS", Integer(1, 3_600), key="streamCheckSeconds"),
    )
    # STREAM_ROUTES, in order: the first pattern that matches a topic picks its stream.
    stream_routes: tuple[StreamRoute, ...] = field(
        default=(), metadata=reads("STREAM_ROUTES", Routes())
    )
    # PARTITION_KEY=header:<name>: the header whose first value becomes the partition key.
    partition_key_header: str | None = None
    # dead_letter, what the function always did, is left out of the environment: a deployment
    # that takes no claim checks keeps the function configuration it had.
    oversize_records: OversizeRecords = field(
        default=OversizeRecords.DEAD_LETTER,
        metadata=reads(
            "OVERSIZE_RECORDS",
            Choice(OversizeRecords, unwritten=OversizeRecords.DEAD_LETTER),
            key="oversizeRecords",
        ),
    )
    # With claim_check: the bucket that keeps claim-checked records (None: the dead-letter one).
    claim_check_bucket: str | None = field(
        default=None, metadata=reads("CLAIM_CHECK_BUCKET", BucketName(), key="claimCheckBucket")
    )

    @property
    def claim_check_bucket_name(self) -> str | None:
        """Where claim-checked records go; None unless OVERSIZE_RECORDS=claim_check. Without a
        bucket at all (a replay, which never writes to S3), an oversize record is reported, as a
        dead letter is without DEAD_LETTER_BUCKET."""
        if self.oversize_records is not OversizeRecords.CLAIM_CHECK:
            return None
        return self.claim_check_bucket or self.dead_letter_bucket

    @property
    def default_stream(self) -> str | None:
        """STREAM_NAME as given: a stream name or ARN (None when only routes are set)."""
        return self.stream_arn or self.stream_name

    def stream_for(self, topic: str) -> str | None:
        """Where the topic's records go: the first matching route, else the default stream."""
        route = first_route(self.stream_routes, topic)
        return route.stream if route is not None else self.default_stream

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate; raises ConfigurationError naming the variable and what is allowed."""
        settings = cls(**_read(lambda variable: _env_value(env, variable)))
        if settings.default_stream is None and not settings.stream_routes:
            raise ConfigurationError(
                "STREAM_NAME is required (unless STREAM_ROUTES routes every topic): set it to a"
                " Kinesis stream name or stream ARN"
            )
        settings._check_backoff(lambda variable: variable.name)
        settings._check_oversize(lambda variable: variable.name)
        _check_endpoints(env)
        return settings

    @classmethod
    def from_keys(cls, context: Mapping[str, str]) -> Settings:
        """The settings a deployment's context keys set (cdk.json), read as the function reads
        its variables; a refusal names the key.

        Fields no key sets keep their defaults, the stream and routes none: the stack adds them.
        """
        settings = cls(**_read(lambda variable: _context_value(context, variable)))
        settings._check_backoff(lambda variable: str(variable.key))
        settings._check_oversize(lambda variable: str(variable.key))
        return settings

    def to_env(self) -> dict[str, str]:
        """The environment `from_env` reads back as these settings; a value that is unset (no
        bucket, no routes) leaves its variable out. Deploy-time tokens pass through as text."""
        env = {}
        for variable, names in _VARIABLES:
            values = tuple(getattr(self, name) for name in names)
            text = variable.kind.write(values[0] if len(values) == 1 else values)
            if text is not None:
                env[variable.name] = text
        return env

    def _check_backoff(self, name: Callable[[Variable], str]) -> None:
        base, cap = _VARIABLE_OF["retry_base_ms"], _VARIABLE_OF["retry_max_ms"]
        if self.retry_max_ms < self.retry_base_ms:
            raise ConfigurationError(
                f"{name(cap)}={self.retry_max_ms} must be >= {name(base)}={self.retry_base_ms}"
            )

    def _check_oversize(self, name: Callable[[Variable], str]) -> None:
        mode, bucket = _VARIABLE_OF["oversize_records"], _VARIABLE_OF["claim_check_bucket"]
        claim_check = self.oversize_records is OversizeRecords.CLAIM_CHECK
        if claim_check and self.record_format is not RecordFormat.ENVELOPE:
            record_format = _VARIABLE_OF["record_format"]
            raise ConfigurationError(
                f"{name(mode)}=claim_check needs {name(record_format)}=envelope"
                f" ({name(record_format)}={self.record_format.value}): the pointer that takes a"
                " record's place is an envelope"
            )
        if self.claim_check_bucket is not None and not claim_check:
            raise ConfigurationError(
                f"{name(bucket)} only applies with {name(mode)}=claim_check"
                f" ({name(mode)}={self.oversize_records.value})"
            )


def _declared() -> tuple[tuple[Variable, tuple[str, ...]], ...]:
    """Each variable, with the fields it sets, in the order the fields are declared."""
    return tuple(
        (f.metadata[VARIABLE], (f.name, *f.metadata[VARIABLE].also))
        for f in fields(Settings)
        if VARIABLE in f.metadata
    )


_VARIABLES: Final = _declared()
_DEFAULTS: Final = {f.name: f.default for f in fields(Settings)}
_VARIABLE_OF: Final = {name: variable for variable, names in _VARIABLES for name in names}
# The variables a deployment sets by a context key of its own, by key.
SETTING_KEYS: Final[Mapping[str, Variable]] = {
    variable.key: variable for variable, _ in _VARIABLES if variable.key is not None
}


def _read(given: Callable[[Variable], tuple[str, str] | None]) -> dict[str, Any]:
    """Field values from what `given` holds for each variable: (the name it goes by, its text).
    The fields of a variable it does not hold keep their defaults."""
    values: dict[str, Any] = {}
    for variable, names in _VARIABLES:
        found = given(variable)
        if found is None:
            continue
        name, raw = found
        if len(names) == 1:
            values[names[0]] = variable.kind.read(raw, name, _DEFAULTS[names[0]])
        else:  # a variable that sets several fields reads into a tuple of them
            value = variable.kind.read(raw, name, tuple(_DEFAULTS[n] for n in names))
            values.update(zip(names, value, strict=True))
    return values


def _env_value(env: Mapping[str, str], variable: Variable) -> tuple[str, str] | None:
    """The variable's text, or its legacy variable's while it is unset or blank (as Powertools
    reads POWERTOOLS_LOG_LEVEL, else LOG_LEVEL)."""
    raw = env.get(variable.name)
    if not raw and variable.legacy is not None and env.get(variable.legacy):
        return variable.legacy, env[variable.legacy]
    return None if raw is None else (variable.name, raw)


def _context_value(context: Mapping[str, str], variable: Variable) -> tuple[str, str] | None:
    key = variable.key
    return None if key is None or key not in context else (key, context[key])


def first_route(routes: Iterable[StreamRoute], topic: str) -> StreamRoute | None:
    """The route `topic` takes: the first whose pattern matches it."""
    return next((route for route in routes if route.matches(topic)), None)


def check_route_pattern(pattern: str, name: str) -> None:
    """A route's pattern is a topic name or a glob; raises ConfigurationError naming `name`."""
    if not _ROUTE_PATTERN.fullmatch(pattern):
        raise ConfigurationError(
            f"{name} pattern {pattern!r} is not a topic name or glob"
            " (1-249 of a-z A-Z 0-9 . _ - and the glob characters * ? [ ] !)"
        )


def check_patterns_distinct(routes: Iterable[StreamRoute], name: str) -> None:
    """No pattern appears twice; raises ConfigurationError naming `name`."""
    seen: list[StreamRoute] = []
    for route in routes:
        _check_new_pattern(seen, route.pattern, name)
        seen.append(route)


def _check_new_pattern(routes: Iterable[StreamRoute], pattern: str, name: str) -> None:
    if any(route.pattern == pattern for route in routes):
        raise ConfigurationError(
            f"{name} pattern {pattern!r} appears twice (the first match wins, so the"
            " second could never apply)"
        )


def _stream_name(raw: str, variable: str) -> str:
    """The stream's name, from a name or an ARN; raises ConfigurationError naming `variable`."""
    arn_match = STREAM_ARN_PATTERN.fullmatch(raw)
    if arn_match:
        return arn_match.group("name")
    if STREAM_NAME_PATTERN.fullmatch(raw):
        return raw
    raise ConfigurationError(
        f"{variable}={raw!r} is neither a stream name (1-128 of a-z A-Z 0-9 _ . -)"
        " nor a stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)"
    )


def _check_endpoints(env: Mapping[str, str]) -> None:
    for name in ENDPOINT_VARIABLES:
        raw = env.get(name, "")
        if raw and not _is_endpoint_url(raw):
            raise ConfigurationError(
                f"{name}={raw!r} is not an endpoint URL (http:// or https://, then a host name"
                " or IP address, an optional :port and path)"
            )


def _is_endpoint_url(raw: str) -> bool:
    """What botocore accepts as endpoint_url, and only with an http or https scheme."""
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        return False
    try:
        parts = urlsplit(raw)  # raises ValueError for a bracketed host that is not IPv6
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        return False
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return False
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return len(host) <= 255 and _HOST_NAME.fullmatch(host) is not None
