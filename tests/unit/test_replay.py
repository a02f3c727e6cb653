"""The replay tool: reading objects, selecting, ordering, publishing through the Sink, marking."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from localloop.esm import EsmConfig, on_failure_document
from localloop.events import KafkaRecord as SourceRecord
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.dead_letters import dead_letter_document, dead_letter_key
from msk_kinesis_sink.encoding import UnwritableRecord, encode_record
from msk_kinesis_sink.errors import MalformedEventError, ReplayError, UnreadableObjectError
from msk_kinesis_sink.events import KafkaRecord, parse_event
from msk_kinesis_sink.replay import aws_access
from msk_kinesis_sink.replay.cli import Progress, parse_when, replay
from msk_kinesis_sink.replay.objects import (
    ON_FAILURE_PREFIX,
    REPLAYED_PREFIX,
    ObjectKind,
    Reading,
    Selection,
    invocation_event,
    list_objects,
    parse_object,
    read_objects,
    replayed_keys,
)
from msk_kinesis_sink.replay.plan import ReplaySet, plan_partitions
from msk_kinesis_sink.replay.refusals import Refusal, Unreadable
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from tests.factories import MSK_CLUSTER_ARN, b64, kafka_record, msk_event
from tests.fakes import FakeKinesis, Faults
from tests.replay_runs import BUCKET, NOW, MemoryStore, ReplayRun, run_replay
from tests.strategies import kafka_events

TOPIC = "orders.v1-eu"
# Customer data the command must never print, in every form it could take.
SECRET_KEY = b"customer-key-7f3a"
SECRET_VALUE = b"customer-value-91c2"
SECRET_FORMS = (SECRET_KEY.decode(), SECRET_VALUE.decode(), b64(SECRET_KEY), b64(SECRET_VALUE))


# -- fixtures: a bucket in memory, the function's own documents ----------------------------------


def _settings(**overrides: str) -> Settings:
    return Settings.from_env(
        {
            "STREAM_NAME": "sink-test",
            "RECORD_FORMAT": "envelope",
            "AGGREGATION": "off",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "4",
            **overrides,
        }
    )


def _record(partition: int, offset: int, key: bytes | None, value: bytes = b"v") -> KafkaRecord:
    [batch] = parse_event(
        msk_event([kafka_record(TOPIC, partition, offset, key, value)])
    ).partitions
    return batch.records[0]


def _dead_letter(record: KafkaRecord, arn: str | None = MSK_CLUSTER_ARN) -> tuple[str, bytes]:
    """The key and body the function writes for `record` (the real writer's functions)."""
    unwritable = UnwritableRecord(record, "pk", "encoded record is too large")
    return dead_letter_key("records/", unwritable), dead_letter_document(unwritable, arn)


def _on_failure(records: list[KafkaRecord]) -> bytes:
    """What the ESM emulator writes for a discarded batch of `records`."""
    source = [
        SourceRecord(
            r.topic,
            r.partition,
            r.offset,
            r.timestamp,
            None if r.key_b64 is None else base64.b64decode(r.key_b64),
            None if r.value_b64 is None else base64.b64decode(r.value_b64),
        )
        for r in records
    ]
    config = EsmConfig(bootstrap_servers="b-1:9092", event_source_arn=MSK_CLUSTER_ARN)
    document = on_failure_document(
        source,
        config=config,
        condition="RetryAttemptsExhausted",
        function_error=None,
        invoke_count=3,
    )
    return json.dumps(document).encode()


def _on_failure_key(name: str) -> str:
    return f"{ON_FAILURE_PREFIX}esm-uuid/{TOPIC}-0/2024/05/01/{name}"


def _selection(**overrides: Any) -> Selection:
    values: dict[str, Any] = {
        "prefixes": ("records/", ON_FAILURE_PREFIX),
        "dead_letter_prefix": "records/",
    }
    values.update(overrides)
    return Selection(**values)


def _read(store: MemoryStore, selection: Selection) -> Reading:
    reading = list_objects(store, selection)
    read_objects(store, selection, reading)
    return reading


def _replay(
    store: MemoryStore,
    kinesis: FakeKinesis | None = None,
    *,
    apply: bool = True,
    settings: Settings | None = None,
    selection: Selection | None = None,
    max_records: int = 10_000,
) -> ReplayRun:
    settings = settings or _settings()
    out, err = io.StringIO(), io.StringIO()
    status = replay(
        store,
        settings,
        selection or _selection(),
        apply=apply,
        make_sink=lambda: Sink(settings, writer=kinesis or FakeKinesis()),
        out=out,
        err=err,
        invocation_seconds=5.0,
        max_records=max_records,
    )
    return ReplayRun(status, out.getvalue(), err.getvalue())


def _consumed(kinesis: FakeKinesis) -> dict[tuple[int, str | None], list[int]]:
    """What a consumer applying the offset rule receives, per (partition, key)."""
    dedup = OffsetDeduplicator()
    received: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for stored in kinesis.records:
        envelope = Envelope.from_bytes(stored.data)
        if dedup.accept(envelope):
            received[(envelope.partition, envelope.key)].append(envelope.offset)
    return dict(received)


def _valid_records(event: Any) -> list[KafkaRecord]:
    """The event's records; the example is dropped when the event is not valid."""
    try:
        parsed = parse_event(event)
    except MalformedEventError:
        assume(False)
        raise  # not reached: assume(False) ends the example
    return [record for batch in parsed.partitions for record in batch.records]


# -- reading objects -------------------------------------------------------------------------------


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(kafka_events(damage_rate=0), st.sampled_from([MSK_CLUSTER_ARN, None]))
def test_parse_object_reads_a_dead_letter_back_as_the_record_it_was(
    event: Any, arn: str | None
) -> None:
    # GIVEN any record the function can be invoked with
    records = _valid_records(event)
    assume(records)
    for record in records:
        # WHEN the function's dead letter for it is read back
        key, body = _dead_letter(record, arn)
        failed = parse_object(key, body)
        # THEN it is that record, from that source
        assert failed.kind is ObjectKind.DEAD_LETTER
        assert failed.records == (record,)
        assert failed.source == (arn or "SelfManagedKafka")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(kafka_events(damage_rate=0))
def test_invocation_event_round_trips_through_parse_event(event: Any) -> None:
    # GIVEN any valid invocation's records
    records = _valid_records(event)
    # WHEN the replay rebuilds an event of them
    rebuilt = parse_event(invocation_event(MSK_CLUSTER_ARN, records))
    # THEN the Sink reads exactly the same records
    assert [r for batch in rebuilt.partitions for r in batch.records] == records


def test_parse_object_reads_the_on_failure_batch_the_emulator_writes() -> None:
    # GIVEN a discarded batch of two partitions, as the ESM emulator writes it
    records = [_record(0, 5, b"a"), _record(0, 6, None), _record(1, 9, b"b")]
    body = _on_failure(records)
    # WHEN it is read
    failed = parse_object(_on_failure_key("x"), body)
    # THEN it holds the invocation's records, from its cluster
    assert failed.kind is ObjectKind.ON_FAILURE
    assert failed.source == MSK_CLUSTER_ARN
    assert sorted((r.partition, r.offset) for r in failed.records) == [(0, 5), (0, 6), (1, 9)]
    assert {r.offset: r.key_b64 for r in failed.records} == {5: b64(b"a"), 6: None, 9: b64(b"b")}


def test_parse_object_accepts_the_payload_as_json_text() -> None:
    # GIVEN an on-failure document whose payload is the event as a JSON string
    document = json.loads(_on_failure([_record(0, 5, b"a")]))
    document["payload"] = json.dumps(document["payload"])
    # WHEN it is read
    failed = parse_object("k", json.dumps(document).encode())
    # THEN the records are the same
    assert [(r.partition, r.offset) for r in failed.records] == [(0, 5)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe not json", "not UTF-8 (byte 0)"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"hello": "world"}', "neither a dead letter"),
        (b'{"payload": "{no"}', "its payload: not JSON"),
        (b'{"KafkaBatchInfo": {"batchSize": 3}}', "an on-failure record without its payload"),
        (b'{"payload": {"eventSource": "aws:kafka", "records": {}}}', "it holds no records"),
        (
            json.dumps(
                {
                    "eventSourceArn": None,
                    "topic": TOPIC,
                    "partition": 0,
                    "offset": 1,
                    "timestamp": 1,
                    "timestampType": "CREATE_TIME",
                    "key": b64(SECRET_KEY),
                    "value": b64(SECRET_VALUE),
                    "headers": [{SECRET_KEY.decode(): [999]}],
                }
            ).encode(),
            "its records are malformed",
        ),
    ],
)
def test_parse_object_names_what_is_wrong_without_quoting_data(body: bytes, expected: str) -> None:
    # GIVEN an object that is not one the sink writes
    # WHEN it is read
    with pytest.raises(UnreadableObjectError) as raised:
        parse_object("records/t/0/1.json", body)
    # THEN the error says what is wrong, and quotes no key, value or header
    assert expected in str(raised.value)
    assert not [form for form in SECRET_FORMS if form and form in str(raised.value)]


