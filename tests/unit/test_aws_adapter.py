"""Unit tests for the boto3 adapter: error classification, per-record results, dead letters."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.serialize import create_serializer
from botocore.stub import ANY, Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aws.claim_checks import S3ClaimCheckWriter
from msk_kinesis_sink.aws.classify import (
    DESCRIPTIONS,
    MALFORMED_RESPONSE,
    UNRECOGNIZED_CODE,
    describe_error,
    publish_error,
    put_records_results,
)
from msk_kinesis_sink.aws.clients import SDK_LOGGERS
from msk_kinesis_sink.aws.kinesis import ANSWER_DOCUMENT, KinesisRecordWriter, KinesisSummaryReader
from msk_kinesis_sink.aws.s3 import S3DeadLetterWriter
from msk_kinesis_sink.claim_checks import ClaimCheckTarget
from msk_kinesis_sink.dead_letters import dead_letter_document
from msk_kinesis_sink.encoding import (
    ClaimCheckRecord,
    UnwritableRecord,
    claim_check_oversize,
)
from msk_kinesis_sink.errors import (
    ClaimCheckWriteError,
    DeadLetterError,
    KinesisPublishError,
    StreamSummaryError,
)
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.settings import PartitionKeyMode
from msk_kinesis_sink.writers import RecordDistribution, RecordResult, StreamSummary
from tests.factories import MSK_CLUSTER_ARN, b64, unwritable_record

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
WRITTEN, THROTTLED, FAILED = RecordResult.WRITTEN, RecordResult.THROTTLED, RecordResult.FAILED


def _soon() -> float:
    """A request deadline a few seconds away."""
    return time.monotonic() + 5


def _client_error(code: str, status: int = 400, message: str = "details") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutRecords")


def _entries(count: int) -> list[Entry]:
    return [Entry.of(f"key-{n}", f"data-{n}".encode(), ()) for n in range(count)]


# Responses leave out FailedRecordCount when it is 0: the service model's minimum of 1 makes the
# stub's validation reject a literal 0, and the writer reads only the per-record results.
def _ok() -> dict[str, str]:
    return {
        "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
        "ShardId": "shardId-000000000000",
    }


def _failed(code: str) -> dict[str, str]:
    return {"ErrorCode": code, "ErrorMessage": f"{code} for this record"}


@pytest.fixture
def kinesis() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "kinesis",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _writer(client: Any, stream: str = "orders") -> KinesisRecordWriter:
    return KinesisRecordWriter(client, stream)


# -- classify_client_error ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("LimitExceededException", 400),
        ("KMSThrottlingException", 400),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("RequestTimeout", 408),
        ("SomethingNew", 500),
        ("SomethingNew", 502),
        ("SlowDown", 429),
    ],
)
def test_classify_client_error_retryable(code: str, status: int):
    # GIVEN a throttling, server-side or timeout error
    # WHEN it is classified
    error = publish_error(_client_error(code, status))

    # THEN it is retryable and keeps its code, and the service's message stays behind
    assert error.retryable
    assert error.code == code
    assert str(error).startswith(f"{code}: ")
    assert "details" not in str(error)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("ResourceNotFoundException", "check STREAM_NAME"),
        ("AccessDeniedException", "kinesis:PutRecords"),
        ("KMSAccessDeniedException", "KMS key"),
        ("KMSDisabledException", "enable it"),
        ("KMSNotFoundException", "no longer exists"),
        ("KMSInvalidStateException", "pending deletion"),
        ("KMSOptInRequired", "not subscribed to KMS"),
        ("ValidationException", "MAX_RECORD_BYTES"),
        ("InvalidArgumentException", "MAX_RECORD_BYTES"),
    ],
)
def test_classify_client_error_non_retryable_says_what_to_fix(code: str, hint: str):
    # GIVEN an error no retry can fix
    # WHEN it is classified
    error = publish_error(_client_error(code, 400, "Stream orders not found"))

    # THEN it is not retryable and the message names the code and the fix, not the service text
    assert isinstance(error, KinesisPublishError)
    assert not error.retryable
    assert error.code == code
    message = str(error)
    assert message.startswith(f"{code}: ")
    assert hint in message
    assert "Stream orders not found" not in message


def test_classify_client_error_unknown_client_error_is_not_retryable():
    # GIVEN a 4xx error with a code the adapter does not know
    error = publish_error(_client_error("SomethingUnheardOf", 400, "token expired"))

    # THEN it is not retried, and only the code and the message's length are passed on
    assert not error.retryable
    assert str(error) == (
        "SomethingUnheardOf: no description for this code (its message, 13 characters, is not"
        " logged)"
    )


def test_classify_client_error_without_details():
    # GIVEN a ClientError with no Error block and no status
    error = publish_error(ClientError({}, "PutRecords"))

    # THEN it is classified as an unknown, non-retryable error
    assert error.code == "Unknown"
    assert not error.retryable


def test_classify_client_error_5xx_with_a_refusal_code_is_retryable():
    # GIVEN a code that normally needs a fix, but answered with a 500
    error = publish_error(_client_error("AccessDeniedException", 500))

    # THEN the server fault wins: retryable
    assert error.retryable


@pytest.mark.parametrize(
    ("code", "operation", "permission"),
    [
        ("AccessDeniedException", "PutRecords", "kinesis:PutRecords"),
        ("AccessDeniedException", "DescribeStreamSummary", "kinesis:DescribeStreamSummary"),
        # An HTTP 403 whose body names no code botocore can read (moto's XML denial).
        ("403", "DescribeStreamSummary", "kinesis:DescribeStreamSummary"),
    ],
)
def test_describe_error_access_denied_names_the_permission_of_the_call(
    code: str, operation: str, permission: str
):
    # GIVEN the role may not make the call
    error = _client_error(code, 403, "User: arn:... is not authorized")
    error.operation_name = operation

    # WHEN it is described
    logged_code, description = describe_error(error)

    # THEN the permission the role needs is named (a deploy rehearsal reads it)
    assert logged_code == code
    assert f"lacks {permission} on the stream" in description


# -- describe_error: what of an AWS error may reach a log line ----------------------------

SECRET = "customer-key-93fa"


@pytest.mark.parametrize(
    "message",
    [
        f"1 validation error detected: Value '{SECRET}' at 'records.1.member.partitionKey'"
        " failed to satisfy constraint: Member must have length less than or equal to 256",
        f"Value 'O'Brien-{SECRET}' at 'records.1.member.partitionKey' failed",
        # Echoed without quotes: no cleaning by pattern could know where it starts or ends.
        f"Invalid partition key {SECRET} for stream orders",
        f"{SECRET}",
        f'bad request "{SECRET}',
        f"values = {SECRET}",
    ],
    ids=["quoted", "quotes-inside", "unquoted", "alone", "unclosed", "assigned"],
)
def test_describe_error_passes_on_the_code_and_the_length_of_the_message(message: str):
    # GIVEN a service message that echoes request content, in any way
    error = _client_error("ValidationException", message=message)

    # WHEN it is described
    code, description = describe_error(error)

    # THEN the code and its fixed description go on, and of the message only its length
    assert code == "ValidationException"
    assert description == (
        f"{DESCRIPTIONS['ValidationException']} (its message, {len(message)} characters, is not"
        " logged)"
    )
    assert SECRET not in description


def test_describe_error_drops_the_value_a_parameter_error_prints():
    # GIVEN botocore's parameter validation report, which prints values unquoted
    error = ParamValidationError(
        report=f"Invalid type for parameter Records[0].PartitionKey, value: {SECRET}, type:"
        " <class 'int'>, valid types: <class 'str'>"
    )

    # WHEN it is described
    code, description = describe_error(error)

    # THEN it is its class name and a fixed sentence
    assert code == "ParamValidationError"
    assert description.startswith(DESCRIPTIONS["ParamValidationError"])
    assert SECRET not in description


@settings(max_examples=300, deadline=None)
@given(
    code=st.text(max_size=80) | st.sampled_from(sorted(DESCRIPTIONS)),
    first=st.text(max_size=300),
    data=st.data(),
)
def test_describe_error_depends_on_the_message_only_through_its_length(
    code: str, first: str, data: st.DataObject
):
    # GIVEN two messages of the same length under any code
    second = data.draw(st.text(min_size=len(first), max_size=len(first)))

    # WHEN errors carrying them are described
    one = describe_error(_client_error(code, message=first))
    other = describe_error(_client_error(code, message=second))

    # THEN the descriptions are the same: nothing of the text itself can reach a log line, and
    # a code is passed on only when it looks like one
    assert one == other
    logged_code, description = one
    if re.fullmatch(r"[A-Za-z0-9.]{1,64}", code, re.ASCII):
        assert logged_code == code
    elif not code:
        assert logged_code == "Unknown"  # no code at all
    else:
        assert logged_code == UNRECOGNIZED_CODE
    assert description.isascii() and description.isprintable()


def test_sdk_loggers_stay_quiet_whatever_the_root_level():
    # GIVEN the root logger at DEBUG, as Lambda sets it for logLevel=DEBUG
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        # WHEN the SDK's loggers (and their children) decide what to emit
        effective = {
            name: logging.getLogger(name).getEffectiveLevel()
            for name in (
                *SDK_LOGGERS,
                "botocore.endpoint",
                "botocore.parsers",
                "urllib3.connectionpool",
            )
        }
    finally:
        root.setLevel(level)

    # THEN none of them logs below WARNING: request and response bodies are DEBUG lines
    assert all(value >= logging.WARNING for value in effective.values()), effective


def test_put_records_validation_error_does_not_carry_the_key(kinesis: tuple[Any, Stubber]):
    # GIVEN Kinesis rejects a request, quoting the partition key in its message
    client, stubber = kinesis
    stubber.add_client_error(
        "put_records",
        "ValidationException",
        f"1 validation error detected: Value '{SECRET}' at 'records.1.member.partitionKey'",
        400,
    )

    # WHEN entries are written
    with pytest.raises(KinesisPublishError) as raised:
        _writer(client).put_records(_entries(1), _soon())

    # THEN the error (and anything chained to it) names the code, never the key
    assert raised.value.code == "ValidationException"
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


# -- KinesisRecordWriter ------------------------------------------------------------------


def test_put_records_all_accepted():
    # GIVEN Kinesis accepts every record
    client = _client_answering(200, {"FailedRecordCount": 0, "Records": [_ok(), _ok(), _ok()]})

    # WHEN the entries are written
    codes = _writer(client).put_records(_entries(3), _soon())

    # THEN every entry is acknowledged
    assert codes == [WRITTEN, WRITTEN, WRITTEN]


def test_put_records_maps_per_record_error_codes_in_order(kinesis: tuple[Any, Stubber]):
    # GIVEN a partial failure: throttled, accepted, internal failure, accepted
    client, stubber = kinesis
    stubber.add_response(
        "put_records",
        {
            "FailedRecordCount": 2,
            "Records": [
                _failed("ProvisionedThroughputExceededException"),
                _ok(),
                _failed("InternalFailure"),
                _ok(),
            ],
        },
    )

    # WHEN four entries are written
    codes = _writer(client).put_records(_entries(4), _soon())

    # THEN each entry gets its own outcome, in request order
    assert codes == [THROTTLED, WRITTEN, FAILED, WRITTEN]


def _botocore_body(client: Any, params: dict[str, Any]) -> Any:
    """What botocore's own serializer makes of these PutRecords parameters."""
    model = client.meta.service_model.operation_model("PutRecords")
    request = create_serializer(client.meta.service_model.protocol).serialize_to_request(
        params, model
    )
    return json.loads(request["body"])


