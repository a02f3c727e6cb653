"""Replay what failed: dead-letter and on-failure objects, republished through the function's Sink.

`python -m msk_kinesis_sink.replay --help`; docs/replay.md says how and when to use it. It runs
with the operator's credentials, never in the function (the function never imports it). Like the
function it reaches AWS only through `aws.py`, imported when the command runs, so boto3 stays in
that one module; everything else here is pure and tested with fakes.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, TextIO

from msk_kinesis_sink.encoding import UnwritableRecord, encode_record
from msk_kinesis_sink.errors import (
    ConfigurationError,
    MalformedEventError,
    ReplayError,
    UnreadableObjectError,
)
from msk_kinesis_sink.events import KafkaRecord, PartitionBatch, parse_event
from msk_kinesis_sink.limits import MIB
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings, bucket_name_problem

# A replayed object is moved here (its key kept below it): listing the function's and the
# mappings' prefixes no longer finds it, so a second run does not send it again.
REPLAYED_PREFIX: Final = "replayed/"
# Where Lambda writes a mapping's discarded batches ("aws/lambda/<mapping UUID>/...").
ON_FAILURE_PREFIX: Final = "aws/lambda/"
# A dead letter holds one record of at most 10 MiB (in base64: under 14 MiB); an on-failure
# object one invocation payload (at most 6 MB). Anything much larger is not ours.
MAX_OBJECT_BYTES: Final = 64 * MIB
# The Kafka ESM's largest BatchSize: the Sink is never handed more records at once than Lambda
# would hand the function.
MAX_RECORDS_PER_INVOCATION: Final = 10_000
# Each invocation's time budget; the Sink retries within it and reports what is left.
INVOCATION_SECONDS: Final = 60.0
# Sources as the redelivery memory names them: the cluster's ARN, or this for self-managed Kafka.
SELF_MANAGED_SOURCE: Final = "SelfManagedKafka"
_AGE = re.compile(r"([0-9]{1,9})([smhd])", re.ASCII)
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GLOB_CHARACTERS = frozenset("*?[")
# Lines of failure causes printed at most (each distinct cause once).
_MAX_CAUSES: Final = 20

# (source, topic, partition, offset): one Kafka record, wherever it was kept.
RecordId = tuple[str, str, int, int]
# (source, topic, partition)
PartitionId = tuple[str, str, int]


# -- the objects ---------------------------------------------------------------------------------


class StoredObject(Protocol):
    """One listed object: what selection needs before reading it."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def last_modified(self) -> datetime: ...


class ObjectStore(Protocol):
    """The bucket the replay reads (aws.S3ObjectStore; an in-memory one in tests)."""

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
        for name in ("topic", "partition", "offset", "timestamp", "timestampType", "key", "value")
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


def event_record(record: KafkaRecord) -> dict[str, Any]:
    """The record as an invocation event holds it (parse_event reads it back unchanged)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": record.timestamp_type,
        "key": record.key_b64,
        "value": record.value_b64,
        "headers": [{name: list(value)} for name, value in record.headers],
    }


def invocation_event(source: str, records: Iterable[KafkaRecord]) -> dict[str, Any]:
    """An invocation event of `source` holding `records`, grouped by topic-partition."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.topic_partition, []).append(event_record(record))
    if source == SELF_MANAGED_SOURCE:
        return {"eventSource": SELF_MANAGED_SOURCE, "records": groups}
    return {"eventSource": "aws:kafka", "eventSourceArn": source, "records": groups}


# -- selection -----------------------------------------------------------------------------------


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
    """What selection and reading found."""

    objects: list[FailedObject] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    skipped: int = 0


def read_objects(
    store: ObjectStore, selection: Selection, progress: Callable[[int], Progress]
) -> Reading:
    """List the prefixes, leave out what the selection does not want, read the rest.

    Listing, then reading: selection by key and LastModified costs no GetObject. Raises
    ReplayError when the bucket can not be listed or an object can not be read.
    """
    reading = Reading()
    chosen: list[StoredObject] = []
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
                chosen.append(stored)
    bar = progress(len(chosen))
    try:
        for stored in chosen:
            body = store.read(stored.key)
            try:
                failed = parse_object(stored.key, body)
            except UnreadableObjectError as error:
                reading.unreadable.append((stored.key, str(error)))
            else:
                if all(selection.wants_topic(topic) for topic in failed.topics):
                    reading.objects.append(failed)
                else:  # an object is replayed whole or not at all
                    reading.skipped += 1
            bar.advance(1)
    finally:
        bar.close()
    return reading


