"""Reading CDK context with pydantic: the types of cdk.json values, and a refusal as one line.

A value comes as cdk.json holds it or, from `-c key=value`, as a string; both read alike. A value
validator's ValueError holds what follows the key in the message (`batchSize` + `=0 is ...`); a
ConfigError is a whole message, naming its keys itself.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, Final, TypeVar, Union, get_args, get_origin

from annotated_types import Interval
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from msk_kinesis_sink.limits import (
    MAX_BOOTSTRAP_SERVERS,
    MAX_FILTERS,
    MAX_MAPPINGS_PER_POLLER_GROUP,
    MAX_STACK_RESOURCES,
    MAX_TEMPLATE_BYTES,
)
from msk_kinesis_sink.settings import STREAM_ARN_PATTERN, STREAM_NAME_PATTERN

# Context CDK itself (or its CLI) keeps beside ours, and "//" comments; any other key is a typo.
_FOREIGN_PREFIXES: Final = ("@", "aws:", "aws-cdk:", "cdk", "acknowledged-issue-numbers", "//")
_INTEGER: Final = re.compile(r"-?\d+")
# A decimal number in ASCII digits (never nan, inf or other scripts' digits).
_DECIMAL: Final = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
_REGION: Final = r"[a-z]{2}(-[a-z]+)+-\d"
# Kafka allows 1-249 of [a-zA-Z0-9._-]; an ESM's Topics also wants 2+ characters, no leading dot.
_TOPIC: Final = re.compile(r"^[a-zA-Z0-9_-][a-zA-Z0-9._-]{1,248}$")
# The most topics (an event source mapping each) one stack deploys: the most mappings AWS lets
# share one poller group. The infra tests measure that this many fit the stack's limits
# (MAX_STACK_RESOURCES, MAX_TEMPLATE_BYTES) in the configurations that cost the most.
MAX_TOPICS: Final = MAX_MAPPINGS_PER_POLLER_GROUP
GROUP_ID: Final = re.compile(r"^[a-zA-Z0-9\-/*:_+=.@]+$")
# SelfManagedEventSource KafkaBootstrapServers: host:port of <= 300 characters each.
_LABEL: Final = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST: Final = rf"({_LABEL}\.)*{_LABEL}"
_BOOTSTRAP_SERVER: Final = re.compile(rf"^(?=.{{1,300}}$){_HOST}:(?P<port>\d{{1,5}})$")


class ConfigError(ValueError):
    """Context keys hold values the stack cannot be built from: one problem a line."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Because:
    """Field metadata: why the field's bounds are what they are, said when a value is out of them
    (`Annotated[int, Interval(ge=1, le=840), Because("...")]`)."""

    reason: str


def given(context: Mapping[str, object]) -> dict[str, object]:
    """The keys set in `context` that are not CDK's own, strings stripped; blank means unset."""
    values = {
        key: value.strip() if isinstance(value, str) else value
        for key, value in context.items()
        if not key.startswith(_FOREIGN_PREFIXES)
    }
    return {key: value for key, value in values.items() if value is not None and value != ""}


class ContextModel(BaseModel):
    """Context keys as fields: camelCase aliases, nothing unknown, values as `-c` gives them."""

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        use_attribute_docstrings=True,
    )

    @classmethod
    def keys(cls) -> dict[str, FieldInfo]:
        """The context keys; fields marked `exclude` are derived, never read from the context."""
        return {str(field.alias): field for field in cls.model_fields.values() if not field.exclude}

    @field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: object, info: ValidationInfo) -> object:
        """`-c key=value` hands every value over as a string: read digits, true/false, choices."""
        annotation = cls.model_fields[str(info.field_name)].annotation
        if not isinstance(value, str):
            return value
        if _value_type(annotation) is int and _INTEGER.fullmatch(value):
            return int(value)
        if _value_type(annotation) is float and _DECIMAL.fullmatch(value):
            return float(value)
        if _value_type(annotation) is bool and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return next((m for m in _choices(annotation) if m.value.lower() == value.lower()), value)


def one_line(error: ValidationError, fields: Mapping[str, FieldInfo]) -> str:
    """The first problem as one line: the key, the value, and what is allowed."""
    return every_line(error, fields)[0]


def every_line(error: ValidationError, fields: Mapping[str, FieldInfo]) -> list[str]:
    """Every problem, one line each (the key, the value, and what is allowed), each once."""
    lines: list[str] = []
    for details in error.errors():
        cause = details.get("ctx", {}).get("error")
        found = cause.problems if isinstance(cause, ConfigError) else (_line(details, fields),)
        lines += [line for line in found if line not in lines]
    return lines