def _capture_sent_body(client: Any) -> list[bytes]:
    """Answer every PutRecords locally (all accepted) and keep the bodies that were sent."""
    sent: list[bytes] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        body = bytes(request.body)
        sent.append(body)
        count = len(json.loads(body)["Records"])
        payload = json.dumps({"FailedRecordCount": 0, "Records": [_ok()] * count}).encode()
        return AWSResponse(request.url, 200, {}, _Raw(payload))

    client.meta.events.register("before-send.kinesis.PutRecords", answer)
    return sent


class _Raw:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._payload


def _plain_client() -> Any:
    return boto3.client(
        "kinesis",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _client_answering(status: int, payload: dict[str, Any], operation: str = "PutRecords") -> Any:
    """A real client whose every call of `operation` gets this HTTP answer from the wire."""
    client = _plain_client()

    def answer(request: Any, **_: Any) -> AWSResponse:
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Raw(json.dumps(payload).encode()))

    client.meta.events.register(f"before-send.kinesis.{operation}", answer)
    return client


def test_put_records_reads_per_record_errors_from_the_wire_answer():
    # GIVEN an HTTP 200 answer with one throttled and one failed record among accepted ones
    client = _client_answering(
        200,
        {
            "FailedRecordCount": 2,
            "Records": [
                _ok(),
                _failed("ProvisionedThroughputExceededException"),
                _failed("InternalFailure"),
            ],
        },
    )
    # WHEN three entries are written
    codes = _writer(client).put_records(_entries(3), _soon())
    # THEN each gets its own outcome, in request order
    assert codes == [WRITTEN, THROTTLED, FAILED]


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "Records",
        {},
        {"Records": "x"},
        {"Records": [None], "FailedRecordCount": 0},
        {"Records": [_ok()]},
        {"Records": [_ok()], "FailedRecordCount": "0"},
        {"Records": [_ok()], "FailedRecordCount": False},
        {"Records": [_ok()], "FailedRecordCount": 1},
        {"Records": [_ok(), _ok()], "FailedRecordCount": 0},
        {"Records": [], "FailedRecordCount": 0},
        {"Records": [{}], "FailedRecordCount": 0},
        {"Records": [{"ErrorCode": None}], "FailedRecordCount": 1},
        {"Records": [{"ErrorCode": ""}], "FailedRecordCount": 1},
        {"Records": [{"ErrorCode": 7}], "FailedRecordCount": 1},
        {"Records": [{"SequenceNumber": "1"}], "FailedRecordCount": 0},
        {"Records": [{"ShardId": "shardId-000000000000"}], "FailedRecordCount": 0},
        {"Records": [{"SequenceNumber": 1, "ShardId": "s"}], "FailedRecordCount": 0},
        {"Records": [{"SequenceNumber": "", "ShardId": "s"}], "FailedRecordCount": 0},
    ],
    ids=[
        "not-json",
        "list",
        "string",
        "empty",
        "records-not-a-list",
        "null-entry",
        "no-failed-count",
        "failed-count-text",
        "failed-count-bool",
        "failed-count-wrong",
        "too-many-entries",
        "too-few-entries",
        "empty-entry",
        "null-code",
        "empty-code",
        "code-not-text",
        "no-shard",
        "no-sequence",
        "sequence-not-text",
        "blank-sequence",
    ],
)
def test_put_records_results_anything_but_a_whole_answer_is_an_unknown_outcome(document: Any):
    # GIVEN an answer to a one-record request that is not a complete, well-formed one
    # WHEN it is read
    with pytest.raises(KinesisPublishError) as raised:
        put_records_results(document, 1)
    # THEN nothing is acknowledged: the request's outcome is unknown, and it is retried
    assert raised.value.code == MALFORMED_RESPONSE
    assert raised.value.retryable


