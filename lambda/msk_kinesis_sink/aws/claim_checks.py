"""The claim-check writer: each claim-checked record kept whole as one S3 object, before its
pointer is written to the stream."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from msk_kinesis_sink.aws.classify import CALL_ERRORS, CallFailure, call_failure, put_object_failure
from msk_kinesis_sink.aws.http import request_in_flight
from msk_kinesis_sink.encoding import ClaimCheckRecord
from msk_kinesis_sink.errors import ClaimCheckWriteError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ClaimCheckWriter:
    """Writes the record's envelope to the bucket and key its claim check names.

    The bucket's default encryption applies (SSE-KMS with the dead-letter bucket's key, as for
    dead letters). S3 checks the object against the claim check's SHA-256 before it keeps it, so
    a pointer never stands for bytes that were damaged on the way.
    """

    def __init__(self, client: S3Client) -> None:
        self._client = client

    def write(self, record: ClaimCheckRecord, deadline: float) -> None:
        claim = record.claim_check
        checksum = base64.b64encode(bytes.fromhex(claim.sha256)).decode("ascii")
        failure: CallFailure | None
        try:
            with request_in_flight(deadline):
                response = self._client.put_object(
                    Bucket=claim.bucket,
                    Key=claim.key,
                    Body=record.document,
                    ContentType="application/json",
                    ChecksumSHA256=checksum,
                )
        except CALL_ERRORS as error:
            failure = call_failure(error)
        else:
            # As for dead letters: a 200 without an ETag proves nothing was kept, and a pointer
            # must never be written for an object that may not exist.
            failure = put_object_failure(response)
        if failure is not None:
            source = record.source
            raise ClaimCheckWriteError(
                f"could not write the claim check of {source.topic_partition} offset"
                f" {source.offset} ({claim.bytes} bytes) to bucket {claim.bucket}: {failure.text}"
            )
