"""Parse MSK and self-managed Kafka invocation events into typed, offset-ordered partitions.

With a schema registry on the mapping, a record also carries `keySchemaMetadata` and/or
`valueSchemaMetadata` ({"dataFormat": ..., "schemaId": ...}) for the attributes it validated;
key and value stay base64 text either way (docs/schema-registry.md).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from msk_kinesis_sink.errors import MalformedEventError

EVENT_SOURCES = frozenset({"aws:kafka", "SelfManagedKafka"})
# Kafka's own ranges: a partition is a non-negative int32, an offset a non-negative int64, a
# timestamp an int64 (-1 when the record has none).
MAX_PARTITION = 2**31 - 1
MAX_OFFSET = 2**63 - 1
MIN_TIMESTAMP, MAX_TIMESTAMP = -(2**63), 2**63 - 1
# Self-managed Kafka events may carry numbers as decimal text: ASCII digits only, and never more
# than an int64 holds (int() would take other scripts' digits and fail past 4,300 digits).
# No two adjacent runs that can match the same character: linear time on any input.
_DECIMAL = re.compile(r"\s*(-?)([0-9]+)\s*", re.ASCII)
_MAX_DIGITS = len(str(MAX_OFFSET))
# Header values are byte arrays; Java producers may send signed bytes.
_BYTE_RANGE = range(-128, 256)
# Longest text of a bad value quoted in an error message.
_SHOWN_CHARS = 60

# Kafka's conventions for a record without a timestamp.
NO_TIMESTAMP = -1
NO_TIMESTAMP_TYPE = "NO_TIMESTAMP_TYPE"
# Timestamp types the fast path accepts as they are; any other string is checked in full.
_TIMESTAMP_TYPES = frozenset({"CREATE_TIME", "LOG_APPEND_TIME", NO_TIMESTAMP_TYPE})

# The fields a schema registry on the mapping adds to each record, one per validated attribute
# ("Using schema registries with Kafka event sources in Lambda": Lambda adds metadata about the
# schema to the payload).
KEY_SCHEMA_FIELD = "keySchemaMetadata"
VALUE_SCHEMA_FIELD = "valueSchemaMetadata"


class SchemaMetadata(NamedTuple):
    """Which registered schema validated a key or value: its format (AVRO, PROTOBUF, JSON) and
    the registry's id for it (a Confluent number or a Glue schema version UUID, as text)."""

    data_format: str
    schema_id: str

    def document(self) -> dict[str, str]:
        """As the invocation event spells it (and the envelope and dead letters repeat it)."""
        return {"dataFormat": self.data_format, "schemaId": self.schema_id}


class KafkaRecord(NamedTuple):
    """One Kafka record as the event carries it; key and value stay base64 until encoding.

    An immutable NamedTuple rather than a frozen dataclass: it is built once per record on the
    hot path, and a frozen dataclass costs several times more to construct.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key_b64: str | None
    value_b64: str | None
    headers: tuple[tuple[str, bytes], ...] = ()
    # Set only when a schema registry on the mapping validated the key / the value.
    key_schema: SchemaMetadata | None = None
    value_schema: SchemaMetadata | None = None

    @property
    def topic_partition(self) -> str:
        """The ESM's name for this record's partition, as used in batch item identifiers."""
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """The records of one topic-partition in an invocation, in ascending offset order."""

    topic: str
    partition: int
    records: tuple[KafkaRecord, ...]

    @property
    def topic_partition(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(record.offset for record in self.records)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSource:
    """Where an invocation's records come from."""

    event_source: str
    event_source_arn: str | None
    bootstrap_servers: str | None = None  # self-managed Kafka events name the cluster this way

    @property
    def source_id(self) -> str:
        """Which cluster (and mapping) the records come from: offsets are only comparable
        within one source."""
        return self.event_source_arn or self.bootstrap_servers or self.event_source


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaEvent(EventSource):
    """A parsed invocation: where it came from and its partitions."""

    partitions: tuple[PartitionBatch, ...]

    @property
    def record_count(self) -> int:
        return sum(len(batch.records) for batch in self.partitions)


