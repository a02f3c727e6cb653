"""The sink's configuration: environment variables parsed once into a validated, frozen value."""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlsplit

from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_RECORD_BYTES_CEILING,
    MIN_RECORD_BYTES,
)

# Every pattern is ASCII-only and matched in full: `\d` and `$` would also take other
# scripts' digits and a trailing newline.
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}", re.ASCII)
_STREAM_ARN = re.compile(
    r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/(?P<name>[a-zA-Z0-9_.-]{1,128})",
    re.ASCII,
)
# S3 "General purpose bucket naming rules": 3-63 characters of lowercase letters, digits, '.'
# and '-', beginning and ending with a letter or digit; no two adjacent periods; not formatted
# as an IP address; no reserved prefix or suffix.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_IP_ADDRESS = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
# Level names Powertools passes to logging.Logger.setLevel (it upper-cases them first).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")
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


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one function container."""

    # The default stream (STREAM_NAME): for topics no route matches; None with routes only.
    stream_name: str | None
    stream_arn: str | None
    record_format: RecordFormat = RecordFormat.RAW
    partition_key: PartitionKeyMode = PartitionKeyMode.KEY
    aggregation: Aggregation = Aggregation.ON
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    dead_letter_bucket: str | None = None
    dead_letter_prefix: str = "records/"
    max_concurrency: int = 8
    request_timeout_seconds: float = 5.0
    # The function's own verbosity (logLevel in cdk.json); Lambda's application log level stays
    # at INFO so that metric lines, which carry no level, pass its filter.
    log_level: str = "INFO"
    retry_base_ms: int = 10
    retry_max_ms: int = 2_000
    # STREAM_ROUTES, in order: the first pattern that matches a topic picks its stream.
    stream_routes: tuple[StreamRoute, ...] = ()
    # PARTITION_KEY=header:<name>: the header whose first value becomes the partition key.
    partition_key_header: str | None = None

    @property
    def default_stream(self) -> str | None:
        """STREAM_NAME as given: a stream name or ARN (None when only routes are set)."""
        return self.stream_arn or self.stream_name

    def stream_for(self, topic: str) -> str | None:
        """Where the topic's records go: the first matching route, else the default stream."""
        for route in self.stream_routes:
            if route.matches(topic):
                return route.stream
        return self.default_stream

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse and validate; raises ConfigurationError naming the variable and what is allowed."""
        routes = _stream_routes(env)
        raw_stream = env.get("STREAM_NAME", "").strip()
        stream_name: str | None = None
        stream_arn: str | None = None
        if raw_stream:
            stream_name = _stream_name(raw_stream, "STREAM_NAME")
            stream_arn = raw_stream if stream_name != raw_stream else None
        elif not routes:
            raise ConfigurationError(
                "STREAM_NAME is required (unless STREAM_ROUTES routes every topic): set it to a"
                " Kinesis stream name or stream ARN"
            )
        key_mode, key_header = _partition_key(env)

        bucket = env.get("DEAD_LETTER_BUCKET", "").strip() or None
        if bucket is not None:
            problem = bucket_name_problem(bucket)
            if problem:
                raise ConfigurationError(
                    f"DEAD_LETTER_BUCKET={bucket!r} is not a valid S3 bucket name: {problem}"
                )
        prefix = env.get("DEAD_LETTER_PREFIX", "records/").strip()
        if prefix and not prefix.endswith("/"):
            prefix += "/"

        log_level = _log_level(env)
        _check_endpoints(env)

        retry_base_ms = _int(env, "RETRY_BASE_MS", 10, 1, 10_000)
        retry_max_ms = _int(env, "RETRY_MAX_MS", 2_000, 1, 60_000)
        if retry_max_ms < retry_base_ms:
            raise ConfigurationError(
                f"RETRY_MAX_MS={retry_max_ms} must be >= RETRY_BASE_MS={retry_base_ms}"
            )

        return cls(
            stream_name=stream_name,
            stream_arn=stream_arn,
            record_format=_choice(env, "RECORD_FORMAT", RecordFormat, RecordFormat.RAW),
            partition_key=key_mode,
            partition_key_header=key_header,
            stream_routes=routes,
            aggregation=_choice(env, "AGGREGATION", Aggregation, Aggregation.ON),
            max_record_bytes=_int(
                env,
                "MAX_RECORD_BYTES",
                DEFAULT_MAX_RECORD_BYTES,
                MIN_RECORD_BYTES,
                MAX_RECORD_BYTES_CEILING,
            ),
            dead_letter_bucket=bucket,
            dead_letter_prefix=prefix,
            max_concurrency=_int(env, "MAX_CONCURRENCY", 8, 1, 64),
            request_timeout_seconds=_float(env, "KINESIS_TIMEOUT_SECONDS", 5.0, 0.1, 60.0),
            retry_base_ms=retry_base_ms,
            retry_max_ms=retry_max_ms,
            log_level=log_level,
        )


def _stream_name(raw: str, variable: str) -> str:
    """The stream's name, from a name or an ARN; raises ConfigurationError naming `variable`."""
    arn_match = _STREAM_ARN.fullmatch(raw)
    if arn_match:
        return arn_match.group("name")
    if _STREAM_NAME.fullmatch(raw):
        return raw
    raise ConfigurationError(
        f"{variable}={raw!r} is neither a stream name (1-128 of a-z A-Z 0-9 _ . -)"
        " nor a stream ARN (arn:aws:kinesis:<region>:<account>:stream/<name>)"
    )