def test_put_records_results_reads_each_entry_in_order():
    # GIVEN a whole answer: written, throttled, failed, and an error code that wins over proof
    document = {
        "FailedRecordCount": 3,
        "Records": [
            _ok(),
            _failed("ProvisionedThroughputExceededException"),
            _failed("KMSThrottlingException"),
            {**_ok(), "ErrorCode": "InternalFailure"},
        ],
    }
    # WHEN it is read / THEN one result per record, in request order
    assert put_records_results(document, 4) == [WRITTEN, THROTTLED, FAILED, FAILED]


def test_put_records_error_answer_is_still_classified_by_code():
    # GIVEN an HTTP 400 answer naming a missing stream
    client = _client_answering(
        400,
        {"__type": "ResourceNotFoundException", "message": "Stream orders not found"},
    )
    # WHEN written
    with pytest.raises(KinesisPublishError) as raised:
        _writer(client).put_records(_entries(1), _soon())
    # THEN it is the non-retryable error, with what to fix
    assert raised.value.code == "ResourceNotFoundException"
    assert not raised.value.retryable
    assert "STREAM_NAME" in str(raised.value)


@pytest.mark.parametrize(
    ("stream", "target"),
    [("orders", {"StreamName": "orders"}), (STREAM_ARN, {"StreamARN": STREAM_ARN})],
)
def test_put_records_sends_what_botocore_would_serialize(stream: str, target: dict[str, str]):
    # GIVEN STREAM_NAME as a name or an ARN, and entries with binary data and non-ASCII keys
    client = _plain_client()
    sent = _capture_sent_body(client)
    entries = [Entry.of("pk", b"payload", ()), Entry.of('ключ "7"\\', bytes(range(256)), ())]

    # WHEN the entries are written
    codes = _writer(client, stream).put_records(entries, _soon())

    # THEN the body on the wire is the document botocore's serializer makes of the same records
    records = [{"Data": e.data, "PartitionKey": e.partition_key} for e in entries]
    assert [json.loads(body) for body in sent] == [
        _botocore_body(client, {"Records": records, **target})
    ]
    assert codes == [WRITTEN, WRITTEN]