# -- selection -------------------------------------------------------------------------------------


def test_read_objects_time_range_is_last_modified_since_inclusive_until_exclusive() -> None:
    # GIVEN dead letters written an hour apart
    store = MemoryStore()
    for hour in range(4):
        key, body = _dead_letter(_record(0, hour, b"k"))
        store.put(key, body, NOW + timedelta(hours=hour))
    # WHEN objects written from +1 h up to +3 h are selected
    selection = _selection(since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=3))
    reading = _read(store, selection)
    # THEN exactly the two in that range are read; the others are skipped
    assert sorted(r.offset for o in reading.objects for r in o.records) == [1, 2]
    assert reading.skipped == 2


def test_read_objects_topic_filter_skips_other_topics_dead_letters_without_reading_them() -> None:
    # GIVEN a dead letter of the wanted topic, and an object under another topic's dead-letter
    # key that would be unreadable if it were read
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 1, b"k")))
    store.put("records/other/0/1.json", b"not json at all")
    # WHEN only the wanted topic is selected
    reading = _read(store, _selection(topics=(TOPIC,)))
    # THEN the other topic's object is skipped, not read (it would count as unreadable)
    assert [o.key for o in reading.objects] == [f"records/{TOPIC}/0/1.json"]
    assert reading.unreadable == []


