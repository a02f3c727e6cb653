"""Why the replay leaves an object where it is: each kind is counted in the summary
(docs/replay.md, "What it refuses, and why")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import NamedTuple, TypeVar

Kind = TypeVar("Kind", bound=StrEnum)


class Unreadable(StrEnum):
    """An object the replay can not read as the records it holds: named, left in place, and
    the run exits 1."""

    TOO_LARGE = "too-large"  # larger than any object the sink or Lambda writes
    KEY_TOO_LONG = "key-too-long"  # its replayed/ copy's key would pass S3's limit
    NOT_JSON = "not-json"  # not UTF-8, not JSON, NaN or Infinity, a number too long
    TOO_DEEP = "too-deep"  # nests deeper than documents.MAX_NESTING
    DUPLICATE_MEMBER = "duplicate-member"  # an object names a member twice
    MISSING_MEMBER = "missing-member"  # a dead letter lacks a member the function writes
    UNKNOWN_SHAPE = "unknown-shape"  # neither a dead letter nor an on-failure batch
    NO_PAYLOAD = "no-payload"  # an on-failure record of a destination that keeps no records
    MALFORMED_RECORDS = "malformed-records"  # its records break the invocation event's rules
    NO_RECORDS = "no-records"  # it holds none
    CONFLICT = "conflict"  # an offset another object holds with other content


class Skipped(StrEnum):
    """An object left out on purpose: counted, and the run may still exit 0."""

    FOLDER = "folder-marker"  # a key ending in '/': the sink and Lambda never write one
    REPLAYED = "replayed"  # under replayed/ already
    TIME_RANGE = "time-range"  # written outside --since / --until
    TOPIC = "topic"  # holds a topic --topic did not select


class Refusal(NamedTuple):
    """One object left in place: its key, the kind of reason, and the reason in words."""

    key: str
    kind: Unreadable | Skipped
    why: str


def kinds_field(counts: Mapping[Kind, int], kinds: Iterable[Kind]) -> str:
    """`kind:count,...` in the enum's order, or `-` when there is none (one summary field)."""
    return ",".join(f"{kind.value}:{counts[kind]}" for kind in kinds if counts.get(kind)) or "-"