def test_put_records_fast_path_is_taken_with_the_pinned_botocore():
    # GIVEN the writer on a real client (the fast path costs ~30 % of the CPU when it is lost)
    client = _plain_client()
    sent = _capture_sent_body(client)
    writer = _writer(client)
    entries = [Entry.of("pk", b"payload", ()), Entry.of("other", b"more", ())]
    # WHEN entries are written
    writer.put_records(entries, _soon())
    # THEN the body on the wire is the prepared one, byte for byte (botocore's own serializer
    # writes the same document with spaces after ',' and ':')
    assert sent == [writer._json_body(entries)]
    assert b", " not in sent[0]


def test_put_records_answer_shortcut_is_taken_with_the_pinned_botocore():
    # GIVEN the writer's hooks on a client whose answers carry a field no model knows
    record = {**_ok(), "NotInTheModel": "kept only by the shortcut"}
    client = _client_answering(200, {"FailedRecordCount": 0, "Records": [record]})
    _writer(client)
    # WHEN PutRecords is answered
    response = client.put_records(
        StreamName="orders", Records=[{"Data": b"x", "PartitionKey": "k"}]
    )
    # THEN the answer was taken whole by the hook (botocore's shape parser drops unknown
    # fields, and raises on a body of the wrong shape), and botocore parsed nothing of it
    assert response[ANSWER_DOCUMENT] == {"FailedRecordCount": 0, "Records": [record]}
    assert "Records" not in response


