"""PutRecords and DescribeStreamSummary on each target stream, through the container's one
Kinesis client."""

from __future__ import annotations

import json
from binascii import b2a_base64
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Final

from msk_kinesis_sink.aws.classify import (
    CALL_ERRORS,
    publish_error,
    put_records_results,
    stream_summary,
    summary_error,
)
from msk_kinesis_sink.aws.http import request_in_flight, use_prepared_body
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.writers import RecordResult, StreamSummary

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

# PutRecords' JSON 1.1 body is built here rather than by botocore's serializer: it is the same
# document, made in one pass without per-record parameter validation and dict building, which
# costs more CPU than everything else the function does per record. botocore still resolves the
# endpoint, signs and sends; a `before-call` hook swaps in the prepared body, and a
# `before-parse` hook takes every successful answer (errors stay botocore's).
_BODY_HOOK_ID = "msk-kinesis-sink-prepared-put-records-body"
_ANSWER_HOOK_ID = "msk-kinesis-sink-answer-document"
# The operations whose successful answers the writers read themselves.
_OWNED_ANSWERS: Final = ("PutRecords", "DescribeStreamSummary")
# The placeholder request botocore serializes (and validates) in place of the real records.
_PLACEHOLDER_RECORDS: list[Any] = [{"Data": b"", "PartitionKey": "-"}]
# Where an owned answer's document reaches the caller: botocore adds what a `before-parse`
# hook puts in `customized_response_dict` to the response it returns.
ANSWER_DOCUMENT: Final = "msk-kinesis-sink-answer-document"


def _take_answer_document(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Read a successful answer whole, with the C JSON decoder, and hand it on as it is.

    botocore's shape-driven parser costs more per record than building the request, and it
    raises KeyError or AttributeError on a body of the wrong shape (`[]`, `{"Records":"x"}`);
    the classifier checks the document itself. botocore then parses an empty object.
    """
    status = response_dict.get("status_code")
    if not isinstance(status, int) or not 200 <= status < 300:
        return  # an error answer: botocore reads its code
    try:
        document: object = json.loads(response_dict.get("body") or b"")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the stack
        document = None
    customized_response_dict[ANSWER_DOCUMENT] = document
    response_dict["body"] = b"{}"


def _own_answers(client: KinesisClient) -> bool:
    """Register the hooks on the client; False when its protocol is not JSON (botocore then
    serializes and parses as usual, and the classifier reads what it parsed)."""
    if client.meta.service_model.protocol != "json":
        return False
    client.meta.events.register(
        "before-call.kinesis.PutRecords", use_prepared_body, unique_id=_BODY_HOOK_ID
    )
    for operation in _OWNED_ANSWERS:
        client.meta.events.register(
            f"before-parse.kinesis.{operation}",
            _take_answer_document,
            unique_id=f"{_ANSWER_HOOK_ID}-{operation}",
        )
    return True


def _document(response: Any) -> object:
    """The answer's document as the hook took it, or what botocore parsed without the hook."""
    return response.get(ANSWER_DOCUMENT, response) if isinstance(response, dict) else response


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
        self._prepared = _own_answers(client)

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
        # `from None`: the original error's text may quote the request; only its code and a
        # fixed description travel on.
        except CALL_ERRORS as error:
            raise publish_error(error) from None
        return put_records_results(_document(response), len(entries))

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


class KinesisSummaryReader:
    """DescribeStreamSummary of a stream (a name or an ARN) through the shared client."""

    def __init__(self, client: KinesisClient) -> None:
        self._client = client
        _own_answers(client)

    def describe(self, stream: str, deadline: float) -> StreamSummary:
        target = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        try:
            with request_in_flight(deadline):
                response = self._client.describe_stream_summary(**target)
        except CALL_ERRORS as error:
            raise summary_error(error) from None
        return stream_summary(_document(response))
