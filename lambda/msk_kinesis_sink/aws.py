"""The one module that touches boto3: the Kinesis record writer and the S3 dead-letter writer.

Its last section serves the operator's replay tool (`python -m msk_kinesis_sink.replay`): the
function never calls it, and the replay reaches AWS only through it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
import urllib.request
from binascii import b2a_base64
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    HTTPClientError,
    ParamValidationError,
)
from botocore.httpsession import get_cert_path

from msk_kinesis_sink.dead_letters import dead_letter_document, dead_letter_key
from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.errors import DeadLetterError, KinesisPublishError, ReplayError
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.settings import Settings
from msk_kinesis_sink.transport import (
    ConnectFailed,
    ConnectionLost,
    DeadlineExceeded,
    Transport,
)
from msk_kinesis_sink.writers import RecordResult

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client

# With logLevel=DEBUG the Lambda Python runtime puts the root logger at DEBUG, and botocore then
# logs every request and response body: partition keys (often the Kafka key itself) and the
# base64 data of every record. The SDK's loggers stay at WARNING whatever the root level, so
# no log level can put customer data in the logs. Set here, where every client is made.
SDK_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")


def _quiet_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_quiet_sdk_loggers()

# Request-level errors worth trying again: throttling, service-side faults, KMS throttling.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

# Request-level errors that mean "slow down" (the publisher counts them as throttling).
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "KMSThrottlingException",
        "SlowDown",
    }
)

# The per-record ErrorCode of a throttled record; any other code is an internal failure.
RECORD_THROTTLED: Final = "ProvisionedThroughputExceededException"

# What to tell an operator for errors that no retry can fix.
FIX_HINTS: Mapping[str, str] = {
    "ResourceNotFoundException": "the stream does not exist: check STREAM_NAME and the region",
    "AccessDeniedException": "the function role lacks kinesis:PutRecords on the stream",
    "KMSAccessDeniedException": "the function role may not use the stream's KMS key",
    "KMSDisabledException": "the stream's KMS key is disabled: enable it",
    "KMSNotFoundException": "the stream's KMS key no longer exists",
    "KMSInvalidStateException": "the stream's KMS key is not usable (pending deletion?)",
    "KMSOptInRequired": "the account is not subscribed to KMS",
    "ValidationException": "the request was rejected as invalid: check that MAX_RECORD_BYTES"
    " does not exceed the stream's maximum record size",
    "InvalidArgumentException": "the request was rejected as invalid: check that MAX_RECORD_BYTES"
    " does not exceed the stream's maximum record size",
}


# An AWS error message may quote request content: a validation error quotes the value it
# rejected, a botocore parameter error prints the value it was given. A quoted value may hold
# quotes itself, so everything from the first quote to the last of the same kind goes (to the
# end when it is never closed).
_QUOTED = re.compile(r"(['\"`])(?:.*\1|.*)", re.DOTALL)
_VALUE_FIELD = re.compile(r"values?\s*[:=]", re.IGNORECASE)
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_NOT_CODE = re.compile(r"[^A-Za-z0-9_.:-]")
MAX_ERROR_MESSAGE_CHARS = 200
MAX_ERROR_CODE_CHARS = 64


def describe_error(error: BaseException) -> tuple[str, str]:
    """An AWS or botocore error's code, and its message made fit for logs.

    Quoted text is replaced by `<...>`, anything after a `value:` is dropped, and what is left
    is printable ASCII on one line, at most 200 characters: whatever a service or botocore
    echoes of the request (partition keys, data) never reaches a log line or an exception.
    """
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code, message = str(details.get("Code") or "Unknown"), str(details.get("Message") or "")
    else:
        code, message = type(error).__name__, str(error)
    message = _QUOTED.sub("<...>", message)
    head = _VALUE_FIELD.split(message, maxsplit=1)
    if len(head) > 1:
        message = head[0] + "value: <...>"
    message = _NOT_PRINTABLE.sub("?", " ".join(message.split()))
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return _NOT_CODE.sub("?", code)[:MAX_ERROR_CODE_CHARS], message


def _client_config(settings: Settings) -> Config:
    return Config(
        connect_timeout=settings.request_timeout_seconds,
        read_timeout=settings.request_timeout_seconds,
        # The publisher retries only what failed, with its own backoff and deadline; botocore's
        # own retries would resend whole requests (duplicates) and hide the clock.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, settings.max_concurrency),
        tcp_keepalive=True,
    )


class RequestDeadlineExceeded(HTTPClientError):
    """The request was cut at its deadline (the whole exchange, not one socket read)."""

    fmt = 'Request to "{endpoint_url}" cut at its deadline'


# Per worker thread: the deadline of the request it is making (set by the writers around each
# call; the transport reads it), and PutRecords' prepared body.
_REQUEST = threading.local()


class _BoundedSession:
    """What botocore sends requests with, made to bound each whole exchange by a deadline.

    botocore still resolves the endpoint, signs, runs its `before-send` handlers (a handler
    that answers, as moto's does, means nothing is sent), and parses the answer; only the HTTP
    exchange is ours, so that a deadline covers all of it (botocore's read timeout covers one
    read). Anything the transport can't send as it is (a streamed body) goes through botocore's
    own session.
    """

    def __init__(self, transport: Transport, fallback: Any, default_timeout_s: float) -> None:
        self._transport = transport
        self._fallback = fallback
        self._default_timeout_s = default_timeout_s

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes | bytearray):
            return self._send_with_botocore(request)
        deadline = getattr(_REQUEST, "deadline", None)
        if deadline is None:
            deadline = time.monotonic() + self._default_timeout_s
        try:
            answer = self._transport.send(
                request.method, request.url, dict(request.headers.items()), bytes(body), deadline
            )
        except DeadlineExceeded as error:
            raise RequestDeadlineExceeded(endpoint_url=request.url, error=error) from None
        except ConnectFailed as error:
            raise EndpointConnectionError(endpoint_url=request.url, error=error) from None
        except ConnectionLost as error:
            raise ConnectionClosedError(endpoint_url=request.url, error=error) from None
        headers = HTTPHeaders()
        for name, value in answer.headers:
            headers[name] = value
        return AWSResponse(request.url, answer.status, headers, _Body(answer.body))

    def _send_with_botocore(self, request: AWSPreparedRequest) -> AWSResponse:
        response: AWSResponse = self._fallback.send(request)
        return response

    def close(self) -> None:
        self._fallback.close()


class _Body:
    """The raw body AWSResponse reads an answer from."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Any:
        yield self._payload


def _proxied(endpoint_url: str | None) -> bool:
    """Whether the environment routes requests to this endpoint through an HTTP proxy."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return False
    parts = urlsplit(endpoint_url or "https://amazonaws.com")
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return False
    return (parts.scheme or "https") in proxies


def _bound_every_request(client: Any, env: Mapping[str, str], settings: Settings) -> bool:
    """Send the client's requests through the deadline-bounded transport; True when it does.

    Behind an HTTP proxy botocore keeps sending them (it speaks the proxy protocol); each read
    is then bounded by the timeout, and the publisher answers on time without waiting for them.
    """
    # The endpoint's session is what botocore sends with; a test pins that this still holds
    # for the pinned botocore (tests/unit/test_aws_adapter.py).
    endpoint: Any = getattr(client, "_endpoint", None)
    fallback = getattr(endpoint, "http_session", None)
    if fallback is None or not hasattr(fallback, "send") or _proxied(client.meta.endpoint_url):
        return False
    transport = _transport(env.get("AWS_CA_BUNDLE") or get_cert_path(True))
    endpoint.http_session = _BoundedSession(transport, fallback, settings.request_timeout_seconds)
    return True


@functools.cache
def _transport(ca_bundle: str) -> Transport:
    """One transport for the container's clients: one TLS context (loading the CA bundle costs
    milliseconds), one watchdog thread, and each worker's connections in one pool."""
    return Transport(ca_bundle=ca_bundle)