def _line(details: ErrorDetails, fields: Mapping[str, FieldInfo]) -> str:
    kind, value = details["type"], details.get("input")
    key = str(details["loc"][-1]) if details["loc"] else ""
    cause = details.get("ctx", {}).get("error")
    if isinstance(cause, ValueError):
        return f"{key}{cause}"
    if kind == "extra_forbidden":
        return unknown_key(key, fields)
    field = fields.get(key)
    if field is None:
        return f"{key}={value!r}: {details['msg']}"
    bounds = next((f"{m.ge}-{m.le}" for m in field.metadata if isinstance(m, Interval)), "")
    because = "".join(f": {m.reason}" for m in field.metadata if isinstance(m, Because))
    choices = ", ".join(member.value for member in _choices(field.annotation))
    if kind == "missing":
        return f"{key} is required ({field.description or 'see docs/deploy.md, Configuration'})"
    if kind == "int_type":
        return f"{key}={value!r} is not an integer (allowed: {bounds})"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{key}={value} is out of range (allowed: {bounds}{because})"
    if kind == "is_instance_of" and choices:
        return f"{key}={value!r} is not one of: {choices}"
    if kind == "bool_type":
        return f"{key}={value!r} is not true or false"
    return f"{key}={value!r}: {details['msg']}"


# The validation context's list that `check` validators add their refusals to.
PROBLEMS: Final = "problems"
Model = TypeVar("Model", bound=BaseModel)


def check(validator: Callable[[Model], Model]) -> Any:
    """A model validator (after the fields) whose refusal is one problem among the others.

    Given a list under PROBLEMS in the validation context (SinkConfig.from_context gives one),
    its ConfigError's problems go there and validation goes on with the model unchanged, so the
    model's other checks run too and every problem is named in one run; without one it raises.
    """

    def run(model: Model, info: ValidationInfo) -> Model:
        try:
            return validator(model)
        except ConfigError as error:
            problems = (info.context or {}).get(PROBLEMS)
            if problems is None:
                raise
            problems += [problem for problem in error.problems if problem not in problems]
            return model

    run.__name__, run.__doc__ = validator.__name__, validator.__doc__
    return model_validator(mode="after")(run)


def refuse_all(*checks: Callable[[], None]) -> None:
    """Run independent checks, each refusing with a ConfigError; raise one with all they found."""
    problems: list[str] = []
    for one in checks:
        try:
            one()
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(*problems)


def unknown_key(key: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown context key {key!r}{hint}; see docs/deploy.md, Configuration"


def _value_type(annotation: object) -> object:
    """int for `int | None` and `Annotated[int, ...]`: what a text value should become."""
    while get_origin(annotation) in (Union, UnionType, Annotated):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _choices(annotation: object) -> tuple[StrEnum, ...]:
    kind = _value_type(annotation)
    return tuple(kind) if isinstance(kind, type) and issubclass(kind, StrEnum) else ()


# --- Value types ------------------------------------------------------------------------------


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
GroupId = Annotated[str, _matching(GROUP_ID.pattern[1:-1], "a group id (a-z A-Z 0-9 -/*_+=.@)")]
SecretArn = Annotated[
    str,
    _matching(_arn("secretsmanager", "secret:[A-Za-z0-9/_+=.@-]+"), "a Secrets Manager secret ARN"),
]
KmsKeyArn = Annotated[str, _matching(_arn("kms", "key/[a-f0-9-]{36}"), "a KMS key ARN")]
# The function's own patterns: it reads the stream's name or ARN from STREAM_NAME.
StreamArn = Annotated[str, _matching(STREAM_ARN_PATTERN.pattern, "a Kinesis stream ARN")]
StreamName = Annotated[
    str, _matching(STREAM_NAME_PATTERN.pattern, "a stream name (1-128 of a-zA-Z0-9_.-)")
]
# A `streams` entry's id. A letter first: JSON parsers in JavaScript (the CDK CLI) move
# integer-like keys ahead of the others, and the entries' order is the routes' order.
STREAM_ID: Final = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
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


def json_value(value: object, what: str) -> object:
    """A value from cdk.json, or the same as a JSON string from `-c key=...`."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        raise ValueError(f" is not valid JSON ({what})") from None


def listed(value: object, what: str) -> object:
    """A list as `-c key=...` may give it: a JSON list (`'["a","b"]'`) read as one; other text
    is left as it is (comma-separated)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return json_value(value, f"a JSON list of {what}")
    return value


def _text_list(value: object, what: str) -> tuple[str, ...]:
    """A list of strings, or the same comma-separated (as `-c key=a,b` gives it)."""
    value = listed(value, what)
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"={value!r} must be a list of {what} or a comma-separated string")
    items = tuple(item.strip() for item in value)
    if len(set(items)) != len(items):
        raise ValueError(f": {list(items)!r} lists an entry twice")
    return items


