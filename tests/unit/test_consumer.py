"""Unit tests for the consumer-side rule: Envelope.from_bytes and OffsetDeduplicator."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.consumer import Envelope, OffsetDeduplicator
from msk_kinesis_sink.encoding import envelope_bytes, partition_key_for
from msk_kinesis_sink.errors import MalformedEnvelopeError, PartitionKeyRequiredError
from msk_kinesis_sink.events import KafkaRecord, parse_event
from msk_kinesis_sink.settings import PartitionKeyMode
from tests.factories import b64, kafka_record, load_event, msk_event
from tests.strategies import FUZZ_EXAMPLES, json_values


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


def _document(**changes: Any) -> dict[str, Any]:
    """The sink's envelope of a record with a key, a value and a header, members changed
    (a member set to _ABSENT is left out)."""
    record = kafka_record("t", 1, 7, b"k", b"v", headers=[("h", b"1")])
    [batch] = parse_event(msk_event([record])).partitions
    document: dict[str, Any] = json.loads(envelope_bytes(batch.records[0]))
    document.update(changes)
    return {name: value for name, value in document.items() if value is not _ABSENT}


_ABSENT = object()


def _bytes(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"", "is not JSON"),
        (b"not json", "is not JSON"),
        (b"\xff{}", "is not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got a list"),
        (b'"offset"', "must be a JSON object, got a string"),
        (_bytes({"topic": "t"}), "has no 'partition' member"),
        (_bytes(_document(offset=5.9)), "'offset' must be an integer, got a number with a"),
        (_bytes(_document(offset=True)), "'offset' must be an integer, got a boolean"),
        (_bytes(_document(offset=-3)), "'offset' is -3, outside 0..9223372036854775807"),
        (_bytes(_document(offset=" 7 ")), "'offset' must be an integer, got a string"),
        (_bytes(_document(offset=2**63)), "'offset' is 9223372036854775808, outside"),
        (_bytes(_document(offset=5.0)), "'offset' must be an integer"),
        (_bytes(_document(offset=None)), "'offset' must be an integer, got null"),
        (_bytes(_document(offset=_ABSENT)), "has no 'offset' member"),
        (_bytes(_document(partition=2**31)), "'partition' is 2147483648, outside 0..2147483647"),
        (_bytes(_document(partition="1")), "'partition' must be an integer, got a string"),
        (_bytes(_document(timestamp=2**63)), "'timestamp' is 9223372036854775808, outside"),
        (_bytes(_document(topic=7)), "'topic' must be a non-empty string, got an integer"),
        (_bytes(_document(topic="")), "'topic' must be a non-empty string, got a string"),
        (_bytes(_document(topic="t\ud800")), "'topic' is not valid Unicode"),
        (_bytes(_document(timestampType=None)), "'timestampType' must be a string, got null"),
        (_bytes(_document(key=_ABSENT)), "has no 'key' member"),
        (_bytes(_document(key=1)), "key must be a base64 string or null, got an integer"),
        (_bytes(_document(value="not base64!")), "value is not valid base64"),
        (_bytes(_document(value="QQ")), "value is not valid base64"),
        (_bytes(_document(headers=None)), "'headers' must be a list, got null"),
        (_bytes(_document(headers={"h": "MQ=="})), "'headers' must be a list, got an object"),
        (_bytes(_document(headers=["h"])), "header 0 must be an object, got a string"),
        (_bytes(_document(headers=[{"value": "MQ=="}])), "header 0 has no 'name' string"),
        (_bytes(_document(headers=[{"name": "h"}])), "header 0 value must be a base64 string"),
        (_bytes(_document(headers=[{"name": "h", "value": "?"}])), "header 0 value is not"),
        (_bytes(_document(keySchemaMetadata=[])), "'keySchemaMetadata' must be an object or null"),
        (
            _bytes(_document(valueSchemaMetadata={"dataFormat": "AVRO", "schemaId": 1})),
            "'valueSchemaMetadata' has no 'schemaId' string",
        ),
        (_bytes(_document(partitionKeyFrom="tenant")), "'partitionKeyFrom' must be one of"),
        (_bytes(_document(partitionKeyFrom=1)), "'partitionKeyFrom' must be one of"),
        (b'{"offset": 1, "offset": 2}', "has a member given twice"),
        (b'{"topic": "t", "partition": NaN}', "holds NaN, which is not a JSON number"),
        (b'{"offset": ' + b"9" * 5000 + b"}", "holds a number too long to read"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
def test_envelope_from_bytes_refuses_what_the_sink_does_not_write(data: bytes, named: str):
    # GIVEN bytes that are not an envelope as the sink writes it
    # WHEN they are read / THEN one documented error names the problem, never a half record
    with pytest.raises(MalformedEnvelopeError, match=re.escape(named)):
        Envelope.from_bytes(data)


@pytest.mark.parametrize("data", [None, "{}", 7, {"topic": "t"}])
def test_envelope_from_bytes_refuses_what_is_not_bytes(data: Any):
    # GIVEN / WHEN / THEN anything but bytes is refused by name, not with a TypeError
    with pytest.raises(MalformedEnvelopeError, match="must be bytes"):
        Envelope.from_bytes(data)


def test_envelope_from_bytes_ignores_members_it_does_not_know():
    # GIVEN an envelope with a member a later sink might add
    data = _bytes(_document(compression="none"))

    # WHEN it is read / THEN it reads as without it
    assert Envelope.from_bytes(data) == Envelope.from_bytes(_bytes(_document()))


def test_envelope_from_bytes_reads_an_envelope_without_partition_key_from_as_before():
    # GIVEN an envelope as sinks wrote them before partitionKeyFrom existed, and a null one
    # WHEN read / THEN neither names a derivation: the Kafka key orders the record
    assert Envelope.from_bytes(_bytes(_document())).partition_key_from is None
    assert Envelope.from_bytes(_bytes(_document(partitionKeyFrom=None))).partition_key_from is None
    header = Envelope.from_bytes(_bytes(_document(partitionKeyFrom="header")))
    assert header.partition_key_from is PartitionKeyMode.HEADER


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    member=st.sampled_from([*_document(), "keySchemaMetadata", "partitionKeyFrom"]),
    replacement=json_values | st.just(_ABSENT),
    raw=st.none() | st.binary(max_size=40),
)
def test_envelope_from_bytes_reads_or_names_the_problem(member: str, replacement: Any, raw: Any):
    # GIVEN the sink's envelope with one member replaced by any JSON value (or left out), or
    # any bytes at all
    try:
        data = raw if raw is not None else _bytes(_document(**{member: replacement}))
    except (UnicodeEncodeError, ValueError):
        return  # json.dumps refuses it: no bytes to read

    # WHEN it is read
    try:
        envelope = Envelope.from_bytes(data)
    except MalformedEnvelopeError as error:
        # THEN it is refused with a message that is safe to log...
        assert 0 < len(str(error)) < 300
        return

    # ...or every member has its documented type and range
    assert isinstance(envelope.topic, str) and envelope.topic
    assert type(envelope.offset) is int and 0 <= envelope.offset <= 2**63 - 1
    assert type(envelope.partition) is int and 0 <= envelope.partition <= 2**31 - 1
    assert type(envelope.timestamp) is int
    for text in (envelope.key, envelope.value, *(value for _, value in envelope.headers)):
        assert text is None or base64.b64decode(text, validate=True) is not None


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


# -- PARTITION_KEY=header:<name> -------------------------------------------------------------


def _header_keyed(offset: int, tenant: bytes | None, key: bytes = b"k") -> tuple[Envelope, str]:
    """The envelope the sink writes with PARTITION_KEY=header:tenant, and its partition key."""
    headers = () if tenant is None else (("tenant", tenant),)
    record = KafkaRecord("t", 0, offset, 0, "CREATE_TIME", b64(key), b64(b"v"), headers)
    mode = PartitionKeyMode.HEADER
    data = envelope_bytes(record, mode)
    return Envelope.from_bytes(data), partition_key_for(record, key, mode, "tenant")


def test_offset_deduplicator_refuses_a_header_keyed_envelope_without_its_partition_key():
    # GIVEN an envelope of a header-keyed stream
    envelope, _ = _header_keyed(5, b"acme")

    # WHEN it is offered by its Kafka key alone / THEN the call is refused, naming what to pass
    with pytest.raises(PartitionKeyRequiredError, match=r"t-0 offset 5 .* partition_key="):
        OffsetDeduplicator().accept(envelope)
    with pytest.raises(PartitionKeyRequiredError):
        list(OffsetDeduplicator().filter([envelope]))


def test_offset_deduplicator_keeps_header_chains_of_one_kafka_key_apart():
    # GIVEN one Kafka key whose records carry two header values: two chains the sink orders
    # independently, so chain b's offset 3 may arrive after chain a's offset 4
    stream = [_header_keyed(offset, tenant) for offset, tenant in [(4, b"a"), (3, b"b")]]

    # WHEN each is offered with its Kinesis partition key
    dedup = OffsetDeduplicator()
    accepted = [dedup.accept(envelope, partition_key=key) for envelope, key in stream]

    # THEN both are new (by the Kafka key alone, offset 3 would have been dropped)
    assert accepted == [True, True]
    assert [dedup.accept(envelope, partition_key=key) for envelope, key in stream] == [False] * 2


def test_offset_deduplicator_never_confuses_a_kafka_key_with_an_equal_partition_key():
    # GIVEN a Kafka key (base64 "YQ==") and a partition key of the same text, one offered each way
    dedup = OffsetDeduplicator()
    by_kafka_key = _envelope(5, key="YQ==")

    # WHEN both are offered at offsets where one would shadow the other
    first = dedup.accept(by_kafka_key)
    second = dedup.accept(_envelope(3, key="b"), partition_key="YQ==")

    # THEN both are new: the two ways of keying stay apart
    assert first and second


@settings(deadline=None)
@given(_deliveries())
def test_offset_deduplicator_yields_each_header_chain_exactly_once_in_order(
    deliveries: tuple[dict[str, list[int]], list[tuple[str, int]]],
):
    # GIVEN one Kafka key whose records are spread over header values ("a".."d"), each value a
    # chain delivered at least once and in order, the chains interleaved (or a missing header:
    # "d" stands for records without one, which fall back to the Kafka key)
    sources, stream = deliveries
    envelopes = [
        _header_keyed(offset, None if tenant == "d" else tenant.encode())
        for tenant, offset in stream
    ]

    # WHEN a consumer applies the rule with each record's partition key
    dedup = OffsetDeduplicator()
    seen: dict[str, list[int]] = {}
    for envelope, partition_key in envelopes:
        if dedup.accept(envelope, partition_key=partition_key):
            seen.setdefault(partition_key, []).append(envelope.offset)

    # THEN each chain's records come out exactly once and in Kafka order
    chains = {("k" if tenant == "d" else tenant): offsets for tenant, offsets in sources.items()}
    assert seen == chains
