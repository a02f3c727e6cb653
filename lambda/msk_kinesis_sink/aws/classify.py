"""Every SDK error and answer made into the sink's own values, here and only here.

An error goes on as its code, when it looks like one, and a fixed description of that code. What
a service wrote in its message (a validation message may echo a partition key, quoted or not)
and botocore's own text (a parameter error prints the value it was given) are never passed on:
only their length. An answer is checked whole: anything but a complete, well-formed answer of
the operation is an unknown outcome, retried like a lost answer, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.parsers import ResponseParserError

from msk_kinesis_sink.errors import KinesisPublishError, StreamSummaryError
from msk_kinesis_sink.writers import RecordDistribution, RecordResult, StreamSummary

# What the SDK raises, for callers that must not import botocore to catch it.
SDK_ERRORS: Final = (ClientError, BotoCoreError)

# What botocore's parsers raise on a body that is not the operation's document (a list where
# an object belongs, a number for a string, bytes that are not UTF-8). The function's own calls
# catch these around the client call and nowhere else: it is an answer that isn't one.
UNREADABLE_ANSWER_ERRORS: Final = (
    ResponseParserError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
)

# Everything a client call of the function may raise because of what AWS (or anything on the
# way) answered: each becomes a `CallFailure`.
CALL_ERRORS: Final = (*SDK_ERRORS, *UNREADABLE_ANSWER_ERRORS)

# The code of an answer that is not a complete, well-formed answer of its operation.
MALFORMED_RESPONSE: Final = "MalformedResponse"
# The code logged for an error whose code does not look like one.
UNRECOGNIZED_CODE: Final = "UnrecognizedCode"
# An AWS error code: letters, digits and dots (`KMS.DisabledException`), at most 64.
_CODE: Final = re.compile(r"[A-Za-z0-9.]{1,64}", re.ASCII)

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

_MAX_RECORD_SIZE: Final = "check that MAX_RECORD_BYTES does not exceed the stream's maximum"
# What each known code means, and for a refusal no retry can fix, what to do: the only text of
# an error that reaches a log line besides its code.
DESCRIPTIONS: Final[Mapping[str, str]] = {
    # Throttling and service faults (retried).
    "ProvisionedThroughputExceededException": "the stream's write throughput was exceeded",
    "ThrottlingException": "the request rate was throttled",
    "Throttling": "the request rate was throttled",
    "LimitExceededException": "an API rate limit was exceeded",
    "KMSThrottlingException": "KMS throttled the stream's encryption",
    "SlowDown": "S3 asked for fewer requests per second",
    "InternalFailure": "the service failed internally",
    "InternalFailureException": "the service failed internally",
    "InternalServerError": "the service failed internally",
    "InternalError": "the service failed internally",
    "ServiceUnavailable": "the service was unavailable",
    "ServiceUnavailableException": "the service was unavailable",
    "RequestTimeout": "the service timed out waiting for the request",
    "RequestTimeoutException": "the service timed out waiting for the request",
    # Refusals no retry can fix.
    "ResourceNotFoundException": "the stream does not exist: check STREAM_NAME, STREAM_ROUTES"
    " and the region",
    "ResourceInUseException": "the stream is being created, updated or deleted",
    "AccessDeniedException": "the function role is not allowed this call",
    "AccessDenied": "S3 denied access: the caller's IAM policy, the bucket policy or the"
    " bucket's KMS key refuses it",
    "NoSuchBucket": "the bucket does not exist",
    "KMSAccessDeniedException": "the function role may not use the stream's KMS key",
    "KMSDisabledException": "the stream's KMS key is disabled: enable it",
    "KMSNotFoundException": "the stream's KMS key no longer exists",
    "KMSInvalidStateException": "the stream's KMS key is not usable (pending deletion?)",
    "KMSOptInRequired": "the account is not subscribed to KMS",
    "ValidationException": f"the request was rejected as invalid: {_MAX_RECORD_SIZE}",
    "InvalidArgumentException": f"the request was rejected as invalid: {_MAX_RECORD_SIZE}",
    "ExpiredTokenException": "the function's credentials expired",
    "ExpiredToken": "the function's credentials expired",
    "UnrecognizedClientException": "the credentials were not recognized",
    "InvalidSignatureException": "the request's signature was not accepted",
    "SignatureDoesNotMatch": "the request's signature was not accepted",
    # botocore's own errors, by class name.
    "EndpointConnectionError": "no connection could be opened to the endpoint",
    "ConnectTimeoutError": "connecting to the endpoint timed out",
    "ReadTimeoutError": "the answer did not arrive in time",
    "ConnectionClosedError": "the connection closed before the whole answer arrived",
    "RequestDeadlineExceeded": "the request was cut at its deadline",
    "SSLError": "the TLS connection failed",
    "ProxyConnectionError": "the HTTP proxy could not be reached",
    "ParamValidationError": "the SDK refused the request's parameters before sending it",
    "NoCredentialsError": "no AWS credentials were found",
    "NoRegionError": "no AWS region is set",
    MALFORMED_RESPONSE: "the answer was not a complete, well-formed answer of the operation:"
    " its outcome is unknown",
}

# A refusal whose remedy depends on the call: the permission the role needs.
_PERMISSIONS: Final[Mapping[str, str]] = {
    "PutRecords": "kinesis:PutRecords",
    "DescribeStreamSummary": "kinesis:DescribeStreamSummary",
}
# Codes that mean the caller may not make the call. "403" is botocore's code for an HTTP 403
# whose body names none it can read (moto answers Kinesis's JSON protocol with an XML denial).
_DENIED_CODES: Final = frozenset({"AccessDeniedException", "403"})


@dataclass(frozen=True, slots=True)
class CallFailure:
    """What a failed client call means: a code, its fixed description, and what to do next."""

    code: str
    description: str
    retryable: bool
    throttled: bool = False

    @property
    def text(self) -> str:
        return f"{self.code}: {self.description}"


def error_code(error: BaseException) -> str:
    """The error's code when it looks like one (a ClientError's, a botocore error's class name)."""
    if isinstance(error, ClientError):
        details = error.response.get("Error")
        code = details.get("Code") if isinstance(details, Mapping) else None
        code = code or "Unknown"
    elif isinstance(error, BotoCoreError):
        code = type(error).__name__
    else:
        return MALFORMED_RESPONSE  # a parser's crash on an answer that isn't one
    return code if isinstance(code, str) and _CODE.fullmatch(code) else UNRECOGNIZED_CODE


