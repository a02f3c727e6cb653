"""Objects in the dead-letter bucket for replay tests: valid ones as the function and Lambda write
them, mutated ones of every kind, and a reference reading of what an object holds.

The reference reads an object by the rules docs/replay.md states, with the standard library's
JSON reader and none of the replay's own reading code: a name given twice, a dead letter without
a member the function writes, or records the invocation event's rules refuse make it read
nothing. Only the event's rules are shared (`parse_event`): they define what the function would
have sent.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import assume
from hypothesis import strategies as st

from msk_kinesis_sink.consumer import Envelope
from msk_kinesis_sink.dead_letters import dead_letter_document, dead_letter_key
from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.errors import MalformedEventError
from msk_kinesis_sink.events import KafkaRecord, parse_event
from msk_kinesis_sink.replay.documents import MAX_NESTING
from msk_kinesis_sink.replay.objects import replayed_keys
from msk_kinesis_sink.replay.plan import encoded
from msk_kinesis_sink.settings import Settings
from tests.strategies import json_values, kafka_events

ON_FAILURE_PREFIX = "aws/lambda/esm-uuid/"
# The dead-letter members docs/replay.md lists as required (written out, not imported): which
# record it is, and what it holds.
_IDENTITY = ("eventSourceArn", "topic", "partition", "offset", "timestamp", "timestampType")
REQUIRED_DEAD_LETTER_MEMBERS: Final = (*_IDENTITY, "key", "value", "headers")

MUTATIONS: Final = (
    "duplicate-member",
    "drop-member",
    "null-member",
    "retype-member",
    "extra-member",
    "deep-nesting",
    "flip-byte",
    "truncate",
    "insert-bytes",
    "payload-as-text",
    "repeat-record",
    "utf-16",
)
# Bytes an attacker or a broken writer could put anywhere in an object.
_INSERTS = (
    b"\x1b[31m",
    b"NaN",
    b"\xef\xbb\xbf",
    b"\xff",
    b"{",
    b"]",
    b'"',
    b"\\",
    b",",
    b"1e999",
    b"9" * 5000,
    b"\x00",
    b'"offset":7,',
)


@dataclass(frozen=True)
class BucketObject:
    """One object to put in the bucket: its key, its bytes, and how it was made."""

    key: str
    body: bytes
    mutation: str = "none"


class Members(list[list[Any]]):
    """A JSON object as its [name, value] pairs, in order: a name may be given twice."""


class Raw(str):
    """JSON text written as it is (a nesting too deep to build as a tree and dump)."""


def tree(value: Any) -> Any:
    if isinstance(value, dict):
        return Members([[name, tree(item)] for name, item in value.items()])
    if isinstance(value, list):
        return [tree(item) for item in value]
    return value


def dumps(node: Any) -> str:
    """JSON text of a tree (Members may repeat a name; json.dumps could not write that)."""
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, Members):
        return "{" + ",".join(f"{json.dumps(name)}:{dumps(value)}" for name, value in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(dumps(item) for item in node) + "]"
    return json.dumps(node)


def _containers(node: Any) -> Iterator[Any]:
    if isinstance(node, list):
        yield node
        for item in node:
            yield from _containers(item[1] if isinstance(node, Members) else item)


# -- valid objects ---------------------------------------------------------------------------------


def event_records(event: Any) -> list[KafkaRecord]:
    """The records of a valid event (the example is dropped when it is not valid)."""
    try:
        parsed = parse_event(event)
    except MalformedEventError:
        assume(False)
        raise  # not reached
    return [record for batch in parsed.partitions for record in batch.records]


def dead_letter_object(record: KafkaRecord, arn: str | None) -> BucketObject:
    unwritable = UnwritableRecord(record, "pk", "encoded record is too large")
    return BucketObject(
        dead_letter_key("records/", unwritable), dead_letter_document(unwritable, arn)
    )


def on_failure_object(event: Any, name: str) -> BucketObject:
    """What Lambda writes to an S3 on-failure destination for a discarded invocation."""
    document = {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4c1d-9a3e-0000000000aa",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:sink",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "version": "1.0",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "KafkaBatchInfo": {"batchSize": 1},
        "payload": event,
    }
    return BucketObject(f"{ON_FAILURE_PREFIX}{name}", json.dumps(document).encode())


@st.composite
def valid_objects(draw: st.DrawFn) -> tuple[list[KafkaRecord], list[BucketObject]]:
    """An invocation's records, and objects holding them: a dead letter for some, and the
    on-failure batch of the whole invocation for the others (or all: a record in both is one
    record)."""
    event = draw(kafka_events(damage_rate=0))
    if draw(st.integers(0, 3)):
        _repair_base64(event)  # mostly records the settings can write: more objects move
    records = event_records(event)
    assume(records)
    arn = event.get("eventSourceArn")
    lettered = draw(st.lists(st.sampled_from(records), unique=True))
    objects = [dead_letter_object(record, arn) for record in lettered]
    if draw(st.booleans()) or len(lettered) < len(records):
        objects.append(on_failure_object(event, f"batch-{draw(st.integers(0, 99))}"))
    return records, objects


def _repair_base64(event: dict[str, Any]) -> None:
    """Make every key and value of a drawn event valid base64 (the strategy draws some that
    are not: records no setting can write)."""
    for group in event["records"].values():
        for record in group:
            for field in ("key", "value"):
                text = record.get(field)
                if isinstance(text, str) and not _is_base64(text):
                    record[field] = base64.b64encode(text.encode()).decode()


def _is_base64(text: str) -> bool:
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


# -- mutations -------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: BucketObject, kind: str | None = None) -> BucketObject:
    """`original` changed by one mutation: `kind`, or one drawn from MUTATIONS."""
    kind = kind or draw(st.sampled_from(MUTATIONS))
    body = _mutated_body(draw, kind, original.body)
    return BucketObject(original.key, body, kind)


def _mutated_body(draw: st.DrawFn, kind: str, body: bytes) -> bytes:
    if kind in ("flip-byte", "truncate", "insert-bytes", "utf-16"):
        return _mutated_bytes(draw, kind, body)
    root = tree(json.loads(body))
    objects = [node for node in _containers(root) if isinstance(node, Members) and node]
    target: Members = draw(st.sampled_from(objects))
    at = draw(st.integers(0, len(target) - 1))
    name, value = target[at]
    match kind:
        case "duplicate-member":
            again = value if draw(st.booleans()) else tree(draw(json_values))
            target.insert(draw(st.integers(0, len(target))), [name, copy.deepcopy(again)])
        case "drop-member":
            del target[at]
        case "null-member":
            target[at][1] = None
        case "retype-member":
            target[at][1] = tree(draw(json_values))
        case "extra-member":
            extra = draw(st.sampled_from(["note", "extra", "value", "x-trace"]))
            target.append([extra, tree(draw(json_values))])
        case "deep-nesting":
            levels = draw(st.sampled_from([2, 31, 33, 1000, 5000]))
            opening, closing = ("[", "]") if draw(st.booleans()) else ('{"n":', "}")
            target[at][1] = Raw(opening * levels + dumps(value) + closing * levels)
        case "payload-as-text":
            _payload_as_text(root)
        case "repeat-record":
            _repeat_record(draw, root)
        case _:
            raise AssertionError(kind)
    return dumps(root).encode("utf-8", "surrogatepass")


def _mutated_bytes(draw: st.DrawFn, kind: str, body: bytes) -> bytes:
    at = draw(st.integers(0, len(body)))
    match kind:
        case "flip-byte":
            at = min(at, len(body) - 1)
            return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
        case "truncate":
            return body[:at]
        case "insert-bytes":
            return body[:at] + draw(st.sampled_from(_INSERTS)) + body[at:]
        case "utf-16":
            return body.decode("utf-8").encode("utf-16")
        case _:
            raise AssertionError(kind)


def _payload_as_text(root: Members) -> None:
    for member in root:
        if member[0] == "payload":
            member[1] = dumps(member[1])


def _repeat_record(draw: st.DrawFn, root: Members) -> None:
    groups = [
        group
        for node in _containers(root)
        if isinstance(node, Members)
        for name, group in node
        if isinstance(group, list)
        and group
        and not isinstance(group, Members)
        and name != "headers"
    ]
    if groups:
        group = draw(st.sampled_from(groups))
        group.insert(draw(st.integers(0, len(group))), copy.deepcopy(draw(st.sampled_from(group))))


# -- the reference reading -------------------------------------------------------------------------


class _Ambiguous(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({name for name, _ in pairs}) != len(pairs):
        raise _Ambiguous
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _Ambiguous


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def reference_reading(body: bytes) -> tuple[KafkaRecord, ...] | None:
    """The records an object holds by the documented rules, or None when it holds none that
    can be told apart from others (unreadable)."""
    try:
        document = _loads(body.decode("utf-8"))
        if isinstance(document, dict) and isinstance(document.get("payload"), str):
            document["payload"] = _loads(document["payload"])
    except (ValueError, RecursionError):  # UnicodeDecodeError and _Ambiguous are ValueErrors
        return None
    if not isinstance(document, dict):
        return None
    if "payload" in document:
        event = document["payload"]
    elif {"topic", "partition", "offset", "key", "value"} & document.keys():
        if not set(REQUIRED_DEAD_LETTER_MEMBERS) <= document.keys():
            return None
        if any(type(document[name]) is not int for name in ("partition", "offset")):
            return None
        if document["timestamp"] is not None and type(document["timestamp"]) is not int:
            return None
        record = {name: value for name, value in document.items() if name != "eventSourceArn"}
        arn = document["eventSourceArn"]
        event = {
            "eventSource": "aws:kafka" if arn is not None else "SelfManagedKafka",
            "records": {f"{document['topic']}-{document['partition']}": [record]},
        }
        if arn is not None:
            event["eventSourceArn"] = arn
    else:
        return None
    try:
        parsed = parse_event(event)
    except MalformedEventError:
        return None
    records = tuple(record for batch in parsed.partitions for record in batch.records)
    return records or None


# -- the replay's promise, judged from the outside -------------------------------------------------


def _unwritable(record: KafkaRecord, settings: Settings) -> bool:
    return isinstance(encoded(record, settings), UnwritableRecord)


def _sent_form(record: KafkaRecord, settings: Settings) -> tuple[str, bytes]:
    unit = encoded(record, settings)
    assert not isinstance(unit, UnwritableRecord)
    return unit.partition_key, unit.data


def check_promise(
    objects: Sequence[BucketObject],
    remaining: Mapping[str, bytes],
    stream: Sequence[tuple[str, bytes]],
    status: int,
    settings: Settings,
) -> list[str]:
    """Judge a replay run over `objects` by what is left in the bucket (key -> bytes) and in
    the stream ((partition key, data) in order); returns each object's outcome: moved,
    unreadable (the reference reads nothing), too-deep (nested deeper than the replay reads),
    conflict (an offset an earlier object holds with other content) or failed (left in place:
    a record of its partition can not be written)."""
    assert len({obj.key for obj in objects}) == len(objects)
    known: dict[tuple[str | None, str, int, int], KafkaRecord] = {}
    blocked: set[tuple[str | None, str, int]] = set()
    read: dict[str, tuple[str | None, tuple[KafkaRecord, ...]]] = {}
    refused: dict[str, str] = {}
    # First what the replay must read, in its order (by key), and which partitions stop.
    for obj in sorted(objects, key=lambda o: o.key):
        held = reference_reading(obj.body)
        refusal = _refusal(obj, held, known)
        if refusal is not None:
            refused[obj.key] = refusal
            continue
        assert held is not None
        source = source_of(obj.body)
        read[obj.key] = (source, held)
        known.update(((source, r.topic, r.partition, r.offset), r) for r in held)
        blocked.update((source, r.topic, r.partition) for r in held if _unwritable(r, settings))
    # Then where each object ended.
    outcomes: list[str] = []
    moved_records: list[KafkaRecord] = []
    for obj in objects:
        # Every object ends in exactly one place, unchanged: where it was, or under replayed/.
        copies = [k for k in replayed_keys(obj.key) if remaining.get(k) == obj.body]
        in_place = remaining.get(obj.key) == obj.body
        assert in_place != bool(copies), (obj.key, obj.mutation, in_place, copies)
        assert len(copies) <= 1
        if obj.key in refused:
            # Nothing of an object the replay may not read is sent, and it stays in place.
            assert in_place, (obj.key, obj.mutation, refused[obj.key])
            outcomes.append(refused[obj.key])
            continue
        source, held = read[obj.key]
        if in_place:
            # Only a record that can not be written (or one waiting behind it) keeps it here.
            assert any((source, r.topic, r.partition) in blocked for r in held), obj.mutation
            outcomes.append("failed")
        else:
            moved_records.extend(held)
            outcomes.append("moved")
    holders = Counter(
        _sent_form(r, settings) for r in known.values() if not _unwritable(r, settings)
    )
    sent = Counter(stream)
    # Nothing is sent that no readable object holds, byte for byte, nor more often than
    # distinct records hold it (two sources may hold the same bytes).
    assert not sent - holders, sorted(sent - holders)[:3]
    # Every record of a moved object was sent.
    assert {_sent_form(r, settings) for r in moved_records} <= set(sent)
    assert status == (0 if all(outcome == "moved" for outcome in outcomes) else 1)
    return outcomes


def _refusal(
    obj: BucketObject,
    held: tuple[KafkaRecord, ...] | None,
    known: Mapping[tuple[str | None, str, int, int], KafkaRecord],
) -> str | None:
    """Why the replay must leave `obj` in place without sending any of it, or None."""
    if held is None:
        return "unreadable"
    if document_depth(obj.body) > MAX_NESTING:
        return "too-deep"
    source = source_of(obj.body)
    if any(known.get((source, r.topic, r.partition, r.offset), r) != r for r in held):
        return "conflict"
    return None


def document_depth(body: bytes) -> int:
    """How deep a readable object nests: its own text, or its payload's when that is text."""
    payload = json.loads(body).get("payload")
    texts = [body, payload.encode()] if isinstance(payload, str) else [body]
    return max(nesting_depth(text) for text in texts)


def nesting_depth(body: bytes) -> int:
    """How deep the brackets of a JSON text (outside its strings) nest: read character by
    character, as plainly as possible (a reference for the replay's own check)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in body.decode("utf-8"):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def source_of(body: bytes) -> str | None:
    """The event source ARN of a readable object's records (None: self-managed Kafka)."""
    document = _loads(body.decode("utf-8"))
    event = document.get("payload", document)
    if isinstance(event, str):
        event = _loads(event)
    arn = event.get("eventSourceArn")
    return arn if isinstance(arn, str) else None


def stream_order_holds(stream: Sequence[tuple[str, bytes]]) -> bool:
    """Per (topic, partition, partition key), envelope offsets rise in stream order: the
    sink's order (records of other keys may go first)."""
    last: dict[tuple[str, int, str], int] = {}
    for partition_key, data in stream:
        envelope = Envelope.from_bytes(data)
        where = (envelope.topic, envelope.partition, partition_key)
        if envelope.offset <= last.get(where, -1):
            return False
        last[where] = envelope.offset
    return True
