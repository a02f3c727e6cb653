"""failureMode (cdk.json): what the event source mappings do with a batch whose invocations keep
failing. Pure (no CDK), so the local ESM emulator reads it as the stack does."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, assert_never

# MaximumRetryAttempts and MaximumRecordAgeInSeconds: -1 = no limit.
UNLIMITED: Final = -1


class FailureMode(StrEnum):
    """What the mappings do with a batch whose invocations keep failing."""

    DIVERT = "divert"  # retry (at most 10 times), then send it to the on-failure destination
    BLOCK = "block"  # retry until the fault clears: the partition waits, nothing is skipped


@dataclass(frozen=True, slots=True)
class MappingRetries:
    """A mapping's MaximumRetryAttempts and MaximumRecordAgeInSeconds (None: Lambda's default,
    which never drops a record for its age), and whether it has an on-failure destination."""

    retry_attempts: int
    max_record_age_seconds: int | None
    has_destination: bool


def mapping_retries(
    mode: FailureMode, retry_attempts: int, max_record_age_seconds: int | None
) -> MappingRetries:
    """divert keeps the retry settings and a destination; block retries until the fault clears,
    never drops a record for its age, and has no destination."""
    match mode:
        case FailureMode.DIVERT:
            return MappingRetries(retry_attempts, max_record_age_seconds, has_destination=True)
        case FailureMode.BLOCK:
            return MappingRetries(UNLIMITED, UNLIMITED, has_destination=False)
        case _:
            assert_never(mode)
