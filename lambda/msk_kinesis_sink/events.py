"""Parse MSK and self-managed Kafka invocation events into typed, offset-ordered partitions."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from msk_kinesis_sink.errors import MalformedEventError

EVENT_SOURCES = frozenset({"aws:kafka", "SelfManagedKafka"})
_DECIMAL = re.compile(r"^\s*-?[0-9]+\s*$")
# Header values are byte arrays; Java producers may send signed bytes.
_BYTE_RANGE = range(-128, 256)

# Kafka's conventions for a record without a timestamp.
NO_TIMESTAMP = -1
NO_TIMESTAMP_TYPE = "NO_TIMESTAMP_TYPE"


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


@dataclass(frozen=True, slots=True)
class KafkaEvent:
    """A parsed invocation: where it came from and its partitions."""

    event_source: str
    event_source_arn: str | None
    partitions: tuple[PartitionBatch, ...]
    bootstrap_servers: str | None = None  # self-managed Kafka events name the cluster this way

    @property
    def record_count(self) -> int:
        return sum(len(batch.records) for batch in self.partitions)

    @property
    def source_id(self) -> str:
        """Which cluster (and mapping) the records come from: offsets are only comparable
        within one source."""
        return self.event_source_arn or self.bootstrap_servers or self.event_source


def parse_event(event: Any) -> KafkaEvent:
    """Validate an invocation event; raises MalformedEventError naming the first problem found."""
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"event must be a JSON object, got {type(event).__name__}")
    source = event.get("eventSource")
    if source is not None and (not isinstance(source, str) or source not in EVENT_SOURCES):
        raise MalformedEventError(
            f"eventSource {source!r} is not a Kafka source"
            f" (expected one of {sorted(EVENT_SOURCES)})"
        )
    groups = event.get("records")
    if not isinstance(groups, Mapping):
        raise MalformedEventError("event has no 'records' object (expected an MSK/Kafka event)")
    arn = event.get("eventSourceArn")
    servers = event.get("bootstrapServers")

    partitions = []
    for group_key, raw_records in groups.items():
        if not isinstance(raw_records, Sequence) or isinstance(raw_records, str | bytes):
            raise MalformedEventError(f"records[{group_key!r}] must be a list of records")
        records = _parse_group(raw_records, group_key)
        if not records:
            continue
        records.sort(key=lambda record: record.offset)
        for earlier, later in itertools.pairwise(records):
            if earlier.offset == later.offset:
                raise MalformedEventError(
                    f"records[{group_key!r}] holds offset {later.offset} more than once"
                )
        first = records[0]
        partitions.append(PartitionBatch(first.topic, first.partition, tuple(records)))
    return KafkaEvent(
        event_source=str(source or "aws:kafka"),
        event_source_arn=arn if isinstance(arn, str) else None,
        partitions=tuple(partitions),
        bootstrap_servers=servers if isinstance(servers, str) else None,
    )


def _parse_group(raw_records: Sequence[Any], group_key: str) -> list[KafkaRecord]:
    """Parse one partition's records: a fast path for the usual shape, full checks otherwise."""
    records: list[KafkaRecord] = []
    expected: tuple[str, int] | None = None  # (topic, partition) once one record was checked
    for index, raw in enumerate(raw_records):
        record = _well_formed(raw, expected)
        if record is None:
            # Something is unusual (a string partition, a missing field, a wrong type, the
            # first record of the group): check it field by field, with precise errors.
            record = _parse_record(raw, group_key, index)
            expected = (record.topic, record.partition)
        records.append(record)
    return records


def _well_formed(raw: Any, expected: tuple[str, int] | None) -> KafkaRecord | None:
    """The record when it has exactly the usual types and belongs to `expected`, else None."""
    if expected is None or type(raw) is not dict:
        return None
    get = raw.get
    topic, partition, offset = get("topic"), get("partition"), get("offset")
    timestamp = get("timestamp", NO_TIMESTAMP)
    timestamp_type = get("timestampType", NO_TIMESTAMP_TYPE)
    key, value, headers = get("key"), get("value"), get("headers")
    if (
        topic != expected[0]
        or type(partition) is not int
        or partition != expected[1]
        or type(offset) is not int
        or type(timestamp) is not int
        or type(timestamp_type) is not str
        or (key is not None and type(key) is not str)
        or (value is not None and type(value) is not str)
        or headers  # non-empty headers take the checked path
    ):
        return None
    return KafkaRecord(topic, partition, offset, timestamp, timestamp_type, key, value, ())


def _parse_record(raw: Any, group_key: str, index: int) -> KafkaRecord:
    where = f"records[{group_key!r}][{index}]"
    if not isinstance(raw, Mapping):
        raise MalformedEventError(f"{where} must be an object, got {type(raw).__name__}")
    topic = raw.get("topic")
    if not isinstance(topic, str) or not topic:
        raise MalformedEventError(f"{where} has no 'topic' string")
    partition = _required_integer(raw, "partition", where)
    offset = _required_integer(raw, "offset", where)
    # Topic names may contain '-' and '.', so the group key is never split: it must simply equal
    # what the ESM would name this record's partition, or our identifiers would not match.
    if f"{topic}-{partition}" != group_key:
        raise MalformedEventError(
            f"{where} is topic {topic!r} partition {partition}, which does not belong under"
            f" records key {group_key!r}"
        )
    timestamp = _integer(raw, "timestamp", where, required=False)
    timestamp_type = raw.get("timestampType", NO_TIMESTAMP_TYPE)
    if not isinstance(timestamp_type, str):
        raise MalformedEventError(f"{where} field 'timestampType' must be a string")
    return KafkaRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=NO_TIMESTAMP if timestamp is None else timestamp,
        timestamp_type=timestamp_type,
        key_b64=_optional_string(raw, "key", where),
        value_b64=_optional_string(raw, "value", where),
        headers=_parse_headers(raw.get("headers"), where),
    )


def _integer(raw: Mapping[str, Any], field: str, where: str, *, required: bool) -> int | None:
    value = raw.get(field)
    if value is None:
        if required:
            raise MalformedEventError(f"{where} has no '{field}'")
        return None
    # Self-managed Kafka events may carry partition (and, defensively, offset) as a string.
    if isinstance(value, str) and _DECIMAL.match(value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEventError(f"{where} field '{field}' must be an integer, got {value!r}")
    return value


def _required_integer(raw: Mapping[str, Any], field: str, where: str) -> int:
    value = _integer(raw, field, where, required=True)
    assert value is not None  # _integer raised already
    return value


def _optional_string(raw: Mapping[str, Any], field: str, where: str) -> str | None:
    value = raw.get(field)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEventError(f"{where} field '{field}' must be a base64 string or null")


def _parse_headers(raw: Any, where: str) -> tuple[tuple[str, bytes], ...]:
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
            headers.append((str(name), bytes(value & 0xFF for value in values)))
    return tuple(headers)