# -- the replay set and its order ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """One invocation's records: one source, each topic-partition's in offset order."""

    source: str
    records: tuple[KafkaRecord, ...]


class ReplaySet:
    """Every selected record once, wherever it was kept, and which objects hold it."""

    def __init__(self) -> None:
        self.objects: list[FailedObject] = []
        self.records: dict[RecordId, KafkaRecord] = {}
        self.holders: dict[RecordId, list[str]] = {}
        self.duplicates = 0

    def add(self, failed: FailedObject) -> None:
        """Raises UnreadableObjectError, adding nothing, when the object holds a record under
        an offset another object holds with other content (a re-created topic, say)."""
        for record_id, record in zip(failed.record_ids(), failed.records, strict=True):
            known = self.records.get(record_id)
            if known is not None and known != record:
                raise UnreadableObjectError(
                    f"it holds {record.topic_partition} offset {record.offset} with other"
                    f" content than {self.holders[record_id][0]}"
                )
        self.objects.append(failed)
        for record_id, record in zip(failed.record_ids(), failed.records, strict=True):
            holders = self.holders.setdefault(record_id, [])
            if failed.key in holders:
                continue  # the same offset twice in one object: parse_event refuses it
            if holders:
                self.duplicates += 1
            else:
                self.records[record_id] = record
            holders.append(failed.key)

    def ordered(self) -> list[tuple[RecordId, KafkaRecord]]:
        """By source, topic, partition, then offset: each key's records in Kafka order."""
        return sorted(self.records.items(), key=lambda item: item[0])

    def batches(self, max_records: int = MAX_RECORDS_PER_INVOCATION) -> list[Batch]:
        """Consecutive runs of the order, at most `max_records` each, one source each: a
        partition's later batch holds only offsets above its earlier one's."""
        batches: list[Batch] = []
        current: list[KafkaRecord] = []
        source = ""
        for (record_source, *_), record in self.ordered():
            if current and (record_source != source or len(current) >= max_records):
                batches.append(Batch(source, tuple(current)))
                current = []
            source = record_source
            current.append(record)
        if current:
            batches.append(Batch(source, tuple(current)))
        return batches


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One topic-partition of the replay set, as the dry run shows it."""

    topic: str
    partition: int
    records: int
    first_offset: int
    last_offset: int
    encoded_bytes: int  # of the records that can be written (data + partition key), as encoded
    stream: str | None
    unwritable: int  # records the settings can not write
    blocked: int  # records after the first unwritable one: they wait behind it
    reason: str | None  # why the first unwritable one can not be written


def plan_partitions(replay_set: ReplaySet, settings: Settings) -> list[PartitionPlan]:
    """Encode every record as the Sink will (no AWS call): sizes, streams, what can not go."""
    by_partition: dict[PartitionId, list[KafkaRecord]] = {}
    for (source, topic, partition, _), record in replay_set.ordered():
        by_partition.setdefault((source, topic, partition), []).append(record)
    plans: list[PartitionPlan] = []
    for (_, topic, partition), records in by_partition.items():
        encoded_bytes = unwritable = blocked = 0
        reason: str | None = None
        for record in records:
            unit = encode_record(
                record,
                record_format=settings.record_format,
                partition_key_mode=settings.partition_key,
                max_record_bytes=settings.max_record_bytes,
                partition_key_header=settings.partition_key_header,
            )
            if isinstance(unit, UnwritableRecord):
                unwritable += 1
                reason = reason or unit.reason
                continue
            encoded_bytes += unit.size
            if reason is not None:
                blocked += 1
        plans.append(
            PartitionPlan(
                topic,
                partition,
                len(records),
                records[0].offset,
                records[-1].offset,
                encoded_bytes,
                settings.stream_for(topic),
                unwritable,
                blocked,
                reason,
            )
        )
    return plans


# -- publishing ----------------------------------------------------------------------------------


class _Deadline:
    """The Lambda context the Sink reads its time budget from."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - self._clock()) * 1000))


@dataclass(slots=True)
class BatchOutcome:
    delivered: list[KafkaRecord] = field(default_factory=list)
    failed: list[KafkaRecord] = field(default_factory=list)
    invocations: int = 0


