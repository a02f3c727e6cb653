"""AGGREGATION=on end to end through the Sink: order and no loss under faults and ESM retries.

Records are read back the way a consumer would: deaggregated with aws-kinesis-agg, then filtered
with the documented consumer rule (drop offsets at or below the highest seen per key).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.kpl import KPL_MAGIC, encode_aggregate, record_frame_size
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.writers import RecordResult
from tests.factories import b64, sources_event
from tests.fakes import INTERNAL, THROTTLED, FakeContext, FakeDeadLetters, FakeKinesis, Faults

TOPIC = "payments.v2-eu"

# (partition, offset, key or None, value)
Source = tuple[int, int, bytes | None, bytes]
OrderingKey = tuple[int, str | None]


def _event(sources: list[Source]) -> dict[str, Any]:
    return sources_event(sources, TOPIC)


def _settings(**overrides: str) -> Settings:
    env = {
        "STREAM_NAME": "sink-agg",
        "RECORD_FORMAT": "envelope",
        "AGGREGATION": "on",
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "2",
        **overrides,
    }
    return Settings.from_env(env)


@contextmanager
def _sink(
    writer: FakeKinesis, dead_letters: FakeDeadLetters | None = None, **overrides: str
) -> Iterator[Sink]:
    sink = Sink(_settings(**overrides), writer=writer, dead_letters=dead_letters)
    try:
        yield sink
    finally:
        sink.close()


def _user_records(fake: FakeKinesis) -> Iterator[bytes]:
    """Every user record in the fake stream, deaggregated like KCL / aws-kinesis-agg would."""
    stored = [
        {
            "Data": record.data,
            "PartitionKey": record.partition_key,
            "SequenceNumber": str(i),
            "ApproximateArrivalTimestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        }
        for i, record in enumerate(fake.records)
    ]
    for user in iter_deaggregate_records(stored, data_format="Boto3"):
        kinesis = user["kinesis"]
        yield base64.b64decode(kinesis["data"]) if kinesis.get("aggregated") else kinesis["data"]


def _consumed(fake: FakeKinesis) -> dict[OrderingKey, list[int]]:
    dedup = OffsetDeduplicator()
    received: dict[OrderingKey, list[int]] = defaultdict(list)
    for data in _user_records(fake):
        envelope = Envelope.from_bytes(data)
        if dedup.accept(envelope):
            received[(envelope.partition, envelope.key)].append(envelope.offset)
    return dict(received)


def _expected(sources: list[Source]) -> dict[OrderingKey, list[int]]:
    expected: dict[OrderingKey, list[int]] = defaultdict(list)
    for partition, offset, key, _ in sorted(sources, key=lambda s: (s[0], s[1])):
        expected[(partition, b64(key))].append(offset)
    return dict(expected)


def _run_with_esm_retries(sink: Sink, sources: list[Source], max_invocations: int = 60) -> int:
    """Invoke like the ESM: redeliver each reported partition from its lowest reported offset."""
    pending = list(sources)
    invocations = 0
    while pending and invocations < max_invocations:
        invocations += 1
        response = sink.handle(_event(pending), FakeContext())
        resume: dict[int, int] = {}
        for failure in response["batchItemFailures"]:
            ident = failure["itemIdentifier"]
            partition = int(ident["partition"].rsplit("-", 1)[1])
            resume[partition] = min(resume.get(partition, ident["offset"]), ident["offset"])
        pending = [s for s in pending if s[0] in resume and s[1] >= resume[s[0]]]
    assert not pending, f"still undelivered after {invocations} invocations"
    return invocations


def test_aggregation_sends_a_hot_key_as_full_records_in_few_calls() -> None:
    # GIVEN 2,000 records of 1 KiB under one key in one partition
    sources: list[Source] = [(0, i, b"hot", bytes([i % 256]) * 1024) for i in range(2000)]
    fake = FakeKinesis()

    # WHEN published with aggregation on
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())

    # THEN every record arrives in order, in a handful of aggregated Kinesis records
    assert response == {"batchItemFailures": []}
    assert _consumed(fake) == _expected(sources)
    assert all(r.data.startswith(KPL_MAGIC) for r in fake.records)
    assert fake.calls <= 4
    assert fake.violations == []


def test_aggregation_retries_a_failed_aggregate_whole_and_keeps_order() -> None:
    # GIVEN a stream that fails the first attempt of every aggregate, alternating fault kinds
    failed_once: set[int] = set()

    def fail_first_attempt(call: int, entry: Entry) -> RecordResult | None:
        head = entry.records[0].offset
        if len(entry.records) > 1 and head not in failed_once:
            failed_once.add(head)
            return THROTTLED if len(failed_once) % 2 else INTERNAL
        return None

    fake = FakeKinesis(fail_entry=fail_first_attempt)
    sources: list[Source] = [
        (p, o, None if o % 7 == 0 else f"k{o % 3}".encode(), b"v" * 300)
        for p in range(3)
        for o in range(400)
    ]

    # WHEN published
    with _sink(fake) as sink:
        response = sink.handle(_event(sources), FakeContext())

    # THEN nothing is lost, nothing reordered, and a failed aggregate left nothing behind
    assert response == {"batchItemFailures": []}
    assert failed_once
    assert _consumed(fake) == _expected(sources)
    assert len(list(_user_records(fake))) == len(sources)


def test_aggregation_lost_responses_only_duplicate_which_the_consumer_rule_drops() -> None:
    # GIVEN a stream that loses a third of its answers after writing
    fake = FakeKinesis(Faults(response_lost=0.33), seed=7)
    sources: list[Source] = [(p, o, b"k", b"x" * 2000) for p in range(2) for o in range(1500)]

    # WHEN published (ESM redelivers whatever is reported)
    with _sink(fake) as sink:
        _run_with_esm_retries(sink, sources)

    # THEN the consumer rule yields the source sequence exactly once
    assert _consumed(fake) == _expected(sources)


def test_aggregation_stops_a_run_at_an_unwritable_record_and_resumes_after_it() -> None:
    # GIVEN one key whose 6th record has a value that is not base64, with a dead-letter bucket
    event = _event([(0, o, b"k", b"v" * 100) for o in range(12)])
    event["records"][f"{TOPIC}-0"][5]["value"] = "not base64!"
    fake, bucket = FakeKinesis(), FakeDeadLetters()

    # WHEN published with aggregation on
    with _sink(fake, dead_letters=bucket, DEAD_LETTER_BUCKET="sink-dlq") as sink:
        response = sink.handle(event, FakeContext())

    # THEN the run is packed up to the bad record, which is dead-lettered in its place, then on
    assert response == {"batchItemFailures": []}
    assert [record.offset for record in bucket.written] == [5]
    assert _consumed(fake) == {(0, b64(b"k")): [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]}
    assert len(fake.records) == 2  # two aggregates: offsets 0-4 and 6-11


def test_aggregation_reports_from_an_unwritable_record_without_a_bucket() -> None:
    # GIVEN the same run and no dead-letter bucket
    event = _event([(0, o, b"k", b"v" * 100) for o in range(12)])
    event["records"][f"{TOPIC}-0"][5]["value"] = "not base64!"
    fake = FakeKinesis()

    # WHEN published
    with _sink(fake) as sink:
        response = sink.handle(event, FakeContext())

    # THEN what precedes it is delivered, and the partition is reported from it on, nothing after
    assert [f["itemIdentifier"]["offset"] for f in response["batchItemFailures"]] == list(
        range(5, 12)
    )
    assert _consumed(fake) == {(0, b64(b"k")): [0, 1, 2, 3, 4]}


def _reads_as_aggregate(total: int) -> bytes:
    """A producer's value of `total` bytes that is itself a KPL aggregate (of one b"inner")."""
    base = len(encode_aggregate("k", [b"inner"]))
    filler = total - base
    while base + record_frame_size(filler) > total:
        filler -= 1
    value = encode_aggregate("k", [b"inner", b"f" * filler])
    assert len(value) == total
    return value