def describe_error(error: BaseException) -> tuple[str, str]:
    """An error's code and its fixed description: all of it that may reach a log line.

    The message a service or botocore attached is replaced by its length; a code that is not
    letters, digits and dots (at most 64) is replaced by `UnrecognizedCode`.
    """
    code = error_code(error)
    description = DESCRIPTIONS.get(code, "no description for this code")
    permission = _PERMISSIONS.get(str(getattr(error, "operation_name", "")))
    if code in _DENIED_CODES and permission is not None:
        description = f"the function role lacks {permission} on the stream"
    withheld = len(_free_text(error))
    if withheld:
        description = f"{description} (its message, {withheld} characters, is not logged)"
    return code, description


def _free_text(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error")
        message = details.get("Message") if isinstance(details, Mapping) else None
        return message if isinstance(message, str) else ""
    return str(error)


def call_failure(error: BaseException) -> CallFailure:
    """What a failed call means for what it sent.

    A ClientError is retried when its code or status says the service may do better next time.
    Any other botocore error (connection reset, timeout, an answer cut at its deadline) and an
    answer botocore could not read leave the outcome unknown: sending again is safe, because
    the consumer rule drops repeats. Only a request botocore refused before sending is not.
    """
    code, description = describe_error(error)
    if isinstance(error, ClientError):
        metadata = error.response.get("ResponseMetadata")
        status = metadata.get("HTTPStatusCode") if isinstance(metadata, Mapping) else None
        status = status if isinstance(status, int) else 0
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        return CallFailure(code, description, retryable, throttled=code in THROTTLING_CODES)
    return CallFailure(code, description, retryable=not isinstance(error, ParamValidationError))


def publish_error(error: BaseException) -> KinesisPublishError:
    """What a PutRecords call that raised means for its records."""
    failure = call_failure(error)
    return KinesisPublishError(
        failure.text, code=failure.code, retryable=failure.retryable, throttled=failure.throttled
    )


def summary_error(error: BaseException) -> StreamSummaryError:
    """What a DescribeStreamSummary call that raised means: transient when it may pass."""
    failure = call_failure(error)
    return StreamSummaryError(failure.text, code=failure.code, transient=failure.retryable)


def malformed(operation: str, problem: str) -> CallFailure:
    """An answer that is not one: `problem` says what is wrong in the sink's own words."""
    return CallFailure(
        MALFORMED_RESPONSE,
        f"{operation} answered {problem}: its outcome is unknown",
        retryable=True,
    )


# -- PutRecords ---------------------------------------------------------------------------


def put_records_results(document: object, sent: int) -> list[RecordResult]:
    """One result per record sent, in order, read from a complete, well-formed PutRecords answer.

    Anything else (not an object, no `Records` list of exactly one entry per record sent, an
    entry that is neither a success nor a failure, no integer `FailedRecordCount` that matches
    the failed entries) raises a retryable KinesisPublishError: nothing is known to be written.
    """
    read = _read_put_records(document, sent)
    if isinstance(read, list):
        return read
    failure = malformed("PutRecords", read)
    raise KinesisPublishError(failure.text, code=failure.code, retryable=True)


def _read_put_records(document: object, sent: int) -> list[RecordResult] | str:
    """The results, or what is wrong with the answer."""
    if not isinstance(document, dict):
        return "with no JSON object"
    entries, failed = document.get("Records"), document.get("FailedRecordCount")
    if not isinstance(entries, list):
        return "with no Records list"
    if len(entries) != sent:
        return f"{len(entries)} entries for {sent} records"
    if type(failed) is not int:  # bool is an int subclass, and no count
        return "with no integer FailedRecordCount"
    results: list[RecordResult] = []
    for entry in entries:
        result = _entry_result(entry)
        if result is None:
            return "an entry that is neither written nor failed"
        results.append(result)
    if failed != sum(result is not RecordResult.WRITTEN for result in results):
        return f"FailedRecordCount {failed} for another number of failed entries"
    return results


def _entry_result(entry: object) -> RecordResult | None:
    """A written entry proves it (a sequence number and a shard, no error code); a failed one
    has an error code; anything else is not an entry (None)."""
    if not isinstance(entry, dict):
        return None
    code = entry.get("ErrorCode")
    if code is None:
        sequence, shard = entry.get("SequenceNumber"), entry.get("ShardId")
        if isinstance(sequence, str) and sequence and isinstance(shard, str) and shard:
            return RecordResult.WRITTEN
        return None
    if not isinstance(code, str) or not code:
        return None
    return RecordResult.THROTTLED if code == RECORD_THROTTLED else RecordResult.FAILED


# -- DescribeStreamSummary ----------------------------------------------------------------

_DISTRIBUTIONS: Final = {
    "USER_PARTITION_KEY": RecordDistribution.USER_PARTITION_KEY,
    "AUTO": RecordDistribution.AUTO,
}
KIB: Final = 1024


def stream_summary(document: object) -> StreamSummary:
    """The summary a DescribeStreamSummary answer holds; raises a transient StreamSummaryError
    for an answer that is not one.

    No RecordDistributionStrategy means partition keys place records: AWS returns the field for
    on-demand streams only. No MaxRecordSizeInKiB means the answer does not say (kinesalite,
    moto): the function's own MAX_RECORD_BYTES stands.
    """
    summary = document.get("StreamDescriptionSummary") if isinstance(document, dict) else None
    problem = _summary_problem(summary)
    if problem is not None:
        failure = malformed("DescribeStreamSummary", problem)
        raise StreamSummaryError(failure.text, code=failure.code, transient=True)
    assert isinstance(summary, dict)  # the problem check proved it
    strategy, size = summary.get("RecordDistributionStrategy"), summary.get("MaxRecordSizeInKiB")
    distribution = (
        RecordDistribution.USER_PARTITION_KEY
        if strategy is None
        else _DISTRIBUTIONS.get(strategy, RecordDistribution.UNRECOGNIZED)
    )
    return StreamSummary(distribution, None if size is None else size * KIB)


def _summary_problem(summary: object) -> str | None:
    if not isinstance(summary, dict):
        return "with no StreamDescriptionSummary object"
    if not all(isinstance(summary.get(name), str) for name in ("StreamName", "StreamStatus")):
        return "a summary without a stream name and status"
    strategy, size = summary.get("RecordDistributionStrategy"), summary.get("MaxRecordSizeInKiB")
    if strategy is not None and not isinstance(strategy, str):
        return "a RecordDistributionStrategy that is not text"
    if size is not None and (type(size) is not int or size <= 0):
        return "a MaxRecordSizeInKiB that is not a positive integer"
    return None


# -- S3 PutObject -------------------------------------------------------------------------


def put_object_failure(response: object) -> CallFailure | None:
    """None when a PutObject answer proves the object was stored (S3 answers with its ETag);
    otherwise what is wrong with it."""
    etag = response.get("ETag") if isinstance(response, Mapping) else None
    if isinstance(etag, str) and etag:
        return None
    return malformed("PutObject", "without an ETag")