def publish_batch(
    sink: Sink,
    batch: Batch,
    *,
    invocation_seconds: float = INVOCATION_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[int], object] = lambda _: None,
) -> BatchOutcome:
    """Invoke the Sink with the batch, then with the tails it reports, until everything is
    delivered or an invocation delivers nothing new.

    A reported tail may hold records the Sink wrote anyway (other keys after a failed one); its
    redelivery memory knows them, skips them when they come back, and says, at the end, which
    of the last tail were written.
    """
    outcome = BatchOutcome()
    pending = list(batch.records)
    while pending:
        response = sink.handle(
            invocation_event(batch.source, pending), _Deadline(invocation_seconds, clock)
        )
        outcome.invocations += 1
        tails: dict[str, int] = {}
        for failure in response["batchItemFailures"]:
            identifier = failure["itemIdentifier"]
            partition, offset = identifier["partition"], identifier["offset"]
            tails[partition] = min(offset, tails.get(partition, offset))
        left: list[KafkaRecord] = []
        for record in pending:
            tail = tails.get(record.topic_partition)
            if tail is not None and record.offset >= tail:
                left.append(record)
            else:
                outcome.delivered.append(record)
        on_progress(len(pending) - len(left))
        report = sink.last_report
        published = report.stats.records_published if report is not None else 0
        progressed = published > 0 or len(left) < len(pending)
        pending = left
        if not progressed:
            break
    if pending:
        written = _remembered(sink, batch.source, pending)
        for record in pending:
            if (record.topic, record.partition, record.offset) in written:
                outcome.delivered.append(record)
            else:
                outcome.failed.append(record)
        on_progress(len(pending))
    return outcome


def _remembered(
    sink: Sink, source: str, records: Sequence[KafkaRecord]
) -> set[tuple[str, int, int]]:
    by_partition: dict[tuple[str, int], list[KafkaRecord]] = {}
    for record in records:
        by_partition.setdefault((record.topic, record.partition), []).append(record)
    written: set[tuple[str, int, int]] = set()
    for (topic, partition), group in by_partition.items():
        batch = PartitionBatch(topic, partition, tuple(group))
        written.update((topic, partition, offset) for offset in sink.memory.recall(source, batch))
    return written


@dataclass(slots=True)
class Summary:
    """The run in numbers: the last line the command prints."""

    mode: str
    objects: int = 0  # objects selected and read
    records: int = 0  # distinct records in them
    published: int = 0  # records Kinesis acknowledged in this run
    failed: int = 0  # records not delivered (a dry run: records the settings can not write)
    skipped: int = 0  # objects left out by --topic, --since, --until, or already replayed
    duplicates: int = 0  # records held by more than one object (sent once)
    unreadable: int = 0  # objects that are no dead letter or on-failure batch (left in place)
    marked: int = 0  # objects moved under replayed/

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.unreadable == 0