_CAPTURING_CLIENT = _plain_client()
_CAPTURING = (_CAPTURING_CLIENT, _capture_sent_body(_CAPTURING_CLIENT))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=64)),
        min_size=1,
        max_size=10,
    )
)
def test_put_records_body_matches_botocore_for_any_records(rows: list[tuple[str, bytes]]):
    # GIVEN any partition keys and data
    client, sent = _CAPTURING
    sent.clear()
    entries = [Entry.of(key, data, ()) for key, data in rows]
    # WHEN written
    _writer(client).put_records(entries, _soon())
    # THEN the prepared body equals botocore's serialization
    records = [{"Data": data, "PartitionKey": key} for key, data in rows]
    assert json.loads(sent[0]) == _botocore_body(
        client, {"Records": records, "StreamName": "orders"}
    )


def test_put_records_request_error_is_classified(kinesis: tuple[Any, Stubber]):
    # GIVEN the whole request fails because the stream does not exist
    client, stubber = kinesis
    stubber.add_client_error(
        "put_records",
        service_error_code="ResourceNotFoundException",
        service_message="Stream orders under account 123456789012 not found.",
        http_status_code=400,
        expected_params={"Records": ANY, "StreamName": "orders"},
    )

    # WHEN entries are written
    with pytest.raises(KinesisPublishError) as raised:
        _writer(client).put_records(_entries(2), _soon())

    # THEN the error is non-retryable and tells what to fix
    assert not raised.value.retryable
    assert raised.value.code == "ResourceNotFoundException"
    assert "check STREAM_NAME" in str(raised.value)


