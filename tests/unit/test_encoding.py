"""Unit tests for encoding: raw and envelope data, partition keys, unwritable records, sizes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.consumer import Envelope
from msk_kinesis_sink.dead_letters import dead_letter_document
from msk_kinesis_sink.encoding import (
    HEADER_CACHE_VALUE_BYTES,
    EncodedRecord,
    UnwritableRecord,
    decode_base64,
    encode_record,
    envelope_bytes,
    partition_key_for,
)
from msk_kinesis_sink.errors import MalformedEventError, UnwritableRecordError
from msk_kinesis_sink.events import (
    KafkaRecord,
    SchemaMetadata,
    parse_event,
    record_members,
    schema_members,
)
from msk_kinesis_sink.kpl import (
    KPL_DIGEST_BYTES,
    KPL_MAGIC,
    deaggregate,
    encode_aggregate,
    varint,
    varint_size,
    wrapped_size,
)
from msk_kinesis_sink.limits import (
    DEFAULT_MAX_RECORD_BYTES,
    MAX_PARTITION_KEY_CHARS,
    MIN_RECORD_BYTES,
)
from msk_kinesis_sink.settings import Aggregation, PartitionKeyMode, RecordFormat
from tests.factories import b64, kafka_record, load_event, msk_event
from tests.strategies import FOUND_BY_FUZZING, FUZZ_EXAMPLES, kafka_events

KEY = PartitionKeyMode.KEY
PARTITION = PartitionKeyMode.PARTITION
HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
ENVELOPE_FIELDS = {
    "topic",
    "partition",
    "offset",
    "timestamp",
    "timestampType",
    "key",
    "value",
    "headers",
}


def _record(
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    *,
    topic: str = "orders",
    partition: int = 3,
    offset: int = 42,
    headers: Sequence[tuple[str, bytes]] = (),
) -> KafkaRecord:
    [batch] = parse_event(
        msk_event([kafka_record(topic, partition, offset, key, value, headers)])
    ).partitions
    return batch.records[0]


def _encode(
    record: KafkaRecord,
    *,
    record_format: RecordFormat = RecordFormat.RAW,
    mode: PartitionKeyMode = KEY,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    aggregation: Aggregation = Aggregation.OFF,
) -> EncodedRecord | UnwritableRecord:
    return encode_record(
        record,
        record_format=record_format,
        partition_key_mode=mode,
        max_record_bytes=max_record_bytes,
        aggregation=aggregation,
    )


def _encoded(record: KafkaRecord, **options: object) -> EncodedRecord:
    result = _encode(record, **options)  # type: ignore[arg-type]
    assert isinstance(result, EncodedRecord), result
    return result


def _unwritable(record: KafkaRecord, **options: object) -> UnwritableRecord:
    result = _encode(record, **options)  # type: ignore[arg-type]
    assert isinstance(result, UnwritableRecord), result
    return result


# -- raw format ---------------------------------------------------------------------------


def test_encode_record_raw_data_is_value_bytes_unchanged():
    # GIVEN a record whose value is arbitrary binary
    value = bytes(range(256))

    # WHEN it is encoded in raw format
    encoded = _encoded(_record(value=value))

    # THEN Data is exactly the value bytes and the record is kept alongside
    assert encoded.data == value
    assert encoded.offset == 42
    assert encoded.source.topic == "orders"


def test_encode_record_raw_tombstone_is_empty_data_with_its_key():
    # GIVEN a tombstone (null value) with a key
    record = _record(key=b"customer-7", value=None)

    # WHEN it is encoded in raw format
    encoded = _encoded(record)

    # THEN it becomes an empty record that keeps the key's partition key
    assert encoded.data == b""
    assert encoded.partition_key == "customer-7"
    assert encoded.size == len("customer-7")


def test_encode_record_raw_empty_value_is_empty_data():
    # GIVEN a value of zero bytes
    encoded = _encoded(_record(value=b""))

    # THEN Data is empty too
    assert encoded.data == b""


def test_encode_record_documented_sample_raw():
    # GIVEN the documented MSK sample event
    [batch] = parse_event(load_event("msk_event.json")).partitions

    # WHEN its record is encoded raw
    encoded = _encoded(batch.records[0])

    # THEN Data is the decoded value; the binary sample key is hashed into a hex digest
    assert encoded.data == b"Hello, this is a test."
    key_bytes = base64.b64decode("abcDEFghiJKLmnoPQRstuVWXyz1234==")
    assert encoded.partition_key == hashlib.sha256(key_bytes).hexdigest()


# -- raw values that read as KPL aggregates ----------------------------------------------


def _framed_value(total: int) -> bytes:
    """A value of `total` bytes that deaggregators read as a KPL aggregate (magic and MD5): one
    user record b"a" under key "k", and an unknown field as filler."""
    head = b"\x0a\x01k\x1a\x05\x08\x00\x1a\x01a\x2a"
    filler = total - len(KPL_MAGIC) - KPL_DIGEST_BYTES - len(head)
    filler -= varint_size(filler)
    body = head + varint(filler) + bytes(filler)
    assert len(body) + len(KPL_MAGIC) + KPL_DIGEST_BYTES == total
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def _largest_wrappable(key: bytes = b"k", limit: int = DEFAULT_MAX_RECORD_BYTES) -> int:
    """Length of the largest value that, wrapped in an aggregate of one, still fits `limit`."""
    size = limit
    while wrapped_size(len(key), size) > limit:
        size -= 1
    return size


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_encode_record_raw_aggregate_value_that_fits_wrapped_is_encoded(
    aggregation: Aggregation,
):
    # GIVEN a value that reads as an aggregate, as large as can be wrapped in one record
    value = _framed_value(_largest_wrappable())
    assert deaggregate(value) == [b"a"]

    # WHEN it is encoded raw, aggregation on or off
    encoded = _encoded(_record(value=value), aggregation=aggregation)

    # THEN it is written (unchanged here: with aggregation on, the packer wraps it)
    assert encoded.data == value


def test_encode_record_raw_aggregate_value_too_large_to_wrap_is_unwritable_with_aggregation():
    # GIVEN a value that reads as an aggregate, too large to be wrapped in one record but not
    # to go plain: 1,048,543 - 1,048,575 bytes under a one-byte key
    value = _framed_value(_largest_wrappable() + 1)
    assert len(value) == 1_048_543

    # WHEN it is encoded raw with aggregation on
    unwritable = _unwritable(_record(value=value), aggregation=Aggregation.ON)

    # THEN it is a dead letter naming why: plain, consumers would unpack it instead
    assert "KPL aggregated record" in unwritable.reason
    assert "MAX_RECORD_BYTES=1048576" in unwritable.reason
    assert unwritable.partition_key == "k"


def test_encode_record_raw_aggregate_value_is_written_unchanged_without_aggregation():
    # GIVEN the same too-large-to-wrap value
    value = _framed_value(_largest_wrappable() + 1)

    # WHEN it is encoded with aggregation off (one Kinesis record per Kafka value, unchanged)
    encoded = _encoded(_record(value=value), aggregation=Aggregation.OFF)

    # THEN it is written as it is
    assert encoded.data == value


def test_encode_record_raw_magic_value_with_a_wrong_digest_is_written_plain():
    # GIVEN a value with the magic but not its MD5: every deaggregator passes it through
    framed = bytearray(_framed_value(_largest_wrappable() + 1))
    framed[-1] ^= 0xFF
    value = bytes(framed)
    assert deaggregate(value) == [value]

    # WHEN it is encoded with aggregation on / THEN it is written, too large to wrap or not
    assert _encoded(_record(value=value), aggregation=Aggregation.ON).data == value


# -- envelope format ----------------------------------------------------------------------


def test_envelope_exact_fields_and_types():
    # GIVEN a record with key, value and headers
    record = _record(
        key=b"k1", value=b"\x00\xffpayload", headers=[("h", b"1")], offset=7, partition=2
    )

    # WHEN it is encoded as an envelope
    document = json.loads(_encoded(record, record_format=RecordFormat.ENVELOPE).data)

    # THEN it has exactly the documented fields with the documented types and values
    assert set(document) == ENVELOPE_FIELDS
    assert document == {
        "topic": "orders",
        "partition": 2,
        "offset": 7,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": b64(b"k1"),
        "value": b64(b"\x00\xffpayload"),
        "headers": [{"name": "h", "value": b64(b"1")}],
    }
    assert type(document["partition"]) is int
    assert type(document["offset"]) is int
    assert type(document["timestamp"]) is int


@pytest.mark.parametrize("mode", list(PartitionKeyMode))
def test_envelope_says_when_its_partition_key_came_from_a_header(mode: PartitionKeyMode):
    # GIVEN a record with a key and the header a header-keyed stream reads
    record = _record(key=b"k1", headers=[("tenant", b"acme")])

    # WHEN it is encoded as an envelope in each partition-key mode
    document = json.loads(
        encode_record(
            record,
            record_format=RecordFormat.ENVELOPE,
            partition_key_mode=mode,
            partition_key_header="tenant" if mode is PartitionKeyMode.HEADER else None,
            max_record_bytes=DEFAULT_MAX_RECORD_BYTES,
        ).data  # type: ignore[union-attr]
    )

    # THEN a header-keyed envelope says so; the others are exactly as before the member existed
    if mode is PartitionKeyMode.HEADER:
        assert document.pop("partitionKeyFrom") == "header"
    assert set(document) == ENVELOPE_FIELDS


def test_envelope_is_utf8_json():
    # GIVEN a header name outside ASCII
    record = _record(headers=[("größe", b"XL")])

    # WHEN it is encoded as an envelope
    data = _encoded(record, record_format=RecordFormat.ENVELOPE).data

    # THEN the bytes decode as UTF-8 JSON and the name survives
    document = json.loads(data.decode("utf-8"))
    assert document["headers"] == [{"name": "größe", "value": b64(b"XL")}]


def test_envelope_tombstone_and_null_key_are_json_null():
    # GIVEN a tombstone without a key
    record = _record(key=None, value=None)

    # WHEN it is encoded as an envelope
    document = json.loads(_encoded(record, record_format=RecordFormat.ENVELOPE).data)

    # THEN key and value are null, not empty strings
    assert document["key"] is None
    assert document["value"] is None


def test_envelope_headers_in_order_with_duplicates():
    # GIVEN repeated header names, including an empty header value
    headers = [("a", b"1"), ("b", b""), ("a", b"\x80\xff")]

    # WHEN the record is encoded as an envelope
    document = json.loads(
        _encoded(_record(headers=headers), record_format=RecordFormat.ENVELOPE).data
    )

    # THEN every header is listed in order, values base64
    assert document["headers"] == [
        {"name": "a", "value": "MQ=="},
        {"name": "b", "value": ""},
        {"name": "a", "value": "gP8="},
    ]


def test_envelope_signed_header_bytes_from_event():
    # GIVEN a header whose bytes arrived signed
    raw = kafka_record("t", 0, 1)
    raw["headers"] = [{"sig": [-1, -128]}]
    [batch] = parse_event(msk_event([raw])).partitions

    # WHEN it is encoded as an envelope
    document = json.loads(envelope_bytes(batch.records[0]))

    # THEN the header value holds the unsigned bytes
    assert base64.b64decode(document["headers"][0]["value"]) == b"\xff\x80"


def test_envelope_without_timestamp_uses_kafka_convention():
    # GIVEN a record without timestamp fields
    event = msk_event([])
    event["records"]["t-0"] = [{"topic": "t", "partition": 0, "offset": 1, "value": "eA=="}]
    [batch] = parse_event(event).partitions

    # WHEN it is encoded as an envelope
    document = json.loads(envelope_bytes(batch.records[0]))

    # THEN timestamp is -1 and the type says there is none; key is null
    assert document["timestamp"] == -1
    assert document["timestampType"] == "NO_TIMESTAMP_TYPE"
    assert document["key"] is None


def test_envelope_size_counts_json_bytes_and_partition_key():
    # GIVEN a record encoded as an envelope
    encoded = _encoded(_record(key=b"key"), record_format=RecordFormat.ENVELOPE)

    # THEN its size is the JSON length plus the partition key length
    assert encoded.size == len(encoded.data) + len(b"key")


# -- partition keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["k", "customer-42", "ключ", "🔑 key", "x" * MAX_PARTITION_KEY_CHARS, "é" * 256, " "],
)
def test_partition_key_for_utf8_text_up_to_256_chars_used_as_is(key: str):
    # GIVEN a Kafka key that is UTF-8 text of 1-256 characters
    record = _record(key=key.encode("utf-8"))

    # WHEN its partition key is derived
    partition_key = partition_key_for(record, key.encode("utf-8"), KEY)

    # THEN it is the text itself
    assert partition_key == key


@pytest.mark.parametrize("length", [MAX_PARTITION_KEY_CHARS + 1, 300])
def test_partition_key_for_long_text_key_is_sha256_hex(length: int):
    # GIVEN a text key longer than Kinesis allows
    key = ("k" * length).encode("utf-8")

    # WHEN its partition key is derived
    partition_key = partition_key_for(_record(key=key), key, KEY)

    # THEN it is the 64-hex SHA-256 digest of the key bytes
    assert partition_key == hashlib.sha256(key).hexdigest()
    assert HEX_DIGEST.match(partition_key)


def test_partition_key_for_256_multibyte_chars_is_kept_257_hashed():
    # GIVEN keys of 256 and 257 two-byte characters (the limit counts characters, not bytes)
    at_limit = ("é" * 256).encode("utf-8")
    over = ("é" * 257).encode("utf-8")

    # THEN the first is kept as text and the second is hashed
    assert partition_key_for(_record(), at_limit, KEY) == "é" * 256
    assert partition_key_for(_record(), over, KEY) == hashlib.sha256(over).hexdigest()


@pytest.mark.parametrize("count", [129, 256])
def test_partition_key_for_astral_text_key_fits_kinesis_utf16_length(count: int):
    # GIVEN a text key of emoji: each is one code point but two UTF-16 code units
    key = ("😀" * count).encode("utf-8")

    # WHEN its partition key is derived
    partition_key = partition_key_for(_record(key=key), key, KEY)

    # THEN it is at most 256 UTF-16 code units, the unit Kinesis measures keys in
    assert len(partition_key.encode("utf-16-le")) // 2 <= MAX_PARTITION_KEY_CHARS


@pytest.mark.parametrize("key", [b"\xff\xfe\x00", b"\x80", b"abc\xc3", b"\xed\xa0\x80"])
def test_partition_key_for_binary_key_is_stable_digest(key: bytes):
    # GIVEN a key that is not valid UTF-8 (incl. a truncated sequence and an encoded surrogate)
    # WHEN its partition key is derived twice, for records of different partitions
    first = partition_key_for(_record(partition=0), key, KEY)
    second = partition_key_for(_record(partition=9, topic="other"), key, KEY)

    # THEN both are the same SHA-256 hex digest of the key bytes
    assert first == second == hashlib.sha256(key).hexdigest()


@pytest.mark.parametrize("key", [None, b""])
def test_partition_key_for_null_and_empty_key_fall_back_to_topic_partition(key: bytes | None):
    # GIVEN a record without a usable key
    record = _record(key=key, topic="orders.v1-eu-0", partition=12)

    # WHEN its partition key is derived
    partition_key = partition_key_for(record, key, KEY)

    # THEN it is "<topic>-<partition>"
    assert partition_key == "orders.v1-eu-0-12"


@pytest.mark.parametrize("key", [b"customer-42", b"\xff\x00", None, b"", b"x" * 300])
def test_partition_key_for_partition_mode_ignores_the_key(key: bytes | None):
    # GIVEN PARTITION_KEY=partition
    record = _record(key=key, topic="t", partition=5)

    # WHEN the partition key is derived
    partition_key = partition_key_for(record, key, PARTITION)

    # THEN it is always "<topic>-<partition>"
    assert partition_key == "t-5"


@pytest.mark.parametrize("mode", [KEY, PARTITION])
@pytest.mark.parametrize(("topic_chars", "partition"), [(249, 1_234_567), (255, 10)])
def test_partition_key_for_topic_partition_over_256_chars_is_hashed(
    mode: PartitionKeyMode, topic_chars: int, partition: int
):
    # GIVEN a topic-partition longer than 256 characters (Kafka allows 249-character topics)
    topic = "t" * topic_chars
    record = _record(key=None, topic=topic, partition=partition)
    assert len(record.topic_partition) > MAX_PARTITION_KEY_CHARS

    # WHEN the partition key is derived
    partition_key = partition_key_for(record, None, mode)

    # THEN it is the SHA-256 hex digest of "<topic>-<partition>"
    assert partition_key == hashlib.sha256(f"{topic}-{partition}".encode()).hexdigest()


def test_partition_key_for_topic_partition_of_exactly_256_chars_is_kept():
    # GIVEN a topic-partition of exactly 256 characters
    topic = "t" * 254
    record = _record(key=None, topic=topic, partition=7)

    # THEN it is used as it is
    assert partition_key_for(record, None, KEY) == f"{topic}-7"


def test_encode_record_uses_key_mode_partition_key():
    # GIVEN a text key and a binary key
    text = _encoded(_record(key=b"user-1"))
    binary = _encoded(_record(key=b"\xff"))

    # THEN the encoded records carry the derived partition keys
    assert text.partition_key == "user-1"
    assert binary.partition_key == hashlib.sha256(b"\xff").hexdigest()


def test_encode_record_partition_mode():
    # GIVEN PARTITION_KEY=partition
    encoded = _encoded(_record(key=b"user-1", topic="a.b-c", partition=4), mode=PARTITION)

    # THEN the partition key is the topic-partition
    assert encoded.partition_key == "a.b-c-4"


_kafka_topics = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=249,
)


@settings(deadline=None)
@given(
    topic=_kafka_topics,
    partition=st.integers(min_value=0, max_value=2**31 - 1),
    key=st.none() | st.binary(max_size=600) | st.text(max_size=400).map(str.encode),
    mode=st.sampled_from(list(PartitionKeyMode)),
)
def test_partition_key_for_is_deterministic_and_always_1_to_256_chars(
    topic: str, partition: int, key: bytes | None, mode: PartitionKeyMode
):
    # GIVEN any topic, partition, key and mode
    record = KafkaRecord(topic, partition, 0, 0, "CREATE_TIME", b64(key), None)

    # WHEN the partition key is derived twice
    first = partition_key_for(record, key, mode)
    second = partition_key_for(record, key, mode)

    # THEN it is the same both times and a valid Kinesis partition key
    assert first == second
    assert 1 <= len(first) <= MAX_PARTITION_KEY_CHARS


@settings(deadline=None)
@given(
    key=st.binary(min_size=1, max_size=600) | st.text(min_size=1, max_size=400).map(str.encode),
    topics=st.tuples(_kafka_topics, _kafka_topics),
    partitions=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
)
def test_partition_key_for_same_key_same_partition_key_across_partitions(
    key: bytes, topics: tuple[str, str], partitions: tuple[int, int]
):
    # GIVEN the same non-empty Kafka key on records of any two topic-partitions
    records = [
        KafkaRecord(topic, partition, 0, 0, "CREATE_TIME", b64(key), None)
        for topic, partition in zip(topics, partitions, strict=True)
    ]

    # WHEN partition keys are derived in key mode
    keys = {partition_key_for(record, key, KEY) for record in records}

    # THEN they are equal (same key -> same shard)
    assert len(keys) == 1


# -- PARTITION_KEY=header:<name> ----------------------------------------------------------

HEADER = PartitionKeyMode.HEADER


def test_partition_key_for_header_uses_its_first_value():
    # GIVEN a record whose tenant header appears twice
    record = _record(b"k", headers=[("trace", b"t1"), ("tenant", b"acme"), ("tenant", b"other")])
    # WHEN the partition key comes from the tenant header
    # THEN it is the first tenant value, not the Kafka key
    assert partition_key_for(record, b"k", HEADER, "tenant") == "acme"


@pytest.mark.parametrize(
    "headers", [[], [("trace", b"t1")], [("tenant", b"")]], ids=["none", "other", "empty"]
)
def test_partition_key_for_header_missing_or_empty_falls_back_to_the_key_rule(
    headers: list[tuple[str, bytes]],
):
    record = _record(b"k", headers=headers)
    assert partition_key_for(record, b"k", HEADER, "tenant") == "k"
    null_key = _record(None, headers=headers)
    assert partition_key_for(null_key, None, HEADER, "tenant") == "orders-3"


def test_partition_key_for_header_value_follows_the_key_size_and_encoding_rules():
    long_value, binary = b"x" * 300, b"\xff\xfe"
    record = _record(b"k", headers=[("tenant", long_value)])
    assert (
        partition_key_for(record, b"k", HEADER, "tenant") == hashlib.sha256(long_value).hexdigest()
    )
    record = _record(b"k", headers=[("tenant", binary)])
    assert partition_key_for(record, b"k", HEADER, "tenant") == hashlib.sha256(binary).hexdigest()


def test_encode_record_header_key_also_places_an_undecodable_record():
    # GIVEN a record whose Kafka key is not base64 but whose tenant header is set
    record = _record(b"k", headers=[("tenant", b"acme")])._replace(key_b64="not base64!")
    # WHEN encoded with the header rule
    unwritable = encode_record(
        record,
        record_format=RecordFormat.RAW,
        partition_key_mode=HEADER,
        partition_key_header="tenant",
        max_record_bytes=DEFAULT_MAX_RECORD_BYTES,
    )
    # THEN it is dead-lettered in the tenant's order, not the topic-partition's
    assert isinstance(unwritable, UnwritableRecord)
    assert unwritable.partition_key == "acme"


# -- base64 -------------------------------------------------------------------------------


def test_decode_base64_valid_and_null():
    # GIVEN / WHEN / THEN valid text decodes and None stays None
    assert decode_base64("aGk=", field="key") == b"hi"
    assert decode_base64("", field="key") == b""
    assert decode_base64(None, field="value") is None


@pytest.mark.parametrize("text", ["not base64!", "QQ", "QQ=\n", "aGk=aGk=", "é", "a b="])
def test_decode_base64_invalid_names_the_field(text: str):
    # GIVEN / WHEN / THEN undecodable text raises, naming the field
    with pytest.raises(UnwritableRecordError, match="record value is not valid base64"):
        decode_base64(text, field="value")


def _with_raw(field: str, text: str, key: bytes | None = b"k") -> KafkaRecord:
    raw = kafka_record("t", 0, 1, key=key, value=b"v")
    raw[field] = text
    [batch] = parse_event(msk_event([raw])).partitions
    return batch.records[0]


@pytest.mark.parametrize("record_format", list(RecordFormat))
def test_encode_record_undecodable_key_is_unwritable(record_format: RecordFormat):
    # GIVEN a record whose key is not base64
    record = _with_raw("key", "%%%")

    # WHEN it is encoded
    unwritable = _unwritable(record, record_format=record_format)

    # THEN it is unwritable, the reason names the key, and it queues under the topic-partition
    assert "key" in unwritable.reason
    assert "base64" in unwritable.reason
    assert unwritable.partition_key == "t-0"
    assert unwritable.offset == 1
    assert unwritable.source is record


@pytest.mark.parametrize("record_format", list(RecordFormat))
def test_encode_record_undecodable_value_is_unwritable_under_its_key(
    record_format: RecordFormat,
):
    # GIVEN a record with a good key and a value that is not base64
    record = _with_raw("value", "not base64!", key=b"user-9")

    # WHEN it is encoded
    unwritable = _unwritable(record, record_format=record_format)

    # THEN the reason names the value and the record keeps its key's partition key (order)
    assert "value" in unwritable.reason
    assert "base64" in unwritable.reason
    assert unwritable.partition_key == "user-9"


# -- sizes --------------------------------------------------------------------------------


def test_encode_record_size_counts_utf8_partition_key_bytes():
    # GIVEN a key of ten two-byte characters and a 5-byte value
    encoded = _encoded(_record(key=("é" * 10).encode(), value=b"12345"))

    # THEN size is data bytes plus partition key UTF-8 bytes
    assert encoded.size == 5 + 20


def test_encode_record_raw_exactly_at_limit_is_accepted():
    # GIVEN a raw record whose value + UTF-8 partition key is exactly MAX_RECORD_BYTES
    key = "ключ".encode()  # 4 characters, 8 bytes
    limit = 2048
    record = _record(key=key, value=b"x" * (limit - len(key)))

    # WHEN it is encoded
    encoded = _encode(record, max_record_bytes=limit)

    # THEN it is accepted at exactly the limit
    assert isinstance(encoded, EncodedRecord)
    assert encoded.size == limit


@pytest.mark.parametrize("record_format", list(RecordFormat))
def test_encode_record_exactly_at_limit_is_accepted(record_format: RecordFormat):
    # GIVEN a record and its encoded size
    record = _record(key="ключ".encode(), value=b"x" * 1000, headers=[("h", b"1")])
    size = _encoded(record, record_format=record_format).size

    # WHEN MAX_RECORD_BYTES equals that size
    encoded = _encode(record, record_format=record_format, max_record_bytes=size)

    # THEN it is accepted
    assert isinstance(encoded, EncodedRecord)
    assert encoded.size == size


@pytest.mark.parametrize("record_format", list(RecordFormat))
def test_encode_record_one_byte_over_limit_is_unwritable(record_format: RecordFormat):
    # GIVEN a record of some encoded size
    record = _record(key="ключ".encode(), value=b"x" * 1000)
    size = _encoded(record, record_format=record_format).size

    # WHEN MAX_RECORD_BYTES is one byte less
    unwritable = _unwritable(record, record_format=record_format, max_record_bytes=size - 1)

    # THEN it is unwritable with a reason giving the size and the limit
    assert f"{size} bytes" in unwritable.reason
    assert f"MAX_RECORD_BYTES={size - 1}" in unwritable.reason
    assert unwritable.partition_key == "ключ"


def test_encode_record_partition_key_alone_can_push_over_limit():
    # GIVEN a value of exactly the limit and a non-empty partition key
    record = _record(key=b"k", value=b"x" * 1024)

    # WHEN it is encoded with MAX_RECORD_BYTES equal to the value length
    result = _encode(record, max_record_bytes=1024)

    # THEN the partition key byte makes it unwritable
    assert isinstance(result, UnwritableRecord)


# -- envelope round trip ------------------------------------------------------------------


@settings(deadline=None)
@given(
    topic=_kafka_topics,
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp=st.integers(-1, 2**62),
    timestamp_type=st.sampled_from(["CREATE_TIME", "LOG_APPEND_TIME", "NO_TIMESTAMP_TYPE"]),
    key=st.none() | st.binary(max_size=64),
    value=st.none() | st.binary(max_size=256),
    headers=st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=16)), max_size=5),
    mode=st.sampled_from(PartitionKeyMode),
)
def test_envelope_round_trips_through_consumer_envelope(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    timestamp_type: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    mode: PartitionKeyMode,
):
    # GIVEN any Kafka record
    record = KafkaRecord(
        topic, partition, offset, timestamp, timestamp_type, b64(key), b64(value), tuple(headers)
    )

    # WHEN it is encoded as an envelope, in any partition-key mode, and read back
    encoded = _encoded(
        record, record_format=RecordFormat.ENVELOPE, max_record_bytes=10**7, mode=mode
    )
    envelope = Envelope.from_bytes(encoded.data)

    # THEN every field comes back, and key, value and header bytes decode to the originals
    assert (envelope.topic, envelope.partition, envelope.offset) == (topic, partition, offset)
    assert (envelope.timestamp, envelope.timestamp_type) == (timestamp, timestamp_type)
    assert envelope.key == b64(key)
    assert envelope.value == b64(value)
    assert [(name, base64.b64decode(data)) for name, data in envelope.headers] == headers
    # AND it says whether its order is kept per Kafka key or per header-derived partition key
    header_keyed = mode is PartitionKeyMode.HEADER
    assert envelope.partition_key_from is (PartitionKeyMode.HEADER if header_keyed else None)


def _one_document_envelope(record: KafkaRecord, mode: PartitionKeyMode) -> bytes:
    """The envelope as one json.dumps of the whole document (what envelope_bytes writes in
    parts)."""
    document: dict[str, Any] = {
        **record_members(record),
        "headers": [
            {"name": name, "value": base64.b64encode(value).decode("ascii")}
            for name, value in record.headers
        ],
        **schema_members(record),
    }
    if mode is PartitionKeyMode.HEADER:
        document["partitionKeyFrom"] = "header"
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


_schemas = st.none() | st.builds(SchemaMetadata, st.text(max_size=6), st.text(max_size=6))


@settings(deadline=None)
@given(
    topic=_kafka_topics,
    timestamp_type=st.text(max_size=8),
    key=st.none() | st.binary(max_size=16),
    value=st.none() | st.binary(max_size=16),
    # Names with quotes, backslashes, controls and non-ASCII; values around the cache's limit,
    # and the same header many times (written from the cache after the first).
    headers=st.lists(
        st.tuples(
            st.text(max_size=6) | st.sampled_from(['"', "\\", "\n", "é", "h"]),
            st.binary(max_size=HEADER_CACHE_VALUE_BYTES + 2),
        ),
        max_size=6,
    ).map(lambda headers: headers * 2),
    key_schema=_schemas,
    value_schema=_schemas,
    mode=st.sampled_from(PartitionKeyMode),
)
def test_envelope_bytes_are_those_of_the_whole_document_written_at_once(
    topic: str,
    timestamp_type: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    key_schema: SchemaMetadata | None,
    value_schema: SchemaMetadata | None,
    mode: PartitionKeyMode,
):
    # GIVEN any record, with any headers and schema metadata
    record = KafkaRecord(
        topic,
        0,
        7,
        1,
        timestamp_type,
        b64(key),
        b64(value),
        tuple(headers),
        key_schema,
        value_schema,
    )
    # WHEN it is written as an envelope (twice: the second time from the header cache)
    written = [envelope_bytes(record, mode) for _ in range(2)]
    # THEN the bytes are exactly json.dumps of the whole document, compact
    assert written == [_one_document_envelope(record, mode)] * 2


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    event=kafka_events(damage_rate=40),
    record_format=st.sampled_from(RecordFormat),
    mode=st.sampled_from(PartitionKeyMode),
    max_record_bytes=st.sampled_from([MIN_RECORD_BYTES, DEFAULT_MAX_RECORD_BYTES]),
    aggregation=st.sampled_from(Aggregation),
)
@example(
    event=FOUND_BY_FUZZING[0],
    record_format=RecordFormat.RAW,
    mode=PartitionKeyMode.PARTITION,
    max_record_bytes=DEFAULT_MAX_RECORD_BYTES,
    aggregation=Aggregation.ON,
)
def test_encode_record_never_raises_for_a_parsed_event(
    event: Any,
    record_format: RecordFormat,
    mode: PartitionKeyMode,
    max_record_bytes: int,
    aggregation: Aggregation,
):
    # GIVEN any event that parsing accepts (damaged ones are refused before this point)
    try:
        parsed = parse_event(event)
    except MalformedEventError:
        return

    # WHEN each record is encoded, in every format and partition-key mode
    for batch in parsed.partitions:
        for record in batch.records:
            result = encode_record(
                record,
                record_format=record_format,
                partition_key_mode=mode,
                max_record_bytes=max_record_bytes,
                aggregation=aggregation,
            )

            # THEN it becomes a Kinesis record (also as an aggregate) or a dead letter, never
            # an exception after other records were sent
            if isinstance(result, EncodedRecord):
                assert encode_aggregate(result.partition_key, [result.data])
                assert result.size == len(result.data) + len(result.partition_key.encode())
            else:
                assert isinstance(result, UnwritableRecord)
                assert json.loads(dead_letter_document(result, parsed.event_source_arn))


# -- schema registry records (docs/schema-registry.md) --------------------------------------


def _registry_json_records() -> tuple[KafkaRecord, ...]:
    """The sample event of a mapping that validates key and value and delivers JSON."""
    [batch] = parse_event(load_event("msk_registry_json_event.json")).partitions
    return batch.records


def test_raw_registry_json_record_is_the_json_text():
    # GIVEN a record whose Avro value the mapping's schema registry delivered as JSON
    record = _registry_json_records()[0]

    # WHEN it is encoded raw
    encoded = _encoded(record)

    # THEN the Kinesis record holds that JSON text, exactly as delivered, and no metadata
    assert encoded.data == base64.b64decode(record.value_b64 or "")
    assert json.loads(encoded.data) == {"orderId": "order-1", "amount": 12.5, "currency": "EUR"}


def test_partition_key_of_registry_json_key_is_its_json_text():
    # GIVEN a record whose Avro string key was delivered as JSON (a JSON string, with quotes)
    first, second = _registry_json_records()

    # WHEN both are encoded
    keys = [_encoded(record).partition_key for record in (first, second)]

    # THEN the partition key is the JSON text: stable per Kafka key, distinct across keys
    assert keys == ['"order-1"', '"order-2"']


def test_envelope_registry_record_names_its_schemas():
    # GIVEN a record validated (key and value) by the mapping's schema registry
    record = _registry_json_records()[0]

    # WHEN it is encoded as an envelope
    document = json.loads(_encoded(record, record_format=RecordFormat.ENVELOPE).data)

    # THEN key and value are the delivered bytes in base64 (as for any record), and the
    # schema metadata follows, spelled as in the event
    assert set(document) == ENVELOPE_FIELDS | {"keySchemaMetadata", "valueSchemaMetadata"}
    assert (document["key"], document["value"]) == (record.key_b64, record.value_b64)
    assert document["keySchemaMetadata"] == {"dataFormat": "AVRO", "schemaId": "1"}
    assert document["valueSchemaMetadata"] == {"dataFormat": "AVRO", "schemaId": "2"}


def test_envelope_registry_source_record_value_schema_only():
    # GIVEN a Protobuf record validated (value only) and delivered in its source format
    [batch] = parse_event(load_event("msk_registry_source_event.json")).partitions

    # WHEN it is encoded as an envelope and read back as a consumer would
    envelope = Envelope.from_bytes(envelope_bytes(batch.records[0]))

    # THEN the value is the source bytes and only the value's schema is named
    assert base64.b64decode(envelope.value or "") == b"\x0a\x07order-1\x10\x07"
    assert envelope.key_schema is None
    assert envelope.value_schema == ("PROTOBUF", "b7b4a7f0-9c2e-4f4f-8f3a-2d1e5c6b7a80")


def test_dead_letter_of_registry_record_keeps_its_schema_metadata():
    # GIVEN a registry record too large for the stream
    record = _registry_json_records()[1]

    # WHEN it becomes a dead letter
    unwritable = _unwritable(record, max_record_bytes=16)
    document = json.loads(dead_letter_document(unwritable, None))

    # THEN the document carries the schema metadata as the event did
    assert document["keySchemaMetadata"] == {"dataFormat": "AVRO", "schemaId": "1"}
    assert document["valueSchemaMetadata"] == {"dataFormat": "AVRO", "schemaId": "2"}
