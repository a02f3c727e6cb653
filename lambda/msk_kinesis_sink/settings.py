"""The sink's configuration: environment variables parsed once into a validated, frozen value,
and written back by the stack that deploys it.

Each field that a variable sets declares it once (`_reads`): the variable, how its text reads and
writes, and the cdk.json context key that sets it. `from_env`, `to_env` and `from_keys` all work
from that declaration.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from msk_kinesis_sink.errors import ConfigurationError
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_RECORD_BYTES_CEILING,
    MIN_RECORD_BYTES,
)

# Every pattern is ASCII-only and matched in full: `\d` and `$` would also take other
# scripts' digits and a trailing newline.
STREAM_NAME_PATTERN: Final = re.compile(r"[a-zA-Z0-9_.-]{1,128}", re.ASCII)
STREAM_ARN_PATTERN: Final = re.compile(
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


# --- How a variable's text reads and writes ---------------------------------------------------


class Kind(Protocol):
    """How a variable's text becomes a field's value and back.

    `read` gets the text as set (perhaps blank) and the field's default, and raises
    ConfigurationError naming `name`: the variable, or the context key that sets it. `write`
    returns None to leave the variable unset.
    """

    def read(self, raw: str, name: str, default: Any) -> Any: ...

    def write(self, value: Any) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Variable:
    """The environment variable a field is read from and written to.

    `key` is the cdk.json context key that sets it (None: the stack derives the value from other
    keys or from what it builds); `legacy`, an older variable read while this one is unset or
    blank; `also`, the further fields one variable sets (STREAM_NAME's ARN).
    """

    name: str
    kind: Kind
    key: str | None = None
    legacy: str | None = None
    also: tuple[str, ...] = ()


_VARIABLE: Final = "variable"


def _reads(
    name: str,
    kind: Kind,
    *,
    key: str | None = None,
    legacy: str | None = None,
    also: tuple[str, ...] = (),
) -> dict[str, Variable]:
    """A field's metadata: the variable it is read from (see Variable)."""
    return {_VARIABLE: Variable(name, kind, key, legacy, also)}


@dataclass(frozen=True, slots=True)
class Choice:
    """One value of a StrEnum, in any case; blank is the default."""

    enum: type[StrEnum]

    def read(self, raw: str, name: str, default: Any) -> Any:
        value = raw.strip().lower()
        if not value:
            return default
        try:
            return self.enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in self.enum)
            raise ConfigurationError(f"{name}={raw!r} is not one of: {allowed}") from None

    def write(self, value: StrEnum) -> str:
        return value.value


@dataclass(frozen=True, slots=True)
class Integer:
    """A whole number in ASCII digits, within `low`-`high`; blank is the default."""

    low: int
    high: int

    def read(self, raw: str, name: str, default: int) -> int:
        return int(_number(raw, name, default, self.low, self.high, int, "an integer"))

    def write(self, value: int) -> str:
        return str(value)


@dataclass(frozen=True, slots=True)
class Number:
    """A decimal number in ASCII digits, within `low`-`high`; blank is the default."""

    low: float
    high: float

    def read(self, raw: str, name: str, default: float) -> float:
        return _number(raw, name, default, self.low, self.high, float, "a number")

    def write(self, value: float) -> str:
        # The shortest text that reads back as the same number: "5" for 5.0, "2.5" for 2.5.
        return str(int(value)) if float(value).is_integer() else repr(float(value))


class BucketName:
    """An S3 general purpose bucket name; blank is the default (no bucket)."""

    def read(self, raw: str, name: str, default: str | None) -> str | None:
        bucket = raw.strip()
        if not bucket:
            return default
        problem = bucket_name_problem(bucket)
        if problem:
            raise ConfigurationError(f"{name}={bucket!r} is not a valid S3 bucket name: {problem}")
        return bucket

    def write(self, value: str | None) -> str | None:
        return value


class Prefix:
    """An S3 key prefix used as a folder: a '/' is appended, unless it is set to nothing."""

    def read(self, raw: str, name: str, default: str) -> str:
        prefix = raw.strip()
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def write(self, value: str) -> str:
        return value


