"""The dead-letter object for a record Kinesis can never accept: where it goes, what it holds."""

from __future__ import annotations

import json

from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.events import KEY_SCHEMA_FIELD, VALUE_SCHEMA_FIELD


def dead_letter_key(prefix: str, record: UnwritableRecord) -> str:
    source = record.source
    return f"{prefix}{source.topic}/{source.partition}/{source.offset}.json"


def dead_letter_document(record: UnwritableRecord, event_source_arn: str | None) -> bytes:
    source = record.source
    document: dict[str, object] = {
        "reason": record.reason,
        "eventSourceArn": event_source_arn,
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "timestamp": source.timestamp,
        "timestampType": source.timestamp_type,
        "partitionKey": record.partition_key,
        "key": source.key_b64,
        "value": source.value_b64,
        "headers": [{name: list(value)} for name, value in source.headers],
    }
    # A registry's schema metadata, as the event carried it: a replay reads it back.
    if source.key_schema is not None:
        document[KEY_SCHEMA_FIELD] = source.key_schema.document()
    if source.value_schema is not None:
        document[VALUE_SCHEMA_FIELD] = source.value_schema.document()
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
