"""The replay under hostile input: it never turns a dead letter into something else.

For any object the function or Lambda writes, the replay sends exactly the records it holds; for
any mutation of one, it either reports the object unreadable and leaves it in place, or sends
exactly what the object holds (tests/replay_objects.py reads that without the replay's code).
The property over mutations runs FUZZ_EXAMPLES examples in all, an equal share per kind of
mutation (300; FUZZ_EXAMPLES=20000 for a long search), the others a third of that.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.errors import UnreadableObjectError
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.replay.cli import replay
from msk_kinesis_sink.replay.documents import MAX_NESTING
from msk_kinesis_sink.replay.objects import (
    ON_FAILURE_PREFIX,
    REPLAYED_PREFIX,
    Selection,
    parse_object,
)
from msk_kinesis_sink.replay.refusals import Unreadable
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from tests.factories import MSK_CLUSTER_ARN, b64
from tests.fakes import FakeKinesis
from tests.replay_objects import (
    MUTATIONS,
    BucketObject,
    check_promise,
    dead_letter_object,
    document_depth,
    mutated,
    on_failure_object,
    reference_reading,
    source_of,
    stream_order_holds,
    valid_objects,
)
from tests.replay_runs import BUCKET, MemoryStore, ReplayRun
from tests.strategies import FUZZ_EXAMPLES

TOPIC = "orders"
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ_THIRD = settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // 3, 1))


def _settings() -> Settings:
    return Settings.from_env(
        {
            "STREAM_NAME": "s",
            "RECORD_FORMAT": "envelope",
            "AGGREGATION": "off",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "2",
        }
    )


def _replay(store: MemoryStore, kinesis: FakeKinesis, *, apply: bool = True) -> ReplayRun:
    settings = _settings()
    out, err = io.StringIO(), io.StringIO()
    status = replay(
        store,
        settings,
        Selection(prefixes=("records/", ON_FAILURE_PREFIX), dead_letter_prefix="records/"),
        apply=apply,
        make_sink=lambda: Sink(settings, writer=kinesis),
        out=out,
        err=err,
        invocation_seconds=5.0,
    )
    return ReplayRun(status, out.getvalue(), err.getvalue())


def _objects_and_one_mutated() -> st.SearchStrategy[list[BucketObject]]:
    """The objects of one invocation, one of them (sometimes none) mutated."""

    @st.composite
    def build(draw: st.DrawFn) -> list[BucketObject]:
        _, objects = draw(valid_objects())
        at = draw(st.integers(0, len(objects)))
        if at < len(objects):
            objects[at] = draw(mutated(objects[at]))
        return objects

    return build()


# -- reading one object ----------------------------------------------------------------------------


@FUZZ_THIRD
@given(valid_objects())
def test_parse_object_reads_every_valid_object_as_exactly_the_records_it_holds(
    made: tuple[list[KafkaRecord], list[BucketObject]],
) -> None:
    # GIVEN the records of any invocation, in dead letters and an on-failure batch
    records, objects = made
    # WHEN each object is read
    read = {obj.key: parse_object(obj.key, obj.body).records for obj in objects}
    # THEN a dead letter holds its record, the batch all of them, in the invocation's order
    for obj in objects:
        if obj.key.startswith(ON_FAILURE_PREFIX):
            assert read[obj.key] == tuple(records)
        else:
            [record] = read[obj.key]
            assert record in records
            assert obj.key == f"records/{record.topic}/{record.partition}/{record.offset}.json"


@st.composite
def _one_mutated(draw: st.DrawFn, kind: str) -> BucketObject:
    _, objects = draw(valid_objects())
    return draw(mutated(draw(st.sampled_from(objects)), kind))


@pytest.mark.parametrize("kind", MUTATIONS)
def test_parse_object_reads_a_mutated_object_as_what_it_holds_or_refuses_it(kind: str) -> None:
    # Each kind of mutation gets an equal share of FUZZ_EXAMPLES (hypothesis favours the first
    # of a sampled_from).
    @settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // len(MUTATIONS), 1))
    @given(_one_mutated(kind))
    def read_back(obj: BucketObject) -> None:
        _check_mutated(obj)

    read_back()


def _check_mutated(obj: BucketObject) -> None:
    # GIVEN a dead letter or an on-failure batch, mutated (tests/replay_objects.MUTATIONS)
    expected = reference_reading(obj.body)
    # WHEN it is read
    try:
        failed = parse_object(obj.key, obj.body)
    except UnreadableObjectError as error:
        # THEN it is refused (never with an exception of another kind) when the reference
        # reads nothing either, or when it nests deeper than the replay reads...
        assert expected is None or error.kind == Unreadable.TOO_DEEP, (obj.mutation, error)
        assert expected is None or document_depth(obj.body) > MAX_NESTING
        return
    # ...or it holds exactly what the reference reads: no record more, none less, none other
    assert failed.records == expected, obj.mutation


# -- the whole replay ------------------------------------------------------------------------------


@FUZZ_THIRD
@given(_objects_and_one_mutated())
def test_replay_sends_exactly_what_the_objects_hold_or_leaves_them_in_place(
    objects: list[BucketObject],
) -> None:
    # GIVEN a bucket holding one invocation's dead letters and on-failure batch, one mutated
    store = MemoryStore()
    for obj in objects:
        store.put(obj.key, obj.body)
    kinesis = FakeKinesis()
    # WHEN the replay runs with --apply
    run = _replay(store, kinesis)
    # THEN every object is moved whole or left whole, only records they hold are sent, byte for
    # byte, every record of a moved object is sent, each partition in offset order, and the
    # exit status says whether anything was left
    stream = [(stored.partition_key, stored.data) for stored in kinesis.records]
    outcomes = check_promise(objects, store.bodies(), stream, run.status, _settings())
    sources = {source_of(o.body) for o in objects if reference_reading(o.body) is not None}
    assert stream_order_holds(stream) or len(sources) > 1
    assert int(run.summary["unreadable"]) == sum(
        outcome in ("unreadable", "too-deep", "conflict") for outcome in outcomes
    )


# -- the cases that were reproduced ----------------------------------------------------------------


def _dead_letter_body(**changes: Any) -> bytes:
    record = KafkaRecord(TOPIC, 0, 7, 1, "CREATE_TIME", b64(b"k"), b64(b"v"))
    document = json.loads(dead_letter_object(record, MSK_CLUSTER_ARN).body)
    for name, value in changes.items():
        if value is _ABSENT:
            del document[name]
        else:
            document[name] = value
    return json.dumps(document).encode()


_ABSENT = object()


def _run_over(*objects: tuple[str, bytes]) -> tuple[MemoryStore, FakeKinesis, ReplayRun]:
    store = MemoryStore()
    for key, body in objects:
        store.put(key, body)
    kinesis = FakeKinesis()
    return store, kinesis, _replay(store, kinesis)


def test_replay_duplicated_offset_leaves_the_dead_letter_in_place_and_sends_nothing() -> None:
    # GIVEN a dead letter naming its offset twice, and a good one
    body = _dead_letter_body().replace(b'"offset": 7', b'"offset": 7, "offset": 8')
    good = dead_letter_object(KafkaRecord(TOPIC, 1, 3, 1, "CREATE_TIME", None, b64(b"v")), None)
    # WHEN the replay runs
    store, kinesis, run = _run_over((f"records/{TOPIC}/0/7.json", body), (good.key, good.body))
    # THEN it says so in one line and leaves it in place; the good one is sent; exit 1
    assert run.status == 1
    assert run.err.splitlines() == [
        f"unreadable: s3://{BUCKET}/records/{TOPIC}/0/7.json: member 'offset' given twice"
    ]
    assert store.bodies()[f"records/{TOPIC}/0/7.json"] == body
    assert len(kinesis.records) == 1
    assert run.summary["unreadable_kinds"] == "duplicate-member:1"


def test_replay_on_failure_batch_naming_a_partition_twice_is_left_in_place() -> None:
    # GIVEN an on-failure batch whose records map names orders-0 twice
    first = [{"topic": TOPIC, "partition": 0, "offset": 1, "value": b64(b"a")}]
    second = [{"topic": TOPIC, "partition": 0, "offset": 2, "value": b64(b"b")}]
    payload = (
        f'{{"eventSource":"aws:kafka","records":{{"{TOPIC}-0":{json.dumps(first)},'
        f'"{TOPIC}-0":{json.dumps(second)}}}}}'
    )
    body = f'{{"payload":{payload}}}'.encode()
    # WHEN the replay runs
    store, kinesis, run = _run_over((f"{ON_FAILURE_PREFIX}x/1", body))
    # THEN neither record is sent, and the object stays, named with the partition
    assert kinesis.records == []
    assert run.status == 1
    assert f"member '{TOPIC}-0' given twice" in run.err
    assert store.keys(REPLAYED_PREFIX) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"value": _ABSENT}, "a dead letter without 'value'"),
        ({"key": _ABSENT, "headers": _ABSENT}, "a dead letter without 'key', 'headers'"),
        ({"partition": "0"}, "a dead letter whose 'partition' is not a JSON integer"),
        ({"offset": 7.0}, "a dead letter whose 'offset' is not a JSON integer"),
        ({"timestamp": "1"}, "a dead letter whose 'timestamp' is not a JSON integer"),
    ],
)
def test_replay_dead_letter_missing_a_member_is_unreadable_not_a_tombstone(
    changes: dict[str, Any], expected: str
) -> None:
    # GIVEN a dead letter without a member the function always writes (or of another type)
    body = _dead_letter_body(**changes)
    # WHEN the replay runs
    store, kinesis, run = _run_over((f"records/{TOPIC}/0/7.json", body))
    # THEN nothing is sent (no tombstone for a missing value), and it stays, named
    assert kinesis.records == []
    assert store.bodies() == {f"records/{TOPIC}/0/7.json": body}
    assert run.status == 1
    [line] = run.err.splitlines()
    assert line.startswith(f"unreadable: s3://{BUCKET}/records/{TOPIC}/0/7.json: {expected}")


def test_replay_dead_letter_with_explicit_nulls_is_a_tombstone_of_a_null_key() -> None:
    # GIVEN a dead letter whose key and value are explicitly null, without headers or source
    body = _dead_letter_body(key=None, value=None, headers=None, eventSourceArn=None)
    # WHEN it is read
    [record] = parse_object(f"records/{TOPIC}/0/7.json", body).records
    # THEN it is a tombstone with a null key, as written
    assert (record.key_b64, record.value_b64, record.headers) == (None, None, ())


def test_replay_on_failure_record_without_key_or_value_is_read_as_the_function_reads_it() -> None:
    # GIVEN an on-failure batch whose record has no key and no value (Lambda leaves a null key
    # out, and may leave out a tombstone's value)
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": MSK_CLUSTER_ARN,
        "records": {f"{TOPIC}-0": [{"topic": TOPIC, "partition": 0, "offset": 4}]},
    }
    obj = on_failure_object(event, "x")
    # WHEN it is read
    [record] = parse_object(obj.key, obj.body).records
    # THEN it is what the function would have sent: a tombstone with a null key
    assert (record.offset, record.key_b64, record.value_b64) == (4, None, None)


def test_replay_deep_nesting_refuses_that_object_in_one_line_and_carries_on() -> None:
    # GIVEN an object nested 1,000 levels deep (about 2 KB) among good dead letters
    deep = b'{"payload":' + b"[" * 1000 + b"]" * 1000 + b"}"
    good = [
        dead_letter_object(KafkaRecord(TOPIC, 0, o, 1, "CREATE_TIME", None, b64(b"v")), None)
        for o in (1, 2)
    ]
    # WHEN the replay runs
    store, kinesis, run = _run_over(
        (f"{ON_FAILURE_PREFIX}deep", deep), *((o.key, o.body) for o in good)
    )
    # THEN one line refuses it, the others are sent and marked, and the summary counts it
    assert run.err.splitlines() == [
        f"unreadable: s3://{BUCKET}/{ON_FAILURE_PREFIX}deep: nested deeper than"
        f" {MAX_NESTING} levels"
    ]
    assert len(kinesis.records) == 2
    assert (run.summary["marked"], run.summary["unreadable_kinds"]) == ("2", "too-deep:1")
    assert run.status == 1
    assert store.bodies()[f"{ON_FAILURE_PREFIX}deep"] == deep