def test_read_objects_skips_on_failure_batches_of_other_topics_whole() -> None:
    # GIVEN on-failure batches of the wanted topic and of another one
    store = MemoryStore()
    store.put(_on_failure_key("a"), _on_failure([_record(0, 1, b"k")]))
    other = json.loads(_on_failure([_record(0, 1, b"k")]))
    other["payload"]["records"] = {
        "payments-0": [dict(r, topic="payments") for r in other["payload"]["records"][f"{TOPIC}-0"]]
    }
    store.put(_on_failure_key("b"), json.dumps(other).encode())
    # WHEN the topic is selected by a glob
    reading = _read(store, _selection(topics=("orders.*",)))
    # THEN only the wanted batch is read for replay, the other is skipped
    assert [o.key for o in reading.objects] == [_on_failure_key("a")]
    assert reading.skipped == 1


def test_selection_lists_exact_topics_dead_letters_only_and_globs_the_whole_prefix() -> None:
    # GIVEN selections by names and by a glob
    exact = _selection(topics=("a", "b"))
    glob = _selection(topics=("a*",))
    everything = _selection(prefixes=("", "records/", ON_FAILURE_PREFIX))
    # WHEN their listing prefixes are taken
    # THEN names narrow the dead-letter prefix, a glob does not, and "" covers everything
    assert exact.listing_prefixes() == [ON_FAILURE_PREFIX, "records/a/", "records/b/"]
    assert glob.listing_prefixes() == [ON_FAILURE_PREFIX, "records/"]
    assert everything.listing_prefixes() == [""]


def test_read_objects_leaves_replayed_and_oversize_objects_alone() -> None:
    # GIVEN a replayed object, and a huge object under the dead-letter prefix
    store = MemoryStore()
    key, body = _dead_letter(_record(0, 1, b"k"))
    store.put(REPLAYED_PREFIX + key, body)
    store.put("records/t/0/9.json", b"{}")
    store.sizes["records/t/0/9.json"] = 10**9
    # WHEN the whole bucket is read
    reading = _read(store, _selection(prefixes=("",)))
    # THEN the huge one is unreadable without being read, and the replayed one is skipped
    assert reading.unreadable == [
        Refusal(
            "records/t/0/9.json",
            Unreadable.TOO_LARGE,
            "1000000000 bytes, larger than any object the sink or Lambda writes (25165824)",
        )
    ]
    assert reading.objects == []
    assert reading.skipped == 1


# -- the replay set and its order ------------------------------------------------------------------


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40)), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 7),
)
def test_replay_set_batches_keep_each_partition_in_offset_order_and_hold_each_record_once(
    objects: list[list[tuple[int, int]]], max_records: int
) -> None:
    # GIVEN objects holding overlapping records of several partitions, in any order
    replay_set = ReplaySet()
    for number, rows in enumerate(objects):
        records = [_record(p, o, b"k%d" % (o % 3)) for p, o in dict.fromkeys(rows)]
        body = json.dumps({"payload": invocation_event(MSK_CLUSTER_ARN, records)}).encode()
        replay_set.add(parse_object(f"o{number}", body))
    distinct = {(p, o) for rows in objects for p, o in rows}
    # WHEN it is cut into batches
    batches = replay_set.batches(max_records)
    # THEN every record is in exactly one batch, no batch is too large, and each partition's
    # offsets rise across batches
    sent = [(r.partition, r.offset) for batch in batches for r in batch.records]
    assert sorted(sent) == sorted(distinct)
    assert all(len(batch.records) <= max_records for batch in batches)
    for partition in range(3):
        offsets = [o for p, o in sent if p == partition]
        assert offsets == sorted(offsets)
    assert replay_set.duplicates == sum(len(dict.fromkeys(rows)) for rows in objects) - len(
        distinct
    )


