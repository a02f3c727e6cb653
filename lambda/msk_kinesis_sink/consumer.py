"""Consumer-side rule for `envelope` records: exactly once, in Kafka order, per key.

The sink delivers at least once and never reorders a key, so a consumer that drops every record
whose offset is at or below the highest offset it has already seen for that
(topic, partition, key) receives every record exactly once and in Kafka order. The key is the
one the partition key was derived from: the Kafka key by default; with
PARTITION_KEY=header:<name> (the envelope says so), pass the Kinesis record's partition key to
`accept`, which refuses such an envelope without one.
Keep `OffsetDeduplicator` state per consumer (e.g. per shard processor); persist it alongside
your checkpoints if duplicates across restarts matter.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from msk_kinesis_sink.encoding import PARTITION_KEY_FROM_FIELD
from msk_kinesis_sink.errors import (
    MalformedEnvelopeError,
    MalformedEventError,
    PartitionKeyRequiredError,
)

# The envelope names a schema registry's metadata as the invocation event does.
from msk_kinesis_sink.events import KEY_SCHEMA_FIELD as KEY_SCHEMA
from msk_kinesis_sink.events import (
    MAX_OFFSET,
    MAX_PARTITION,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    is_unicode,
    schema_metadata,
)
from msk_kinesis_sink.events import VALUE_SCHEMA_FIELD as VALUE_SCHEMA
from msk_kinesis_sink.settings import PartitionKeyMode

_WHERE = "envelope"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded `envelope` record; key and value stay base64 (None for null)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: str | None
    value: str | None
    headers: tuple[tuple[str, str], ...]
    # (dataFormat, schemaId) of the registry schema that validated the key / the value, when a
    # schema registry on the mapping did (docs/schema-registry.md).
    key_schema: tuple[str, str] | None = None
    value_schema: tuple[str, str] | None = None
    # PartitionKeyMode.HEADER when the partition key came from a header
    # (PARTITION_KEY=header:<name>): the record's order is kept per Kinesis partition key, not
    # per Kafka key. None: the Kafka key's rule, as for envelopes written before the member.
    partition_key_from: PartitionKeyMode | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Read an envelope as the sink writes it: UTF-8 JSON, each member of its type.

        Raises MalformedEnvelopeError naming the member and the problem (never quoting a key,
        value or header). Numbers are JSON integers in Kafka's ranges (no floats, booleans or
        strings); key, value and header values are strict base64; a member given twice, NaN
        and Infinity are refused. Members the sink does not write are ignored.
        """
        document = _document(data)
        key_meta, value_meta = document.get(KEY_SCHEMA), document.get(VALUE_SCHEMA)
        return cls(
            topic=_text(document, "topic"),
            partition=_integer(document, "partition", 0, MAX_PARTITION),
            offset=_integer(document, "offset", 0, MAX_OFFSET),
            timestamp=_integer(document, "timestamp", MIN_TIMESTAMP, MAX_TIMESTAMP),
            timestamp_type=_text(document, "timestampType", empty=True),
            key=_base64(_required(document, "key"), "key", nullable=True),
            value=_base64(_required(document, "value"), "value", nullable=True),
            headers=_headers(_required(document, "headers")),
            key_schema=None if key_meta is None else _schema(key_meta, KEY_SCHEMA),
            value_schema=None if value_meta is None else _schema(value_meta, VALUE_SCHEMA),
            partition_key_from=_partition_key_from(document.get(PARTITION_KEY_FROM_FIELD)),
        )

    @property
    def ordering_key(self) -> tuple[str, int, str | None]:
        return (self.topic, self.partition, self.key)


