"""The dead-letter writer: each record Kinesis can never accept, kept as one S3 object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msk_kinesis_sink.aws.classify import CALL_ERRORS, CallFailure, call_failure, put_object_failure
from msk_kinesis_sink.aws.http import request_in_flight
from msk_kinesis_sink.dead_letters import dead_letter_document, dead_letter_key
from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.errors import DeadLetterError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3DeadLetterWriter:
    """Writes each unwritable record as one JSON object: metadata, original base64, reason."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def write(
        self, record: UnwritableRecord, event_source_arn: str | None, deadline: float
    ) -> None:
        source = record.source
        body = dead_letter_document(record, event_source_arn)
        key = dead_letter_key(self._prefix, record)
        failure: CallFailure | None
        try:
            with request_in_flight(deadline):
                response = self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType="application/json"
                )
        except CALL_ERRORS as error:
            failure = call_failure(error)
        else:
            # A 200 that does not prove the object was stored (no ETag: a cut or foreign
            # answer) is a failed write: the record is reported, never counted as kept.
            failure = put_object_failure(response)
        if failure is not None:
            raise DeadLetterError(
                f"could not write s3://{self._bucket}/{key} for {source.topic_partition}"
                f" offset {source.offset}: {failure.text}"
            )