@dataclass(frozen=True, slots=True)
class PartitionOutline:
    """One topic-partition of an event before its records are read: where each record is.

    Every record's topic, partition and offset is checked (enough to report any of them); the
    rest is checked by `read_records`, a piece at a time.
    """

    topic: str
    partition: int
    group: Sequence[Any]  # the event's record objects, in the event's order
    offsets: tuple[int, ...]  # ascending
    # The event's index of each offset, when the event does not list them in offset order.
    order: tuple[int, ...] | None
    # Running totals of reading work in offset order (work[i]: the records before i), in units
    # of about what a small record costs: a record is one, plus one per header. Values are not
    # counted: an event holds at most 6 MB of them, a few milliseconds of work (bench.reading:
    # 8 KiB costs about four small records), which the reader's first pieces measure.
    work: tuple[int, ...]

    @property
    def topic_partition(self) -> str:
        return f"{self.topic}-{self.partition}"

    def __len__(self) -> int:
        return len(self.offsets)

    def stop_within(self, start: int, units: int, max_records: int) -> int:
        """The end of the longest run of records from `start` (at most `max_records`) whose
        reading work is at most `units`; `start` when not even the first one fits."""
        limit = min(len(self.offsets), start + max_records)
        return bisect.bisect_right(self.work, self.work[start] + units, start + 1, limit + 1) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class EventOutline(EventSource):
    """An event whose structure and record positions are checked, its records not yet read."""

    partitions: tuple[PartitionOutline, ...]

    @property
    def record_count(self) -> int:
        return sum(len(outline) for outline in self.partitions)


def parse_event(event: Any, *, fast_path: bool = True) -> KafkaEvent:
    """Validate a whole invocation event; raises MalformedEventError naming the first problem.

    Every field is checked, so a record that passes can always be encoded. `fast_path=False`
    checks each record field by field: the reference that the fast path for the usual record
    shape is tested against.
    """
    outline = outline_event(event, fast_path=fast_path)
    partitions = []
    for partition in outline.partitions:
        records: list[KafkaRecord] = []
        read_records(partition, 0, len(partition), into=records, fast_path=fast_path)
        partitions.append(PartitionBatch(partition.topic, partition.partition, tuple(records)))
    return KafkaEvent(
        event_source=outline.event_source,
        event_source_arn=outline.event_source_arn,
        bootstrap_servers=outline.bootstrap_servers,
        partitions=tuple(partitions),
    )


def outline_event(event: Any, *, fast_path: bool = True) -> EventOutline:
    """Check an event's structure and every record's topic, partition and offset (a few
    hundred nanoseconds a record); raises MalformedEventError naming the first problem.

    What is checked here is what reporting any record to the ESM needs: an event that passes
    can always be answered, whatever its records hold.
    """
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"event must be a JSON object, got {type(event).__name__}")
    source = event.get("eventSource")
    if source is None:
        # Both MSK and self-managed Kafka events name their source; an event without one was
        # not sent by a Kafka event source mapping.
        raise MalformedEventError(
            f"event has no 'eventSource' (expected one of {sorted(EVENT_SOURCES)})"
        )
    if not isinstance(source, str) or source not in EVENT_SOURCES:
        raise MalformedEventError(
            f"eventSource {_shown(source)} is not a Kafka source"
            f" (expected one of {sorted(EVENT_SOURCES)})"
        )
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise MalformedEventError("event has no 'records' object (expected an MSK/Kafka event)")
    arn = event.get("eventSourceArn")
    if arn is not None and not (isinstance(arn, str) and is_unicode(arn)):
        raise MalformedEventError("eventSourceArn must be a string of valid Unicode, or absent")
    servers = event.get("bootstrapServers")

    partitions = []
    for group_key, raw_records in groups.items():
        if not isinstance(raw_records, Sequence) or isinstance(raw_records, str | bytes):
            raise MalformedEventError(f"records[{_shown(group_key)}] must be a list of records")
        if raw_records:
            partitions.append(_outline_group(raw_records, group_key, fast_path))
    return EventOutline(
        event_source=source,
        event_source_arn=arn,
        bootstrap_servers=servers if isinstance(servers, str) and is_unicode(servers) else None,
        partitions=tuple(partitions),
    )