def test_replay_set_refuses_an_object_with_other_content_under_a_known_offset() -> None:
    # GIVEN a dead letter, and an on-failure batch holding other content at the same offset
    replay_set = ReplaySet()
    replay_set.add(parse_object(*_dead_letter(_record(0, 7, b"k", b"one"))))
    other = parse_object(_on_failure_key("x"), _on_failure([_record(0, 7, b"k", b"two")]))
    # WHEN the second is added
    with pytest.raises(UnreadableObjectError, match="offset 7 with other content"):
        replay_set.add(other)
    # THEN the set still holds only the first
    assert len(replay_set.objects) == 1


def test_plan_partitions_counts_unwritable_records_and_those_waiting_behind_them() -> None:
    # GIVEN a partition whose record at offset 2 is too large for the settings
    replay_set = ReplaySet()
    records = [_record(0, o, b"k%d" % o, b"x" * (3000 if o == 2 else 10)) for o in range(5)]
    replay_set.add(
        parse_object(
            "o", json.dumps({"payload": invocation_event(MSK_CLUSTER_ARN, records)}).encode()
        )
    )
    # WHEN it is planned with MAX_RECORD_BYTES=2048
    [plan] = plan_partitions(replay_set, _settings(MAX_RECORD_BYTES="2048"))
    # THEN one record can not be written and the two after it would wait
    assert (plan.records, plan.first_offset, plan.last_offset) == (5, 0, 4)
    assert (plan.unwritable, plan.blocked) == (1, 2)
    assert plan.reason is not None and "over MAX_RECORD_BYTES=2048" in plan.reason
    assert plan.stream == "sink-test"


# -- publishing and marking --------------------------------------------------------------------


def _mixed_store() -> tuple[MemoryStore, dict[tuple[int, str | None], list[int]]]:
    """Dead letters and on-failure batches over two partitions, some records in both; and what
    a consumer must receive of them, per (partition, key)."""
    store = MemoryStore()
    rows = [(p, o, b"k%d" % (o % 4)) for p in (0, 1) for o in range(0, 60)]
    records = [_record(p, o, k) for p, o, k in rows]
    for record in records[::7]:
        store.put(*_dead_letter(record))
    for start in range(0, len(records), 25):
        store.put(_on_failure_key(f"b{start}"), _on_failure(records[start : start + 30]))
    expected: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for p, o, k in rows:
        expected[(p, b64(k))].append(o)
    return store, dict(expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_apply_delivers_in_key_order_under_faults_and_marks_every_object(seed: int) -> None:
    # GIVEN overlapping dead letters and on-failure batches, and a Kinesis that throttles,
    # fails and loses answers
    store, expected = _mixed_store()
    objects = len(store.keys())
    faults = Faults(record_throttle=0.2, record_internal=0.1, response_lost=0.1)
    kinesis = FakeKinesis(faults, seed=seed)
    # WHEN the replay runs in batches of 50
    run = _replay(store, kinesis, max_records=50)
    # THEN a consumer applying the offset rule gets every record once, in Kafka order per key
    assert run.status == 0, run.err
    assert _consumed(kinesis) == expected
    assert kinesis.violations == []
    # AND every object moved under replayed/ (nothing left to send)
    assert store.keys("records/") == store.keys(ON_FAILURE_PREFIX) == []
    assert len(store.keys(REPLAYED_PREFIX)) == objects
    summary = run.summary
    assert (summary["records"], summary["published"], summary["failed"]) == ("120", "120", "0")
    assert summary["marked"] == str(objects)


def test_replay_second_run_sends_nothing() -> None:
    # GIVEN a replay that delivered everything
    store, _ = _mixed_store()
    _replay(store)
    kinesis = FakeKinesis()
    # WHEN it runs again
    run = _replay(store, kinesis)
    # THEN it finds nothing and sends nothing
    assert run.status == 0
    assert kinesis.records == []
    assert run.summary == {
        "mode": "apply",
        "objects": "0",
        "records": "0",
        "published": "0",
        "failed": "0",
        "skipped": "0",
        "duplicates": "0",
        "unreadable": "0",
        "marked": "0",
        "skipped_kinds": "-",
        "unreadable_kinds": "-",
    }


def test_replay_unwritable_record_is_counted_failed_and_its_object_stays() -> None:
    # GIVEN partition 0: dead letters at 1 (small), 3 (still too large); an on-failure batch
    # holding 3..5; partition 1: one small dead letter
    store = MemoryStore()
    big = _record(0, 3, b"big", b"x" * 3000)
    store.put(*_dead_letter(_record(0, 1, b"a")))
    store.put(*_dead_letter(big))
    store.put(_on_failure_key("tail"), _on_failure([big, _record(0, 4, b"b"), _record(0, 5, b"c")]))
    store.put(*_dead_letter(_record(1, 8, b"d")))
    kinesis = FakeKinesis()
    # WHEN it is replayed with a limit the large record still exceeds
    run = _replay(store, kinesis, settings=_settings(MAX_RECORD_BYTES="2048"))
    # THEN the small records are delivered and their objects marked...
    assert _consumed(kinesis) == {(0, b64(b"a")): [1], (1, b64(b"d")): [8]}
    assert store.keys(REPLAYED_PREFIX) == [
        f"{REPLAYED_PREFIX}records/{TOPIC}/0/1.json",
        f"{REPLAYED_PREFIX}records/{TOPIC}/1/8.json",
    ]
    # ...while the large one and the two behind it failed, and their objects stay in place
    assert store.keys("records/") == [f"records/{TOPIC}/0/3.json"]
    assert store.keys(ON_FAILURE_PREFIX) == [_on_failure_key("tail")]
    assert run.status == 1
    assert (run.summary["published"], run.summary["failed"]) == ("2", "3")
    assert f"failed: {TOPIC}-0 offsets 3..5 (3 records)" in run.err
    assert "over MAX_RECORD_BYTES=2048" in run.err


def test_replay_counts_records_written_after_a_failed_one_and_marks_their_objects() -> None:
    # GIVEN key k at offsets 0 and 2 (2 still too large), and key j at offset 3: j's record is
    # written in the first invocation, before k's turn reaches offset 2
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 0, b"k")))
    store.put(*_dead_letter(_record(0, 2, b"k", b"x" * 3000)))
    store.put(*_dead_letter(_record(0, 3, b"j")))
    kinesis = FakeKinesis()
    # WHEN the replay runs (the Sink reports the partition from offset 2 on)
    run = _replay(store, kinesis, settings=_settings(MAX_RECORD_BYTES="2048"))
    # THEN offset 3 counts as published and its object is marked; only offset 2 failed
    assert _consumed(kinesis) == {(0, b64(b"k")): [0], (0, b64(b"j")): [3]}
    assert (run.summary["published"], run.summary["failed"]) == ("2", "1")
    assert store.keys("records/") == [f"records/{TOPIC}/0/2.json"]
    assert f"failed: {TOPIC}-0 offsets 2..2 (1 records)" in run.err


