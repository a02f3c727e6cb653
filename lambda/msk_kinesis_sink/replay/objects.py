"""The objects a replay reads: dead letters and on-failure batches, listed, selected and parsed."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from msk_kinesis_sink.errors import MalformedEventError, UnreadableObjectError
from msk_kinesis_sink.events import (
    KEY_SCHEMA_FIELD,
    NO_TIMESTAMP,
    NO_TIMESTAMP_TYPE,
    VALUE_SCHEMA_FIELD,
    KafkaRecord,
    event_record,
    parse_event,
)
from msk_kinesis_sink.limits import MAX_INVOCATION_BYTES, MAX_S3_KEY_BYTES
from msk_kinesis_sink.replay.documents import read_json
from msk_kinesis_sink.replay.refusals import Refusal, Skipped, Unreadable

# A replayed object is moved here (its key kept below it): listing the function's and the
# mappings' prefixes no longer finds it, so a second run does not send it again.
REPLAYED_PREFIX: Final = "replayed/"
# A replayed/ copy is never written over: a later object of the same key (a topic re-created
# with the same name starts its offsets again) is kept beside it, as `<key>~2`, `~3`, ...
REPLAYED_COPY_SEPARATOR: Final = "~"
MAX_REPLAYED_COPIES: Final = 100
# Where Lambda writes a mapping's discarded batches ("aws/lambda/<mapping UUID>/...").
ON_FAILURE_PREFIX: Final = "aws/lambda/"
# The largest object the sink or Lambda writes holds one invocation payload (at most 6 MiB):
# an on-failure object wraps the whole payload, a dead letter one of its records. Four times
# that leaves room for any whitespace or escaping around it; anything larger is not ours, and
# is refused before it is read (one object is parsed in memory at a time).
MAX_OBJECT_BYTES: Final = 4 * MAX_INVOCATION_BYTES
# Sources as the redelivery memory names them: the cluster's ARN, or this for self-managed Kafka.
SELF_MANAGED_SOURCE: Final = "SelfManagedKafka"
_GLOB_CHARACTERS = frozenset("*?[")

# Every member the function writes in a dead letter that says which record it is and what it
# holds (dead_letters.dead_letter_document: the record as events.event_record writes every
# record, and its source). A replay that guessed a missing one would send another record: a
# value read as null is a delete downstream.
_ANY_RECORD = KafkaRecord("t", 0, 0, NO_TIMESTAMP, NO_TIMESTAMP_TYPE, None, None)
DEAD_LETTER_MEMBERS: Final = ("eventSourceArn", *event_record(_ANY_RECORD))
# The function writes these as JSON integers (the timestamp may be null); a dead letter is read
# as strictly as it is written, not as an event (which may carry numbers as decimal text).
_DEAD_LETTER_INTEGERS: Final = ("partition", "offset", "timestamp")
# A document naming any of these (and no payload) is taken for a dead letter.
_DEAD_LETTER_MARKS: Final = frozenset({"topic", "partition", "offset", "key", "value"})
# Member names a refusal may quote (any other may be customer data: a header's name).
_SCHEMA_NAMES: Final = frozenset(
    {*DEAD_LETTER_MEMBERS, "reason", "partitionKey", KEY_SCHEMA_FIELD, VALUE_SCHEMA_FIELD}
    | {"dataFormat", "schemaId", "payload", "eventSource", "bootstrapServers", "records"}
    | {"requestContext", "responseContext", "KafkaBatchInfo", "version"}
)

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

    def move(self, key: str, to_keys: Sequence[str]) -> str:
        """Copy `key` to the first of `to_keys` that holds no object (never over one), then
        delete it; returns where it went."""
        ...


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


def replayed_keys(key: str) -> list[str]:
    """Where a replayed object may go, in order: `replayed/<key>`, then `~2`, `~3`, ..."""
    first = REPLAYED_PREFIX + key
    return [first] + [
        f"{first}{REPLAYED_COPY_SEPARATOR}{copy}" for copy in range(2, MAX_REPLAYED_COPIES + 1)
    ]


def parse_object(key: str, body: bytes) -> FailedObject:
    """Read one object; raises UnreadableObjectError naming what is wrong (never its data)."""
    if len(body) > MAX_OBJECT_BYTES:
        raise UnreadableObjectError(_too_large(len(body)), kind=Unreadable.TOO_LARGE)
    document = read_json(body, schema_names=_SCHEMA_NAMES)
    if not isinstance(document, dict):
        raise UnreadableObjectError("not a JSON object", kind=Unreadable.UNKNOWN_SHAPE)
    if "payload" in document:
        return _on_failure_batch(key, document["payload"])
    if _DEAD_LETTER_MARKS & document.keys():
        return _dead_letter(key, document)
    if "KafkaBatchInfo" in document:
        raise UnreadableObjectError(
            "an on-failure record without its payload (only S3 destinations carry the records):"
            " read the offsets its KafkaBatchInfo names from Kafka",
            kind=Unreadable.NO_PAYLOAD,
        )
    raise UnreadableObjectError(
        "neither a dead letter (topic, partition, offset, value) nor an on-failure batch (payload)",
        kind=Unreadable.UNKNOWN_SHAPE,
    )


def _too_large(size: int) -> str:
    return f"{size} bytes, larger than any object the sink or Lambda writes ({MAX_OBJECT_BYTES})"


def _dead_letter(key: str, document: Mapping[str, Any]) -> FailedObject:
    """The record as the function wrote it: every member present (an explicit null is a null
    key, a null value, no headers or no timestamp), read by the event's own rules."""
    missing = [name for name in DEAD_LETTER_MEMBERS if name not in document]
    if missing:
        raise UnreadableObjectError(
            f"a dead letter without {', '.join(repr(name) for name in missing)} (the function"
            " writes every one; null where it has none)",
            kind=Unreadable.MISSING_MEMBER,
        )
    for name in _DEAD_LETTER_INTEGERS:
        if type(document[name]) is not int and not (name == "timestamp" and document[name] is None):
            raise UnreadableObjectError(
                f"a dead letter whose {name!r} is not a JSON integer",
                kind=Unreadable.MALFORMED_RECORDS,
            )
    record = {
        name: document[name]
        for name in (*DEAD_LETTER_MEMBERS, KEY_SCHEMA_FIELD, VALUE_SCHEMA_FIELD)
        if name in document and name != "eventSourceArn"
    }
    arn = document["eventSourceArn"]
    event: dict[str, Any] = {
        "eventSource": "aws:kafka" if arn is not None else SELF_MANAGED_SOURCE,
        "records": {f"{record['topic']}-{record['partition']}": [record]},
    }
    if arn is not None:
        event["eventSourceArn"] = arn
    return _validated(key, ObjectKind.DEAD_LETTER, event)