def _outline_group(raw_records: Sequence[Any], group_key: Any, fast_path: bool) -> PartitionOutline:
    topic, partition, last = _position(raw_records[0], group_key, 0)
    offsets, work = [last], [_work(raw_records[0].get("headers"))]
    offsets_append, work_append = offsets.append, work.append
    in_order = True
    for index, raw in enumerate(itertools.islice(raw_records, 1, None), 1):
        # The usual record: the types of the group's first one (checked in full), the next
        # offset up. Anything else is checked field by field.
        if fast_path and type(raw) is dict:
            get = raw.get
            number, offset = get("partition"), get("offset")
            if (
                type(number) is int
                and number == partition
                and get("topic") == topic
                and type(offset) is int
                and last < offset <= MAX_OFFSET
            ):
                offsets_append(offset)
                headers = get("headers")
                work_append(len(headers) + 1 if type(headers) is list else 1)
                last = offset
                continue
        offset = _position(raw, group_key, index)[2]
        in_order = in_order and offset > last
        offsets_append(offset)
        work_append(_work(raw.get("headers")))
        last = offset
    order = None
    if not in_order:
        order = tuple(sorted(range(len(offsets)), key=offsets.__getitem__))
        offsets = [offsets[index] for index in order]
        work = [work[index] for index in order]
        for earlier, later in itertools.pairwise(offsets):
            if earlier == later:
                raise MalformedEventError(
                    f"records[{_shown(group_key)}] holds offset {later} more than once"
                )
    totals = (0, *itertools.accumulate(work))
    return PartitionOutline(topic, partition, raw_records, tuple(offsets), order, totals)


def _work(headers: Any) -> int:
    """A record's reading work (PartitionOutline.work): one, and one per header."""
    return len(headers) + 1 if isinstance(headers, list) else 1


def read_records(
    outline: PartitionOutline,
    start: int,
    stop: int,
    *,
    into: list[KafkaRecord],
    fast_path: bool = True,
) -> None:
    """Check and read the partition's records `start` to `stop` (in offset order), appending
    each to `into`; raises MalformedEventError at the first malformed one (those before it
    are in `into`)."""
    group, order, offsets = outline.group, outline.order, outline.offsets
    indexes = range(start, stop) if order is None else order[start:stop]
    group_key = outline.topic_partition
    expected: _Checked | None = None  # what the last record checked in full held
    append = into.append
    for position, index in enumerate(indexes, start):
        raw = group[index]
        # The outline checked the record's position: the fast path takes it from there.
        record = _well_formed(raw, expected, offsets[position]) if fast_path else None
        if record is None:
            # Something is unusual (a string partition, a missing field, a wrong type, headers
            # of another shape, new schema metadata, the first record of the piece): check it
            # field by field, with precise errors.
            record = _parse_record(raw, group_key, index)
            if fast_path:
                expected = (
                    record.topic,
                    record.partition,
                    raw.get(KEY_SCHEMA_FIELD),
                    record.key_schema,
                    raw.get(VALUE_SCHEMA_FIELD),
                    record.value_schema,
                )
        append(record)


# Builds a KafkaRecord from a tuple of all its fields without the Python-level __new__ that
# fills in defaults (what NamedTuple._make does, less its length check): about half the cost
# of a call, on the path every record takes.
_new_record = tuple.__new__


# What the fast path builds a record with: the group's topic and partition (as the record checked
# in full read them), and compares it with: the schema metadata objects of the last record
# checked in full with what they parsed to (a registry sends the same few objects on every
# record of a partition). A plain tuple, indexed: it is rebuilt
# for every record that takes the checked path (a new schema metadata object, say).
_Checked = tuple[str, int, Any, SchemaMetadata | None, Any, SchemaMetadata | None]
_TOPIC, _PARTITION, _KEY_RAW, _KEY_SCHEMA, _VALUE_RAW, _VALUE_SCHEMA = range(6)


def _well_formed(raw: Any, expected: _Checked | None, offset: int) -> KafkaRecord | None:
    """The record when it has exactly the usual types, else None; its topic, partition and
    `offset` are the ones its partition's outline checked and read.

    Exactly as strict as `_parse_record`: whatever it accepts, `_parse_record` accepts and
    reads the same way (a property test holds them to it); anything else goes there.
    """
    if expected is None or type(raw) is not dict:
        return None
    get = raw.get
    timestamp = get("timestamp", NO_TIMESTAMP)
    timestamp_type = get("timestampType", NO_TIMESTAMP_TYPE)
    key, value, headers = get("key"), get("value"), get("headers")
    if (
        type(timestamp) is not int
        or not MIN_TIMESTAMP <= timestamp <= MAX_TIMESTAMP
        or type(timestamp_type) is not str
        or timestamp_type not in _TIMESTAMP_TYPES
        or (key is not None and type(key) is not str)
        or (value is not None and type(value) is not str)
        or (headers is not None and type(headers) is not list)
    ):
        return None
    parsed_headers = _well_formed_headers(headers) if headers else ()
    if parsed_headers is None:
        return None
    # Schema metadata: none, or equal to what the last fully checked record held.
    key_meta, value_meta = get(KEY_SCHEMA_FIELD), get(VALUE_SCHEMA_FIELD)
    if (key_meta is not None and key_meta != expected[_KEY_RAW]) or (
        value_meta is not None and value_meta != expected[_VALUE_RAW]
    ):
        return None
    return _new_record(
        KafkaRecord,
        (
            expected[_TOPIC],
            expected[_PARTITION],
            offset,
            timestamp,
            timestamp_type,
            key,
            value,
            parsed_headers,
            None if key_meta is None else expected[_KEY_SCHEMA],
            None if value_meta is None else expected[_VALUE_SCHEMA],
        ),
    )


