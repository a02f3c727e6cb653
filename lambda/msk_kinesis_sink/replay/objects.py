"""The objects a replay reads: dead letters and on-failure batches, listed, selected and parsed."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from msk_kinesis_sink.errors import MalformedEventError, UnreadableObjectError
from msk_kinesis_sink.events import (
    KEY_SCHEMA_FIELD,
    VALUE_SCHEMA_FIELD,
    KafkaRecord,
    event_record,
    parse_event,
)
from msk_kinesis_sink.limits import MIB

# A replayed object is moved here (its key kept below it): listing the function's and the
# mappings' prefixes no longer finds it, so a second run does not send it again.
REPLAYED_PREFIX: Final = "replayed/"
# Where Lambda writes a mapping's discarded batches ("aws/lambda/<mapping UUID>/...").
ON_FAILURE_PREFIX: Final = "aws/lambda/"
# A dead letter holds one record of at most 10 MiB (in base64: under 14 MiB); an on-failure
# object one invocation payload (at most 6 MB). Anything much larger is not ours.
MAX_OBJECT_BYTES: Final = 64 * MIB
# Sources as the redelivery memory names them: the cluster's ARN, or this for self-managed Kafka.
SELF_MANAGED_SOURCE: Final = "SelfManagedKafka"
_GLOB_CHARACTERS = frozenset("*?[")

# (source, topic, partition, offset): one Kafka record, wherever it was kept.
RecordId = tuple[str, str, int, int]
# (source, topic, partition)
PartitionId = tuple[str, str, int]


class StoredObject(Protocol):
    """One listed object: what selection needs before reading it."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def last_modified(self) -> datetime: ...


class ObjectStore(Protocol):
    """The bucket the replay reads (aws_access.S3ObjectStore; an in-memory one in tests)."""

    @property
    def bucket(self) -> str: ...

    def list(self, prefix: str) -> Iterable[StoredObject]: ...

    def read(self, key: str) -> bytes: ...

    def move(self, key: str, to_key: str) -> None: ...


class ObjectKind(StrEnum):
    DEAD_LETTER = "dead letter"  # the function's: one record it could not write
    ON_FAILURE = "on-failure batch"  # a mapping's: a whole invocation payload it gave up on


@dataclass(frozen=True, slots=True)
class FailedObject:
    """A dead letter or an on-failure batch, read and validated."""

    key: str
    kind: ObjectKind
    source: str  # the event source ARN, or SELF_MANAGED_SOURCE
    records: tuple[KafkaRecord, ...]

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(record.topic for record in self.records)

    def record_ids(self) -> list[RecordId]:
        return [(self.source, r.topic, r.partition, r.offset) for r in self.records]


def parse_object(key: str, body: bytes) -> FailedObject:
    """Read one object; raises UnreadableObjectError naming what is wrong (never its data)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise UnreadableObjectError("not JSON") from None
    if not isinstance(document, dict):
        raise UnreadableObjectError("not a JSON object")
    if "payload" in document:
        return _on_failure_batch(key, document["payload"])
    if {"topic", "partition", "offset"} <= document.keys():
        return _dead_letter(key, document)
    if "KafkaBatchInfo" in document:
        raise UnreadableObjectError(
            "an on-failure record without its payload (only S3 destinations carry the records):"
            " read the offsets its KafkaBatchInfo names from Kafka"
        )
    raise UnreadableObjectError(
        "neither a dead letter (topic, partition, offset, value) nor an on-failure batch (payload)"
    )


def _dead_letter(key: str, document: Mapping[str, Any]) -> FailedObject:
    # The document (dead_letters.dead_letter_document) holds the event's own record fields.
    record = {
        name: document[name]
        for name in (
            "topic",
            "partition",
            "offset",
            "timestamp",
            "timestampType",
            "key",
            "value",
            KEY_SCHEMA_FIELD,
            VALUE_SCHEMA_FIELD,
        )
        if document.get(name) is not None
    }
    record["headers"] = document.get("headers") or []
    arn = document.get("eventSourceArn")
    event: dict[str, Any] = {
        "eventSource": "aws:kafka" if arn else SELF_MANAGED_SOURCE,
        "records": {f"{record.get('topic')}-{record.get('partition')}": [record]},
    }
    if arn is not None:
        event["eventSourceArn"] = arn
    return _validated(key, ObjectKind.DEAD_LETTER, event)


def _on_failure_batch(key: str, payload: Any) -> FailedObject:
    # Lambda's S3 destination carries the invocation event whole; accept it as JSON text too.
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise UnreadableObjectError("its payload is not JSON") from None
    return _validated(key, ObjectKind.ON_FAILURE, payload)


def _validated(key: str, kind: ObjectKind, event: Any) -> FailedObject:
    try:
        parsed = parse_event(event)
    except MalformedEventError as error:
        raise UnreadableObjectError(f"its records are malformed: {error}") from None
    records = tuple(record for batch in parsed.partitions for record in batch.records)
    if not records:
        raise UnreadableObjectError("it holds no records")
    return FailedObject(key, kind, parsed.event_source_arn or SELF_MANAGED_SOURCE, records)


def invocation_event(source: str, records: Iterable[KafkaRecord]) -> dict[str, Any]:
    """An invocation event of `source` holding `records`, grouped by topic-partition."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.topic_partition, []).append(event_record(record))
    if source == SELF_MANAGED_SOURCE:
        return {"eventSource": SELF_MANAGED_SOURCE, "records": groups}
    return {"eventSource": "aws:kafka", "eventSourceArn": source, "records": groups}


