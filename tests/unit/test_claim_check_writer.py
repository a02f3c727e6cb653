"""S3ClaimCheckWriter against botocore's Stubber: the request S3 gets, and failures as errors."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from msk_kinesis_sink.aws.claim_checks import S3ClaimCheckWriter
from msk_kinesis_sink.claim_checks import ClaimCheckTarget
from msk_kinesis_sink.encoding import ClaimCheckRecord, encode_record
from msk_kinesis_sink.errors import ClaimCheckWriteError
from msk_kinesis_sink.events import parse_event
from msk_kinesis_sink.settings import PartitionKeyMode, RecordFormat
from tests.factories import kafka_record, msk_event

SECRET = "customer-value-in-a-quote"


def _claim_checked() -> ClaimCheckRecord:
    event = msk_event([kafka_record("orders.v1", 2, 31, b"k", b"x" * 3000)])
    [batch] = parse_event(event).partitions
    unit = encode_record(
        batch.records[0],
        record_format=RecordFormat.ENVELOPE,
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=2048,
        claim_checks=ClaimCheckTarget("claims"),
    )
    assert isinstance(unit, ClaimCheckRecord)
    return unit


@pytest.fixture
def s3() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_claim_check_writer_puts_the_envelope_where_the_pointer_says_with_its_digest(
    s3: tuple[Any, Stubber],
) -> None:
    # GIVEN a claim-checked record and a stub that answers only the expected write
    client, stubber = s3
    record = _claim_checked()
    digest = hashlib.sha256(record.document).digest()
    stubber.add_response(
        "put_object",
        {"ETag": '"etag"'},
        {
            "Bucket": "claims",
            "Key": record.claim_check.key,
            "Body": record.document,
            "ContentType": "application/json",
            # S3 refuses the object unless its bytes have this SHA-256 (BadDigest)
            "ChecksumSHA256": base64.b64encode(digest).decode("ascii"),
        },
    )
    # WHEN written / THEN the stub matched bucket, key, body and checksum
    S3ClaimCheckWriter(client).write(record, time.monotonic() + 5)
    assert record.claim_check.sha256 == digest.hex()


def test_claim_check_writer_failure_names_the_record_and_not_what_s3_quotes(
    s3: tuple[Any, Stubber],
) -> None:
    # GIVEN S3 refuses the write, quoting request content
    client, stubber = s3
    stubber.add_client_error("put_object", "AccessDenied", f"Denied '{SECRET}'", 403)
    # WHEN written
    with pytest.raises(ClaimCheckWriteError) as raised:
        S3ClaimCheckWriter(client).write(_claim_checked(), time.monotonic() + 5)
    # THEN the error names the partition, offset, size, bucket and code, never the quote
    message = str(raised.value)
    assert "orders.v1-2 offset 31" in message and "bucket claims" in message
    assert "AccessDenied" in message and SECRET not in message