def test_replay_stops_when_an_invocation_delivers_nothing() -> None:
    # GIVEN a stream that refuses every request for good (a missing permission)
    store = MemoryStore()
    for offset in range(3):
        store.put(*_dead_letter(_record(0, offset, b"k")))
    kinesis = FakeKinesis(Faults(request_fatal=1.0), fatal_code="AccessDeniedException")
    # WHEN the replay runs
    run = _replay(store, kinesis)
    # THEN it gives up, says why, marks nothing, and fails
    assert run.status == 1
    assert run.summary["failed"] == "3"
    assert "AccessDeniedException" in run.err
    assert store.keys(REPLAYED_PREFIX) == []
    assert kinesis.records == []


def test_replay_held_back_records_of_a_failed_partition_are_not_sent_in_later_batches() -> None:
    # GIVEN a too-large record at offset 1 and five more of the same key after it
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 0, b"k")))
    store.put(*_dead_letter(_record(0, 1, b"k", b"x" * 3000)))
    for offset in range(2, 7):
        store.put(*_dead_letter(_record(0, offset, b"k")))
    kinesis = FakeKinesis()
    # WHEN it is replayed two records per invocation
    run = _replay(store, kinesis, settings=_settings(MAX_RECORD_BYTES="2048"), max_records=2)
    # THEN nothing after the failed record was sent: it would have overtaken it
    assert _consumed(kinesis) == {(0, b64(b"k")): [0]}
    assert (run.summary["published"], run.summary["failed"]) == ("1", "6")


def test_replay_dry_run_sends_and_moves_nothing_and_shows_no_customer_data() -> None:
    # GIVEN dead letters and a batch holding customer keys, values and headers
    store = MemoryStore()
    record = _record(0, 4, SECRET_KEY, SECRET_VALUE)
    store.put(*_dead_letter(record))
    store.put(_on_failure_key("b"), _on_failure([_record(1, 2, SECRET_KEY, SECRET_VALUE)]))
    before = dict(store.objects)
    kinesis = FakeKinesis()
    # WHEN the default dry run runs
    run = _replay(store, kinesis, apply=False)
    # THEN nothing is sent or moved, the plan shows ranges and sizes, and no customer data
    assert run.status == 0
    assert kinesis.records == [] and store.objects == before
    assert f"{TOPIC}-0" in run.out and "4..4" in run.out and "sink-test" in run.out
    assert not [form for form in SECRET_FORMS if form and form in run.out + run.err]
    assert run.summary["mode"] == "dry-run"
    assert (run.summary["objects"], run.summary["records"], run.summary["published"]) == (
        "2",
        "2",
        "0",
    )