class Replayer:
    """Publishes a replay set batch by batch and marks each object once all it holds is
    delivered. A partition with a failed record sends nothing more: its later records would
    overtake it."""

    def __init__(
        self,
        sink: Sink,
        store: ObjectStore,
        replay_set: ReplaySet,
        *,
        invocation_seconds: float = INVOCATION_SECONDS,
        max_records: int = MAX_RECORDS_PER_INVOCATION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.store = store
        self.replay_set = replay_set
        self.invocation_seconds = invocation_seconds
        self.max_records = max_records
        self.clock = clock
        self.published = 0
        self.failed: list[KafkaRecord] = []
        self.marked: list[str] = []
        self._halted: set[PartitionId] = set()
        self._undecided = {failed.key: set(failed.record_ids()) for failed in replay_set.objects}
        self._doomed: set[str] = set()  # objects holding a record that was not delivered

    def run(self, on_progress: Callable[[int], object] = lambda _: None) -> None:
        """Raises ReplayError when an object can not be marked (sending stops there: whatever
        is sent after it would be sent again by the next run)."""
        for batch in self.replay_set.batches(self.max_records):
            held = [r for r in batch.records if _partition_id(batch.source, r) in self._halted]
            sendable = tuple(
                r for r in batch.records if _partition_id(batch.source, r) not in self._halted
            )
            outcome = BatchOutcome(failed=held)
            on_progress(len(held))
            if sendable:
                sent = publish_batch(
                    self.sink,
                    Batch(batch.source, sendable),
                    invocation_seconds=self.invocation_seconds,
                    clock=self.clock,
                    on_progress=on_progress,
                )
                outcome.delivered, outcome.failed = sent.delivered, held + sent.failed
            self._settle(batch.source, outcome)

    def _settle(self, source: str, outcome: BatchOutcome) -> None:
        self.published += len(outcome.delivered)
        self.failed.extend(outcome.failed)
        settled = [(record, True) for record in outcome.delivered]
        settled += [(record, False) for record in outcome.failed]
        ready: list[str] = []
        for record, delivered in settled:
            record_id = (source, record.topic, record.partition, record.offset)
            if not delivered:
                self._halted.add(_partition_id(source, record))
            for key in self.replay_set.holders[record_id]:
                if not delivered:
                    self._doomed.add(key)
                undecided = self._undecided[key]
                undecided.discard(record_id)
                if not undecided and key not in self._doomed:
                    ready.append(key)
        for key in ready:
            self.store.move(key, REPLAYED_PREFIX + key)
            self.marked.append(key)
            del self._undecided[key]


def _partition_id(source: str, record: KafkaRecord) -> PartitionId:
    return (source, record.topic, record.partition)


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """A one-line progress display on `stream`, drawn only when it is a terminal."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 0.1,
    ) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._done = 0
        self._clock = clock
        self._interval_s = interval_s
        self._drawn_at: float | None = None
        self._enabled = _is_terminal(stream)

    def advance(self, count: int) -> None:
        self._done += count
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._interval_s:
            self._draw(now)

    def close(self) -> None:
        if self._drawn_at is not None or self._done:
            self._draw(self._clock())
            if self._enabled:
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        if not self._enabled:
            return
        share = self._done / self._total if self._total else 1.0
        width = 30
        filled = min(width, int(share * width))
        bar = "#" * filled + "." * (width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total}")
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# -- the command ---------------------------------------------------------------------------------


class _SinkProblems(logging.Handler):
    """Collects what the Sink reports at ERROR: topic, partition, offset and the reason or the
    error (the Sink never logs keys, values or headers)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.causes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        if reason is not None:
            where = f"{getattr(record, 'topic', '?')}-{getattr(record, 'partition', '?')}"
            cause = f"{where} offset {getattr(record, 'offset', '?')}: {reason}"
        else:
            cause = record.getMessage()
        if cause not in self.causes:
            self.causes.append(cause)


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it names an offset) or an age before `now` (30m, 6h, 2d)."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        return now - timedelta(seconds=int(age.group(1)) * _AGE_SECONDS[age.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time (2024-05-01T12:00Z; UTC unless an offset is given)"
            " nor an age (30m, 6h, 2d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bucket(text: str) -> str:
    problem = bucket_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid S3 bucket name: {problem}")
    return text


def _parser(now: datetime) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m msk_kinesis_sink.replay",
        description="Replay the function's dead letters and the mappings' on-failure batches"
        " through the same Sink: same encoding, partition keys and retries, each partition in"
        " offset order. A dry run unless --apply. See docs/replay.md.",
    )
    parser.add_argument(
        "--bucket",
        type=_bucket,
        help="the dead-letter bucket (default: DEAD_LETTER_BUCKET of the settings)",
    )
    parser.add_argument(
        "--prefix",
        action="append",
        default=None,
        help="where to look; repeat for several (default: DEAD_LETTER_PREFIX and aws/lambda/)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=None,
        help="only this topic (a name or a glob such as 'orders.*'); repeat for several",
    )

    def when(text: str) -> datetime:
        return parse_when(text, now)

    parser.add_argument(
        "--since", type=when, help="objects written (S3 LastModified) at or after: time or age"
    )
    parser.add_argument("--until", type=when, help="objects written before: time or age")
    parser.add_argument(
        "--function",
        help="read the settings from this deployed function (lambda:GetFunctionConfiguration)"
        " instead of the environment",
    )
    parser.add_argument(
        "--stream",
        help="send every record to this stream (name or ARN) instead of the settings' streams",
    )
    parser.add_argument(
        "--apply", action="store_true", help="publish, and move what was delivered to replayed/"
    )
    return parser


@dataclass(frozen=True, slots=True)
class _Source:
    settings: Settings
    bucket: str | None  # the settings' DEAD_LETTER_BUCKET
    described: str  # where the settings came from


def _replay_settings(args: argparse.Namespace, env: Mapping[str, str]) -> _Source:
    """The settings the function uses (its own, or the environment's), made into a replay's:
    no dead-letter bucket, and every record to --stream when it is given."""
    if args.function:
        from msk_kinesis_sink import aws

        variables = aws.function_environment(args.function, env)
        described = f"function {args.function}"
    else:
        variables = dict(env)
        described = "the environment"
    bucket = variables.get("DEAD_LETTER_BUCKET", "").strip() or None
    # A replay never dead-letters again: what still can not be written is reported and stays.
    variables["DEAD_LETTER_BUCKET"] = ""
    if args.stream is not None:
        variables["STREAM_NAME"] = args.stream
        variables["STREAM_ROUTES"] = ""
    try:
        settings = Settings.from_env(variables)
    except ConfigurationError as error:
        raise ConfigurationError(f"settings from {described}: {error}") from None
    return _Source(settings, bucket, described)