def session(env: Mapping[str, str]) -> boto3.session.Session:
    """One session per container: both clients share its loaded models and credentials."""
    return boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )


def _endpoint(env: Mapping[str, str], service: str) -> str | None:
    # boto3 reads these from os.environ itself; passing them through lets tools run the sink
    # in-process with an environment of their own.
    return env.get(f"AWS_ENDPOINT_URL_{service}") or env.get("AWS_ENDPOINT_URL") or None


def kinesis_client(
    settings: Settings, env: Mapping[str, str], aws_session: boto3.session.Session | None = None
) -> KinesisClient:
    client = (aws_session or session(env)).client(
        "kinesis", endpoint_url=_endpoint(env, "KINESIS"), config=_client_config(settings)
    )
    _bound_every_request(client, env, settings)
    return client


def s3_client(
    settings: Settings, env: Mapping[str, str], aws_session: boto3.session.Session | None = None
) -> S3Client:
    # Same single-attempt, bounded-time policy as Kinesis: a dead-letter write must fit in the
    # deadline margin; if it fails, the record is reported and the ESM retries it.
    client = (aws_session or session(env)).client(
        "s3", endpoint_url=_endpoint(env, "S3"), config=_client_config(settings)
    )
    _bound_every_request(client, env, settings)
    return client