def test_replay_dry_run_fails_when_the_settings_can_not_write_a_record() -> None:
    # GIVEN a dead letter still too large for the settings
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 4, b"k", b"x" * 3000)))
    # WHEN the dry run runs
    run = _replay(store, apply=False, settings=_settings(MAX_RECORD_BYTES="2048"))
    # THEN it says so and exits non-zero, before anything is sent
    assert run.status == 1
    assert run.summary["failed"] == "1"
    assert "can not be written" in run.out


def test_replay_marking_failure_stops_sending_and_ends_in_the_error() -> None:
    # GIVEN a bucket where moving objects is denied
    store = MemoryStore(broken_move=True)
    store.put(*_dead_letter(_record(0, 0, b"k")))
    store.put(*_dead_letter(_record(1, 0, b"k")))
    kinesis = FakeKinesis()
    # WHEN the replay runs, one record per invocation
    run = _replay(store, kinesis, max_records=1)
    # THEN it stops after the first object it could not mark, and says why
    assert run.status == 1
    assert len(kinesis.records) == 1
    assert run.err.strip().splitlines()[-1].startswith("replay: error: could not move")
    assert run.summary["marked"] == "0"


def test_replay_unreadable_objects_are_reported_and_left_in_place() -> None:
    # GIVEN a readable dead letter and a foreign object under the prefix
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 0, b"k")))
    store.put("records/notes.txt", b"hello")
    # WHEN the replay runs
    run = _replay(store)
    # THEN the dead letter is delivered; the foreign object is named, kept, and fails the run
    assert run.status == 1
    assert run.summary["unreadable"] == "1" and run.summary["published"] == "1"
    assert f"unreadable: s3://{BUCKET}/records/notes.txt: not JSON" in run.err
    assert store.keys("records/") == ["records/notes.txt"]


