"""Claim-checked records under the publisher: each object is written before its pointer, the
pointer goes in its key's turn, and faults in S3 or Kinesis never reorder or lose a record."""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator, resolve_claim_check
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.writers import RecordResult
from tests.factories import b64
from tests.fakes import FakeClaimChecks, FakeClock, FakeContext, FakeKinesis, Faults
from tests.unit.test_publisher import (
    TOPIC,
    Source,
    _deliver_like_the_esm,
    _event,
    _failed_offsets,
    _faults,
)

BUCKET = "orders-claims"
BIG = b"x" * 3000  # over the 2 KiB limit once in an envelope


def _settings(**overrides: str) -> Settings:
    return Settings.from_env(
        {
            "STREAM_NAME": "sink-test",
            "RECORD_FORMAT": "envelope",
            "OVERSIZE_RECORDS": "claim_check",
            "CLAIM_CHECK_BUCKET": BUCKET,
            "MAX_RECORD_BYTES": "2048",
            "AGGREGATION": "off",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "4",
            **overrides,
        }
    )


def _consumed(
    fake: FakeKinesis, store: FakeClaimChecks
) -> dict[tuple[int, str | None], list[tuple[int, bytes | None]]]:
    """What a consumer receives per (partition, Kafka key): offsets and values, pointers resolved,
    by the consumer rule applied with each record's partition key."""
    dedup = OffsetDeduplicator()
    received: dict[tuple[int, str | None], list[tuple[int, bytes | None]]] = defaultdict(list)
    for stored in fake.records:
        for data in deaggregate(stored.data):
            envelope = Envelope.from_bytes(data)
            if not dedup.accept(envelope, partition_key=stored.partition_key):
                continue
            if envelope.claim_check is not None:
                envelope = Envelope.from_bytes(
                    json.dumps(resolve_claim_check(envelope, store)).encode()
                )
            value = None if envelope.value is None else envelope.value.encode()
            received[(envelope.partition, envelope.key)].append((envelope.offset, value))
    return dict(received)


def _expected(
    sources: list[Source],
) -> dict[tuple[int, str | None], list[tuple[int, bytes | None]]]:
    expected: dict[tuple[int, str | None], list[tuple[int, bytes | None]]] = defaultdict(list)
    for partition, offset, key, value in sorted(sources, key=lambda s: (s[0], s[1])):
        encoded = b64(value)
        expected[(partition, b64(key))].append(
            (offset, None if encoded is None else encoded.encode())
        )
    return dict(expected)


def _pointer_positions(fake: FakeKinesis) -> dict[tuple[str, str], int]:
    """Where in the stream each pointer was first written, by its object."""
    first: dict[tuple[str, str], int] = {}
    for position, stored in enumerate(fake.records):
        for data in deaggregate(stored.data):
            claim = Envelope.from_bytes(data).claim_check
            if claim is not None:
                first.setdefault((claim.bucket, claim.key), position)
    return first


class _Containers:
    """Several containers of the sink, as the ESM sees them: each invocation lands on any one."""

    def __init__(self, sinks: list[Sink], rng: random.Random) -> None:
        self._sinks = sinks
        self._rng = rng

    def handle(self, event: dict[str, Any], context: FakeContext) -> Any:
        return self._rng.choice(self._sinks).handle(event, context)


def test_claim_check_pointer_goes_in_its_keys_turn_after_its_object() -> None:
    # GIVEN one key whose 3rd and 5th records are too large for the stream, beside other keys
    sources: list[Source] = [
        (
            0,
            offset,
            b"k" if offset % 2 == 0 else f"o{offset}".encode(),
            BIG if offset in (4, 8) else b"v",
        )
        for offset in range(10)
    ]
    fake = FakeKinesis()
    store = FakeClaimChecks(stream=fake)
    # WHEN published
    sink = Sink(_settings(), writer=fake, claim_checks=store)
    try:
        response = sink.handle(_event(sources), FakeContext())
        stats = sink.last_report.stats if sink.last_report else None
    finally:
        sink.close()
    # THEN nothing is reported, the two objects are in S3, each stored before its pointer...
    assert response == {"batchItemFailures": []}
    assert len(store.objects) == 2
    pointers = _pointer_positions(fake)
    assert set(pointers) == set(store.objects)
    assert all(store.stored_after[where] <= at for where, at in pointers.items())
    # ...the key's records reach the stream in offset order, pointers in their place...
    key_offsets = [
        Envelope.from_bytes(r.data).offset for r in fake.records if r.partition_key == "k"
    ]
    assert key_offsets == [0, 2, 4, 6, 8]
    # ...and the consumer gets every record back whole, in Kafka order per key
    assert _consumed(fake, store) == _expected(sources)
    assert stats is not None and stats.records_claim_checked == 2
    assert stats.records_published == 10 and stats.claim_check_writes == 2