def _on_failure_batch(key: str, payload: Any) -> FailedObject:
    """The invocation Lambda gave up on, read as the function reads an invocation: what the
    function would have sent, had it been invoked with it."""
    # Lambda's S3 destination carries the invocation event whole; accept it as JSON text too.
    if isinstance(payload, str):
        payload = read_json(
            payload.encode("utf-8", "surrogatepass"), "its payload", schema_names=_SCHEMA_NAMES
        )
    return _validated(key, ObjectKind.ON_FAILURE, payload)


def _validated(key: str, kind: ObjectKind, event: Any) -> FailedObject:
    try:
        parsed = parse_event(event)
    except MalformedEventError as error:
        raise UnreadableObjectError(
            f"its records are malformed: {error}", kind=Unreadable.MALFORMED_RECORDS
        ) from None
    records = tuple(record for batch in parsed.partitions for record in batch.records)
    if not records:
        raise UnreadableObjectError("it holds no records", kind=Unreadable.NO_RECORDS)
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
    unreadable: list[Refusal] = field(default_factory=list)
    skips: Counter[Skipped] = field(default_factory=Counter)
    # Skipped objects worth a line of their own: not left out by the operator's selection.
    noted: list[Refusal] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return self.skips.total()

    def refuse(self, key: str, error: UnreadableObjectError) -> None:
        self.unreadable.append(Refusal(key, Unreadable(error.kind), str(error)))


def list_objects(store: ObjectStore, selection: Selection) -> Reading:
    """List the prefixes and leave out what the selection does not want, by key and
    LastModified: no GetObject. Raises ReplayError when the bucket can not be listed."""
    reading = Reading()
    seen: set[str] = set()
    for prefix in selection.listing_prefixes():
        for stored in store.list(prefix):
            if stored.key in seen:
                continue  # listed twice
            seen.add(stored.key)
            skip = _skip(selection, stored)
            if skip is Skipped.FOLDER:
                reading.noted.append(
                    Refusal(
                        stored.key,
                        skip,
                        f"its key ends in '/' (a folder marker of {stored.size} bytes): the sink"
                        " and Lambda never write one",
                    )
                )
            if skip is not None:
                reading.skips[skip] += 1
                continue
            problem = _unmovable(stored)
            if problem is not None:
                reading.unreadable.append(problem)
            else:
                reading.listed.append(stored)
    return reading


def _skip(selection: Selection, stored: StoredObject) -> Skipped | None:
    if stored.key.endswith("/"):
        return Skipped.FOLDER
    if stored.key.startswith(REPLAYED_PREFIX):
        return Skipped.REPLAYED
    if not selection.in_time_range(stored):
        return Skipped.TIME_RANGE
    key_topic = selection.key_topic(stored.key)
    if key_topic is not None and not selection.wants_topic(key_topic):
        return Skipped.TOPIC
    return None


def _unmovable(stored: StoredObject) -> Refusal | None:
    """Why an object is refused before it is read: too large to be ours, or a key too long to
    be moved under replayed/ once its records are delivered (it would be sent on every run)."""
    if stored.size > MAX_OBJECT_BYTES:
        return Refusal(stored.key, Unreadable.TOO_LARGE, _too_large(stored.size))
    longest = len(replayed_keys(stored.key)[-1].encode("utf-8", "surrogatepass"))
    if longest > MAX_S3_KEY_BYTES:
        return Refusal(
            stored.key,
            Unreadable.KEY_TOO_LONG,
            f"its replayed/ copy's key would be {longest} bytes, over S3's {MAX_S3_KEY_BYTES}:"
            " the sink and Lambda never write such a key",
        )
    return None


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
            reading.refuse(stored.key, error)
        else:
            if all(selection.wants_topic(topic) for topic in failed.topics):
                reading.objects.append(failed)
            else:
                reading.skips[Skipped.TOPIC] += 1
        on_read(1)
