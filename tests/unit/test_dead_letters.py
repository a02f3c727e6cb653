"""Unit tests for the dead-letter object: its S3 key and its JSON document."""

from __future__ import annotations

import json

from msk_kinesis_sink.dead_letters import dead_letter_document, dead_letter_key
from msk_kinesis_sink.encoding import UnwritableRecord, encode_record
from msk_kinesis_sink.events import parse_event
from msk_kinesis_sink.settings import PartitionKeyMode, RecordFormat
from tests.factories import MSK_CLUSTER_ARN, b64, kafka_record, msk_event


def _unwritable(raw: dict[str, object], max_record_bytes: int = 1024) -> UnwritableRecord:
    [batch] = parse_event(msk_event([raw])).partitions
    result = encode_record(
        batch.records[0],
        record_format=RecordFormat.RAW,
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=max_record_bytes,
    )
    assert isinstance(result, UnwritableRecord)
    return result


def test_dead_letter_key_holds_topic_partition_and_offset():
    # GIVEN an oversize record of a topic with '.' and '-'
    record = _unwritable(kafka_record("orders.v1-eu-0", 12, 987654, b"k", b"x" * 2000))

    # WHEN its S3 key is built
    key = dead_letter_key("records/", record)

    # THEN it is prefix/topic/partition/offset.json
    assert key == "records/orders.v1-eu-0/12/987654.json"


def test_dead_letter_key_with_empty_prefix():
    # GIVEN no prefix
    record = _unwritable(kafka_record("t", 0, 5, b"k", b"x" * 2000))

    # THEN the key starts at the topic
    assert dead_letter_key("", record) == "t/0/5.json"


def test_dead_letter_document_fields_for_oversize_record():
    # GIVEN an oversize record with headers, one of them signed in the event
    raw = kafka_record("t", 3, 77, b"user-1", b"x" * 2000, headers=[("h", b"ab"), ("h", b"")])
    raw["headers"].append({"sig": [-1, 0]})
    record = _unwritable(raw)

    # WHEN its document is built
    document = json.loads(dead_letter_document(record, MSK_CLUSTER_ARN))

    # THEN it holds the reason, all metadata, the original base64 key and value, and the headers
    assert document == {
        "reason": record.reason,
        "eventSourceArn": MSK_CLUSTER_ARN,
        "topic": "t",
        "partition": 3,
        "offset": 77,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "partitionKey": "user-1",
        "key": b64(b"user-1"),
        "value": b64(b"x" * 2000),
        "headers": [{"h": [97, 98]}, {"h": []}, {"sig": [255, 0]}],
    }
    assert "MAX_RECORD_BYTES=1024" in document["reason"]


def test_dead_letter_document_keeps_undecodable_base64_as_sent():
    # GIVEN a record whose value is not valid base64
    raw = kafka_record("t", 0, 1, b"k", b"v")
    raw["value"] = "%%not-base64%%"
    record = _unwritable(raw)

    # WHEN its document is built without a source ARN (self-managed Kafka)
    document = json.loads(dead_letter_document(record, None))

    # THEN the original text is kept so nothing is lost, and the reason names the value
    assert document["value"] == "%%not-base64%%"
    assert document["key"] == b64(b"k")
    assert document["eventSourceArn"] is None
    assert "value" in document["reason"]


def test_dead_letter_document_null_key_and_value():
    # GIVEN an unwritable record whose key is bad and value is a tombstone
    raw = kafka_record("t", 0, 1, None, None)
    raw["key"] = "!!"
    record = _unwritable(raw)

    # WHEN its document is built
    document = json.loads(dead_letter_document(record, MSK_CLUSTER_ARN))

    # THEN the tombstone value is null and the bad key is kept as sent
    assert document["value"] is None
    assert document["key"] == "!!"
    assert document["partitionKey"] == "t-0"
