"""The stacks a rehearsal deploys, as data: a line each, context keys over the shipped cdk.json,
and what the run sends beyond the ordinary workload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# Every variant writes envelope records: the audit reads each record's topic, partition and
# offset from its envelope to apply the consumer rule.
BASE_CONTEXT: Final[Mapping[str, object]] = {"recordFormat": "envelope"}


@dataclass(frozen=True, slots=True)
class Variant:
    """One stack to rehearse: its context keys (over cdk.json's) and its workload."""

    name: str
    about: str
    context: Mapping[str, object] = field(default_factory=dict)
    records: int = 1_000  # spread over the mappings' topics
    partitions: int = 4  # per topic
    # Records larger than the stream takes (MAX_RECORD_BYTES + 1 bytes of value): the function
    # writes each to the dead-letter bucket instead.
    oversize: int = 0

    def full_context(self) -> dict[str, object]:
        return {**BASE_CONTEXT, **self.context}


VARIANTS: Final = (
    Variant("default", "the shipped cdk.json"),
    Variant(
        "routed",
        "two topics routed to two streams (no default stream)",
        {
            "topics": "orders.v1,payments.v1",
            "defaultStream": False,
            "streams": {"orders": {"topics": ["orders.*"]}, "payments": {"topics": ["payments.*"]}},
        },
    ),
    Variant(
        "dead_letters",
        "records too large for the stream, written to the dead-letter bucket with its key",
        oversize=3,
    ),
    Variant(
        "claim_check",
        "oversizeRecords=claim_check: records too large for the stream kept whole in S3, a"
        " pointer in their key's turn",
        {"oversizeRecords": "claim_check"},
        oversize=3,
    ),
    Variant(
        "block",
        "failureMode=block: no on-failure destination, retries until the fault clears",
        {"failureMode": "block"},
    ),
)
# The variant `make test` rehearses: every path of the function's (records, dead letters, both
# keys), one synth.
CI_VARIANT: Final = "dead_letters"


def variant(name: str) -> Variant:
    """The variant of that name; raises KeyError naming the ones there are."""
    for candidate in VARIANTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no variant {name!r} (variants: {', '.join(v.name for v in VARIANTS)})")