def _stream_routes(env: Mapping[str, str]) -> tuple[StreamRoute, ...]:
    """STREAM_ROUTES: comma-separated `pattern=stream` pairs, first match wins."""
    raw = env.get("STREAM_ROUTES", "").strip()
    if not raw:
        return ()
    routes: list[StreamRoute] = []
    for item in raw.split(","):
        pattern, equals, stream = (part.strip() for part in item.partition("="))
        if not equals or not pattern or not stream:
            raise ConfigurationError(
                f"STREAM_ROUTES item {item.strip()!r} is not pattern=stream"
                " (e.g. orders.*=orders-stream,payments=arn:aws:kinesis:...:stream/payments)"
            )
        if not _ROUTE_PATTERN.fullmatch(pattern):
            raise ConfigurationError(
                f"STREAM_ROUTES pattern {pattern!r} is not a topic name or glob"
                " (1-249 of a-z A-Z 0-9 . _ - and the glob characters * ? [ ] !)"
            )
        if any(route.pattern == pattern for route in routes):
            raise ConfigurationError(
                f"STREAM_ROUTES pattern {pattern!r} appears twice (the first match wins, so the"
                " second could never apply)"
            )
        _stream_name(stream, f"STREAM_ROUTES stream for {pattern}")
        routes.append(StreamRoute(pattern, stream))
    return tuple(routes)


def _partition_key(env: Mapping[str, str]) -> tuple[PartitionKeyMode, str | None]:
    """PARTITION_KEY: key, partition, or header:<name>."""
    raw = env.get("PARTITION_KEY", "")
    prefix, colon, name = raw.strip().partition(":")
    if colon and prefix.lower() == PartitionKeyMode.HEADER.value:
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(
                f"PARTITION_KEY={raw!r} needs a header name after 'header:' (1-249 printable"
                " characters, no ',')"
            )
        return PartitionKeyMode.HEADER, name
    mode = _choice(env, "PARTITION_KEY", PartitionKeyMode, PartitionKeyMode.KEY)
    if mode is PartitionKeyMode.HEADER:
        raise ConfigurationError(
            f"PARTITION_KEY={raw!r} names no header: use header:<name>, e.g. header:tenant-id"
        )
    return mode, None


_E = TypeVar("_E", bound=StrEnum)


def _choice(env: Mapping[str, str], name: str, enum: type[_E], default: _E) -> _E:
    raw = env.get(name, "")
    value = raw.strip().lower()
    if not value:
        return default
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise ConfigurationError(f"{name}={raw!r} is not one of: {allowed}") from None


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    parse: Callable[[str], float],
    kind: str,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    # int() and float() also take other scripts' digits, '_' separators, 'nan' and 'inf'.
    value: float | None = None
    if (_INTEGER if parse is int else _DECIMAL).fullmatch(raw):
        with contextlib.suppress(ValueError):  # int() refuses more than 4,300 digits
            value = parse(raw)
    if value is None:
        raise ConfigurationError(f"{name}={raw!r} is not {kind} (allowed: {low}-{high})")
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={raw} is out of range (allowed: {low}-{high})")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return int(_number(env, name, default, low, high, int, "an integer"))


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    return _number(env, name, default, low, high, float, "a number")


def bucket_name_problem(name: str) -> str | None:
    """Which general purpose bucket naming rule `name` breaks, or None."""
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "3-63 characters of lowercase letters, digits, '.' and '-', beginning and ending"
            " with a letter or digit"
        )
    if ".." in name:
        return "two adjacent periods"
    if _IP_ADDRESS.fullmatch(name):
        return "formatted as an IP address"
    for prefix in _BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"the prefix {prefix!r} is reserved"
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"the suffix {suffix!r} is reserved"
    return None


def _log_level(env: Mapping[str, str]) -> str:
    # Powertools reads POWERTOOLS_LOG_LEVEL, else the legacy LOG_LEVEL, as given (no strip).
    name = "POWERTOOLS_LOG_LEVEL" if env.get("POWERTOOLS_LOG_LEVEL") else "LOG_LEVEL"
    raw = env.get(name, "")
    if raw and raw.upper() not in LOG_LEVELS:
        raise ConfigurationError(
            f"{name}={raw!r} is not a log level (allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return raw.upper() or "INFO"


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
