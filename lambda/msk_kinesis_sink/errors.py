"""Exceptions raised by the sink; each names the utility that raised it and what is wrong."""

from __future__ import annotations


class SinkError(Exception):
    """Base class of every error the sink raises on purpose."""


class ConfigurationError(SinkError):
    """An environment variable is missing or holds a value outside its allowed set or range."""


class RoutingError(SinkError):
    """A topic matches no STREAM_ROUTES pattern and there is no default STREAM_NAME."""


class MalformedEventError(SinkError):
    """The invocation event is not an MSK / self-managed Kafka event the sink can read."""


class UnwritableRecordError(SinkError):
    """One record can never be written to Kinesis (too large once encoded, undecodable base64)."""


class KinesisPublishError(SinkError):
    """A PutRecords request failed as a whole; `retryable` says whether trying again can help,
    `throttled` whether the stream (or its key) asked to slow down."""

    def __init__(
        self, message: str, *, code: str, retryable: bool, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.throttled = throttled


class StreamHeldError(KinesisPublishError):
    """Nothing was sent: the stream guard holds the stream (its record distribution strategy is
    AUTO, or could not be learned), so its partitions stop and are reported."""


class StreamSummaryError(SinkError):
    """DescribeStreamSummary failed or answered with something that is not a summary;
    `transient` says whether asking again later can help."""

    def __init__(self, message: str, *, code: str, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


class DeadLetterError(SinkError):
    """Writing an unwritable record to the dead-letter bucket failed."""


class ClaimCheckWriteError(SinkError):
    """Writing a claim-checked record's object to S3 failed (its pointer waits)."""


class ClaimCheckError(SinkError):
    """resolve_claim_check got no claim check, or could not read the object it names."""


class ClaimCheckMismatchError(ClaimCheckError):
    """The object a claim check names is not the record it stands for (size, digest or place)."""


class ReplayError(SinkError):
    """The replay could not list, read or mark its objects, or read the function's settings."""


class UnreadableObjectError(SinkError):
    """An object the replay selected is not a dead letter or on-failure document it can read;
    `kind` names the rule it breaks (replay.refusals.Unreadable), which the summary counts."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class MalformedAggregateError(SinkError, ValueError):
    """A KPL aggregated record (magic and MD5 match) whose records point past its key tables."""


class MalformedEnvelopeError(SinkError, ValueError):
    """Bytes given to Envelope.from_bytes are not an `envelope` record as the sink writes it."""


class PartitionKeyRequiredError(SinkError, ValueError):
    """OffsetDeduplicator.accept got a header-keyed envelope without its Kinesis partition key."""


class DoctorError(SinkError):
    """The doctor could not read the deployment: no such stack, no credentials, access denied."""


class UnresolvedTemplateError(SinkError):
    """A template value uses an intrinsic function or attribute that can't be worked out offline."""