def test_aggregation_keeps_raw_values_that_read_as_aggregates_whole() -> None:
    # GIVEN one key's values: an aggregate a producer wrote (small), one too large to wrap in a
    # record (1,048,566 bytes: it fits plain), and a plain value
    small, large = _reads_as_aggregate(1000), _reads_as_aggregate(1_048_566)
    sources: list[Source] = [(0, 0, b"k", small), (0, 1, b"k", large), (0, 2, b"k", b"plain")]
    fake, bucket = FakeKinesis(), FakeDeadLetters()

    # WHEN published raw with aggregation on
    with _sink(fake, bucket, RECORD_FORMAT="raw", DEAD_LETTER_BUCKET="sink-dlq") as sink:
        response = sink.handle(_event(sources), FakeContext())

    # THEN a consumer that deaggregates gets the small one back whole (it went wrapped), the
    # large one is a dead letter saying why, and nothing is reported
    assert response == {"batchItemFailures": []}
    assert [data for stored in fake.records for data in deaggregate(stored.data)] == [
        small,
        b"plain",
    ]
    [dead] = bucket.written
    assert (dead.offset, "KPL aggregated record" in dead.reason) == (1, True)


def test_aggregation_off_writes_raw_values_that_read_as_aggregates_unchanged() -> None:
    # GIVEN the same values
    small, large = _reads_as_aggregate(1000), _reads_as_aggregate(1_048_566)
    sources: list[Source] = [(0, 0, b"k", small), (0, 1, b"k", large)]
    fake = FakeKinesis()

    # WHEN published raw with aggregation off: one Kinesis record per Kafka value
    with _sink(fake, RECORD_FORMAT="raw", AGGREGATION="off") as sink:
        response = sink.handle(_event(sources), FakeContext())

    # THEN the stream holds them byte for byte (a deaggregating consumer unpacks them, as it
    # would any KPL producer's aggregate: docs/aggregation.md)
    assert response == {"batchItemFailures": []}
    assert [stored.data for stored in fake.records] == [small, large]
    assert [len(data) for data in deaggregate(large)] == [len(b"inner"), 1_048_522]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    records=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2),
            st.sampled_from([None, b"a", b"b", b"\xff\xfe", b"c" * 300]),
            # Small enough that the envelope (base64 + JSON) fits the smallest record limit below.
            st.integers(min_value=0, max_value=600),
        ),
        min_size=1,
        max_size=120,
    ),
    faults=st.builds(
        Faults,
        record_throttle=st.sampled_from([0.0, 0.2, 0.5]),
        record_internal=st.sampled_from([0.0, 0.1]),
        request_throttle=st.sampled_from([0.0, 0.2]),
        request_fatal=st.sampled_from([0.0, 0.05]),
        response_lost=st.sampled_from([0.0, 0.2]),
    ),
    max_record_bytes=st.sampled_from(["2048", "4096", "1048576"]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_aggregation_property_exactly_the_source_sequence_per_key_under_faults(
    records: list[tuple[int, bytes | None, int]],
    faults: Faults,
    max_record_bytes: str,
    seed: int,
) -> None:
    # GIVEN random batches (offsets per partition ascending), random faults, small record limits
    next_offset: dict[int, int] = defaultdict(int)
    sources: list[Source] = []
    for partition, key, size in records:
        offset = next_offset[partition]
        next_offset[partition] += 1
        sources.append((partition, offset, key, bytes([offset % 256]) * size))
    fake = FakeKinesis(faults, seed=seed)

    # WHEN published with aggregation on, the ESM redelivering reported tails
    with _sink(fake, MAX_RECORD_BYTES=max_record_bytes) as sink:
        _run_with_esm_retries(sink, sources, max_invocations=200)

    # THEN the consumer rule yields every (partition, key) sequence exactly, in Kafka order
    assert fake.violations == []
    assert _consumed(fake) == _expected(sources)