# PutRecords' JSON 1.1 body is built here rather than by botocore's serializer: it is the same
# document, made in one pass without per-record parameter validation and dict building, which
# costs more CPU than everything else the function does per record. botocore still resolves the
# endpoint, signs and sends; a `before-call` hook swaps in the prepared body, and a
# `before-parse` hook reads a successful answer with the C JSON decoder (errors stay botocore's).
_BODY_HOOK_ID = "msk-kinesis-sink-prepared-put-records-body"
_RESULT_HOOK_ID = "msk-kinesis-sink-put-records-result"
# The placeholder request botocore serializes (and validates) in place of the real records.
_PLACEHOLDER_RECORDS: list[Any] = [{"Data": b"", "PartitionKey": "-"}]


def _use_prepared_body(params: dict[str, Any], **_: Any) -> None:
    body = getattr(_REQUEST, "body", None)
    if body is not None:
        params["body"] = body


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
                "before-call.kinesis.PutRecords", _use_prepared_body, unique_id=_BODY_HOOK_ID
            )
            client.meta.events.register(
                "before-parse.kinesis.PutRecords",
                _read_put_records_result,
                unique_id=_RESULT_HOOK_ID,
            )

    def put_records(self, entries: Sequence[Entry], deadline: float) -> list[RecordResult]:
        _REQUEST.deadline = deadline
        try:
            if self._prepared:
                _REQUEST.body = self._json_body(entries)
                try:
                    response = self._client.put_records(
                        Records=_PLACEHOLDER_RECORDS,
                        **self._target,  # type: ignore[arg-type]
                    )
                finally:
                    _REQUEST.body = None
            else:
                records: list[Any] = [
                    {"Data": entry.data, "PartitionKey": entry.partition_key} for entry in entries
                ]
                response = self._client.put_records(Records=records, **self._target)  # type: ignore[arg-type]
        # `from None` here and below: the original error's text may quote the request; only
        # the code and the cleaned message travel on.
        except ClientError as error:
            raise classify_client_error(error) from None
        except ParamValidationError as error:
            # Rejected before sending: the same request would be rejected again.
            code, message = describe_error(error)
            raise KinesisPublishError(f"{code}: {message}", code=code, retryable=False) from None
        except BotoCoreError as error:
            # Connection resets, timeouts, endpoint errors: the write may or may not have
            # happened; resending is safe because the consumer rule drops repeats.
            code, message = describe_error(error)
            raise KinesisPublishError(f"{code}: {message}", code=code, retryable=True) from None
        finally:
            _REQUEST.deadline = None
        results = response["Records"]
        if len(results) != len(entries):
            raise KinesisPublishError(
                f"PutRecords answered {len(results)} results for {len(entries)} records",
                code="MismatchedResponse",
                retryable=True,
            )
        return [record_result(result) for result in results]

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


def record_result(result: Mapping[str, Any]) -> RecordResult:
    """A record counts as written only when the answer proves it: a sequence number and a shard,
    and no error code. Anything else (even `{}`) is retried like an internal failure."""
    code = result.get("ErrorCode")
    if code:
        return RecordResult.THROTTLED if code == RECORD_THROTTLED else RecordResult.FAILED
    if result.get("SequenceNumber") and result.get("ShardId"):
        return RecordResult.WRITTEN
    return RecordResult.FAILED


