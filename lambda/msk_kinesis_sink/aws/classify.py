"""Every SDK error and answer made into the sink's own values, here and only here.

No AWS error string goes further: the writers raise `KinesisPublishError` or `DeadLetterError`
with a code and a message cleaned of anything the request held, and per-record answers become
`RecordResult`s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from msk_kinesis_sink.errors import KinesisPublishError
from msk_kinesis_sink.writers import RecordResult

# What the SDK raises, for callers that must not import botocore to catch it.
SDK_ERRORS: Final = (ClientError, BotoCoreError)

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


def publish_error(error: ClientError | BotoCoreError) -> KinesisPublishError:
    """What a PutRecords call that raised means for its records."""
    if isinstance(error, ClientError):
        return classify_client_error(error)
    code, message = describe_error(error)
    # Rejected before sending: the same request would be rejected again. Any other botocore
    # error (connection reset, timeout, endpoint error) leaves the write unknown; resending is
    # safe because the consumer rule drops repeats.
    retryable = not isinstance(error, ParamValidationError)
    return KinesisPublishError(f"{code}: {message}", code=code, retryable=retryable)


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


def put_records_results(response: Mapping[str, Any], sent: int) -> list[RecordResult]:
    """One result per record sent, in order; raises a retryable KinesisPublishError when the
    answer does not hold one result per record."""
    results = response["Records"]
    if len(results) != sent:
        raise KinesisPublishError(
            f"PutRecords answered {len(results)} results for {sent} records",
            code="MismatchedResponse",
            retryable=True,
        )
    return [record_result(result) for result in results]


def record_result(result: Mapping[str, Any]) -> RecordResult:
    """A record counts as written only when the answer proves it: a sequence number and a shard,
    and no error code. Anything else (even `{}`) is retried like an internal failure."""
    code = result.get("ErrorCode")
    if code:
        return RecordResult.THROTTLED if code == RECORD_THROTTLED else RecordResult.FAILED
    if result.get("SequenceNumber") and result.get("ShardId"):
        return RecordResult.WRITTEN
    return RecordResult.FAILED
