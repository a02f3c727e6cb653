"""PutRecords to each target stream through the container's one Kinesis client."""

from __future__ import annotations

import json
from binascii import b2a_base64
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

from msk_kinesis_sink.aws.classify import SDK_ERRORS, publish_error, put_records_results
from msk_kinesis_sink.aws.http import request_in_flight, use_prepared_body
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.writers import RecordResult

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

# PutRecords' JSON 1.1 body is built here rather than by botocore's serializer: it is the same
# document, made in one pass without per-record parameter validation and dict building, which
# costs more CPU than everything else the function does per record. botocore still resolves the
# endpoint, signs and sends; a `before-call` hook swaps in the prepared body, and a
# `before-parse` hook reads a successful answer with the C JSON decoder (errors stay botocore's).
_BODY_HOOK_ID = "msk-kinesis-sink-prepared-put-records-body"
_RESULT_HOOK_ID = "msk-kinesis-sink-put-records-result"
# The placeholder request botocore serializes (and validates) in place of the real records.
_PLACEHOLDER_RECORDS: list[Any] = [{"Data": b"", "PartitionKey": "-"}]


def _read_put_records_result(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Read a successful PutRecords answer with the C JSON decoder.

    botocore's shape-driven parser costs more per record than building the request; the answer
    is plain JSON with the documented field names. Error answers are left to botocore.
    """
    if response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    try:
        document = json.loads(response_dict["body"])
    except ValueError:
        return  # not JSON: botocore's parser reports it
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        customized_response_dict.update(document)
        response_dict["body"] = b"{}"


class KinesisWriters:
    """One record writer per stream (name or ARN), all on the container's one client.

    A stream ARN of another region needs no client of its own: botocore's endpoint rules take
    the endpoint and signing region from the ARN.
    """

    def __init__(self, client: KinesisClient) -> None:
        self._client = client
        self._writers: dict[str, KinesisRecordWriter] = {}

    def __call__(self, stream: str) -> KinesisRecordWriter:
        writer = self._writers.get(stream)
        if writer is None:
            writer = self._writers[stream] = KinesisRecordWriter(self._client, stream)
        return writer


class KinesisRecordWriter:
    """PutRecords to one stream (a name or an ARN) through a shared, thread-safe boto3 client."""

    def __init__(self, client: KinesisClient, stream: str) -> None:
        self._client = client
        self._target: dict[str, str] = (
            {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        )
        ((field, value),) = self._target.items()
        self._body_tail = f'],"{field}":{encode_basestring_ascii(value)}}}'.encode("ascii")
        # Only for the JSON protocol; should botocore ever speak another one, use it plainly.
        self._prepared = client.meta.service_model.protocol == "json"
        if self._prepared:
            client.meta.events.register(
                "before-call.kinesis.PutRecords", use_prepared_body, unique_id=_BODY_HOOK_ID
            )
            client.meta.events.register(
                "before-parse.kinesis.PutRecords",
                _read_put_records_result,
                unique_id=_RESULT_HOOK_ID,
            )

    def put_records(self, entries: Sequence[Entry], deadline: float) -> list[RecordResult]:
        records: list[Any] = _PLACEHOLDER_RECORDS
        body = None
        if self._prepared:
            body = self._json_body(entries)
        else:
            records = [
                {"Data": entry.data, "PartitionKey": entry.partition_key} for entry in entries
            ]
        try:
            with request_in_flight(deadline, body):
                response = self._client.put_records(Records=records, **self._target)  # type: ignore[arg-type]
        # `from None`: the original error's text may quote the request; only the code and the
        # cleaned message travel on.
        except SDK_ERRORS as error:
            raise publish_error(error) from None
        return put_records_results(response, len(entries))

    def _json_body(self, entries: Sequence[Entry]) -> bytes:
        """The PutRecords request document, exactly as botocore would serialize it."""
        records = b",".join(
            b'{"Data":"%s","PartitionKey":%s}'
            % (
                b2a_base64(entry.data, newline=False),
                encode_basestring_ascii(entry.partition_key).encode("ascii"),
            )
            for entry in entries
        )
        return b'{"Records":[' + records + self._body_tail
