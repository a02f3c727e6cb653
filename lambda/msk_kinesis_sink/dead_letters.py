"""The dead-letter object for a record Kinesis can never accept: where it goes, what it holds."""

from __future__ import annotations

import json

from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.events import event_record


def dead_letter_key(prefix: str, record: UnwritableRecord) -> str:
    source = record.source
    return f"{prefix}{source.topic}/{source.partition}/{source.offset}.json"


def dead_letter_document(record: UnwritableRecord, event_source_arn: str | None) -> bytes:
    """What went wrong, where the record came from, and the record as the event carried it
    (with any schema metadata: a replay reads it back)."""
    document: dict[str, object] = {
        "reason": record.reason,
        "eventSourceArn": event_source_arn,
        "partitionKey": record.partition_key,
        **event_record(record.source),
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
