"""The dead-letter object for a record Kinesis can never accept: where it goes, what it holds."""

from __future__ import annotations

import json

from msk_kinesis_sink.encoding import UnwritableRecord


def dead_letter_key(prefix: str, record: UnwritableRecord) -> str:
    source = record.source
    return f"{prefix}{source.topic}/{source.partition}/{source.offset}.json"


def dead_letter_document(record: UnwritableRecord, event_source_arn: str | None) -> bytes:
    source = record.source
    document = {
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
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