def _topic_names(value: object) -> tuple[str, ...]:
    topics = _text_list(value, "strings")
    if not topics:
        raise ValueError(" is required: one or more Kafka topic names")
    if len(topics) > MAX_TOPICS:
        raise ValueError(
            f" lists {len(topics)} topics; one stack deploys at most {MAX_TOPICS} (an event"
            f" source mapping each, with its share of the alarms, within CloudFormation's"
            f" {MAX_STACK_RESOURCES} resources and {MAX_TEMPLATE_BYTES // 1_000_000} MB per"
            " stack): split them over stacks, each with its own stackName"
        )
    for topic in topics:
        if not _TOPIC.match(topic):
            raise ValueError(
                f": {topic!r} is not a topic name an event source mapping accepts"
                " (2-249 of a-z A-Z 0-9 . _ -, not starting with '.')"
            )
    return topics


def _bootstrap_servers(value: object) -> tuple[str, ...]:
    servers = _text_list(value, "host:port")
    if not 1 <= len(servers) <= MAX_BOOTSTRAP_SERVERS:
        raise ValueError(f" lists {len(servers)} brokers (allowed: 1-{MAX_BOOTSTRAP_SERVERS})")
    for server in servers:
        match = _BOOTSTRAP_SERVER.match(server)
        if match is None or not 1 <= int(match["port"]) <= 65_535:
            raise ValueError(
                f": {server!r} is not host:port (a DNS name or IPv4 address, port 1-65535)"
            )
    return servers


def _subnet_ids(value: object) -> tuple[str, ...]:
    subnets = _text_list(value, "subnet ids")
    for subnet in subnets:
        if not re.fullmatch(r"subnet-([0-9a-f]{8}|[0-9a-f]{17})", subnet):
            raise ValueError(f": {subnet!r} is not a subnet id (subnet-0123456789abcdef0)")
    return subnets


def _group_map(value: object) -> dict[str, str]:
    groups = json_value(value, "a JSON object of strings (topic -> group id)")
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


def _filter_patterns(value: object) -> tuple[dict[str, Any], ...]:
    patterns = json_value(value, "a list of filter patterns")
    patterns = [patterns] if isinstance(patterns, dict) else patterns
    if not isinstance(patterns, list) or not all(isinstance(p, dict) for p in patterns):
        raise ValueError(" must be a list of filter patterns (JSON objects)")
    if len(patterns) > MAX_FILTERS:
        raise ValueError(f" has {len(patterns)} patterns (allowed: at most {MAX_FILTERS})")
    if not all(patterns):
        raise ValueError(": an empty pattern would match every record; remove it")
    return tuple(patterns)


def _topic_patterns(value: object) -> tuple[str, ...]:
    """A `streams` entry's topics: names or globs, a list or comma-separated (the function's
    parser judges each pattern; ',' and '=' are the syntax of its STREAM_ROUTES)."""
    value = listed(value, "topic names or globs")
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"={value!r} must be a list of topic names or globs")
    patterns = tuple(item.strip() for item in value)
    if not patterns:
        raise ValueError(" is required: the topic names or globs routed to this stream")
    for pattern in patterns:
        if not pattern or "," in pattern or "=" in pattern:
            raise ValueError(f": {pattern!r} is not a topic name or glob")
    if len(set(patterns)) != len(patterns):
        raise ValueError(f": {list(patterns)!r} lists a pattern twice")
    return patterns


TopicNames = Annotated[tuple[str, ...], BeforeValidator(_topic_names)]
BootstrapServers = Annotated[tuple[str, ...], BeforeValidator(_bootstrap_servers)]
SubnetIds = Annotated[tuple[str, ...], BeforeValidator(_subnet_ids)]
SecurityGroupId = Annotated[
    str, _matching(r"sg-([0-9a-f]{8}|[0-9a-f]{17})", "a security group id (sg-0123456789abcdef0)")
]
# OnFailure.Destination "kafka://<topic>": 1-249 of a-zA-Z0-9._- not starting with '.'.
DestinationTopic = Annotated[
    str,
    _matching(r"[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,248}", "a topic name (1-249 of a-z A-Z 0-9 . _ -)"),
]
# ProvisionedPollerConfig.PollerGroupName: up to 128 of a-zA-Z0-9-_ (an empty name means none).
PollerGroupName = Annotated[
    str, _matching(r"[a-zA-Z0-9_-]{1,128}", "a poller group name (1-128 of a-z A-Z 0-9 - _)")
]
TopicPatterns = Annotated[tuple[str, ...], BeforeValidator(_topic_patterns)]
GroupMap = Annotated[dict[str, str], BeforeValidator(_group_map)]
UnixSeconds = Annotated[int, BeforeValidator(_unix_seconds)]
FilterPatterns = Annotated[tuple[dict[str, Any], ...], BeforeValidator(_filter_patterns)]