def test_put_records_throttled_request_is_retryable(kinesis: tuple[Any, Stubber]):
    # GIVEN the whole request is throttled
    client, stubber = kinesis
    stubber.add_client_error(
        "put_records",
        service_error_code="ProvisionedThroughputExceededException",
        http_status_code=400,
    )

    # WHEN entries are written
    with pytest.raises(KinesisPublishError) as raised:
        _writer(client).put_records(_entries(1), _soon())

    # THEN the error is retryable
    assert raised.value.retryable
    assert raised.value.code == "ProvisionedThroughputExceededException"


def test_put_records_mismatched_result_count_is_retryable(kinesis: tuple[Any, Stubber]):
    # GIVEN a response with fewer results than records sent
    client, stubber = kinesis
    stubber.add_response("put_records", {"FailedRecordCount": 1, "Records": [_failed("X")]})

    # WHEN two entries are written
    with pytest.raises(KinesisPublishError) as raised:
        _writer(client).put_records(_entries(2), _soon())

    # THEN nothing is acknowledged: the request is reported as retryable
    assert raised.value.code == MALFORMED_RESPONSE
    assert raised.value.retryable


def _client_failing_with(error: Exception) -> Any:
    """A real client whose connection fails (or times out) when it sends."""
    client = _plain_client()

    def fail(**_: Any) -> None:
        raise error

    client.meta.events.register("before-send.kinesis.PutRecords", fail)
    return client


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://kinesis.us-east-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://kinesis.us-east-1.amazonaws.com"),
    ],
)
def test_put_records_connection_errors_are_retryable(error: Exception):
    # GIVEN a client whose connection fails or times out
    writer = _writer(_client_failing_with(error))

    # WHEN entries are written
    with pytest.raises(KinesisPublishError) as raised:
        writer.put_records(_entries(1), _soon())

    # THEN the failure is retryable and named after the botocore error
    assert raised.value.retryable
    assert raised.value.code == type(error).__name__


# -- S3DeadLetterWriter -------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_dead_letter_writer_puts_one_json_object_per_record(s3: tuple[Any, Stubber]):
    # GIVEN an unwritable record and a stub that answers only the expected object write
    client, stubber = s3
    record = unwritable_record("orders.v1", 2, 31)
    stubber.add_response(
        "put_object",
        {"ETag": '"etag"'},
        {
            "Bucket": "dlq-bucket",
            "Key": "records/orders.v1/2/31.json",
            "Body": dead_letter_document(record, MSK_CLUSTER_ARN),
            "ContentType": "application/json",
        },
    )

    # WHEN it is written
    result = S3DeadLetterWriter(client, "dlq-bucket", "records/").write(
        record, MSK_CLUSTER_ARN, _soon()
    )

    # THEN the write succeeds (the stub matched bucket, key, body and content type)
    assert result is None


def test_dead_letter_writer_failure_names_the_object(s3: tuple[Any, Stubber]):
    # GIVEN S3 refuses the write
    client, stubber = s3
    stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)

    # WHEN the record is written
    with pytest.raises(DeadLetterError) as raised:
        S3DeadLetterWriter(client, "dlq-bucket", "dlq/").write(
            unwritable_record("orders.v1", 2, 31), None, _soon()
        )

    # THEN the error names the object, the partition and offset, and the cause
    message = str(raised.value)
    assert "s3://dlq-bucket/dlq/orders.v1/2/31.json" in message
    assert "orders.v1-2 offset 31" in message
    assert "AccessDenied" in message


def test_dead_letter_writer_failure_does_not_carry_what_s3_quotes(s3: tuple[Any, Stubber]):
    # GIVEN S3 refuses the write with a message quoting request content
    client, stubber = s3
    stubber.add_client_error("put_object", "InvalidArgument", f"Bad header '{SECRET}'", 400)

    # WHEN the record is written
    with pytest.raises(DeadLetterError) as raised:
        S3DeadLetterWriter(client, "dlq-bucket", "dlq/").write(
            unwritable_record("orders.v1", 2, 31), None, _soon()
        )

    # THEN the code is named and the quoted content is not
    assert "InvalidArgument: no description for this code" in str(raised.value)
    assert SECRET not in str(raised.value)


# -- KinesisSummaryReader -----------------------------------------------------------------