def _describe_settings(settings: Settings) -> str:
    if settings.stream_routes:
        routes = ",".join(f"{r.pattern}={r.stream}" for r in settings.stream_routes)
        streams = f"STREAM_ROUTES={routes} STREAM_NAME={settings.default_stream or ''}"
    else:
        streams = f"STREAM_NAME={settings.default_stream}"
    key = settings.partition_key.value
    if settings.partition_key_header is not None:
        key = f"{key}:{settings.partition_key_header}"
    return (
        f"{streams} RECORD_FORMAT={settings.record_format.value} PARTITION_KEY={key}"
        f" AGGREGATION={settings.aggregation.value} MAX_RECORD_BYTES={settings.max_record_bytes}"
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < MIB:
        return f"{count / 1024:.1f} KiB"
    return f"{count / MIB:.1f} MiB"


def _print_plan(
    out: TextIO, reading: Reading, replay_set: ReplaySet, plans: Sequence[PartitionPlan]
) -> None:
    kinds = {kind: 0 for kind in ObjectKind}
    for failed in replay_set.objects:
        kinds[failed.kind] += 1
    print(
        f"objects: {len(replay_set.objects)} to replay (dead letters:"
        f" {kinds[ObjectKind.DEAD_LETTER]}, on-failure batches: {kinds[ObjectKind.ON_FAILURE]}),"
        f" {reading.skipped} skipped, {len(reading.unreadable)} unreadable",
        file=out,
    )
    if not plans:
        return
    width = max(len(f"{p.topic}-{p.partition}") for p in plans)
    print(
        f"  {'topic-partition':<{width}}  {'offsets':>21}  {'records':>8}  {'bytes':>10}  stream",
        file=out,
    )
    for plan in plans:
        offsets = f"{plan.first_offset}..{plan.last_offset}"
        print(
            f"  {plan.topic + '-' + str(plan.partition):<{width}}  {offsets:>21}"
            f"  {plan.records:>8}  {_size(plan.encoded_bytes):>10}  {plan.stream}",
            file=out,
        )
    for plan in plans:
        if plan.unwritable:
            print(
                f"  can not be written: {plan.topic}-{plan.partition}: {plan.unwritable}"
                f" record(s) ({plan.reason}); {plan.blocked} later record(s) wait behind them",
                file=out,
            )


def _failed_ranges(records: Iterable[KafkaRecord]) -> list[str]:
    by_partition: dict[str, list[int]] = {}
    for record in records:
        by_partition.setdefault(record.topic_partition, []).append(record.offset)
    return [
        f"{name} offsets {min(offsets)}..{max(offsets)} ({len(offsets)} records)"
        for name, offsets in sorted(by_partition.items())
    ]


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """0: everything selected was delivered (or, in a dry run, can be); 1: something failed or
    could not be read or marked; 2: bad arguments, settings, or an AWS error before sending."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = os.environ if env is None else env
    args = _parser(datetime.now(UTC)).parse_args(argv)
    try:
        return _run(args, env, out, err, clock)
    except (ConfigurationError, ReplayError) as error:
        print(f"replay: error: {error}", file=err)
        return 2
    except KeyboardInterrupt:
        # Objects are marked as they are delivered: a run stopped here loses nothing, and the
        # next one sends only what was not marked.
        print("replay: interrupted", file=err)
        return 130


def _run(
    args: argparse.Namespace,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    clock: Callable[[], float],
) -> int:
    if args.since and args.until and args.since >= args.until:
        raise ConfigurationError("--since must be before --until")
    source = _replay_settings(args, env)
    settings = source.settings
    bucket = args.bucket or source.bucket
    if bucket is None:
        raise ConfigurationError(
            "no bucket: give --bucket, or settings with DEAD_LETTER_BUCKET (--function NAME)"
        )
    problem = bucket_name_problem(bucket)
    if problem:  # --bucket is checked by the parser; this one is the settings'
        raise ConfigurationError(
            f"DEAD_LETTER_BUCKET={bucket!r} of {source.described} is not a valid S3 bucket"
            f" name: {problem}"
        )
    selection = Selection(
        prefixes=tuple(args.prefix or (settings.dead_letter_prefix, ON_FAILURE_PREFIX)),
        dead_letter_prefix=settings.dead_letter_prefix,
        topics=tuple(args.topic or ()),
        since=args.since,
        until=args.until,
    )
    from msk_kinesis_sink import aws  # boto3 only once the arguments are valid

    store = aws.S3ObjectStore(aws.operator_s3_client(env), bucket)
    return replay(
        store,
        settings,
        selection,
        apply=args.apply,
        make_sink=lambda: Sink.from_env(env, settings=settings),
        described=source.described,
        out=out,
        err=err,
        clock=clock,
    )


def replay(
    store: ObjectStore,
    settings: Settings,
    selection: Selection,
    *,
    apply: bool,
    make_sink: Callable[[], Sink],
    described: str = "the environment",
    out: TextIO,
    err: TextIO,
    invocation_seconds: float = INVOCATION_SECONDS,
    max_records: int = MAX_RECORDS_PER_INVOCATION,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Select, read, show; with `apply`, publish and mark. Returns the exit status."""
    summary = Summary(mode="apply" if apply else "dry-run")
    prefixes = ", ".join(selection.listing_prefixes()) or "(the whole bucket)"
    print(f"replay from s3://{store.bucket} under {prefixes}; settings from {described}", file=out)
    print(f"  {_describe_settings(settings)}", file=out)

    reading = read_objects(store, selection, lambda total: Progress(err, "reading", total))
    replay_set = ReplaySet()
    for failed in reading.objects:
        try:
            replay_set.add(failed)
        except UnreadableObjectError as error:
            reading.unreadable.append((failed.key, str(error)))
    for key, why in reading.unreadable:
        print(f"unreadable: s3://{store.bucket}/{key}: {why}", file=err)
    plans = plan_partitions(replay_set, settings)
    summary.objects = len(replay_set.objects)
    summary.records = len(replay_set.records)
    summary.skipped = reading.skipped
    summary.duplicates = replay_set.duplicates
    summary.unreadable = len(reading.unreadable)
    _print_plan(out, reading, replay_set, plans)
    unrouted = sorted({plan.topic for plan in plans if plan.stream is None})
    if unrouted:
        raise ConfigurationError(
            f"topic {unrouted[0]!r} matches no STREAM_ROUTES pattern and STREAM_NAME is not set:"
            " add a route for it, or replay with --stream"
        )

    if not apply:
        summary.failed = sum(plan.unwritable + plan.blocked for plan in plans)
        print("dry run: nothing was sent; run again with --apply to publish", file=out)
        print(summary.line(), file=out)
        return 0 if summary.ok else 1

    status = _publish(
        replay_set, store, make_sink, summary, err, invocation_seconds, max_records, clock
    )
    print(summary.line(), file=out)
    return status if status else (0 if summary.ok else 1)


def _publish(
    replay_set: ReplaySet,
    store: ObjectStore,
    make_sink: Callable[[], Sink],
    summary: Summary,
    err: TextIO,
    invocation_seconds: float,
    max_records: int,
    clock: Callable[[], float],
) -> int:
    """Publish and mark; returns 1 when marking failed (after saying why), else 0."""
    if not replay_set.records:
        return 0
    problems = _SinkProblems()
    sink_logger = logging.getLogger("msk_kinesis_sink")
    propagate = sink_logger.propagate
    sink_logger.addHandler(problems)
    sink_logger.propagate = False  # the Sink's per-invocation lines are the function's, not ours
    sink = make_sink()
    replayer = Replayer(
        sink,
        store,
        replay_set,
        invocation_seconds=invocation_seconds,
        max_records=max_records,
        clock=clock,
    )
    bar = Progress(err, "publishing", len(replay_set.records))
    failure: ReplayError | None = None
    try:
        replayer.run(on_progress=bar.advance)
    except ReplayError as error:
        failure = error
    finally:
        bar.close()
        sink.close()
        sink_logger.removeHandler(problems)
        sink_logger.propagate = propagate
    summary.published = replayer.published
    summary.failed = len(replayer.failed)
    summary.marked = len(replayer.marked)
    for cause in problems.causes[:_MAX_CAUSES]:
        print(f"cause: {cause}", file=err)
    for line in _failed_ranges(replayer.failed):
        print(f"failed: {line} (their objects stay in place)", file=err)
    if failure is not None:
        print(f"replay: error: {failure}; sending stopped there", file=err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
