"""Unit tests for the consumer-side rule: Envelope.from_bytes and OffsetDeduplicator."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.encoding import envelope_bytes
from msk_kinesis_sink.events import parse_event
from tests.factories import b64, kafka_record, load_event, msk_event


def _envelope(offset: int, key: str | None = "k", topic: str = "t", partition: int = 0) -> Envelope:
    return Envelope(topic, partition, offset, 0, "CREATE_TIME", key, None, ())


def test_envelope_from_bytes_reads_sink_output():
    # GIVEN the envelope the sink writes for the documented MSK record
    [batch] = parse_event(load_event("msk_event.json")).partitions
    data = envelope_bytes(batch.records[0])

    # WHEN it is read
    envelope = Envelope.from_bytes(data)

    # THEN every field is there
    assert envelope == Envelope(
        topic="mytopic",
        partition=0,
        offset=15,
        timestamp=1545084650987,
        timestamp_type="CREATE_TIME",
        key="abcDEFghiJKLmnoPQRstuVWXyz1234==",
        value="SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
        headers=(("headerKey", b64(b"headerValue")),),
    )
    assert envelope.ordering_key == ("mytopic", 0, "abcDEFghiJKLmnoPQRstuVWXyz1234==")


def test_envelope_from_bytes_null_key_and_value():
    # GIVEN a tombstone envelope without a key
    data = json.dumps(
        {
            "topic": "t",
            "partition": 1,
            "offset": 2,
            "timestamp": -1,
            "timestampType": "NO_TIMESTAMP_TYPE",
            "key": None,
            "value": None,
            "headers": [],
        }
    ).encode()

    # WHEN it is read
    envelope = Envelope.from_bytes(data)

    # THEN key and value are None and the ordering key keeps the None
    assert (envelope.key, envelope.value, envelope.headers) == (None, None, ())
    assert envelope.ordering_key == ("t", 1, None)


@pytest.mark.parametrize("data", [b"", b"not json", b'{"topic": "t"}'])
def test_envelope_from_bytes_rejects_non_envelopes(data: bytes):
    # GIVEN / WHEN / THEN bytes that are not an envelope raise instead of yielding a half record
    with pytest.raises((ValueError, KeyError)):
        Envelope.from_bytes(data)


def test_offset_deduplicator_drops_repeats_and_older_offsets():
    # GIVEN a delivery stream with a retry-duplicate and a redelivered older record
    stream = [_envelope(offset) for offset in (1, 2, 2, 3, 1, 4, 3, 5)]

    # WHEN it is filtered
    accepted = [envelope.offset for envelope in OffsetDeduplicator().filter(stream)]

    # THEN each offset is processed once, in order
    assert accepted == [1, 2, 3, 4, 5]


def test_offset_deduplicator_keys_are_independent():
    # GIVEN two keys, where key b is behind key a
    dedup = OffsetDeduplicator()

    # WHEN a's offset 10 is seen and then b's offset 5
    first = dedup.accept(_envelope(10, key="a"))
    second = dedup.accept(_envelope(5, key="b"))

    # THEN both are new: the rule is per key, not per partition
    assert first and second
    assert not dedup.accept(_envelope(10, key="a"))
    assert not dedup.accept(_envelope(5, key="b"))


def test_offset_deduplicator_topic_and_partition_are_part_of_the_key():
    # GIVEN the same key and offset in different partitions and topics
    dedup = OffsetDeduplicator()
    records = [
        _envelope(7, key="k", topic="t", partition=0),
        _envelope(7, key="k", topic="t", partition=1),
        _envelope(7, key="k", topic="u", partition=0),
        _envelope(7, key=None, topic="t", partition=0),
    ]

    # WHEN they are offered
    accepted = [dedup.accept(record) for record in records]

    # THEN each is new
    assert accepted == [True, True, True, True]


def test_offset_deduplicator_first_record_of_a_key_is_always_new():
    # GIVEN a fresh deduplicator and offset 0
    # THEN it is accepted (0 is a valid first offset)
    assert OffsetDeduplicator().accept(_envelope(0))


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[dict[str, list[int]], list[tuple[str, int]]]:
    """Per-key source offsets, and an at-least-once delivery stream with the sink's guarantee.

    For each key, a record is delivered for the first time only after every earlier record of
    that key; redeliveries repeat any record delivered before (retries, lost responses, ESM
    retries from the resume offset). Keys interleave freely.
    """
    keys = draw(
        st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True)
    )
    sources: dict[str, list[int]] = {}
    for key in keys:
        start = draw(st.integers(0, 1_000))
        gaps = draw(st.lists(st.integers(1, 5), min_size=1, max_size=15))
        offsets = [start]
        for gap in gaps[1:]:
            offsets.append(offsets[-1] + gap)
        sources[key] = offsets
    delivered = {key: 0 for key in keys}
    stream: list[tuple[str, int]] = []
    while unfinished := [key for key in keys if delivered[key] < len(sources[key])]:
        key = draw(st.sampled_from(unfinished))
        count = delivered[key]
        if count and draw(st.integers(0, 3)) == 0:
            # redeliver a run that starts at some already delivered record
            start = draw(st.integers(0, count - 1))
            end = draw(st.integers(start + 1, min(count + 1, len(sources[key]))))
            stream.extend((key, offset) for offset in sources[key][start:end])
            delivered[key] = max(count, end)
        else:
            stream.append((key, sources[key][count]))
            delivered[key] = count + 1
    return sources, stream


@settings(deadline=None)
@given(_deliveries())
def test_offset_deduplicator_yields_source_sequence_per_key(
    deliveries: tuple[dict[str, list[int]], list[tuple[str, int]]],
):
    # GIVEN an at-least-once, per-key ordered delivery stream
    sources, stream = deliveries

    # WHEN a consumer applies the rule
    accepted = OffsetDeduplicator().filter(_envelope(offset, key=key) for key, offset in stream)

    # THEN each key's records come out exactly once and in Kafka order
    seen: dict[str, list[int]] = {key: [] for key in sources}
    for envelope in accepted:
        assert envelope.key is not None
        seen[envelope.key].append(envelope.offset)
    assert seen == sources


def test_envelope_from_bytes_reads_factory_records_with_headers():
    # GIVEN a sink envelope with duplicate header names
    raw = kafka_record("t", 4, 9, b"k", b"v", headers=[("x", b"1"), ("x", b"2")])
    [batch] = parse_event(msk_event([raw])).partitions

    # WHEN it is read back
    envelope = Envelope.from_bytes(envelope_bytes(batch.records[0]))

    # THEN headers keep order and duplicates
    assert envelope.headers == (("x", b64(b"1")), ("x", b64(b"2")))