def test_replay_topic_without_a_stream_is_an_error_before_anything_is_sent() -> None:
    # GIVEN routes that do not cover the topic and no default stream
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 0, b"k")))
    settings = Settings.from_env(
        {"STREAM_ROUTES": "payments=pay-stream", "RECORD_FORMAT": "envelope"}
    )
    kinesis = FakeKinesis()
    # WHEN the replay runs
    # THEN it refuses, naming the topic
    with pytest.raises(Exception, match=f"topic '{TOPIC}' matches no STREAM_ROUTES"):
        _replay(store, kinesis, settings=settings)
    assert kinesis.records == []


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--bucket", "b-1"], {}, "settings from the environment: STREAM_NAME is required"),
        ([], {"STREAM_NAME": "s"}, "no bucket: give --bucket"),
        (
            [],
            {"STREAM_NAME": "s", "DEAD_LETTER_BUCKET": "Bad_Bucket"},
            "DEAD_LETTER_BUCKET='Bad_Bucket' of the environment is not a valid S3 bucket name",
        ),
        (
            ["--bucket", "b-1", "--since", "1h", "--until", "2h"],
            {"STREAM_NAME": "s"},
            "--since must be before --until",
        ),
        (
            ["--bucket", "b-1", "--stream", "no spaces"],
            {"STREAM_NAME": "s"},
            "STREAM_NAME='no spaces' is neither a stream name",
        ),
    ],
)
def test_main_bad_settings_end_in_one_line_naming_the_problem(
    argv: list[str], env: dict[str, str], expected: str
) -> None:
    # GIVEN arguments or settings that can not work
    # WHEN the command runs
    run = run_replay(argv, env)
    # THEN it exits 2 with one line naming the problem, before any AWS call
    assert run.status == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replay: error: ")
    assert expected in lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--bucket", "Bad_Bucket"], "argument --bucket: 'Bad_Bucket' is not a valid S3 bucket"),
        (["--bucket", "b-1", "--since", "yesterday"], "argument --since: 'yesterday' is neither"),
        (
            ["--bucket", "b-1", "--since", "999999999d"],
            "argument --since: '999999999d' reaches back before the year 1",
        ),
        (["--bucket", "b-1", "--until", "99999999999d"], "argument --until: '99999999999d' is"),
        (["--bucket", "b-1", "--since", "\x1b[2J1h"], "argument --since: '\\x1b[2J1h' is"),
        (["--bucket", "b-1", "--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_main_bad_arguments_end_in_one_line_naming_the_argument(
    argv: list[str], expected: str
) -> None:
    # GIVEN a bad argument (an age past the calendar, terminal escapes, an unknown option)
    # WHEN the command parses it
    run = run_replay(argv, {"STREAM_NAME": "s"})
    # THEN it exits 2 with one line naming the argument, escaped, and nothing on stdout
    assert run.status == 2
    assert run.out == ""
    [line] = run.err.splitlines()
    assert line.startswith("replay: error: ") and line.endswith("(--help lists the options)")
    assert expected in line
    assert "\x1b" not in run.err


def test_main_help_exits_0() -> None:
    # GIVEN --help
    # WHEN the command parses it
    # THEN it exits 0 (argparse prints the usage on stdout)
    assert run_replay(["--help"], {}).status == 0


def test_parse_when_takes_times_and_ages() -> None:
    # GIVEN times with and without offsets, and ages
    # WHEN they are parsed
    # THEN times without an offset are UTC, and ages count back from now
    assert parse_when("2024-05-01T10:00", NOW) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_when("2024-05-01T10:00Z", NOW) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_when("2024-05-01T12:00+02:00", NOW) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_when("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_when("2d", NOW) == NOW - timedelta(days=2)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_only() -> None:
    # GIVEN a terminal and a pipe
    terminal, pipe = _Terminal(), io.StringIO()
    # WHEN the same progress is drawn on both
    for stream in (terminal, pipe):
        progress = Progress(stream, "publishing", 4, interval_s=0.0)
        progress.advance(1)
        progress.advance(3)
        progress.close()
    # THEN the terminal shows it on one line, ending at the total; the pipe gets nothing
    assert terminal.getvalue().endswith("publishing [" + "#" * 30 + "] 4/4\n")
    assert "\n" not in terminal.getvalue()[:-1]
    assert pipe.getvalue() == ""


def test_replay_runs_as_a_module_command() -> None:
    # GIVEN the package's command, run as operators run it
    # WHEN it is given a bad bucket name
    result = subprocess.run(
        [sys.executable, "-m", "msk_kinesis_sink.replay", "--bucket", "x"],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": "lambda", "PATH": "/usr/bin:/bin"},
    )
    # THEN it answers as a command: exit 2 and a line naming the argument
    assert result.returncode == 2
    assert "argument --bucket: 'x' is not a valid S3 bucket name" in result.stderr


def test_replay_object_kinds_are_counted_in_the_plan() -> None:
    # GIVEN one dead letter and one on-failure batch
    store = MemoryStore()
    store.put(*_dead_letter(_record(0, 0, b"k")))
    store.put(_on_failure_key("b"), _on_failure([_record(0, 1, b"k")]))
    # WHEN the dry run runs
    run = _replay(store, apply=False)
    # THEN the plan counts each kind
    assert (
        "objects: 2 to replay (dead letters: 1, on-failure batches: 1), 0 skipped, 0 unreadable"
        in run.out
    )


def test_encode_record_agrees_with_plan_sizes() -> None:
    # GIVEN a record and the settings
    record = _record(0, 0, b"key", b"value")
    settings = _settings()
    replay_set = ReplaySet()
    replay_set.add(parse_object(*_dead_letter(record)))
    # WHEN it is planned
    [plan] = plan_partitions(replay_set, settings)
    # THEN the plan's bytes are what the Sink will send (data + partition key)
    unit = encode_record(
        record,
        record_format=settings.record_format,
        partition_key_mode=settings.partition_key,
        max_record_bytes=settings.max_record_bytes,
    )
    assert not isinstance(unit, UnwritableRecord)
    assert plan.encoded_bytes == unit.size


# -- the replay's AWS access -------------------------------------------------------------------

KMS_DENIED = (
    "User: arn:aws:iam::123456789012:user/operator is not authorized to perform: kms:Decrypt on"
    " resource: arn:aws:kms:us-east-1:123456789012:key/1234 because no identity-based policy"
    " allows the kms:Decrypt action"
)


@pytest.mark.parametrize(
    ("before", "operation", "code", "message", "act", "expected"),
    [
        (
            [],
            "get_object",
            "AccessDenied",
            KMS_DENIED,
            lambda store: store.read("records/t/0/1.json"),
            "could not read s3://dead-letters/records/t/0/1.json: AccessDenied: S3 denied",
        ),
        (
            # The move first lists where the replayed/ copy goes: nothing is there.
            [("list_objects_v2", {"KeyCount": 0})],
            "copy_object",
            "KMS.DisabledException",
            "The key is disabled",
            lambda store: store.move("records/t/0/1.json", ["replayed/records/t/0/1.json"]),
            "could not move s3://dead-letters/records/t/0/1.json to replayed/records/t/0/1.json:",
        ),
    ],
)
def test_s3_object_store_errors_name_the_object_the_code_and_the_fix(
    before: list[tuple[str, dict[str, Any]]],
    operation: str,
    code: str,
    message: str,
    act: Any,
    expected: str,
) -> None:
    # GIVEN S3 refusing a call the replay makes
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        for answered, response in before:
            stubber.add_response(answered, response)
        stubber.add_client_error(operation, code, message, http_status_code=403)
        store = aws_access.S3ObjectStore(client, BUCKET)
        # WHEN the replay makes it
        with pytest.raises(ReplayError) as raised:
            act(store)
    # THEN one line names the object, the error and what to fix
    text = str(raised.value)
    assert text.startswith(expected)
    assert code in text and "\n" not in text
    assert f"({aws_access.REPLAY_HINTS[code]})" in text


def test_s3_object_store_move_takes_the_next_free_key_when_the_copy_is_refused() -> None:
    # GIVEN S3 with no replayed/ copy at first, which refuses the conditional copy because
    # another run wrote that copy meanwhile (412), and then lists it
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    key, copy = "records/t/0/1.json", "replayed/records/t/0/1.json"
    with Stubber(client) as stubber:
        stubber.add_response("list_objects_v2", {"KeyCount": 0})
        stubber.add_client_error("copy_object", "PreconditionFailed", http_status_code=412)
        stubber.add_response(
            "list_objects_v2",
            {"KeyCount": 1, "Contents": [{"Key": copy, "Size": 1, "LastModified": NOW}]},
        )
        stubber.add_response(
            "copy_object",
            {},
            {
                "Bucket": BUCKET,
                "Key": f"{copy}~2",
                "CopySource": {"Bucket": BUCKET, "Key": key},
                "IfNoneMatch": "*",
            },
        )
        stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": key})
        store = aws_access.S3ObjectStore(client, BUCKET)
        # WHEN the object is moved
        where = store.move(key, replayed_keys(key))
        # THEN it goes beside the copy, only if nothing is there (If-None-Match), and only then
        # is the original deleted
        stubber.assert_no_pending_responses()
    assert where == f"{copy}~2"


def test_read_objects_refuses_a_key_too_long_to_move_without_reading_it() -> None:
    # GIVEN an object whose replayed/ copy's key would pass S3's 1,024 bytes
    store = MemoryStore()
    long_key = "records/" + "k" * 1010
    store.put(long_key, b"never read")
    # WHEN the bucket is read
    reading = _read(store, _selection())
    # THEN it is refused before it is read: delivered, it could never be marked
    [refusal] = reading.unreadable
    assert (refusal.key, refusal.kind) == (long_key, Unreadable.KEY_TOO_LONG)
    assert "over S3's 1024" in refusal.why


def test_replay_dry_run_shows_the_real_size_of_records_it_can_not_write() -> None:
    # GIVEN a dead letter of a 334 KB value, and settings whose record limit is below it
    store = MemoryStore()
    record = _record(0, 4, b"k", b"x" * 334_000)
    store.put(*_dead_letter(record))
    settings = _settings(MAX_RECORD_BYTES="2048", RECORD_FORMAT="raw")
    # WHEN the dry run runs
    run = _replay(store, apply=False, settings=settings)
    # THEN the plan shows the record's size as encoded (334,000 bytes of data and the key), not
    # 0 B, both in the partition's row and where it says it can not be written
    assert run.status == 1
    [row] = [line for line in run.out.splitlines() if line.startswith(f"  {TOPIC}-0 ")]
    assert row.split()[3:5] == ["326.2", "KiB"]
    assert (
        f"  can not be written: {TOPIC}-0: 1 record(s), 326.2 KiB encoded (encoded record is"
        " 334001 bytes (data + partition key), over MAX_RECORD_BYTES=2048)" in run.out
    )


@pytest.mark.parametrize(
    ("objects", "apply", "status"),
    [
        ("good", True, 0),  # everything delivered and marked
        ("good", False, 0),  # a dry run that can deliver everything
        ("good+folder", True, 0),  # a folder marker is skipped, not a failure
        ("good+unreadable", True, 1),  # an object left in place as unreadable
        ("unwritable", True, 1),  # a record that still can not be written
        ("unwritable", False, 1),  # a dry run that foresees it
    ],
)
def test_replay_exit_status_says_whether_anything_was_left(
    objects: str, apply: bool, status: int
) -> None:
    # GIVEN a bucket of each kind
    store = MemoryStore()
    value = b"x" * 3000 if objects == "unwritable" else b"v"
    store.put(*_dead_letter(_record(0, 1, b"k", value)))
    if "folder" in objects:
        store.put("records/", b"")
    if "unreadable" in objects:
        store.put("records/t/0/9.json", b'{"offset": 1, "offset": 2}')
    # WHEN the replay runs
    run = _replay(store, apply=apply, settings=_settings(MAX_RECORD_BYTES="2048"))
    # THEN the exit status is the documented one (2 is for arguments, settings and AWS
    # errors before sending: test_main_* and tests/integration/test_replay_moto.py)
    assert run.status == status, run.err
