"""Claim checks through the Lambda handler against moto's Kinesis and S3: the object lands in S3
(with S3's own SHA-256 check), the pointer in the stream, and a consumer resolves it with boto3."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from msk_kinesis_sink.aggregation import deaggregate
from msk_kinesis_sink.consumer import Envelope, resolve_claim_check
from msk_kinesis_sink.errors import ClaimCheckError, ClaimCheckMismatchError
from tests.factories import b64, kafka_record
from tests.fakes import FakeContext
from tests.integration.conftest import REGION
from tests.integration.lambda_container import load_handler, read_stream

STREAM = "mirror"
DEAD_LETTERS = "sink-dead-letters"
SECRET_VALUE = b"customer-value-91bd" * 200  # 3.8 KB: over a 2 KiB stream limit
TOPIC = "orders.v1"


@pytest.fixture
def aws(mocked_aws: None) -> None:
    boto3.client("kinesis", region_name=REGION).create_stream(StreamName=STREAM, ShardCount=1)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=DEAD_LETTERS)


def _event() -> dict[str, Any]:
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc",
        "records": {
            f"{TOPIC}-0": [
                kafka_record(TOPIC, 0, offset, b"k", value, timestamp=1_700_000_000_000)
                for offset, value in ((0, b"small"), (1, SECRET_VALUE), (2, b"after"))
            ]
        },
    }


def _invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[Envelope]:
    module = load_handler(
        monkeypatch,
        STREAM_NAME=STREAM,
        RECORD_FORMAT="envelope",
        OVERSIZE_RECORDS="claim_check",
        DEAD_LETTER_BUCKET=DEAD_LETTERS,
        MAX_RECORD_BYTES="2048",
    )
    response = module.handler(_event(), FakeContext())
    assert response == {"batchItemFailures": []}
    assert b64(SECRET_VALUE) not in capsys.readouterr().out  # never logged
    stored = sorted(read_stream(STREAM), key=lambda r: int(r["SequenceNumber"]))
    return [Envelope.from_bytes(data) for r in stored for data in deaggregate(r["Data"])]


def test_claim_check_handler_keeps_the_record_in_s3_and_its_place_in_the_stream(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN claim checks into the dead-letter bucket and a record too large for the stream
    # WHEN the handler publishes it between two small records of its key
    envelopes = _invoke(monkeypatch, capsys)
    # THEN the stream holds the three in order, the middle one a pointer...
    assert [e.offset for e in envelopes] == [0, 1, 2]
    pointer = envelopes[1]
    assert pointer.claim_check is not None and pointer.value is None
    assert pointer.claim_check.bucket == DEAD_LETTERS
    assert pointer.claim_check.key.startswith(f"claim-checks/{TOPIC}/0/1-")
    # ...and a consumer with an ordinary boto3 client gets the whole record back
    s3 = boto3.client("s3", region_name=REGION)
    document = resolve_claim_check(pointer, s3)
    assert document["value"] == b64(SECRET_VALUE)
    assert (document["offset"], document["key"]) == (1, b64(b"k"))
    # AND S3 kept the object with the SHA-256 the pointer names
    head = s3.head_object(Bucket=DEAD_LETTERS, Key=pointer.claim_check.key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == pointer.claim_check.bytes


def test_claim_check_resolve_refuses_a_replaced_or_missing_object(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a pointer the handler wrote
    pointer = _invoke(monkeypatch, capsys)[1]
    assert pointer.claim_check is not None
    s3 = boto3.client("s3", region_name=REGION)
    where = {"Bucket": DEAD_LETTERS, "Key": pointer.claim_check.key}
    original = s3.get_object(**where)["Body"].read()
    # WHEN its object is replaced by other bytes of the same size / THEN a mismatch
    s3.put_object(**where, Body=original.replace(b'"offset":1', b'"offset":9'))
    with pytest.raises(ClaimCheckMismatchError, match="SHA-256"):
        resolve_claim_check(pointer, s3)
    # WHEN it is gone / THEN S3's code says so
    s3.delete_object(**where)
    with pytest.raises(ClaimCheckError, match="could not be read: NoSuchKey"):
        resolve_claim_check(pointer, s3)


def test_claim_check_write_to_a_missing_bucket_reports_the_partition(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN CLAIM_CHECK_BUCKET naming a bucket that does not exist
    module = load_handler(
        monkeypatch,
        STREAM_NAME=STREAM,
        RECORD_FORMAT="envelope",
        OVERSIZE_RECORDS="claim_check",
        CLAIM_CHECK_BUCKET="no-such-claims",
        MAX_RECORD_BYTES="2048",
    )
    # WHEN the handler meets the oversize record
    response = module.handler(_event(), FakeContext())
    # THEN the partition is reported from it, only the record before it reached the stream,
    # and the log names S3's error code, not the record's contents
    offsets = [f["itemIdentifier"]["offset"] for f in response["batchItemFailures"]]
    assert offsets == [1, 2]
    stored = read_stream(STREAM)
    assert [json.loads(d)["offset"] for r in stored for d in deaggregate(r["Data"])] == [0]
    logged = capsys.readouterr().out
    assert "NoSuchBucket" in logged and b64(SECRET_VALUE) not in logged