@dataclass(frozen=True, slots=True)
class Selection:
    """Which objects to replay: where to look, which topics, which time range (LastModified)."""

    prefixes: tuple[str, ...]
    dead_letter_prefix: str
    topics: tuple[str, ...] = ()  # names or globs; none = every topic
    since: datetime | None = None  # LastModified at or after
    until: datetime | None = None  # LastModified before

    def wants_topic(self, topic: str) -> bool:
        return not self.topics or any(fnmatch.fnmatchcase(topic, p) for p in self.topics)

    def in_time_range(self, stored: StoredObject) -> bool:
        modified = stored.last_modified
        return (self.since is None or modified >= self.since) and (
            self.until is None or modified < self.until
        )

    def listing_prefixes(self) -> list[str]:
        """The prefixes to list, narrowed to the selected topics' dead letters when they are
        plain names, without one that another already covers."""
        prefixes: list[str] = []
        for prefix in self.prefixes:
            if prefix == self.dead_letter_prefix and self._exact_topics():
                prefixes.extend(f"{prefix}{topic}/" for topic in self.topics)
            else:
                prefixes.append(prefix)
        unique = sorted(set(prefixes))
        return [p for p in unique if not any(p != q and p.startswith(q) for q in unique)]

    def key_topic(self, key: str) -> str | None:
        """The topic a dead letter's key names (`<prefix><topic>/<partition>/<offset>.json`)."""
        if not key.startswith(self.dead_letter_prefix):
            return None
        parts = key[len(self.dead_letter_prefix) :].split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].endswith(".json"):
            return None
        return parts[0]

    def _exact_topics(self) -> bool:
        return bool(self.topics) and not any(_GLOB_CHARACTERS & set(topic) for topic in self.topics)


@dataclass(slots=True)
class Reading:
    """What selection found (`listed`, still to read), and what reading it found."""

    listed: list[StoredObject] = field(default_factory=list)
    objects: list[FailedObject] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    skipped: int = 0


def list_objects(store: ObjectStore, selection: Selection) -> Reading:
    """List the prefixes and leave out what the selection does not want, by key and
    LastModified: no GetObject. Raises ReplayError when the bucket can not be listed."""
    reading = Reading()
    seen: set[str] = set()
    for prefix in selection.listing_prefixes():
        for stored in store.list(prefix):
            if stored.key in seen or stored.key.endswith("/"):
                continue  # listed twice, or a folder marker
            seen.add(stored.key)
            key_topic = selection.key_topic(stored.key)
            if (
                stored.key.startswith(REPLAYED_PREFIX)
                or not selection.in_time_range(stored)
                or (key_topic is not None and not selection.wants_topic(key_topic))
            ):
                reading.skipped += 1
            elif stored.size > MAX_OBJECT_BYTES:
                reading.unreadable.append(
                    (stored.key, f"{stored.size} bytes, larger than any object the sink writes")
                )
            else:
                reading.listed.append(stored)
    return reading


def read_objects(
    store: ObjectStore,
    selection: Selection,
    reading: Reading,
    on_read: Callable[[int], object] = lambda _: None,
) -> None:
    """Read what was listed into `reading`; raises ReplayError when an object can not be read.

    An object holding a record of a topic the selection does not want is skipped whole: it is
    replayed, and marked, whole or not at all.
    """
    for stored in reading.listed:
        body = store.read(stored.key)
        try:
            failed = parse_object(stored.key, body)
        except UnreadableObjectError as error:
            reading.unreadable.append((stored.key, str(error)))
        else:
            if all(selection.wants_topic(topic) for topic in failed.topics):
                reading.objects.append(failed)
            else:
                reading.skipped += 1
        on_read(1)