def _summary_reader_answering(status: int, payload: dict[str, Any]) -> KinesisSummaryReader:
    """The reader on a real client whose every DescribeStreamSummary gets this answer."""
    return KinesisSummaryReader(_client_answering(status, payload, "DescribeStreamSummary"))


def _summary(**fields: Any) -> dict[str, Any]:
    summary = {"StreamName": "orders", "StreamStatus": "ACTIVE", "OpenShardCount": 4, **fields}
    return {"StreamDescriptionSummary": summary}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, StreamSummary(RecordDistribution.USER_PARTITION_KEY)),
        (
            {"RecordDistributionStrategy": "USER_PARTITION_KEY", "MaxRecordSizeInKiB": 10240},
            StreamSummary(RecordDistribution.USER_PARTITION_KEY, 10 * 1024 * 1024),
        ),
        (
            {"RecordDistributionStrategy": "AUTO", "MaxRecordSizeInKiB": 1024},
            StreamSummary(RecordDistribution.AUTO, 1024 * 1024),
        ),
        (
            {"RecordDistributionStrategy": "ROUND_ROBIN"},
            StreamSummary(RecordDistribution.UNRECOGNIZED),
        ),
    ],
    ids=["provisioned", "keyed", "auto", "unknown-strategy"],
)
def test_summary_reader_reads_the_strategy_and_the_record_size(
    fields: dict[str, Any], expected: StreamSummary
):
    # GIVEN a DescribeStreamSummary answer / WHEN read / THEN the sink's value of it
    assert (
        _summary_reader_answering(200, _summary(**fields)).describe("orders", _soon()) == expected
    )


@pytest.mark.parametrize(
    ("status", "code", "transient", "named"),
    [
        (400, "LimitExceededException", True, "LimitExceededException"),
        (500, "InternalFailure", True, "InternalFailure"),
        (400, "AccessDeniedException", False, "kinesis:DescribeStreamSummary"),
        (400, "ResourceNotFoundException", False, "check STREAM_NAME"),
    ],
)
def test_summary_reader_failure_says_whether_it_may_pass(
    status: int, code: str, transient: bool, named: str
):
    # GIVEN DescribeStreamSummary refused or throttled, its message quoting the request
    reader = _summary_reader_answering(status, {"__type": code, "message": f"about {SECRET}"})
    # WHEN the stream is described
    with pytest.raises(StreamSummaryError) as raised:
        reader.describe("orders", _soon())
    # THEN the error says whether asking later can help and what to fix, never the message
    assert (raised.value.code, raised.value.transient) == (code, transient)
    assert named in str(raised.value)
    assert SECRET not in str(raised.value)


# -- S3ClaimCheckWriter -----------------------------------------------------------------------


def _claim_checked_record() -> ClaimCheckRecord:
    record = unwritable_record("orders.v1", 2, 31).source._replace(value_b64=b64(b"x" * 3000))
    unit = claim_check_oversize(
        UnwritableRecord(record, "k", "too large"),
        ClaimCheckTarget("claims"),
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=2048,
    )
    assert isinstance(unit, ClaimCheckRecord)
    return unit


def test_claim_check_writer_puts_the_envelope_where_the_pointer_says_with_its_digest(
    s3: tuple[Any, Stubber],
):
    # GIVEN a claim-checked record and a stub that answers only the expected write
    client, stubber = s3
    record = _claim_checked_record()
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
    S3ClaimCheckWriter(client).write(record, _soon())
    assert record.claim_check.sha256 == digest.hex()


def test_claim_check_writer_failure_names_the_record_and_not_what_s3_quotes(
    s3: tuple[Any, Stubber],
):
    # GIVEN S3 refuses the write, quoting request content
    client, stubber = s3
    stubber.add_client_error("put_object", "AccessDenied", f"Denied '{SECRET}'", 403)
    # WHEN written
    with pytest.raises(ClaimCheckWriteError) as raised:
        S3ClaimCheckWriter(client).write(_claim_checked_record(), _soon())
    # THEN the error names the partition, offset, size, bucket and code, never the quote
    message = str(raised.value)
    assert "orders.v1-2 offset 31" in message and "bucket claims" in message
    assert "AccessDenied" in message and SECRET not in message