def test_claim_check_write_failure_holds_its_key_and_reports_the_partition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN an S3 that refuses every claim check, and the oversize record at offset 2 of key k
    sources: list[Source] = [
        (0, 0, b"k", b"v"),
        (0, 1, b"other", b"v"),
        (0, 2, b"k", BIG),
        (0, 3, b"k", b"v"),
        (1, 0, b"k", b"v"),
    ]
    fake = FakeKinesis()
    store = FakeClaimChecks(fail_write=lambda record: True)
    # WHEN published
    sink = Sink(_settings(), writer=fake, claim_checks=store)
    try:
        with caplog.at_level(logging.ERROR):
            response = sink.handle(_event(sources), FakeContext())
    finally:
        sink.close()
    # THEN the partition is reported from the claim-checked record, nothing of key k after it
    # (and no pointer) reached the stream, and the other partition went on
    assert _failed_offsets(response) == {f"{TOPIC}-0": [2, 3]}
    written = {
        (Envelope.from_bytes(r.data).partition, Envelope.from_bytes(r.data).offset)
        for r in fake.records
    }
    assert written == {(0, 0), (0, 1), (1, 0)}
    assert store.failures == 1 and not store.objects
    # AND the log says which record waits, by its place and size, never its key or value
    [line] = [r for r in caplog.records if "claim-checked" in r.getMessage()]
    assert line.__dict__["offset"] == 2 and line.__dict__["bytes"] > 2048
    assert "xxxx" not in caplog.text and "'k'" not in caplog.text


_sources = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from([b"a", b"b", b"c", None]), st.booleans()),
    min_size=1,
    max_size=40,
).map(
    lambda rows: [
        (partition, offset, key, BIG + bytes([offset % 256]) if big else b"v%d" % offset)
        for offset, (partition, key, big) in enumerate(rows)
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=_sources,
    faults=_faults,
    s3_failure=st.sampled_from([0.0, 0.3, 0.6]),
    seed=st.integers(0, 2**32),
    containers=st.integers(1, 3),
    aggregation=st.sampled_from(["on", "off"]),
)
def test_claim_checks_keep_every_keys_order_under_s3_and_kinesis_faults(
    sources: list[Source],
    faults: Faults,
    s3_failure: float,
    seed: int,
    containers: int,
    aggregation: str,
) -> None:
    # GIVEN oversize records among small ones, Kinesis faults, S3 writes that fail at random,
    # and redeliveries that land on any of several containers
    rng = random.Random(seed)
    fake = FakeKinesis(faults, seed=seed)
    store = FakeClaimChecks(fail_write=lambda record: rng.random() < s3_failure, stream=fake)
    settings_ = _settings(AGGREGATION=aggregation, MAX_CONCURRENCY="4")
    sinks = [Sink(settings_, writer=fake, claim_checks=store) for _ in range(containers)]
    try:
        # WHEN the ESM invokes until everything is delivered
        _deliver_like_the_esm(cast(Sink, _Containers(sinks, rng)), sources)
    finally:
        for sink in sinks:
            sink.close()
    # THEN the consumer gets every record whole, exactly once, in Kafka order per key...
    assert _consumed(fake, store) == _expected(sources)
    # ...every pointer names an object stored before the pointer was written...
    pointers = _pointer_positions(fake)
    assert set(pointers) == set(store.objects)
    assert all(store.stored_after[where] <= at for where, at in pointers.items())
    # ...and no request ever held a key twice
    assert fake.violations == []


def test_claim_check_redelivered_after_its_pointer_is_not_written_again() -> None:
    # GIVEN key p at offset 0, which Kinesis refuses for the whole first invocation (the
    # partition is reported from offset 0), and key k's records after it, one claim-checked
    sources: list[Source] = [(0, 0, b"p", b"v"), (0, 1, b"k", b"v"), (0, 2, b"k", BIG)]
    outage = [True]

    def refuse_p(call: int, entry: Entry) -> RecordResult | None:
        return RecordResult.FAILED if outage[0] and entry.partition_key == "p" else None

    clock = FakeClock()
    fake = FakeKinesis(fail_entry=refuse_p, clock=clock, latency_s=0.01)
    store = FakeClaimChecks(stream=fake)
    sink = Sink(_settings(), writer=fake, claim_checks=store, clock=clock, sleep=clock.sleep)
    try:
        first = sink.handle(_event(sources), clock.context(1_000))
        assert _failed_offsets(first) == {f"{TOPIC}-0": [0, 1, 2]}
        # WHEN Kinesis recovers and the ESM redelivers the partition from offset 0
        outage[0] = False
        second = sink.handle(_event(sources), clock.context(1_000))
    finally:
        sink.close()
    # THEN the object was written once and its pointer sent once (the container remembered
    # them), and the consumer gets all three, k's in order
    assert second == {"batchItemFailures": []}
    assert store.writes == 1
    assert sorted(Envelope.from_bytes(r.data).offset for r in fake.records) == [0, 1, 2]
    assert _consumed(fake, store) == _expected(sources)


def test_claim_check_without_any_bucket_reports_the_oversize_record() -> None:
    # GIVEN claim checks but no bucket at all (as a replay runs the function's settings)
    settings = _settings(CLAIM_CHECK_BUCKET="")
    sources: list[Source] = [(0, 0, b"k", b"v"), (0, 1, b"k", BIG), (0, 2, b"k", b"v")]
    fake = FakeKinesis()
    # WHEN published (no claim-check writer is needed)
    sink = Sink(settings, writer=fake)
    try:
        response = sink.handle(_event(sources), FakeContext())
    finally:
        sink.close()
    # THEN the oversize record holds its key and is reported, nothing after it is written
    assert _failed_offsets(response) == {f"{TOPIC}-0": [1, 2]}
    assert [Envelope.from_bytes(r.data).offset for r in fake.records] == [0]


def test_claim_check_sink_without_a_writer_is_refused() -> None:
    # GIVEN claim-check settings / WHEN a Sink is made without a claim-check writer
    # THEN it is refused at once, not when the first oversize record arrives
    with pytest.raises(TypeError, match="claim_checks"):
        Sink(_settings(), writer=FakeKinesis())