def classify_client_error(error: ClientError) -> KinesisPublishError:
    code, cleaned = describe_error(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
    hint = FIX_HINTS.get(code)
    message = f"{code}: {cleaned}".strip()
    if hint and not retryable:
        message = f"{message} ({hint})"
    return KinesisPublishError(
        message, code=code, retryable=retryable, throttled=code in THROTTLING_CODES
    )


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
        _REQUEST.deadline = deadline
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            code, message = describe_error(error)
            raise DeadLetterError(
                f"could not write s3://{self._bucket}/{key} for {source.topic_partition}"
                f" offset {source.offset}: {code}: {message}"
            ) from None
        finally:
            _REQUEST.deadline = None


# -- The replay's access: the operator's credentials, never the function's ------------------------

# Listing, reading, copying and deleting objects and reading a function's configuration are
# idempotent, so botocore's own retries suit them (PutRecords' retries stay the publisher's).
_OPERATOR_CONFIG: Final = Config(
    connect_timeout=10,
    read_timeout=60,
    retries={"total_max_attempts": 5, "mode": "standard"},
)

# What the SDK raises, for callers that must not import botocore to catch it.
SDK_ERRORS: Final = (ClientError, BotoCoreError)

# What to tell an operator for errors of the replay's own calls.
REPLAY_HINTS: Mapping[str, str] = {
    "NoSuchBucket": "the bucket does not exist: check --bucket and the region",
    "AccessDenied": "these credentials lack s3:ListBucket, s3:GetObject, s3:PutObject or"
    " s3:DeleteObject on the bucket, or kms:Decrypt / kms:GenerateDataKey on its key",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "InvalidObjectState": "the object is archived: restore it first",
    "KMS.DisabledException": "the bucket's KMS key is disabled: enable it",
    "KMS.NotFoundException": "the bucket's KMS key no longer exists",
    "KMS.KMSInvalidStateException": "the bucket's KMS key is not usable (pending deletion?)",
    "ResourceNotFoundException": "no such function: check --function and the region",
    "AccessDeniedException": "these credentials lack lambda:GetFunctionConfiguration on it",
}


def _operator_problem(action: str, error: Exception) -> str:
    code, message = describe_error(error)
    text = f"{action}: {code}: {message}".rstrip(": ")
    hint = REPLAY_HINTS.get(code)
    return f"{text} ({hint})" if hint else text


class S3ObjectSummary(NamedTuple):
    """One listed object: what selection needs before reading it."""

    key: str
    size: int
    last_modified: datetime


class S3ObjectStore:
    """The replay's objects in one bucket: list them, read one, move a replayed one aside."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def list(self, prefix: str) -> Iterator[S3ObjectSummary]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield S3ObjectSummary(item["Key"], item["Size"], item["LastModified"])
        except (ClientError, BotoCoreError) as error:
            where = f"s3://{self.bucket}/{prefix}"
            raise ReplayError(_operator_problem(f"could not list {where}", error)) from None

    def read(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as error:
            where = f"s3://{self.bucket}/{key}"
            raise ReplayError(_operator_problem(f"could not read {where}", error)) from None
        return body

    def move(self, key: str, to_key: str) -> None:
        """Copy, then delete: the object is never gone from both places (on a versioned bucket
        the original stays as a noncurrent version until the bucket's lifecycle expires it)."""
        try:
            self._client.copy_object(
                Bucket=self.bucket, Key=to_key, CopySource={"Bucket": self.bucket, "Key": key}
            )
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            where = f"s3://{self.bucket}/{key}"
            raise ReplayError(
                _operator_problem(f"could not move {where} to {to_key}", error)
            ) from None


def operator_s3_client(env: Mapping[str, str]) -> S3Client:
    return session(env).client("s3", endpoint_url=_endpoint(env, "S3"), config=_OPERATOR_CONFIG)


def function_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """The deployed function's environment variables (lambda:GetFunctionConfiguration)."""
    # No stubs for the Lambda client are pinned: its one call here is checked by the tests.
    client: Any = session(env).client(
        "lambda", endpoint_url=_endpoint(env, "LAMBDA"), config=_OPERATOR_CONFIG
    )
    try:
        configuration = client.get_function_configuration(FunctionName=name)
    except (ClientError, BotoCoreError) as error:
        raise ReplayError(
            _operator_problem(f"could not read function {name}'s configuration", error)
        ) from None
    environment = configuration.get("Environment") or {}
    failure = environment.get("Error")
    if failure:
        code = str(failure.get("ErrorCode") or "Unknown")
        raise ReplayError(
            f"function {name}'s environment variables can not be read: {code} (they are"
            " encrypted with a KMS key these credentials may not use for kms:Decrypt)"
        )
    variables = environment.get("Variables") or {}
    return {str(variable): str(value) for variable, value in variables.items()}