class LogLevelName:
    """A level name Powertools takes, in any case and as given (Powertools does not strip it)."""

    def read(self, raw: str, name: str, default: str) -> str:
        if raw and raw.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f"{name}={raw!r} is not a log level"
                " (allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL)"
            )
        return raw.upper() or default

    def write(self, value: str) -> str:
        return value


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
        default=None, metadata=_reads("STREAM_NAME", StreamReference(), also=("stream_arn",))
    )
    stream_arn: str | None = None
    record_format: RecordFormat = field(
        default=RecordFormat.RAW,
        metadata=_reads("RECORD_FORMAT", Choice(RecordFormat), key="recordFormat"),
    )
    partition_key: PartitionKeyMode = field(
        default=PartitionKeyMode.KEY,
        metadata=_reads(
            "PARTITION_KEY", PartitionKey(), key="partitionKey", also=("partition_key_header",)
        ),
    )
    aggregation: Aggregation = field(
        default=Aggregation.ON,
        metadata=_reads("AGGREGATION", Choice(Aggregation), key="aggregation"),
    )
    max_record_bytes: int = field(
        default=DEFAULT_MAX_RECORD_BYTES,
        metadata=_reads("MAX_RECORD_BYTES", Integer(MIN_RECORD_BYTES, MAX_RECORD_BYTES_CEILING)),
    )
    dead_letter_bucket: str | None = field(
        default=None, metadata=_reads("DEAD_LETTER_BUCKET", BucketName())
    )
    dead_letter_prefix: str = field(
        default="records/", metadata=_reads("DEAD_LETTER_PREFIX", Prefix())
    )
    max_concurrency: int = field(
        default=8, metadata=_reads("MAX_CONCURRENCY", Integer(1, 64), key="maxConcurrency")
    )
    request_timeout_seconds: float = field(
        default=5.0,
        metadata=_reads("KINESIS_TIMEOUT_SECONDS", Number(0.1, 60.0), key="kinesisTimeoutSeconds"),
    )
    # The function's own verbosity (logLevel in cdk.json); Lambda's application log level stays
    # at INFO so that metric lines, which carry no level, pass its filter.
    log_level: str = field(
        default="INFO",
        metadata=_reads("POWERTOOLS_LOG_LEVEL", LogLevelName(), legacy="LOG_LEVEL"),
    )
    retry_base_ms: int = field(
        default=10, metadata=_reads("RETRY_BASE_MS", Integer(1, 10_000), key="retryBaseMs")
    )
    retry_max_ms: int = field(
        default=2_000, metadata=_reads("RETRY_MAX_MS", Integer(1, 60_000), key="retryMaxMs")
    )
    # STREAM_ROUTES, in order: the first pattern that matches a topic picks its stream.
    stream_routes: tuple[StreamRoute, ...] = field(
        default=(), metadata=_reads("STREAM_ROUTES", Routes())
    )
    # PARTITION_KEY=header:<name>: the header whose first value becomes the partition key.
    partition_key_header: str | None = None

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


def _declared() -> tuple[tuple[Variable, tuple[str, ...]], ...]:
    """Each variable, with the fields it sets, in the order the fields are declared."""
    return tuple(
        (f.metadata[_VARIABLE], (f.name, *f.metadata[_VARIABLE].also))
        for f in fields(Settings)
        if _VARIABLE in f.metadata
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


def _number(
    raw: str,
    name: str,
    default: float,
    low: float,
    high: float,
    parse: Callable[[str], float],
    kind: str,
) -> float:
    text = raw.strip()
    if not text:
        return default
    # int() and float() also take other scripts' digits, '_' separators, 'nan' and 'inf'.
    value: float | None = None
    if (_INTEGER if parse is int else _DECIMAL).fullmatch(text):
        with contextlib.suppress(ValueError):  # int() refuses more than 4,300 digits
            value = parse(text)
    if value is None:
        raise ConfigurationError(f"{name}={text!r} is not {kind} (allowed: {low}-{high})")
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={text} is out of range (allowed: {low}-{high})")
    return value


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
