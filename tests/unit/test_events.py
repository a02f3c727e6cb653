"""Unit tests for events.parse_event: both Kafka event sources, odd topics, malformed input."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.errors import MalformedEventError
from msk_kinesis_sink.events import (
    MAX_OFFSET,
    MAX_PARTITION,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    NO_TIMESTAMP,
    NO_TIMESTAMP_TYPE,
    KafkaRecord,
    SchemaMetadata,
    parse_event,
)
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import RecordFormat, Settings
from tests.factories import (
    MSK_CLUSTER_ARN,
    b64,
    kafka_record,
    load_event,
    msk_event,
    self_managed_event,
)
from tests.fakes import FakeContext, FakeKinesis
from tests.strategies import FOUND_BY_FUZZING, FUZZ_EXAMPLES, json_values, kafka_events

HEADER_VALUE = b"headerValue"


def _only_record(event: dict[str, Any]) -> KafkaRecord:
    parsed = parse_event(event)
    assert len(parsed.partitions) == 1
    assert len(parsed.partitions[0].records) == 1
    return parsed.partitions[0].records[0]


def _first_raw(event: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = next(iter(event["records"].values()))[0]
    return raw


# -- the documented sample events ---------------------------------------------------------


def test_parse_event_documented_msk_sample():
    # GIVEN the MSK event exactly as AWS documents it
    event = load_event("msk_event.json")

    # WHEN it is parsed
    parsed = parse_event(event)

    # THEN every field of the one record survives, key and value still base64
    assert parsed.event_source == "aws:kafka"
    assert parsed.event_source_arn == MSK_CLUSTER_ARN
    assert parsed.record_count == 1
    [batch] = parsed.partitions
    assert (batch.topic, batch.partition, batch.topic_partition) == ("mytopic", 0, "mytopic-0")
    assert batch.records == (
        KafkaRecord(
            topic="mytopic",
            partition=0,
            offset=15,
            timestamp=1545084650987,
            timestamp_type="CREATE_TIME",
            key_b64="abcDEFghiJKLmnoPQRstuVWXyz1234==",
            value_b64="SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            headers=(("headerKey", HEADER_VALUE),),
        ),
    )


def test_parse_event_self_managed_sample_with_string_partition():
    # GIVEN the self-managed Kafka sample, whose partitions arrive as strings
    event = load_event("self_managed_kafka_event.json")

    # WHEN it is parsed
    parsed = parse_event(event)

    # THEN partitions are integers, there is no source ARN, and the tombstone is kept as null
    assert parsed.event_source == "SelfManagedKafka"
    assert parsed.event_source_arn is None
    [batch] = parsed.partitions
    assert batch.partition == 0
    assert batch.topic_partition == "mytopic-0"
    assert [record.partition for record in batch.records] == [0, 0]
    assert [record.offset for record in batch.records] == [15, 16]
    assert batch.records[1].value_b64 is None
    assert batch.records[1].timestamp_type == "LOG_APPEND_TIME"


def test_parse_event_odd_topic_names_sample_uses_record_fields_not_group_keys():
    # GIVEN topics whose names contain '.' and '-' and even end in "-0"
    event = load_event("odd_topic_names_event.json")

    # WHEN it is parsed
    parsed = parse_event(event)

    # THEN each partition's topic and number come from the records, not from splitting the keys
    found = {
        batch.topic_partition: (batch.topic, batch.partition, [r.offset for r in batch.records])
        for batch in parsed.partitions
    }
    assert found == {
        "orders.v1-eu-0-0": ("orders.v1-eu-0", 0, [100, 101]),
        "orders.v1-eu-0-12": ("orders.v1-eu-0", 12, [7]),
        "orders.v1-eu-0": ("orders.v1-eu", 0, [3]),
    }


# -- schema registry records ---------------------------------------------------------------
# "Using schema registries with Kafka event sources in Lambda" (AWS Lambda Developer Guide):
# with a schema registry on the mapping, Lambda adds metadata about the schema to each record,
# one object per validated attribute; with EventRecordFormat JSON the validated attributes are
# deserialized to JSON, with SOURCE they keep their source format without the registry's schema
# id ("KafkaSchemaRegistryConfig", Lambda API Reference). Key and value stay base64 text either
# way; the members are keySchemaMetadata / valueSchemaMetadata = {dataFormat, schemaId}, as
# Powertools for AWS Lambda's Kafka event models read them. The samples follow that shape.


def test_parse_event_registry_json_sample_keeps_schema_metadata():
    # GIVEN an MSK event from a mapping that validates key and value (Avro) and delivers JSON
    event = load_event("msk_registry_json_event.json")

    # WHEN it is parsed
    [batch] = parse_event(event).partitions

    # THEN each record names the schemas that validated it, key and value still base64 text
    assert [(r.key_schema, r.value_schema) for r in batch.records] == [
        (SchemaMetadata("AVRO", "1"), SchemaMetadata("AVRO", "2")),
        (SchemaMetadata("AVRO", "1"), SchemaMetadata("AVRO", "2")),
    ]
    first = batch.records[0]
    assert base64.b64decode(first.key_b64 or "") == b'"order-1"'
    assert json.loads(base64.b64decode(first.value_b64 or "")) == {
        "orderId": "order-1",
        "amount": 12.5,
        "currency": "EUR",
    }


def test_parse_event_registry_source_sample_value_only():
    # GIVEN an MSK event from a mapping that validates only the value (Protobuf, Glue), SOURCE
    event = load_event("msk_registry_source_event.json")

    # WHEN it is parsed
    [record] = parse_event(event).partitions[0].records

    # THEN only the value has schema metadata; the bytes are the event's, headers kept
    assert record.key_schema is None
    assert record.value_schema == SchemaMetadata("PROTOBUF", "b7b4a7f0-9c2e-4f4f-8f3a-2d1e5c6b7a80")
    assert base64.b64decode(record.value_b64 or "") == b"\x0a\x07order-1\x10\x07"
    assert record.headers == (("tenant", b"acme"),)


def test_parse_event_registry_self_managed_json_schema_sample():
    # GIVEN a self-managed Kafka event (string partition, no key) validated against JSON Schema
    event = load_event("self_managed_registry_json_schema_event.json")

    # WHEN it is parsed
    [record] = parse_event(event).partitions[0].records

    # THEN the partition is an integer and the value's schema is named
    assert (record.partition, record.key_b64) == (1, None)
    assert record.value_schema == SchemaMetadata("JSON", "42")


@pytest.mark.parametrize("fast_path", [True, False])
def test_parse_event_schema_metadata_per_record_as_sent(fast_path: bool):
    # GIVEN records of one partition: same metadata, then none, then a new schema id, then null
    schema = ("AVRO", "1")
    event = msk_event(
        [
            kafka_record("t", 0, 1, value_schema=schema),
            kafka_record("t", 0, 2, value_schema=schema),
            kafka_record("t", 0, 3),
            kafka_record("t", 0, 4, value_schema=("AVRO", "2"), key_schema=schema),
            kafka_record("t", 0, 5, key_schema=schema),
        ]
    )
    event["records"]["t-0"][4]["valueSchemaMetadata"] = None

    # WHEN it is parsed, by the fast path or field by field
    [batch] = parse_event(event, fast_path=fast_path).partitions

    # THEN every record has exactly its own metadata
    assert [(r.key_schema, r.value_schema) for r in batch.records] == [
        (None, SchemaMetadata("AVRO", "1")),
        (None, SchemaMetadata("AVRO", "1")),
        (None, None),
        (SchemaMetadata("AVRO", "1"), SchemaMetadata("AVRO", "2")),
        (SchemaMetadata("AVRO", "1"), None),
    ]


def test_parse_event_schema_metadata_extra_members_are_ignored():
    # GIVEN metadata with a member the parser does not know (a newer mapping might add one)
    event = msk_event([kafka_record("t", 0, 1)])
    _first_raw(event)["valueSchemaMetadata"] = {
        "dataFormat": "JSON",
        "schemaId": "9",
        "schemaVersion": 3,
    }

    # WHEN it is parsed
    record = _only_record(event)

    # THEN the known members are read and the record is accepted
    assert record.value_schema == SchemaMetadata("JSON", "9")


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("field", ["keySchemaMetadata", "valueSchemaMetadata"])
@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("AVRO", "must be an object or null, got str"),
        ([], "must be an object or null, got list"),
        ({}, "has no 'dataFormat' string"),
        ({"schemaId": "1"}, "has no 'dataFormat' string"),
        ({"dataFormat": 1, "schemaId": "1"}, "has no 'dataFormat' string"),
        ({"dataFormat": "AVRO"}, "has no 'schemaId' string"),
        ({"dataFormat": "AVRO", "schemaId": 1}, "has no 'schemaId' string"),
        ({"dataFormat": "AVRO", "schemaId": "1\udc00"}, "has no 'schemaId' string"),
    ],
)
def test_parse_event_malformed_schema_metadata_is_named(
    position: int, field: str, metadata: Any, problem: str
):
    # GIVEN three records with good metadata, one of them then damaged
    event = msk_event(
        kafka_record("t", 0, o, key_schema=("AVRO", "1"), value_schema=("AVRO", "1"))
        for o in range(3)
    )
    event["records"]["t-0"][position][field] = metadata

    # WHEN / THEN the event is refused, naming the record, the field and the problem
    with pytest.raises(MalformedEventError) as raised:
        parse_event(event)
    assert str(raised.value) == f"records['t-0'][{position}] field '{field}' {problem}"


# -- sources and shapes -------------------------------------------------------------------


def test_parse_event_missing_event_source_is_rejected():
    # GIVEN an event without eventSource (MSK and self-managed Kafka events always carry one)
    event = msk_event([kafka_record("t", 0, 1)])
    del event["eventSource"]

    # WHEN / THEN it is rejected, naming the missing field and the accepted sources
    with pytest.raises(MalformedEventError, match="no 'eventSource'") as raised:
        parse_event(event)
    assert "aws:kafka" in str(raised.value)
    assert "SelfManagedKafka" in str(raised.value)


def test_parse_event_foreign_event_source_is_rejected():
    # GIVEN an SQS event source with a records object
    event = msk_event([kafka_record("t", 0, 1)])
    event["eventSource"] = "aws:sqs"

    # WHEN / THEN it is rejected, naming the source and the accepted ones
    with pytest.raises(MalformedEventError, match="'aws:sqs'") as raised:
        parse_event(event)
    assert "aws:kafka" in str(raised.value)
    assert "SelfManagedKafka" in str(raised.value)


def test_parse_event_event_source_of_wrong_type_is_malformed():
    # GIVEN an eventSource that is a list instead of a string
    event = msk_event([kafka_record("t", 0, 1)])
    event["eventSource"] = ["aws:kafka"]

    # WHEN / THEN the event is reported as malformed
    with pytest.raises(MalformedEventError, match="eventSource"):
        parse_event(event)


@pytest.mark.parametrize("event", [None, [], "records", 42])
def test_parse_event_non_object_event_is_rejected(event: Any):
    # GIVEN / WHEN / THEN an event that is not a JSON object is rejected with its type named
    with pytest.raises(MalformedEventError, match="must be a JSON object"):
        parse_event(event)


@pytest.mark.parametrize("records", [None, [], "x", 3])
def test_parse_event_without_records_object_is_rejected(records: Any):
    # GIVEN an event whose records field is missing or not an object
    event = msk_event([])
    if records is None:
        del event["records"]
    else:
        event["records"] = records

    # WHEN / THEN the message names the missing records object
    with pytest.raises(MalformedEventError, match="'records' object"):
        parse_event(event)


def test_parse_event_empty_records_object_has_no_partitions():
    # GIVEN an event with an empty records object
    event = msk_event([])

    # WHEN it is parsed
    parsed = parse_event(event)

    # THEN there is nothing to do
    assert parsed.partitions == ()
    assert parsed.record_count == 0


def test_parse_event_empty_group_is_skipped():
    # GIVEN one partition with records and one empty list
    event = msk_event([kafka_record("t", 0, 1)])
    event["records"]["t-1"] = []

    # WHEN it is parsed
    parsed = parse_event(event)

    # THEN only the partition with records remains
    assert [batch.topic_partition for batch in parsed.partitions] == ["t-0"]


@pytest.mark.parametrize("group", [{"a": 1}, "records", 5])
def test_parse_event_group_that_is_not_a_list_is_rejected(group: Any):
    # GIVEN a records group that is not a list
    event = msk_event([])
    event["records"]["t-0"] = group

    # WHEN / THEN the message names the group
    with pytest.raises(MalformedEventError, match=r"records\['t-0'\] must be a list"):
        parse_event(event)


def test_parse_event_record_that_is_not_an_object_is_rejected():
    # GIVEN a group holding a string instead of a record object
    event = msk_event([])
    event["records"]["t-0"] = ["oops"]

    # WHEN / THEN the message names the record's position and what it is
    with pytest.raises(MalformedEventError, match=r"records\['t-0'\]\[0\] must be an object"):
        parse_event(event)


def test_parse_event_several_partitions_and_topics():
    # GIVEN records of two topics and three partitions, interleaved
    records = [
        kafka_record("a", 0, 5),
        kafka_record("b", 3, 9),
        kafka_record("a", 1, 7),
        kafka_record("a", 0, 6),
    ]

    # WHEN they are parsed
    parsed = parse_event(msk_event(records))

    # THEN each topic-partition is a batch of its own records
    assert {b.topic_partition: [r.offset for r in b.records] for b in parsed.partitions} == {
        "a-0": [5, 6],
        "a-1": [7],
        "b-3": [9],
    }
    assert parsed.record_count == 4


# -- topic names and the group key --------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "partition"),
    [
        ("orders.v1-eu-0", 0),
        ("orders.v1-eu-0", 12),
        ("a-b-c", 7),
        ("with.dots.only", 3),
        ("-", 0),
        ("x" * 249, 2),
    ],
)
def test_parse_event_topic_names_with_dashes_and_dots(topic: str, partition: int):
    # GIVEN a topic whose name contains '-' and/or '.'
    event = msk_event([kafka_record(topic, partition, 42)])

    # WHEN it is parsed
    record = _only_record(event)

    # THEN topic and partition are taken from the record fields
    assert (record.topic, record.partition) == (topic, partition)
    assert record.topic_partition == f"{topic}-{partition}"


@pytest.mark.parametrize("group_key", ["t-1", "t", "t-00", "T-0", "t-0 "])
def test_parse_event_group_key_must_equal_topic_dash_partition(group_key: str):
    # GIVEN a record of t/0 filed under another key
    event = msk_event([])
    event["records"][group_key] = [kafka_record("t", 0, 1)]

    # WHEN / THEN the mismatch is reported with topic, partition and the key
    with pytest.raises(MalformedEventError, match=r"topic 't' partition 0.*records key"):
        parse_event(event)


def test_parse_event_record_of_another_topic_in_a_group_is_rejected():
    # GIVEN a group whose second record belongs to a different topic
    event = msk_event([kafka_record("t", 0, 1)])
    event["records"]["t-0"].append(kafka_record("u", 0, 2))

    # WHEN / THEN the second record is named
    with pytest.raises(MalformedEventError, match=r"records\['t-0'\]\[1\]"):
        parse_event(event)


# -- required and typed fields ------------------------------------------------------------


@pytest.mark.parametrize("field", ["topic", "partition", "offset"])
def test_parse_event_missing_required_field_is_named(field: str):
    # GIVEN a record without one required field
    event = msk_event([kafka_record("t", 0, 1)])
    del _first_raw(event)[field]

    # WHEN / THEN the message names the field and the record
    with pytest.raises(MalformedEventError, match=rf"records\['t-0'\]\[0\].*'{field}'"):
        parse_event(event)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("topic", 5),
        ("topic", ""),
        ("topic", None),
        ("partition", "zero"),
        ("partition", 1.0),
        ("partition", True),
        ("partition", [0]),
        ("offset", "15a"),
        ("offset", 15.5),
        ("offset", False),
        ("offset", {"n": 1}),
        ("timestamp", "yesterday"),
        ("timestamp", 1.5),
        ("timestampType", 1),
        ("key", 123),
        ("key", [1, 2]),
        ("value", b"raw bytes"),
        ("value", {"a": 1}),
        ("headers", "h"),
        ("headers", {"h": [1]}),
    ],
)
def test_parse_event_wrong_field_type_is_named(field: str, value: Any):
    # GIVEN a record with one field of the wrong type
    event = msk_event([kafka_record("t", 0, 1)])
    _first_raw(event)[field] = value

    # WHEN / THEN the message names the field
    with pytest.raises(MalformedEventError, match=rf"'{field}'"):
        parse_event(event)


@pytest.mark.parametrize(
    ("partition", "offset"),
    [("0", "15"), (" 0", "15 "), ("0", 15), (0, "15"), ("00", "0" * 5_000 + "15")],
)
def test_parse_event_numeric_strings_are_integers(partition: Any, offset: Any):
    # GIVEN partition and/or offset as decimal strings (self-managed Kafka)
    event = self_managed_event([kafka_record("t", 0, 15)])
    raw = _first_raw(event)
    raw["partition"], raw["offset"] = partition, offset

    # WHEN it is parsed
    record = _only_record(event)

    # THEN both are integers
    assert (record.partition, record.offset) == (0, 15)


@pytest.mark.parametrize("offset", ["--1", "²"])
def test_parse_event_non_decimal_offset_string_is_malformed(offset: str):
    # GIVEN an offset string that only looks numeric
    event = self_managed_event([kafka_record("t", 0, 1)])
    _first_raw(event)["offset"] = offset

    # WHEN / THEN it is reported as malformed, naming the field
    with pytest.raises(MalformedEventError, match="'offset'"):
        parse_event(event)


def test_parse_event_optional_fields_absent():
    # GIVEN a record with only topic, partition and offset
    event = msk_event([])
    event["records"]["t-0"] = [{"topic": "t", "partition": 0, "offset": 3}]

    # WHEN it is parsed
    record = _only_record(event)

    # THEN the Kafka "no timestamp" conventions apply and key, value and headers are empty
    assert record.timestamp == NO_TIMESTAMP
    assert record.timestamp_type == NO_TIMESTAMP_TYPE
    assert record.key_b64 is None
    assert record.value_b64 is None
    assert record.headers == ()


@pytest.mark.parametrize("absent", [True, False])
def test_parse_event_tombstone_value_is_none(absent: bool):
    # GIVEN a tombstone: value null or missing, key present
    raw = kafka_record("t", 0, 1, key=b"k", value=None)
    if absent:
        del raw["value"]

    # WHEN it is parsed
    record = _only_record(msk_event([raw]))

    # THEN the value is None and the key is kept
    assert record.value_b64 is None
    assert record.key_b64 == b64(b"k")


def test_parse_event_empty_value_is_not_a_tombstone():
    # GIVEN a record whose value is the empty string (zero bytes)
    record = _only_record(msk_event([kafka_record("t", 0, 1, value=b"")]))

    # THEN it stays an empty value, distinct from null
    assert record.value_b64 == ""


def test_parse_event_keeps_base64_text_undecoded():
    # GIVEN a record whose key is not valid base64
    raw = kafka_record("t", 0, 1)
    raw["key"] = "not base64!"

    # WHEN it is parsed
    record = _only_record(msk_event([raw]))

    # THEN parsing does not judge it: encoding decides whether the record is writable
    assert record.key_b64 == "not base64!"


# -- headers ------------------------------------------------------------------------------


def test_parse_event_headers_in_order_with_duplicates():
    # GIVEN headers with a repeated name
    headers = [("trace", b"1"), ("type", b"order"), ("trace", b"2"), ("empty", b"")]
    record = _only_record(msk_event([kafka_record("t", 0, 1, headers=headers)]))

    # THEN every header is kept, in order, duplicates included
    assert record.headers == tuple(headers)


def test_parse_event_signed_header_bytes_keep_their_bits():
    # GIVEN a header whose bytes a Java producer rendered as signed values
    raw = kafka_record("t", 0, 1)
    raw["headers"] = [{"sig": [-128, -1, 0, 127, 255]}]

    # WHEN it is parsed
    record = _only_record(msk_event([raw]))

    # THEN -128 is 0x80 and -1 is 0xFF
    assert record.headers == (("sig", bytes([0x80, 0xFF, 0x00, 0x7F, 0xFF])),)


def test_parse_event_header_entry_with_several_names_keeps_their_order():
    # GIVEN one header object holding two names
    raw = kafka_record("t", 0, 1)
    raw["headers"] = [{"a": [1]}, {"b": [2], "c": [3]}]

    # WHEN it is parsed
    record = _only_record(msk_event([raw]))

    # THEN all three headers come out in document order
    assert record.headers == (("a", b"\x01"), ("b", b"\x02"), ("c", b"\x03"))


def test_parse_event_null_headers_are_no_headers():
    # GIVEN headers: null
    raw = kafka_record("t", 0, 1)
    raw["headers"] = None

    # THEN the record has no headers
    assert _only_record(msk_event([raw])).headers == ()


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (["h"], "header 0 must be an object"),
        ([{"a": [1]}, 7], "header 1 must be an object"),
        ([{"h": "abc"}], "header 0 must map to a byte list"),
        ([{"h": 5}], "header 0 must map to a byte list"),
        ([{"h": [1, "x"]}], "header 0 holds a value that is not a byte"),
        ([{"h": [1.5]}], "header 0 holds a value that is not a byte"),
        ([{"h": [None]}], "header 0 holds a value that is not a byte"),
    ],
)
def test_parse_event_malformed_headers_are_named(headers: Any, problem: str):
    # GIVEN a record with malformed headers
    raw = kafka_record("t", 0, 1)
    raw["headers"] = headers

    # WHEN / THEN the message says which header and what is wrong
    with pytest.raises(MalformedEventError, match=problem):
        parse_event(msk_event([raw]))


@pytest.mark.parametrize("value", [256, 300, -129])
def test_parse_event_header_value_outside_byte_range_is_malformed(value: int):
    # GIVEN a header "byte" that no signed or unsigned byte can hold
    raw = kafka_record("t", 0, 1)
    raw["headers"] = [{"h": [value]}]

    # WHEN / THEN it is rejected instead of being wrapped into another byte
    with pytest.raises(MalformedEventError, match="header 0"):
        parse_event(msk_event([raw]))


# -- ordering -----------------------------------------------------------------------------


def test_parse_event_sorts_records_by_offset():
    # GIVEN a partition whose records arrive out of offset order
    records = [kafka_record("t", 0, offset) for offset in (12, 10, 11, 2, 100)]

    # WHEN it is parsed
    [batch] = parse_event(msk_event(records)).partitions

    # THEN the records are in ascending offset order
    assert [record.offset for record in batch.records] == [2, 10, 11, 12, 100]


def test_parse_event_sorts_numerically_not_as_text():
    # GIVEN offsets given as strings that sort differently as text
    records = [kafka_record("t", 0, 0) for _ in range(3)]
    for record, offset in zip(records, ["10", "9", "100"], strict=True):
        record["offset"] = offset

    # WHEN it is parsed
    [batch] = parse_event(self_managed_event(records)).partitions

    # THEN offsets are compared as numbers
    assert [record.offset for record in batch.records] == [9, 10, 100]


@pytest.mark.parametrize("second", [5, "5"])
def test_parse_event_duplicate_offset_is_rejected(second: Any):
    # GIVEN a partition holding offset 5 twice
    records = [kafka_record("t", 0, 5), kafka_record("t", 0, 6), kafka_record("t", 0, 0)]
    records[2]["offset"] = second

    # WHEN / THEN the repeated offset is named
    with pytest.raises(
        MalformedEventError, match=r"records\['t-0'\] holds offset 5 more than once"
    ):
        parse_event(msk_event(records))


def test_parse_event_does_not_modify_its_input():
    # GIVEN an event with unsorted records
    event = msk_event([kafka_record("t", 0, 2), kafka_record("t", 0, 1)])
    before = copy.deepcopy(event)

    # WHEN it is parsed
    parse_event(event)

    # THEN the event is unchanged
    assert event == before


_topics = st.text(alphabet="abc.-_0123456789", min_size=1, max_size=12)


@settings(deadline=None)
@given(
    partitions=st.dictionaries(
        keys=st.tuples(_topics, st.integers(0, 20)),
        values=st.sets(st.integers(0, 10**12), min_size=1, max_size=8),
        max_size=6,
    ),
    seed=st.randoms(use_true_random=False),
)
def test_parse_event_groups_and_orders_any_batch(
    partitions: dict[tuple[str, int], set[int]], seed: Any
):
    # GIVEN records of any topics (with '.', '-', trailing digits) and partitions, shuffled
    records = [
        kafka_record(topic, partition, offset, key=str(offset).encode(), value=None)
        for (topic, partition), offsets in partitions.items()
        for offset in offsets
    ]
    seed.shuffle(records)
    event = msk_event(records)
    # "<topic>-<partition>" of two different pairs may coincide only if the pairs are equal
    expected = {f"{t}-{p}": (t, p, sorted(o)) for (t, p), o in partitions.items()}
    if len(expected) != len(partitions):
        return

    # WHEN the event is parsed
    parsed = parse_event(event)

    # THEN every partition holds its own records in ascending offset order, nothing lost
    found = {
        batch.topic_partition: (batch.topic, batch.partition, [r.offset for r in batch.records])
        for batch in parsed.partitions
    }
    assert found == expected
    assert parsed.record_count == len(records)
    for batch in parsed.partitions:
        assert all(r.key_b64 == b64(str(r.offset).encode()) for r in batch.records)
        assert all(r.value_b64 is None for r in batch.records)


# -- strict: everything checked before anything is sent -----------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("partition", -1),
        ("partition", "-2"),
        ("partition", MAX_PARTITION + 1),
        ("offset", -1),
        ("offset", " -5 "),
        ("offset", MAX_OFFSET + 1),
        ("offset", str(MAX_OFFSET + 1)),
        ("timestamp", MAX_TIMESTAMP + 1),
        ("timestamp", MIN_TIMESTAMP - 1),
    ],
)
def test_parse_event_number_outside_kafka_range_is_malformed(field: str, value: Any):
    # GIVEN a partition, offset or timestamp that no Kafka record can have
    event = self_managed_event([kafka_record("t", 0, 1)])
    _first_raw(event)[field] = value

    # WHEN / THEN it is rejected, naming the field and its range
    with pytest.raises(MalformedEventError, match=rf"field '{field}' is .* outside -?\d+\.\.\d+"):
        parse_event(event)


@pytest.mark.parametrize("field", ["partition", "offset", "timestamp"])
@pytest.mark.parametrize("digits", [20, 4_301, 50_000])
def test_parse_event_integer_string_of_many_digits_is_malformed(field: str, digits: int):
    # GIVEN a decimal string longer than any int64 (int() fails past 4,300 digits)
    event = self_managed_event([kafka_record("t", 0, 1)])
    _first_raw(event)[field] = "1" * digits

    # WHEN / THEN it is a MalformedEventError naming the field, not a bare ValueError
    with pytest.raises(MalformedEventError, match=rf"field '{field}' has {digits} digits"):
        parse_event(event)


@pytest.mark.parametrize("as_text", [False, True])
def test_parse_event_kafka_range_bounds_are_accepted(as_text: bool):
    # GIVEN the highest partition and offset Kafka allows, and the int64 timestamp bounds
    def shown(number: int) -> Any:
        return f"000{number}" if as_text else number

    event = self_managed_event(
        [
            kafka_record("t", MAX_PARTITION, 0, timestamp=MIN_TIMESTAMP),
            kafka_record("t", MAX_PARTITION, 1, timestamp=MAX_TIMESTAMP),
        ]
    )
    later = event["records"][f"t-{MAX_PARTITION}"][1]
    later["offset"], later["partition"] = shown(MAX_OFFSET), shown(MAX_PARTITION)

    # WHEN they are parsed
    [batch] = parse_event(event).partitions

    # THEN they are read as they are
    assert batch.partition == MAX_PARTITION
    assert [(r.offset, r.timestamp) for r in batch.records] == [
        (0, MIN_TIMESTAMP),
        (MAX_OFFSET, MAX_TIMESTAMP),
    ]


def test_parse_event_negative_partitions_can_not_mix_groups():
    # GIVEN records of topic "a-1" partition -2 filed under "a-1--2", where topic "a-1-"
    # partition 2 would be filed too
    records = [kafka_record("a-1", -2, 1), kafka_record("a-1-", 2, 2)]
    event = msk_event([])
    event["records"]["a-1--2"] = records

    # WHEN / THEN the negative partition is refused before the group could hold both
    with pytest.raises(MalformedEventError, match="field 'partition' is -2"):
        parse_event(event)


@pytest.mark.parametrize("position", [0, 1, 2])
@pytest.mark.parametrize("headers", [{}, "", 0, False, "h", {"h": [1]}, [1], [[]]])
def test_parse_event_wrongly_shaped_headers_are_malformed_on_any_record(
    headers: Any, position: int
):
    # GIVEN a group whose record at `position` has headers of the wrong shape
    records = [kafka_record("t", 0, offset) for offset in range(3)]
    records[position]["headers"] = headers

    # WHEN / THEN the record is named, whether it is the first of its group or a later one
    with pytest.raises(MalformedEventError, match=rf"records\['t-0'\]\[{position}\] .*header"):
        parse_event(msk_event(records))


@pytest.mark.parametrize("position", [0, 2])
def test_parse_event_header_name_that_is_not_unicode_is_malformed_and_not_quoted(position: int):
    # GIVEN a header name holding a lone surrogate (UTF-8 can not encode it)
    records = [kafka_record("t", 0, offset) for offset in range(3)]
    records[position]["headers"] = [{"ok": [1]}, {"secret-name\ud800": [1]}]

    # WHEN / THEN it is rejected, naming the header, without quoting the (customer) name
    with pytest.raises(MalformedEventError, match=r"header 1 has a name that is not") as raised:
        parse_event(msk_event(records))
    assert "secret" not in str(raised.value)


def test_parse_event_topic_that_is_not_unicode_is_malformed():
    # GIVEN a group whose topic holds a lone surrogate, filed under a matching key
    topic = "orders\udc80"
    event = msk_event([])
    event["records"][f"{topic}-0"] = [kafka_record(topic, 0, 1), kafka_record(topic, 0, 2)]

    # WHEN / THEN it is rejected before anything could try to encode it, the topic escaped
    with pytest.raises(MalformedEventError, match=r"'topic' is not valid Unicode") as raised:
        parse_event(event)
    assert "\\udc80" in str(raised.value)
    str(raised.value).encode("utf-8")  # the message itself can be logged


def test_parse_event_timestamp_type_that_is_not_unicode_is_malformed():
    # GIVEN a later record whose timestampType holds a lone surrogate
    records = [kafka_record("t", 0, 1), kafka_record("t", 0, 2, timestamp_type="CREATE\ud800")]

    # WHEN / THEN it is rejected, naming the field
    with pytest.raises(MalformedEventError, match=r"\[1\] field 'timestampType'"):
        parse_event(msk_event(records))


@pytest.mark.parametrize("arn", [5, ["arn"], {"a": 1}, "arn:aws:kafka:\ud800"])
def test_parse_event_event_source_arn_must_be_unicode_text(arn: Any):
    # GIVEN an eventSourceArn that is not a string, or not valid Unicode
    event = msk_event([kafka_record("t", 0, 1)])
    event["eventSourceArn"] = arn

    # WHEN / THEN it is rejected
    with pytest.raises(MalformedEventError, match="eventSourceArn"):
        parse_event(event)


@pytest.mark.parametrize(
    "damage",
    [
        lambda event: event["records"].update({"u\ud800-0": [kafka_record("u\ud800", 0, 1)]}),
        lambda event: event["records"]["t-0"][-1].update({"offset": "1" * 5_000}),
        lambda event: event["records"]["t-0"][-1].update({"partition": 1}),
        lambda event: event["records"]["t-0"].append("a record"),
        lambda event: event["records"]["t-0"].append(kafka_record("t", 0, 5)),
    ],
    ids=[
        "topic-not-unicode",
        "offset-of-5000-digits",
        "record-under-another-partition",
        "record-not-an-object",
        "offset-twice",
    ],
)
def test_sink_event_without_a_readable_position_for_each_record_sends_nothing(
    damage: Callable[[dict[str, Any]], None],
):
    # GIVEN 1,200 good records (more than two requests' worth), then one record whose topic,
    # partition or offset can not be read (it could not be reported to the ESM)
    kinesis = FakeKinesis()
    sink = Sink(Settings(stream_name="s", stream_arn=None), writer=kinesis)
    event = msk_event(kafka_record("t", 0, offset, b"k%d" % offset) for offset in range(1_200))
    damage(event)

    # WHEN the sink handles it
    with pytest.raises(MalformedEventError):
        sink.handle(event, FakeContext())
    sink.close()

    # THEN not a single request was sent: every record's position is checked first
    assert kinesis.calls == 0
    assert kinesis.records == []


@pytest.mark.parametrize(
    "damage",
    [
        {"headers": {}},
        {"headers": [{"h": [256]}]},
        {"timestamp": "yesterday"},
        {"value": 12},
        {"valueSchemaMetadata": {"dataFormat": "AVRO"}},
    ],
    ids=[
        "headers-not-a-list",
        "header-byte-256",
        "timestamp-not-a-number",
        "value-not-text",
        "schema-metadata-without-id",
    ],
)
def test_sink_malformed_record_ends_its_partition_there_and_the_others_go_on(
    damage: dict[str, Any], caplog: pytest.LogCaptureFixture
):
    # GIVEN partition t-0 of 1,200 records whose record at offset 700 is malformed (its
    # position is readable), and partition t-1 of 300 good records
    kinesis = FakeKinesis()
    sink = Sink(Settings(stream_name="s", stream_arn=None), writer=kinesis)
    records = [kafka_record("t", 0, offset, b"k%d" % offset) for offset in range(1_200)]
    records[700].update(damage)
    records += [kafka_record("t", 1, offset, b"k%d" % offset) for offset in range(300)]

    # WHEN the sink handles the event
    response = sink.handle(msk_event(records), FakeContext())
    report = sink.last_report
    sink.close()

    # THEN t-0 is written up to the malformed record and reported from it (nothing after it
    # was read), t-1 is written whole, and the malformed record is counted and logged by its
    # position, the problem named
    reported = [failure["itemIdentifier"] for failure in response["batchItemFailures"]]
    assert reported == [{"partition": "t-0", "offset": offset} for offset in range(700, 1_200)]
    written = sorted((r.partition_key, r.data) for r in kinesis.records)
    assert len(written) == 700 + 300
    assert {key for key, _ in written} == {f"k{offset}" for offset in range(700)} | {
        f"k{offset}" for offset in range(300)
    }
    assert report is not None and report.stats.records_malformed == 1
    assert report.stats.partitions == 2
    assert report.stats.records_unread == 500
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "malformed" in logged.getMessage() and "records['t-0'][700]" in logged.getMessage()
    assert (logged.topic_partition, logged.offset) == ("t-0", 700)  # type: ignore[attr-defined]


def _outcome(event: Any, *, fast_path: bool) -> tuple[str, Any]:
    try:
        return "parsed", parse_event(event, fast_path=fast_path)
    except MalformedEventError as error:
        return "malformed", str(error)


def _with_found_inputs(test: Callable[[Any], None]) -> Callable[[Any], None]:
    for event in FOUND_BY_FUZZING:
        test = example(event=event)(test)
    return test


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(event=kafka_events() | json_values)
@_with_found_inputs
def test_parse_event_any_input_parses_or_names_the_problem(event: Any):
    # GIVEN any input: a damaged event, or any JSON value at all
    # WHEN it is parsed
    outcome, result = _outcome(event, fast_path=True)

    # THEN it parses, or raises MalformedEventError (nothing else) with a loggable message
    if outcome == "malformed":
        assert 0 < len(result) < 1_000
        result.encode("utf-8")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
# Rarely damaged events too: runs of good records (the fast path's) with one bad record among
# them, such as schema metadata that differs from the record before it.
@given(event=kafka_events() | kafka_events(damage_rate=40))
@_with_found_inputs
def test_parse_event_fast_path_is_exactly_as_strict_as_field_checks(event: Any):
    # GIVEN any event, usually well formed, sometimes damaged in any field of any record
    # WHEN it is parsed with the fast path, and with every record checked field by field
    fast = _outcome(event, fast_path=True)
    checked = _outcome(event, fast_path=False)

    # THEN both accept it and read the same records, or both refuse it with the same message
    assert fast == checked


@pytest.mark.parametrize("record_format", [RecordFormat.RAW, RecordFormat.ENVELOPE])
def test_sink_registry_json_sample_writes_what_the_registry_delivered(
    record_format: RecordFormat,
):
    # GIVEN the sink, and an event whose Avro key and value the registry delivered as JSON
    kinesis = FakeKinesis()
    sink = Sink(
        Settings(stream_name="s", stream_arn=None, record_format=record_format), writer=kinesis
    )

    # WHEN it handles the event
    response = sink.handle(load_event("msk_registry_json_event.json"), FakeContext())
    sink.close()

    # THEN both records are written in order under their JSON-text keys: raw, the JSON values;
    # as envelopes, the values in base64 with the schemas named
    assert response == {"batchItemFailures": []}
    assert [r.partition_key for r in kinesis.records] == ['"order-1"', '"order-2"']
    if record_format is RecordFormat.RAW:
        assert [json.loads(r.data)["orderId"] for r in kinesis.records] == ["order-1", "order-2"]
    else:
        documents = [json.loads(r.data) for r in kinesis.records]
        assert [json.loads(base64.b64decode(d["value"]))["amount"] for d in documents] == [
            12.5,
            3.0,
        ]
        assert {d["valueSchemaMetadata"]["schemaId"] for d in documents} == {"2"}