def _document(data: Any) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        _refuse(f"{_WHERE} data must be bytes, got {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        _refuse(f"{_WHERE} is not UTF-8 (byte {error.start})")
    try:
        document = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except MalformedEnvelopeError:
        raise  # from the hooks below (it is a ValueError too)
    except json.JSONDecodeError as error:
        _refuse(f"{_WHERE} is not JSON: {error.msg} at character {error.pos}")
    except ValueError:  # int() refuses more than 4,300 digits
        _refuse(f"{_WHERE} holds a number too long to read")
    except RecursionError:
        _refuse(f"{_WHERE} nests too deeply")
    if not isinstance(document, dict):
        _refuse(f"{_WHERE} must be a JSON object, got {_json_type(document)}")
    return document


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        # Readers disagree on which of two members wins; the sink never writes one twice.
        _refuse(f"{_WHERE} has a member given twice")
    return document


def _constant(name: str) -> NoReturn:
    _refuse(f"{_WHERE} holds {name}, which is not a JSON number")


def _required(document: dict[str, Any], member: str) -> Any:
    if member not in document:
        _refuse(f"{_WHERE} has no '{member}' member")
    return document[member]


def _text(document: dict[str, Any], member: str, *, empty: bool = False) -> str:
    value = _required(document, member)
    if not isinstance(value, str) or not (empty or value):
        kind = "a string" if empty else "a non-empty string"
        _refuse(f"{_WHERE} member '{member}' must be {kind}, got {_json_type(value)}")
    if not is_unicode(value):
        _refuse(f"{_WHERE} member '{member}' is not valid Unicode (a lone surrogate)")
    return value


def _integer(document: dict[str, Any], member: str, low: int, high: int) -> int:
    value = _required(document, member)
    # bool is an int to Python; 5.0 and "7" are not how the sink writes a number.
    if type(value) is not int:
        _refuse(f"{_WHERE} member '{member}' must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else "an integer too large to show"
        _refuse(f"{_WHERE} member '{member}' is {shown}, outside {low}..{high}")
    return value


def _base64(value: Any, what: str, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        kind = "a base64 string or null" if nullable else "a base64 string"
        _refuse(f"{_WHERE} {what} must be {kind}, got {_json_type(value)}")
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        _refuse(f"{_WHERE} {what} is not valid base64")
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        _refuse(f"{_WHERE} member 'headers' must be a list, got {_json_type(value)}")
    headers: list[tuple[str, str]] = []
    for position, header in enumerate(value):
        if not isinstance(header, dict):
            _refuse(f"{_WHERE} header {position} must be an object, got {_json_type(header)}")
        name = header.get("name")
        if not isinstance(name, str) or not is_unicode(name):
            _refuse(f"{_WHERE} header {position} has no 'name' string of valid Unicode")
        data = _base64(header.get("value"), f"header {position} value")
        assert data is not None  # not nullable
        headers.append((name, data))
    return tuple(headers)


def _schema(metadata: Any, member: str) -> tuple[str, str]:
    try:
        return schema_metadata(metadata, member, _WHERE)
    except MalformedEventError as error:
        raise MalformedEnvelopeError(str(error)) from None


def _partition_key_from(value: Any) -> PartitionKeyMode | None:
    if value is None:
        return None
    if isinstance(value, str):
        for mode in PartitionKeyMode:
            if value == mode.value:
                return mode
    allowed = ", ".join(mode.value for mode in PartitionKeyMode)
    _refuse(f"{_WHERE} member '{PARTITION_KEY_FROM_FIELD}' must be one of {allowed}")


def _json_type(value: Any) -> str:
    """The JSON kind of a parsed value, as an error message names it (never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    kinds = {int: "an integer", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), "a value")


def _refuse(message: str) -> NoReturn:
    raise MalformedEnvelopeError(message)


class OffsetDeduplicator:
    """Drops repeats: a record is new only if its offset is above the highest seen for its key."""

    def __init__(self) -> None:
        # (topic, partition, by partition key?, key): a Kafka key and a Kinesis partition key
        # that happen to be equal text stay apart.
        self._highest: dict[tuple[str, int, bool, str | None], int] = {}

    def accept(self, envelope: Envelope, partition_key: str | None = None) -> bool:
        """True when the record is new for its (topic, partition, key) and should be processed.

        `partition_key`: the Kinesis record's partition key. Required for an envelope whose
        partition key came from a header (PARTITION_KEY=header:<name>): its order is kept per
        partition key, and records of one Kafka key with different header values are separate
        chains. Raises PartitionKeyRequiredError without it rather than drop such records.
        Correct for every envelope when given (the sink orders each partition key).
        """
        chain: tuple[str, int, bool, str | None]
        if partition_key is not None:
            chain = (envelope.topic, envelope.partition, True, partition_key)
        elif envelope.partition_key_from is PartitionKeyMode.HEADER:
            raise PartitionKeyRequiredError(
                f"envelope of {envelope.topic}-{envelope.partition} offset {envelope.offset} has"
                " its partition key from a header (PARTITION_KEY=header:<name>): pass the"
                " Kinesis record's partition key, accept(envelope, partition_key=...); by its"
                " Kafka key alone, later records could be taken for repeats and dropped"
            )
        else:
            chain = (envelope.topic, envelope.partition, False, envelope.key)
        highest = self._highest.get(chain)
        if highest is not None and envelope.offset <= highest:
            return False
        self._highest[chain] = envelope.offset
        return True

    def filter(self, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        """The new records of `envelopes` by their Kafka keys (header-keyed envelopes raise:
        call `accept` with each record's partition key instead)."""
        return (envelope for envelope in envelopes if self.accept(envelope))
