"""The Lambda handler end to end against moto's Kinesis and S3, reading records back."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import boto3
import pytest

from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.errors import ConfigurationError
from tests.factories import kafka_record
from tests.fakes import FakeContext
from tests.integration.conftest import REGION
from tests.integration.lambda_container import load_handler, read_stream

STREAM = "mirror"
BUCKET = "sink-dead-letters"
SECRET_KEY = b"customer-key-7f3a"
SECRET_VALUE = b"customer-value-91bd"


@pytest.fixture
def aws(mocked_aws: None) -> None:
    boto3.client("kinesis", region_name=REGION).create_stream(StreamName=STREAM, ShardCount=2)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)


def _record(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
) -> dict[str, Any]:
    return kafka_record(
        topic, partition, offset, key, value, [("trace", b"abc")], timestamp=1_700_000_000_000
    )


def _read_stream() -> list[dict[str, Any]]:
    return read_stream(STREAM)


def test_handler_raw_records_arrive_with_their_keys_in_order(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an MSK event with a text key, a null key and a tombstone, on a topic with '-' and '.'
    topic = "orders.v1-eu"
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        "bootstrapServers": "b-1:9098",
        "records": {
            f"{topic}-3": [
                _record(topic, 3, 10, SECRET_KEY, SECRET_VALUE),
                _record(topic, 3, 11, None, b"no-key"),
                _record(topic, 3, 12, SECRET_KEY, None),
            ]
        },
    }
    module = load_handler(monkeypatch, STREAM_NAME=STREAM)
    # WHEN the handler is invoked
    response = module.handler(event, FakeContext())
    # THEN nothing is reported and the stream holds the values under the expected keys, as a
    # consumer reads them (aggregation is on by default: the key's two records travel together)
    assert response == {"batchItemFailures": []}
    stored = sorted(_read_stream(), key=lambda r: int(r["SequenceNumber"]))
    by_key: dict[str, list[bytes]] = {}
    for record in stored:
        by_key.setdefault(record["PartitionKey"], []).extend(deaggregate(record["Data"]))
    assert by_key == {SECRET_KEY.decode(): [SECRET_VALUE, b""], f"{topic}-3": [b"no-key"]}
    # AND the logs say what happened without revealing keys or values
    logged = capsys.readouterr().out
    assert '"records_published":3' in logged.replace(" ", "")
    assert SECRET_KEY.decode() not in logged
    assert SECRET_VALUE.decode() not in logged
    assert base64.b64encode(SECRET_VALUE).decode() not in logged


def test_handler_envelope_carries_every_field(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN envelope format and a stream given by ARN
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/{STREAM}"
    module = load_handler(monkeypatch, STREAM_NAME=arn, RECORD_FORMAT="envelope")
    event = {"eventSource": "aws:kafka", "records": {"t-0": [_record("t", 0, 5, b"k", b"v")]}}
    # WHEN invoked
    assert module.handler(event, FakeContext()) == {"batchItemFailures": []}
    # THEN the record is the documented envelope
    (stored,) = _read_stream()
    assert json.loads(stored["Data"]) == {
        "topic": "t",
        "partition": 0,
        "offset": 5,
        "timestamp": 1_700_000_000_000,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k").decode(),
        "value": base64.b64encode(b"v").decode(),
        "headers": [{"name": "trace", "value": base64.b64encode(b"abc").decode()}],
    }


def test_handler_oversize_record_lands_in_dead_letter_bucket(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a dead-letter bucket and a record larger than MAX_RECORD_BYTES
    module = load_handler(
        monkeypatch, STREAM_NAME=STREAM, DEAD_LETTER_BUCKET=BUCKET, MAX_RECORD_BYTES="1024"
    )
    big = b"x" * 2000
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        "records": {"t-1": [_record("t", 1, 7, b"k", big), _record("t", 1, 8, b"k", b"small")]},
    }
    # WHEN invoked
    response = module.handler(event, FakeContext())
    # THEN nothing is reported; the big record is in S3 with its reason, the small one in Kinesis
    assert response == {"batchItemFailures": []}
    s3 = boto3.client("s3", region_name=REGION)
    body = json.loads(s3.get_object(Bucket=BUCKET, Key="records/t/1/7.json")["Body"].read())
    assert body["offset"] == 7
    assert base64.b64decode(body["value"]) == big
    assert "MAX_RECORD_BYTES=1024" in body["reason"]
    assert [r["Data"] for r in _read_stream()] == [b"small"]


def test_handler_missing_stream_reports_everything_for_redelivery(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stream name that does not exist
    module = load_handler(monkeypatch, STREAM_NAME="no-such-stream")
    event = {"eventSource": "aws:kafka", "records": {"t-0": [_record("t", 0, 1, b"k", b"v")]}}
    # WHEN invoked
    response = module.handler(event, FakeContext())
    # THEN the record is reported so the ESM retries it (and, at last, its on-failure destination)
    assert response == {
        "batchItemFailures": [{"itemIdentifier": {"partition": "t-0", "offset": 1}}]
    }


def test_handler_bad_configuration_fails_cold_start_naming_the_variable(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ConfigurationError, match="RECORD_FORMAT='xml' is not one of: raw, envelope"
    ):
        load_handler(monkeypatch, STREAM_NAME=STREAM, RECORD_FORMAT="xml")


@pytest.mark.parametrize(("level", "summary_logged"), [("WARNING", False), ("INFO", True)])
def test_handler_log_level_quiets_the_function_but_never_its_metrics(
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    level: str,
    summary_logged: bool,
) -> None:
    # GIVEN Lambda's application log level at INFO (the stack keeps it there so that metric
    # lines pass) and the function's own level (logLevel in cdk.json) at `level`
    module = load_handler(
        monkeypatch, STREAM_NAME=STREAM, AWS_LAMBDA_LOG_LEVEL="INFO", POWERTOOLS_LOG_LEVEL=level
    )
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        "records": {"orders-0": [_record("orders", 0, 1, b"k", b"v")]},
    }
    # WHEN an invocation succeeds
    module.handler(event, FakeContext())
    # THEN the summary line follows the function's level, and the metrics are there either way
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert any(line.get("message") == "invocation summary" for line in lines) is summary_logged
    metric_lines = [line for line in lines if "_aws" in line]
    assert [line["RecordsPublished"] for line in metric_lines] == [[1.0]]


# What dashboards, alarms, log queries and the runbook read: names, order and units are a contract.
SUMMARY_FIELDS = [
    "records_received",
    "records_published",
    "records_already_delivered",
    "kinesis_records_published",
    "records_failed",
    "records_dead_lettered",
    "records_claim_checked",
    "records_malformed",
    "records_throttled",
    "records_internal_failure",
    "request_failures",
    "requests_abandoned",
    "retry_attempts",
    "put_records_calls",
    "dead_letter_writes",
    "claim_check_writes",
    "bytes_published",
    "partitions",
    "partitions_failed",
    "partitions_held_by_stream_guard",
    "stopped_by_deadline",
    "records_unread",
    "put_latency_p50_ms",
    "put_latency_max_ms",
    "delivery_delay_p50_ms",
    "delivery_delay_max_ms",
    "records_without_timestamp",
    "records_timestamp_ahead",
    "duration_ms",
]
METRICS = [
    {"Name": "RecordsReceived", "Unit": "Count"},
    {"Name": "RecordsPublished", "Unit": "Count"},
    {"Name": "RecordsAlreadyDelivered", "Unit": "Count"},
    {"Name": "RecordsFailed", "Unit": "Count"},
    {"Name": "RecordsDeadLettered", "Unit": "Count"},
    {"Name": "RecordsClaimChecked", "Unit": "Count"},
    {"Name": "RecordsMalformed", "Unit": "Count"},
    {"Name": "RecordsThrottled", "Unit": "Count"},
    {"Name": "RetryAttempts", "Unit": "Count"},
    {"Name": "PutRecordsCalls", "Unit": "Count"},
    {"Name": "BytesPublished", "Unit": "Bytes"},
    {"Name": "PartitionsHeldByStreamGuard", "Unit": "Count"},
    {"Name": "PublishLatency", "Unit": "Milliseconds"},
    {"Name": "DeliveryDelay", "Unit": "Milliseconds"},
]


def test_handler_summary_line_and_metrics_keep_their_names_order_and_units(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the handler and an event of two records, one of which is too large for the stream
    module = load_handler(monkeypatch, STREAM_NAME=STREAM, MAX_RECORD_BYTES="1024")
    event = {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        "records": {
            "orders-0": [
                _record("orders", 0, 1, b"k", b"v"),
                _record("orders", 0, 2, b"k", b"x" * 2000),
            ]
        },
    }
    # WHEN it is invoked
    module.handler(event, FakeContext())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    [summary] = [line for line in lines if line.get("message") == "invocation summary"]
    [emf] = [line for line in lines if "_aws" in line]
    # THEN the summary line ends with the sink's fields, in their documented order
    keys = list(summary)
    assert keys[keys.index("records_received") :] == SUMMARY_FIELDS
    assert summary["records_received"] == 2 and summary["records_published"] == 1
    assert summary["records_failed"] == 1 and summary["partitions_failed"] == 1
    assert summary["put_latency_p50_ms"] == round(summary["put_latency_p50_ms"], 1)
    # AND the metrics carry their names and units, with this invocation's values
    assert emf["_aws"]["CloudWatchMetrics"][0]["Metrics"] == METRICS
    assert emf["RecordsReceived"] == [2.0] and emf["RecordsPublished"] == [1.0]
    assert emf["RecordsFailed"] == [1.0] and emf["BytesPublished"] == [2.0]
    assert len(emf["PublishLatency"]) == emf["PutRecordsCalls"][0] == 1
    # ...the one record written as its delay since its Kafka timestamp (now, less 2023-11-14)
    [delay] = emf["DeliveryDelay"]
    assert round(delay, 1) == summary["delivery_delay_max_ms"]
    assert delay > time.time() * 1000 - 1_700_000_000_000 - 60_000