def _well_formed_headers(headers: list[Any]) -> tuple[tuple[str, bytes], ...] | None:
    """Headers of the usual shape as `_parse_headers` reads them, else None (checked there).

    The usual shape: a list of {name: [byte values]} objects, ASCII names, values the ints
    0..255 (or -128..127, as Java's signed bytes). Records often carry dozens of headers, so
    this is a loop of few, cheap steps per header (about a third of the checked path's cost).
    """
    parsed: list[tuple[str, bytes]] = []
    append = parsed.append
    for entry in headers:
        if type(entry) is not dict:
            return None
        for name, values in entry.items():
            if type(name) is not str or not name.isascii() or type(values) is not list:
                return None
            for value in values:
                if type(value) is not int:  # never a bool: bytes() would take True as 1
                    return None
            try:
                data = bytes(values)
            except ValueError:  # outside 0..255: signed bytes keep their 8 bits, or go checked
                if not all(-128 <= value <= 255 for value in values):
                    return None
                data = bytes(value & 0xFF for value in values)
            append((name, data))
    return tuple(parsed)


def _position(raw: Any, group_key: Any, index: int) -> tuple[str, int, int]:
    """A record's topic, partition and offset, checked; raises MalformedEventError."""
    where = _where(group_key, index)
    if not isinstance(raw, Mapping):
        raise MalformedEventError(f"{where} must be an object, got {type(raw).__name__}")
    topic = raw.get("topic")
    if not isinstance(topic, str) or not topic:
        raise MalformedEventError(f"{where} has no 'topic' string")
    if not is_unicode(topic):
        raise MalformedEventError(f"{where} field 'topic' is not valid Unicode: {_shown(topic)}")
    partition = _integer(raw, "partition", where, 0, MAX_PARTITION)
    offset = _integer(raw, "offset", where, 0, MAX_OFFSET)
    assert partition is not None and offset is not None  # required: _integer raised already
    # Topic names may contain '-' and '.', so the group key is never split: it must simply equal
    # what the ESM would name this record's partition, or our identifiers would not match.
    if f"{topic}-{partition}" != group_key:
        raise MalformedEventError(
            f"{where} is topic {_shown(topic)} partition {partition}, which does not belong"
            f" under records key {_shown(group_key)}"
        )
    return topic, partition, offset


def _where(group_key: Any, index: int) -> str:
    return f"records[{_shown(group_key)}][{index}]"


def _parse_record(raw: Any, group_key: Any, index: int) -> KafkaRecord:
    topic, partition, offset = _position(raw, group_key, index)
    where = _where(group_key, index)
    timestamp = _integer(raw, "timestamp", where, MIN_TIMESTAMP, MAX_TIMESTAMP, required=False)
    timestamp_type = raw.get("timestampType", NO_TIMESTAMP_TYPE)
    if not isinstance(timestamp_type, str) or not is_unicode(timestamp_type):
        raise MalformedEventError(f"{where} field 'timestampType' must be a string")
    key_meta, value_meta = raw.get(KEY_SCHEMA_FIELD), raw.get(VALUE_SCHEMA_FIELD)
    return KafkaRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=NO_TIMESTAMP if timestamp is None else timestamp,
        timestamp_type=timestamp_type,
        key_b64=_optional_string(raw, "key", where),
        value_b64=_optional_string(raw, "value", where),
        headers=_parse_headers(raw.get("headers"), where),
        # Null or absent: no registry on the mapping, or it does not validate that attribute.
        key_schema=None if key_meta is None else schema_metadata(key_meta, KEY_SCHEMA_FIELD, where),
        value_schema=(
            None if value_meta is None else schema_metadata(value_meta, VALUE_SCHEMA_FIELD, where)
        ),
    )


