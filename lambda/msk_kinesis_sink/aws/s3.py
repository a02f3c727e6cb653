"""The dead-letter writer: each record Kinesis can never accept, kept as one S3 object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msk_kinesis_sink.aws.classify import SDK_ERRORS, describe_error
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
        try:
            with request_in_flight(deadline):
                self._client.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType="application/json"
                )
        except SDK_ERRORS as error:
            code, message = describe_error(error)
            raise DeadLetterError(
                f"could not write s3://{self._bucket}/{key} for {source.topic_partition}"
                f" offset {source.offset}: {code}: {message}"
            ) from None
