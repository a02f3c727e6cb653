"""Claim checks (OVERSIZE_RECORDS=claim_check): a record too large for the stream is kept whole in
S3, and a small pointer envelope takes its place in the stream, in its key's turn.

The object is the envelope the record would have been, byte for byte: a consumer that resolves
the pointer (consumer.resolve_claim_check) reads exactly what an ordinary record would have
given it. Its key is derived from the record alone, so a retry or a redelivery writes the same
object again, and it ends in the object's SHA-256: a pointer never names other content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.settings import Settings

# Where the function keeps claim-checked records in their bucket (the stack grants s3:PutObject
# under it). Apart from the dead letters' prefix: a replay never takes one for a dead letter.
CLAIM_CHECK_PREFIX: Final = "claim-checks/"
# The pointer envelope's member that stands in place of key, value and headers.
CLAIM_CHECK_FIELD: Final = "claimCheck"
# The members a pointer keeps from its record: the first five fields of a KafkaRecord.
_IDENTITY: Final = ("topic", "partition", "offset", "timestamp", "timestampType")
SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class ClaimCheck:
    """Where a claim-checked record is kept, and how a reader knows it is the one: the object's
    size in bytes and the SHA-256 of those bytes (lowercase hex)."""

    bucket: str
    key: str
    bytes: int
    sha256: str

    def document(self) -> dict[str, object]:
        """As the pointer envelope spells it."""
        return {"bucket": self.bucket, "key": self.key, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class ClaimCheckTarget:
    """The bucket (and prefix) claim-checked records go to."""

    bucket: str
    prefix: str = CLAIM_CHECK_PREFIX

    @classmethod
    def of(cls, settings: Settings) -> ClaimCheckTarget | None:
        """The settings' target; None unless OVERSIZE_RECORDS=claim_check."""
        bucket = settings.claim_check_bucket_name
        return None if bucket is None else cls(bucket)

    def claim_check(self, record: KafkaRecord, document: bytes) -> ClaimCheck:
        """Where `document`, the record's envelope, is kept: the same key for the same record."""
        digest = hashlib.sha256(document).hexdigest()
        key = f"{self.prefix}{record.topic}/{record.partition}/{record.offset}-{digest}.json"
        return ClaimCheck(self.bucket, key, len(document), digest)


def pointer_bytes(
    record: KafkaRecord, claim_check: ClaimCheck, more: Mapping[str, str] | None = None
) -> bytes:
    """The pointer envelope: the record's topic, partition, offset and timestamp, and where the
    whole record is (`more`: members the envelope would carry too, such as partitionKeyFrom)."""
    document: dict[str, object] = dict(zip(_IDENTITY, record[:5], strict=True))
    document[CLAIM_CHECK_FIELD] = claim_check.document()
    document.update(more or {})
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