def _integer(
    raw: Mapping[str, Any], field: str, where: str, low: int, high: int, *, required: bool = True
) -> int | None:
    value = raw.get(field)
    if value is None:
        if required:
            raise MalformedEventError(f"{where} has no '{field}'")
        return None
    # Self-managed Kafka events may carry partition (and, defensively, offset) as a string.
    if isinstance(value, str) and (match := _DECIMAL.fullmatch(value)):
        sign, digits = match.group(1), match.group(2).lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise MalformedEventError(
                f"{where} field '{field}' has {len(digits)} digits, outside {low}..{high}"
            )
        value = int(sign + digits)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(
            f"{where} field '{field}' must be an integer, got {_shown(value)}"
        )
    if not low <= value <= high:
        raise MalformedEventError(
            f"{where} field '{field}' is {_shown(value)}, outside {low}..{high}"
        )
    return value


def _optional_string(raw: Mapping[str, Any], field: str, where: str) -> str | None:
    value = raw.get(field)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEventError(f"{where} field '{field}' must be a base64 string or null")


def schema_metadata(metadata: Any, field: str, where: str) -> SchemaMetadata:
    """A record's schema metadata object: `dataFormat` and `schemaId` strings (the registry
    adds nothing else today; other members are ignored, as a newer mapping might add some)."""
    if not isinstance(metadata, Mapping):
        raise MalformedEventError(
            f"{where} field '{field}' must be an object or null, got {type(metadata).__name__}"
        )
    data_format, schema_id = metadata.get("dataFormat"), metadata.get("schemaId")
    if not (isinstance(data_format, str) and is_unicode(data_format)):
        raise MalformedEventError(f"{where} field '{field}' has no 'dataFormat' string")
    if not (isinstance(schema_id, str) and is_unicode(schema_id)):
        raise MalformedEventError(f"{where} field '{field}' has no 'schemaId' string")
    return SchemaMetadata(data_format, schema_id)


def _parse_headers(raw: Any, where: str) -> tuple[tuple[str, bytes], ...]:
    """Headers as (name, bytes); names and values are customer data, never quoted in errors."""
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise MalformedEventError(f"{where} field 'headers' must be a list")
    headers: list[tuple[str, bytes]] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise MalformedEventError(f"{where} header {position} must be an object")
        # Each entry is a one-key object {name: [byte values]}; several keys are accepted in order.
        for name, values in entry.items():
            if not isinstance(name, str) or not is_unicode(name):
                raise MalformedEventError(
                    f"{where} header {position} has a name that is not a string of valid Unicode"
                )
            if not isinstance(values, Sequence) or isinstance(values, str | bytes):
                raise MalformedEventError(f"{where} header {position} must map to a byte list")
            if not all(
                isinstance(value, int) and not isinstance(value, bool) and value in _BYTE_RANGE
                for value in values
            ):
                raise MalformedEventError(
                    f"{where} header {position} holds a value that is not a byte (-128..255)"
                )
            # Signed bytes (-128..127) keep the same 8 bits.
            headers.append((name, bytes(value & 0xFF for value in values)))
    return tuple(headers)


def is_unicode(text: str) -> bool:
    """True when `text` can be written as UTF-8: a Python string may hold a lone surrogate."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> str:
    """A bad value as an error message quotes it: short, printable, and never raising."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**_SHOWN_CHARS else "an integer too large to show"
    if isinstance(value, str):
        text = ascii(value)
        return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 4]}...'"
    if isinstance(value, float):
        return repr(value)
    return f"a {type(value).__name__}"


_NO_MEMBERS: Final[Mapping[str, Any]] = {}


def schema_members(record: KafkaRecord) -> Mapping[str, Any]:
    """The schema registry's metadata members, as the event named them (none without one)."""
    if record.key_schema is None and record.value_schema is None:
        return _NO_MEMBERS  # the usual record: nothing to build, per record, on the hot path
    members: dict[str, Any] = {}
    if record.key_schema is not None:
        members[KEY_SCHEMA_FIELD] = record.key_schema.document()
    if record.value_schema is not None:
        members[VALUE_SCHEMA_FIELD] = record.value_schema.document()
    return members


def record_members(record: KafkaRecord) -> dict[str, Any]:
    """The record's members before its headers, named as the event (and the envelope) name
    them: topic, partition, offset, timestamp, timestampType, key and value (base64 or null)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": record.timestamp_type,
        "key": record.key_b64,
        "value": record.value_b64,
    }


def event_record(record: KafkaRecord) -> dict[str, Any]:
    """The record as an invocation event holds it (parse_event reads it back unchanged)."""
    fields: dict[str, Any] = {
        **record_members(record),
        "headers": [{name: list(value)} for name, value in record.headers],
        **schema_members(record),
    }
    return fields
